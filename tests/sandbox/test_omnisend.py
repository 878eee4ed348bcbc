"""The sandbox's Omnisend event endpoints (``sandbox.omnisend``) against Omnisend's own
documents: each test quotes the document (seed file or vendor page) whose example or rule it
replays over real HTTP, so the test oracle follows the docs rather than our client. The dated
API (version header, keys, validation, lengths, event times, 429s) and v4 (seed 003).

The fake clock, server and client fixtures here serve the Brevo document tests too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connector.sandbox import RateWindow, SandboxOptions, SandboxServer
from tests.helpers import sandbox_client

OMNI_V4 = {"Authorization": "Bearer sandbox-omnisend-token"}
DATED = {"Authorization": "Omnisend-API-Key sandbox-omnisend-key", "Omnisend-Version": "2026-03-15"}


class FakeClock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sb() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(clock=FakeClock())) as server:
        yield server


@pytest.fixture
def client(sb: SandboxServer) -> Iterator[httpx.Client]:
    with sandbox_client(sb.url) as c:
        yield c


def assert_problem(body: dict[str, Any], status: int) -> None:
    """RFC 9457 as https://api-docs.omnisend.com/v2026-03-15/reference/responses shows it."""
    assert body["status"] == status
    assert body["type"].startswith("https://problems.omnisend.com/")
    assert body["title"] and body["detail"]
    assert body["instance"].startswith("urn:omnisend:request:")


# --------------------------------------------------------------------------- Omnisend dated API

# https://api-docs.omnisend.com/reference/events — "Example: Send a custom event":
#   curl --request POST --url https://api.omnisend.com/api/events
#     --header 'Authorization: Omnisend-API-Key YOUR_API_KEY'
#     --header 'Omnisend-Version: 2026-03-15' --header 'Content-Type: application/json'
#     --data '{"eventName": "my custom event", "origin": "api",
#              "contact": {"email": "..."}, "properties": {"customField": "value"}}'
DOC_CUSTOM_EVENT = {
    "eventName": "my custom event",
    "origin": "api",
    "contact": {"email": "vanessa@example.com"},
    "properties": {"customField": "value"},
}


def test_dated_api_accepts_the_documented_custom_event_example(
    sb: SandboxServer, client: httpx.Client
) -> None:
    r = client.post("/api/events", json=DOC_CUSTOM_EVENT, headers=DATED)
    assert (r.status_code, r.content) == (202, b"")  # OpenAPI: 202 "Accepted"
    assert sb.events("omnisend_events") == [DOC_CUSTOM_EVENT]
    assert r.headers["X-Rate-Limit-Limit"] == "400"  # "400 requests per minute"


def test_dated_api_requires_the_omnisend_version_header(client: httpx.Client) -> None:
    """OpenAPI: parameter ``Omnisend-Version`` in header, ``required: true``; "All 2026-03-15
    requests also require the Omnisend-Version header" (reference/authentication)."""
    r = client.post(
        "/api/events", json=DOC_CUSTOM_EVENT, headers={"Authorization": DATED["Authorization"]}
    )
    assert r.status_code == 400
    assert_problem(r.json(), 400)
    assert "Omnisend-Version" in r.json()["detail"]
    bad = client.post(
        "/api/events", json=DOC_CUSTOM_EVENT, headers={**DATED, "Omnisend-Version": "2020-01-01"}
    )
    assert bad.status_code == 400 and "2026-03-15" in bad.json()["detail"]


def test_dated_api_takes_omnisend_api_key_or_bearer_not_x_api_key(client: httpx.Client) -> None:
    """reference/authentication: "--header 'Authorization: Omnisend-API-Key YOUR-API-KEY'" and
    "OAuth 2.0 is also supported using an Authorization: Bearer {access-token} header"."""
    version = {"Omnisend-Version": "2026-03-15"}
    for headers in (
        {**version, "X-API-KEY": "sandbox-omnisend-key"},
        {**version, "Authorization": "Omnisend-API-Key wrong"},
        {**version, "Authorization": "sandbox-omnisend-key"},
    ):
        r = client.post("/api/events", json=DOC_CUSTOM_EVENT, headers=headers)
        assert r.status_code == 401, headers
        assert_problem(r.json(), 401)
    bearer = {**version, **OMNI_V4}
    assert client.post("/api/events", json=DOC_CUSTOM_EVENT, headers=bearer).status_code == 202


