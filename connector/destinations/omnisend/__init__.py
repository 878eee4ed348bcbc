"""Omnisend: what its endpoints share (``vendor``) and one module per endpoint (``track``,
``events``, ``contacts``)."""
