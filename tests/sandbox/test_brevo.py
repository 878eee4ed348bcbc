"""The sandbox's Brevo event endpoints (``sandbox.brevo``) against Brevo's own documents: each
test quotes the document (seed file or vendor page) whose example or rule it replays over real
HTTP, so the test oracle follows the docs rather than our client. Seeds 000-002: the events
endpoint's example, property types and limits; the tracker's example and error codes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connector.sandbox import SandboxServer
from tests.sandbox.test_omnisend import client, sb

__all__ = ["client", "sb"]  # fixtures used by name

BREVO = {"api-key": "sandbox-brevo-key"}
TRACKER = {"ma-key": "sandbox-ma-key"}


# --------------------------------------------------------------------------- Brevo (seeds 000-002)

# Seed 001, "CURL Example" of POST https://api.brevo.com/v3/events (email anonymised).
SEED_001 = {
    "event_name": "video_played",
    "identifiers": {"email_id": "jane.doe@example.com", "ext_id": "ext_09887"},
    "contact_properties": {"FIRSTNAME": "Jane", "LASTNAME": "Doe", "AGE": 32, "GENDER": "FEMALE"},
    "event_properties": {
        "video_title": "Brevo — The most approachable CRM suite",
        "video_description": "Create your free account today!",
        "duration": 142,
        "autoplayed": False,
        "upload_date": "2023-11-24T12:09:10+01:00",
    },
}


def test_brevo_accepts_seed_001s_example_and_nested_properties(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Seed 001: "Top level properties and nested properties can be used"."""
    assert client.post("/v3/events", json=SEED_001, headers=BREVO).status_code == 204
    nested = {**SEED_001, "event_properties": {"video": {"title": "t", "meta": {"hd": True}}}}
    assert client.post("/v3/events", json=nested, headers=BREVO).status_code == 204
    assert sb.events("brevo_event") == [SEED_001, nested]


@pytest.mark.parametrize("value", [["a", "b"], {"deep": [1, None]}, [{"sku": "x"}], 9.99, True])
def test_brevo_event_property_types_follow_the_openapi(value: Any, client: httpx.Client) -> None:
    """OpenAPI (POST /v3/events, /v3/events/batch): event property values are ``oneOf [string,
    integer, boolean, object (additionalProperties: "Any type"), array (items: "Any type")]``
    (the batch union lacks boolean and both lack number, which the description lists: "string,
    number, boolean (true/false), date" — taken as spec drift). Arrays and nested values of any
    type are documented; no document forbids them."""
    body = {**SEED_001, "event_properties": {"x": value}}
    assert client.post("/v3/events", json=body, headers=BREVO).status_code == 204
    batch = client.post("/v3/events/batch", json=[SEED_001, body], headers=BREVO)  # seed 000
    assert batch.status_code == 202


def test_brevo_event_property_null_at_the_top_is_refused(client: httpx.Client) -> None:
    """A top-level null is none of the OpenAPI's oneOf types (nested, "Any type" holds it)."""
    body = {**SEED_001, "event_properties": {"x": None}}
    r = client.post("/v3/events", json=body, headers=BREVO)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_parameter")


def test_brevo_event_properties_limit_is_50kb_of_bytes(client: httpx.Client) -> None:
    """Seeds 000/001: "Size is limited to 50Kb" — measured on the encoded JSON bytes."""
    fits_in_chars = "é" * 30_000  # 30,000 characters, 60,000 bytes
    body = {**SEED_001, "event_properties": {"s": fits_in_chars}}
    r = client.post("/v3/events", json=body, headers=BREVO)
    assert (r.status_code, r.json()["code"]) == (400, "out_of_range")


# Seed 002, the trackEvent cURL example (email anonymised).
SEED_002 = {
    "email": "jane.doe@example.com",
    "event": "cart_updated",
    "eventdata": {
        "data": {
            "added_product": [
                {"currency": "EUR", "name": "Wrist watch", "type": "accessories", "price": "50.00"}
            ]
        }
    },
    "properties": {"additionalProp": "string"},
}


def test_tracker_accepts_seed_002s_example_and_any_properties_object(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Seed 002: ``properties`` "will content all your custom fields. Add as many as needed"; it
    states no type for their values, so the sandbox refuses none (it used to refuse nested ones:
    a rule of ours, not Brevo's)."""
    assert client.post("/api/v2/trackEvent", json=SEED_002, headers=TRACKER).status_code == 204
    nested = {**SEED_002, "properties": {"PREFS": {"color": "red"}}}
    assert client.post("/api/v2/trackEvent", json=nested, headers=TRACKER).status_code == 204
    assert sb.events("brevo_tracker") == [SEED_002, nested]


def test_tracker_errors_use_seed_002s_codes(client: httpx.Client) -> None:
    """Seed 002: "400 | Bad request | Bad request occurs due to out_of_rangeModel ,
    invalid_parameter , missingParameter" — the tracker's camelCase code, not /v3's
    ``missing_parameter``."""
    for missing in ("email", "event"):
        body = {k: v for k, v in SEED_002.items() if k != missing}
        r = client.post("/api/v2/trackEvent", json=body, headers=TRACKER)
        assert (r.status_code, r.json()["code"]) == (400, "missingParameter"), missing