def test_dated_api_validation_lists_every_invalid_field_at_once(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """reference/responses: "When input validation fails, the response includes an errors array
    with one entry per invalid field ... All validation errors are returned at once — the API
    does not stop at the first failure." Contact limits from the OpenAPI contactDto.Contact."""
    body = {
        "properties": [1],
        "eventTime": "yesterday",
        "contact": {"firstName": "x" * 51, "gender": "x", "tags": ["t"] * 101},
    }
    r = client.post("/api/events", json=body, headers=DATED)
    assert r.status_code == 400
    problem = r.json()
    assert_problem(problem, 400)
    assert problem["title"] == "Validation failed"
    fields = {e["field"]: e["code"] for e in problem["errors"]}
    assert fields == {
        "eventName": "required",
        "origin": "required",  # reference/events: "Every event requires origin"
        "contact": "required",  # no id, email or phone: anonymous events are refused
        "contact.firstName": "max_length",
        "contact.gender": "invalid_format",
        "contact.tags": "max_items",
        "eventTime": "invalid_format",
        "properties": "invalid_format",
    }
    assert all(e["message"] for e in problem["errors"])
    assert sb.events("omnisend_events") == []


def test_dated_api_max_length_counts_characters_not_bytes(client: httpx.Client) -> None:
    """OpenAPI ``firstName: maxLength 50``; JSON Schema maxLength counts characters."""
    ok = {**DOC_CUSTOM_EVENT, "contact": {"email": "a@example.com", "firstName": "É" * 50}}
    assert client.post("/api/events", json=ok, headers=DATED).status_code == 202  # 100 bytes
    long = {**DOC_CUSTOM_EVENT, "contact": {"email": "a@example.com", "firstName": "É" * 51}}
    assert client.post("/api/events", json=long, headers=DATED).status_code == 400


def test_dated_api_event_time_takes_both_documented_forms_and_dedups_on_id_and_time(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """OpenAPI eventTime: "Accepts RFC 3339 (e.g. "2021-07-01T00:00:00Z") and the space-separated
    form "YYYY-MM-DD HH:MM:SS±HH:MM" (e.g. "2021-07-01 00:00:00+02:00")"; reference/events:
    "Events with the same eventID and eventTime are processed only once"."""
    event_id = "9afca57b-d157-478b-adde-b9506322b16f"  # the OpenAPI example eventID
    for when in ("2021-07-01T00:00:00Z", "2021-07-01 00:00:00+02:00"):
        body = {**DOC_CUSTOM_EVENT, "eventID": event_id, "eventTime": when}
        assert client.post("/api/events", json=body, headers=DATED).status_code == 202
        assert client.post("/api/events", json=body, headers=DATED).status_code == 202
    assert len(sb.events("omnisend_events")) == 2
    assert sb.stats()["deduplicated"]["omnisend_events"] == 2


def test_dated_api_429_is_a_problem_with_the_rate_headers() -> None:
    options = SandboxOptions(
        clock=FakeClock(), rate_limits={"omnisend_events": [RateWindow(1, 60.0)]}
    )
    with SandboxServer(options) as server, sandbox_client(server.url) as c:
        assert c.post("/api/events", json=DOC_CUSTOM_EVENT, headers=DATED).status_code == 202
        r = c.post("/api/events", json=DOC_CUSTOM_EVENT, headers=DATED)
    assert r.status_code == 429
    assert_problem(r.json(), 429)
    assert r.headers["X-Rate-Limit-Remaining"] == "0"


# --------------------------------------------------------------------------- Omnisend v4 (seed 003)


@pytest.mark.parametrize(
    ("first", "later", "kind"),
    [
        # Seed 003 "Supported types": "email | string, email format" and "url | string, URL
        # format | https://example.com/".
        ("jane@example.com", "lorem ipsum", "email"),
        ("https://example.com/", "lorem ipsum", "url"),
    ],
)
def test_v4_detects_the_seeds_email_and_url_types_and_freezes_them(
    first: str, later: str, kind: str, client: httpx.Client
) -> None:
    """Seed 003: "If the existing property types won't match ones from the request, the error
    will be returned."""

    def body(value: str) -> dict[str, Any]:
        return {
            "eventName": "viewed",
            "contact": {"email": "a@example.com"},
            "properties": {"ref": value},
        }

    assert client.post("/v4/track", json=body(first), headers=OMNI_V4).status_code == 202
    r = client.post("/v4/track", json=body(later), headers=OMNI_V4)
    assert r.status_code == 400
    assert f"expected {kind}, got string" in r.json()["error"]


def test_v4_string_limit_counts_characters_not_bytes(client: httpx.Client) -> None:
    """Seed 003: "String max length - 2048 characters"."""

    def body(value: str) -> dict[str, Any]:
        return {"eventName": "e", "contact": {"email": "a@example.com"}, "properties": {"s": value}}

    assert client.post("/v4/track", json=body("é" * 2048), headers=OMNI_V4).status_code == 202
    assert client.post("/v4/track", json=body("é" * 2049), headers=OMNI_V4).status_code == 400
