"""What Omnisend's event endpoints share (``destinations.omnisend.vendor``): an error answer
read with its fields, about the request only when it names no field."""

from __future__ import annotations

import orjson

from connector.destinations.omnisend.vendor import omnisend_about_request, omnisend_message


def test_omnisend_errors_read_the_error_and_its_fields() -> None:
    body = b'{"error": "bad input", "fields": {"contact.email": "invalid"}}'
    assert omnisend_message(400, body) == "bad input (contact.email: invalid)"
    assert omnisend_message(502, b"<html>") == "<html>"
    assert omnisend_message(500, b"") == "HTTP 500"


def test_omnisend_errors_naming_fields_stay_item_level() -> None:
    about_fields = orjson.dumps({"error": "Invalid header value", "fields": {"eventName": "x"}})
    assert not omnisend_about_request(400, about_fields)
    assert omnisend_about_request(400, orjson.dumps({"error": "Unsupported API version"}))
    # The structure decides before the words (issue 19 item 1): an error naming no field is
    # about the request, whatever it says (the vendor names the field of a bad event).
    assert omnisend_about_request(400, orjson.dumps({"error": "contact has no identifier"}))
