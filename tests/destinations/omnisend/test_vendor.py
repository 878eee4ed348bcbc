"""What Omnisend's event endpoints share (``destinations.omnisend.vendor``): an error answer
read with its fields."""

from __future__ import annotations

from connector.destinations.omnisend.vendor import omnisend_message


def test_omnisend_errors_read_the_error_and_its_fields() -> None:
    body = b'{"error": "bad input", "fields": {"contact.email": "invalid"}}'
    assert omnisend_message(400, body) == "bad input (contact.email: invalid)"
    assert omnisend_message(502, b"<html>") == "<html>"
    assert omnisend_message(500, b"") == "HTTP 500"
