"""Klaviyo: what its endpoints share (``vendor``) and one module per endpoint (``bulk``,
``profiles``)."""
