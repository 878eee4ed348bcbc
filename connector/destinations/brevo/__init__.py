"""Brevo: what its endpoints share (``vendor``) and one module per endpoint (``batch``,
``event``, ``tracker``, ``contacts``)."""
