"""connector.sandbox over real HTTP on loopback: every endpoint's auth, success, recording and
validation rules, rate limits on a fake clock, each fault kind, control endpoints, sink mode."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from connector.sandbox import Fault, RateWindow, SandboxOptions, SandboxServer
from tests.helpers import sandbox_client

BREVO = {"api-key": "sandbox-brevo-key"}
TRACKER = {"ma-key": "sandbox-ma-key"}
OMNI_V4 = {"Authorization": "Bearer sandbox-omnisend-token"}
OMNI_V5 = {"X-API-KEY": "sandbox-omnisend-key"}
KLAVIYO = {
    "Authorization": "Klaviyo-API-Key pk_sandbox",
    "revision": "2026-07-15",
    "Content-Type": "application/vnd.api+json",
}
KLAVIYO_PATH = "/api/event-bulk-create-jobs"
NOW = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_server(clock: FakeClock, **options: Any) -> SandboxServer:
    return SandboxServer(SandboxOptions(clock=clock, wall_clock=lambda: NOW, **options))


@pytest.fixture
def sb(clock: FakeClock) -> Iterator[SandboxServer]:
    with make_server(clock) as server:
        yield server


@pytest.fixture
def client(sb: SandboxServer) -> Iterator[httpx.Client]:
    with sandbox_client(sb.url) as c:
        yield c


def brevo_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "order_created",
        "event_date": "2026-06-01T10:00:00+02:00",
        "identifiers": {"email_id": "a@example.com"},
        "event_properties": {"amount": 12.5, "sku": "A-1"},
    }
    event.update(overrides)
    return event


def omni_v4(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventName": "order_created",
        "contact": {"email": "a@example.com"},
        "properties": {"amount": 3, "paid": True},
    }
    body.update(overrides)
    return body


def omni_v5(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventName": "placed order",
        "origin": "api",
        "eventID": "6f1c3f0e-8a62-4f5d-9d8e-0b1b2c3d4e5f",
        "eventTime": "2026-06-01T10:00:00Z",
        "contact": {"email": "a@example.com"},
        "properties": {"total": 9.99},
    }
    body.update(overrides)
    return body


def k_event(metric: str = "Placed Order", **attributes: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "properties": {"OrderId": "A1"},
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "time": "2026-06-01T10:00:00+00:00",
        "unique_id": "order-A1",
    }
    attrs.update(attributes)
    return {"type": "event", "attributes": attrs}


def k_item(events: list[dict[str, Any]], profile_id: str | None = None, **profile: Any) -> Any:
    data: dict[str, Any] = {"type": "profile", "attributes": profile or {"email": "a@b.com"}}
    if profile_id is not None:
        data["id"] = profile_id
    return {
        "type": "event-bulk-create",
        "attributes": {"profile": {"data": data}, "events": {"data": events}},
    }


def k_job(*items: Any) -> dict[str, Any]:
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": list(items)}},
        }
    }


def k_post(client: httpx.Client, job: Any, path: str = KLAVIYO_PATH, **headers: str) -> Any:
    return client.post(path, content=orjson.dumps(job), headers={**KLAVIYO, **headers})


# -- Brevo single event (contracts §2) -------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"api-key": "wrong"}, {"ma-key": "sandbox-ma-key"}])
def test_brevo_event_rejects_missing_or_wrong_key(client: httpx.Client, headers: Any) -> None:
    r = client.post("/v3/events", json=brevo_event(), headers=headers)
    assert r.status_code == 401
    assert r.json() == {"code": "unauthorized", "message": "Key not found"}


def test_brevo_event_success_is_204_empty_and_recorded_as_sent(
    sb: SandboxServer, client: httpx.Client
) -> None:
    event = brevo_event(identifiers={"contact_id": 42}, contact_properties={"FIRSTNAME": "A"})
    r = client.post("/v3/events", json=event, headers=BREVO)
    assert r.status_code == 204
    assert r.content == b""
    assert sb.events("brevo_event") == [event]
    assert sb.requests[-1][:4] == ("POST", "/v3/events", 204, 1)


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (brevo_event(event_name="has space"), "invalid_parameter"),
        (brevo_event(event_name="x" * 256), "invalid_parameter"),
        ({"identifiers": {"email_id": "a@b.c"}}, "missing_parameter"),
        (brevo_event(identifiers=None), "missing_parameter"),
        (brevo_event(identifiers={}), "missing_parameter"),
        (brevo_event(identifiers={"email_id": None}), "missing_parameter"),
        (brevo_event(identifiers={"contact_id": "42"}), "invalid_parameter"),
        (brevo_event(identifiers={"contact_id": True}), "invalid_parameter"),
        (brevo_event(event_date="2026-06-01T10:00:00"), "invalid_parameter"),
        (brevo_event(event_date="2026-06-01"), "invalid_parameter"),
        (brevo_event(event_properties={"bad key": 1}), "invalid_parameter"),
        (brevo_event(event_properties={"blob": "x" * 51_200}), "out_of_range"),
    ],
)
def test_brevo_event_validation_errors(client: httpx.Client, event: Any, code: str) -> None:
    r = client.post("/v3/events", json=event, headers=BREVO)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]


def test_brevo_event_accepts_boundary_values(sb: SandboxServer, client: httpx.Client) -> None:
    props = {"b": "x" * (51_200 - len(b'{"b":""}'))}  # exactly 50 KB encoded
    ok = [
        brevo_event(event_name="x" * 255, event_properties=props),
        brevo_event(event_date="2024-02-06T20:59:23.383Z", identifiers={"ext_id": "u1"}),
    ]
    for event in ok:
        assert client.post("/v3/events", json=event, headers=BREVO).status_code == 204
    assert len(sb.events("brevo_event")) == 2


def test_brevo_rejects_non_json_content_type_and_bad_json(client: httpx.Client) -> None:
    r = client.post("/v3/events", content=b"event_name=x", headers={**BREVO, "Content-Type": "x"})
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    bad = {**BREVO, "Content-Type": "application/json"}
    r = client.post("/v3/events", content=b"{not json", headers=bad)
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")


# -- Brevo batch (contracts §3) --------------------------------------------------------------


def test_brevo_batch_all_valid_is_202_with_count(sb: SandboxServer, client: httpx.Client) -> None:
    events = [brevo_event(), brevo_event(event_name="other")]
    r = client.post("/v3/events/batch", json=events, headers=BREVO)
    assert r.status_code == 202
    assert r.json() == {
        "message": "Batch accepted. Valid events have been added to the processing queue.",
        "count": 2,
    }
    assert sb.events("brevo_events_batch") == events


def test_brevo_batch_partial_success_groups_indices_and_keeps_valid(
    sb: SandboxServer, client: httpx.Client
) -> None:
    events = [
        brevo_event(event_name="bad name"),
        brevo_event(),
        brevo_event(event_name="also bad"),
        brevo_event(identifiers={}),
        brevo_event(event_name="fine"),
    ]
    r = client.post("/v3/events/batch", json=events, headers=BREVO)
    assert r.status_code == 207
    body = r.json()
    assert body["status"] == "partial_success"
    assert (body["total_events"], body["successful_events"], body["failed_events"]) == (5, 2, 3)
    assert [e["eventIndex"] for e in body["errors"]] == [[0, 2], [3]]
    assert "event_name" in body["errors"][0]["message"]
    assert sb.events("brevo_events_batch") == [events[1], events[4]]
    assert sb.stats()["rejected_events"]["brevo_events_batch"] == 3


def test_brevo_batch_all_invalid_is_400_failure_summary(
    sb: SandboxServer, client: httpx.Client
) -> None:
    events = [brevo_event(identifiers={}), brevo_event(identifiers={})]
    r = client.post("/v3/events/batch", json=events, headers=BREVO)
    assert r.status_code == 400
    body = r.json()
    assert body["status"] == "failure"
    assert body["successful_events"] == 0 and body["failed_events"] == 2
    assert body["errors"][0]["eventIndex"] == [0, 1]
    assert sb.events("brevo_events_batch") == []


def test_brevo_batch_takes_the_top_level_array_of_the_endpoint_document(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Seed 000 (POST /events/batch): "[] Array Yes", "[].identifiers Object Yes",
    "[].event_name String Yes", "[].event_date ... (e.g. "2024-01-24T17:39:57+01:00")",
    "[].contact_properties ... For example: "FIRSTNAME": "Jane" , "AGE": 37"."""
    body = [
        {
            "event_name": "video_played",
            "event_date": "2024-01-24T17:39:57+01:00",
            "identifiers": {"email_id": "jane@example.com"},
            "contact_properties": {"FIRSTNAME": "Jane", "AGE": 37},
            "event_properties": {"title": "Intro"},
        }
    ]
    r = client.post("/v3/events/batch", json=body, headers=BREVO)
    assert (r.status_code, r.json()["count"]) == (202, 1)
    assert sb.events("brevo_events_batch") == body


def test_brevo_batch_object_wrapper_is_rejected_by_default_with_go_message(
    sb: SandboxServer, client: httpx.Client
) -> None:
    r = client.post("/v3/events/batch", json={"events": [brevo_event()]}, headers=BREVO)
    assert r.status_code == 400
    assert r.json() == {
        "code": "bad_request",
        "message": "json: cannot unmarshal object into Go value of type []main.unifiedEvent",
    }
    assert sb.events("brevo_events_batch") == []


def test_brevo_batch_object_only_shape_rejects_the_array_with_go_message(
    clock: FakeClock,
) -> None:
    with make_server(clock, brevo_batch_shape="object") as server:
        r = httpx.post(server.url + "/v3/events/batch", json=[brevo_event()], headers=BREVO)
        assert r.status_code == 400
        assert r.json() == {
            "code": "bad_request",
            "message": "json: cannot unmarshal array into Go value of type "
            "main.unifiedEventsRequest",
        }


def test_brevo_batch_accept_array_option_takes_both_shapes(clock: FakeClock) -> None:
    with make_server(clock, brevo_batch_shape="object", brevo_batch_accept_array=True) as server:
        url = server.url + "/v3/events/batch"
        assert httpx.post(url, json=[brevo_event()], headers=BREVO).status_code == 202
        r = httpx.post(url, json={"events": [brevo_event()]}, headers=BREVO)
        assert r.status_code == 202
        assert len(server.events("brevo_events_batch")) == 2


def test_brevo_batch_array_only_shape_rejects_the_object(clock: FakeClock) -> None:
    with make_server(clock, brevo_batch_shape="array") as server:
        url = server.url + "/v3/events/batch"
        r = httpx.post(url, json={"events": [brevo_event()]}, headers=BREVO)
        assert r.status_code == 400
        assert "cannot unmarshal object" in r.json()["message"]
        assert httpx.post(url, json=[brevo_event()], headers=BREVO).status_code == 202


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "missing_parameter"),
        ([brevo_event()] * 201, "out_of_range"),
        ([brevo_event(event_properties={"p": "x" * 40_000})] * 14, "out_of_range"),
        ("nope", "bad_request"),
        ({"events": [brevo_event()]}, "bad_request"),
        ([1], "bad_request"),
    ],
)
def test_brevo_batch_request_level_errors(
    sb: SandboxServer, client: httpx.Client, body: Any, code: str
) -> None:
    r = client.post("/v3/events/batch", json=body, headers=BREVO)
    assert r.status_code == 400
    assert r.json()["code"] == code
    assert sb.events("brevo_events_batch") == []


def test_brevo_batch_accepts_200_events(client: httpx.Client) -> None:
    r = client.post("/v3/events/batch", json=[brevo_event()] * 200, headers=BREVO)
    assert (r.status_code, r.json()["count"]) == (202, 200)


def test_brevo_batch_requires_api_key(client: httpx.Client) -> None:
    r = client.post("/v3/events/batch", json=[brevo_event()])
    assert r.status_code == 401
    assert r.json() == {"code": "unauthorized", "message": "Key not found"}


# -- Brevo legacy tracker (contracts §4) -----------------------------------------------------


def test_tracker_needs_ma_key_not_api_key(client: httpx.Client) -> None:
    body = {"email": "a@b.com", "event": "cart_updated"}
    assert client.post("/api/v2/trackEvent", json=body, headers=BREVO).status_code == 401
    r = client.post("/api/v2/trackEvent", json=body, headers={"ma-key": "nope"})
    assert r.json()["code"] == "unauthorized"


def test_tracker_success_records_body(sb: SandboxServer, client: httpx.Client) -> None:
    body = {
        "email": "a@b.com",
        "event": "cart_updated",
        "properties": {"FIRSTNAME": "Ann"},
        "eventdata": {"id": "cart:1234", "data": {"items": [{"name": "x"}]}},
    }
    r = client.post("/api/v2/trackEvent", json=body, headers=TRACKER)
    assert (r.status_code, r.content) == (204, b"")
    assert sb.events("brevo_tracker") == [body]


@pytest.mark.parametrize(
    "body",
    [
        {"event": "x"},
        {"email": "not-an-email", "event": "x"},
        {"email": "a@b.com"},
        {"email": "a@b.com", "event": ""},
        {"email": "a@b.com", "event": "x", "properties": {"email": "b@c.d"}},
        {"email": "a@b.com", "event": "x", "properties": {"event": "y"}},
        {"email": "a@b.com", "event": "x", "eventdata": {"id": 5}},
        {"email": "a@b.com", "event": "x", "eventdata": {"data": [1]}},
        {"email": "a@b.com", "event": "x", "eventdata": "x"},
    ],
)
def test_tracker_validation_errors(sb: SandboxServer, client: httpx.Client, body: Any) -> None:
    r = client.post("/api/v2/trackEvent", json=body, headers=TRACKER)
    assert r.status_code == 400
    assert set(r.json()) == {"code", "message"}
    assert sb.events("brevo_tracker") == []


# -- Omnisend v4 (contracts §5.1) ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Token sandbox-omnisend-token"},
        {"X-API-KEY": "sandbox-omnisend-key"},
    ],
)
def test_omnisend_v4_requires_bearer_token(client: httpx.Client, headers: Any) -> None:
    r = client.post("/v4/track", json=omni_v4(), headers=headers)
    assert r.status_code == 401
    assert "error" in r.json()


def test_omnisend_v4_success_is_202_empty_and_recorded(
    sb: SandboxServer, client: httpx.Client
) -> None:
    r = client.post("/v4/track", json=omni_v4(), headers=OMNI_V4)
    assert (r.status_code, r.content) == (202, b"")
    assert sb.events("omnisend_track") == [omni_v4()]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (omni_v4(eventName=""), "eventName"),
        (omni_v4(contact={}), "contact"),
        (omni_v4(contact={"firstName": "A"}), "contact"),
        (omni_v4(contact=None), "contact"),
        (omni_v4(properties={f"p{i}": i for i in range(101)}), "properties"),
        (omni_v4(properties={"bad-name": 1}), "properties.bad-name"),
        (omni_v4(properties={"x" * 129: 1}), "properties." + "x" * 129),
        (omni_v4(properties={"s": "x" * 2049}), "properties.s"),
        (omni_v4(properties={"o": {"a": 1}}), "properties.o"),
        (omni_v4(properties={"l": [1]}), "properties.l"),
    ],
)
def test_omnisend_v4_validation_errors(
    sb: SandboxServer, client: httpx.Client, body: Any, field: str
) -> None:
    r = client.post("/v4/track", json=body, headers=OMNI_V4)
    assert r.status_code == 400
    payload = r.json()
    assert field in payload["fields"]
    assert payload["error"]
    assert sb.events("omnisend_track") == []


def test_omnisend_v4_accepts_limits(client: httpx.Client) -> None:
    props = {f"p{i}": "x" * 2048 for i in range(100)}
    assert client.post("/v4/track", json=omni_v4(properties=props), headers=OMNI_V4).is_success
    phone = omni_v4(contact={"phoneNumber": "+37060000000"})
    assert client.post("/v4/track", json=phone, headers=OMNI_V4).status_code == 202


def test_omnisend_v4_freezes_property_types_per_event_name(
    sb: SandboxServer, client: httpx.Client
) -> None:
    first = omni_v4(properties={"qty": 1, "price": 2.5, "day": "2026-06-01", "note": "hi"})
    assert client.post("/v4/track", json=first, headers=OMNI_V4).status_code == 202

    mismatch = omni_v4(properties={"qty": "one"})
    r = client.post("/v4/track", json=mismatch, headers=OMNI_V4)
    assert r.status_code == 400
    assert r.json() == {
        "error": "property 'qty' type mismatch: expected int, got string",
        "fields": {"properties.qty": "property 'qty' type mismatch: expected int, got string"},
    }
    # int into a float property is fine; float into an int property is not.
    ok = omni_v4(properties={"price": 3, "new_flag": True})
    assert client.post("/v4/track", json=ok, headers=OMNI_V4).status_code == 202
    r = client.post("/v4/track", json=omni_v4(properties={"qty": 1.5}), headers=OMNI_V4)
    assert "expected int, got float" in r.json()["error"]
    # a date property refuses a plain string and a dateTime
    bad_day = omni_v4(properties={"day": "2026-06-01T10:00:00Z"})
    assert (
        "expected date, got dateTime"
        in client.post("/v4/track", json=bad_day, headers=OMNI_V4).json()["error"]
    )
    # the new property joined the schema and is now frozen too
    r = client.post("/v4/track", json=omni_v4(properties={"new_flag": "yes"}), headers=OMNI_V4)
    assert "expected bool, got string" in r.json()["error"]
    # another event name has its own schema
    other = omni_v4(eventName="refund", properties={"qty": "one"})
    assert client.post("/v4/track", json=other, headers=OMNI_V4).status_code == 202
    assert len(sb.events("omnisend_track")) == 3
    schemas = sb.stats()["omnisend_schemas"]
    assert schemas["order_created"] == {
        "qty": "int",
        "price": "float",
        "day": "date",
        "note": "string",
        "new_flag": "bool",
    }


# -- Omnisend v5 (contracts §5.2) ------------------------------------------------------------


def test_omnisend_v5_requires_api_key_and_sends_rate_headers(client: httpx.Client) -> None:
    for headers in ({}, {"X-API-KEY": "nope"}, OMNI_V4):
        r = client.post("/v5/events", json=omni_v5(), headers=headers)
        assert r.status_code == 401
        assert "error" in r.json()
        assert r.headers["X-Rate-Limit-Limit"] == "400"


def test_omnisend_v5_success_records_and_has_rate_headers(
    sb: SandboxServer, client: httpx.Client
) -> None:
    r = client.post("/v5/events", json=omni_v5(), headers=OMNI_V5)
    assert (r.status_code, r.content) == (202, b"")
    assert r.headers["X-Rate-Limit-Limit"] == "400"
    assert r.headers["X-Rate-Limit-Remaining"] == "399"
    assert r.headers["X-Rate-Limit-Reset"] == "60"
    nested = omni_v5(eventID=None, properties={"items": [{"sku": "a"}]}, contact={"phone": "+1"})
    assert client.post("/v5/events", json=nested, headers=OMNI_V5).status_code == 202
    assert sb.events("omnisend_events") == [omni_v5(), nested]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (omni_v5(eventName=None), "eventName"),
        (omni_v5(origin=None), "origin"),
        (omni_v5(contact={}), "contact"),
        (omni_v5(contact={"phoneNumber": "+1"}), "contact"),
        (omni_v5(eventID="not-a-uuid"), "eventID"),
        (omni_v5(eventTime="2026-06-01 10:00:00"), "eventTime"),
        (omni_v5(properties=[1]), "properties"),
    ],
)
def test_omnisend_v5_validation_errors(
    sb: SandboxServer, client: httpx.Client, body: Any, field: str
) -> None:
    r = client.post("/v5/events", json=body, headers=OMNI_V5)
    assert r.status_code == 400
    assert field in r.json()["fields"]
    assert sb.events("omnisend_events") == []


def test_omnisend_v5_dedups_on_event_id_and_time(sb: SandboxServer, client: httpx.Client) -> None:
    for _ in range(3):
        r = client.post("/v5/events", json=omni_v5(), headers=OMNI_V5)
        assert r.status_code == 202
    later = omni_v5(eventTime="2026-06-01T10:00:01Z")
    assert client.post("/v5/events", json=later, headers=OMNI_V5).status_code == 202
    no_id = omni_v5(eventID=None)
    client.post("/v5/events", json=no_id, headers=OMNI_V5)
    client.post("/v5/events", json=no_id, headers=OMNI_V5)
    assert sb.events("omnisend_events") == [omni_v5(), later, no_id, no_id]
    assert sb.stats()["deduplicated"]["omnisend_events"] == 2


def test_omnisend_rejects_non_json(client: httpx.Client) -> None:
    r = client.post("/v5/events", content=b"x", headers={**OMNI_V5, "Content-Type": "text/plain"})
    assert r.status_code == 400 and "error" in r.json()
    bad = {**OMNI_V4, "Content-Type": "application/json"}
    assert client.post("/v4/track", content=b"{", headers=bad).status_code == 400


# -- Klaviyo bulk (contracts §6) -------------------------------------------------------------


def test_klaviyo_auth_failures(client: httpx.Client) -> None:
    job = k_job(k_item([k_event()]))
    r = k_post(client, job, Authorization="Bearer pk_sandbox")
    assert r.status_code == 401
    err = r.json()["errors"][0]
    assert err["code"] == "not_authenticated"
    assert err["detail"] == "Missing or invalid authorization scheme. Please use Klaviyo-API-Key."
    r = k_post(client, job, Authorization="Klaviyo-API-Key pk_wrong")
    assert (r.status_code, r.json()["errors"][0]["code"]) == (401, "not_authenticated")
    r = client.post(KLAVIYO_PATH, content=orjson.dumps(job), headers={"revision": "2026-07-15"})
    assert r.status_code == 401
    assert "RateLimit-Limit" in r.headers


@pytest.mark.parametrize("revision", ["", "yesterday", "2024-02-15"])
def test_klaviyo_requires_a_valid_revision(client: httpx.Client, revision: str) -> None:
    headers = {k: v for k, v in KLAVIYO.items() if k != "revision"}
    if revision:
        headers["revision"] = revision
    r = client.post(KLAVIYO_PATH, content=orjson.dumps(k_job(k_item([k_event()]))), headers=headers)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["source"] == {"parameter": "revision"}
    assert set(err) >= {"id", "status", "code", "title", "detail"}


@pytest.mark.parametrize("path", [KLAVIYO_PATH, KLAVIYO_PATH + "/"])
@pytest.mark.parametrize("content_type", ["application/vnd.api+json", "application/json"])
def test_klaviyo_success_records_one_dict_per_event(
    sb: SandboxServer, client: httpx.Client, path: str, content_type: str
) -> None:
    e1, e2 = k_event(unique_id="u1"), k_event("Refunded", unique_id="u2")
    e3 = k_event(unique_id="u3", time=None)
    job = k_job(
        k_item([e1, e2], profile_id="01GDDKASAP8TKDDA2GRZDSVP4H", email="a@b.com"),
        k_item([e3], phone_number="+15005550006"),
    )
    r = k_post(client, job, path, **{"Content-Type": content_type})
    assert (r.status_code, r.content) == (202, b"")
    assert sb.events("klaviyo_bulk_events") == [
        {
            "profile": {"email": "a@b.com", "id": "01GDDKASAP8TKDDA2GRZDSVP4H"},
            "event": e1["attributes"],
        },
        {
            "profile": {"email": "a@b.com", "id": "01GDDKASAP8TKDDA2GRZDSVP4H"},
            "event": e2["attributes"],
        },
        {"profile": {"phone_number": "+15005550006"}, "event": e3["attributes"]},
    ]
    assert sb.requests[-1].events == 3


def test_klaviyo_reports_every_invalid_event_and_stores_nothing(
    sb: SandboxServer, client: httpx.Client
) -> None:
    deep: Any = "leaf"
    for _ in range(10):
        deep = {"d": deep}
    job = k_job(
        k_item(
            [
                k_event(),  # 0 valid
                k_event("x" * 128, unique_id="a"),  # 1 metric name too long
                k_event(unique_id="b", time="1989-12-31T23:59:59Z"),  # 2 too old
                k_event(unique_id="c", time="2027-07-02T12:00:00+00:00"),  # 3 > now + 1y
                k_event(unique_id="d", time="2026-06-01 10:00:00"),  # 4 not RFC 3339
            ]
        ),
        k_item([k_event()], phone_number="5005550006"),  # profile: not E.164
        k_item([k_event()], email="no-at-sign"),  # profile: bad email
        k_item([k_event()], first_name="Anonymous"),  # profile: no identifier
        k_item(
            [
                k_event(properties={f"p{i}": i for i in range(401)}),  # 0
                k_event(unique_id="e", properties={"s": "x" * 102_401}),  # 1
                k_event(unique_id="f", properties={"a": list(range(4001))}),  # 2
                k_event(unique_id="g", properties={"deep": deep}),  # 3 depth 11
                k_event(unique_id="h", properties=None),  # 4 properties required
                k_event(unique_id="i", properties={"ok": {"d": {"e": "x" * 102_400}}}),  # 5 ok
            ],
            external_id="u-42",
        ),
    )
    r = k_post(client, job)
    assert r.status_code == 400
    errors = r.json()["errors"]
    root = "/data/attributes/events-bulk-create/data"
    assert [e["source"]["pointer"] for e in errors] == [
        f"{root}/0/attributes/events/data/1/attributes/metric/data/attributes/name",
        f"{root}/0/attributes/events/data/2/attributes/time",
        f"{root}/0/attributes/events/data/3/attributes/time",
        f"{root}/0/attributes/events/data/4/attributes/time",
        f"{root}/1/attributes/profile/data/attributes/phone_number",
        f"{root}/2/attributes/profile/data/attributes/email",
        f"{root}/3/attributes/profile/data/attributes",
        f"{root}/4/attributes/events/data/0/attributes/properties",
        f"{root}/4/attributes/events/data/1/attributes/properties/s",
        f"{root}/4/attributes/events/data/2/attributes/properties/a",
        f"{root}/4/attributes/events/data/3/attributes/properties/deep/d/d/d/d/d/d/d/d/d",
        f"{root}/4/attributes/events/data/4/attributes/properties",
    ]
    for err in errors:
        assert (err["status"], err["code"], err["title"]) == (400, "invalid", "Invalid input.")
        assert err["id"] and err["detail"]
    assert sb.events("klaviyo_bulk_events") == []


# contracts.md §6.2 / the OAS (bulk_create_events.json): the documented profile, verbatim.
DOC_PROFILE: dict[str, Any] = {
    "type": "profile",
    "id": "01GDDKASAP8TKDDA2GRZDSVP4H",
    "attributes": {
        "email": "a@b.com",
        "phone_number": "+15005550006",
        "external_id": "u-42",
        "_kx": None,
        "anonymous_id": None,
        "first_name": "Sarah",
        "last_name": "Mason",
        "organization": "Example Corporation",
        "locale": "en-US",
        "title": "Regional Manager",
        "image": "https://images.pexels.com/photos/3760854/pexels-photo-3760854.jpeg",
        "location": {
            "address1": "89 E 42nd St",
            "address2": "1st floor",
            "city": "New York",
            "country": "United States",
            "latitude": "40.7128",
            "longitude": -74.006,
            "region": "NY",
            "zip": "10017",
            "timezone": "America/New_York",
            "ip": "127.0.0.1",
        },
        "properties": {"loyalty_tier": "gold"},
    },
    "meta": {
        "patch_properties": {"append": {"skus": "92538"}, "unappend": {}, "unset": "skus"},
        "patch_identifiers": {"append": {"email": ["alt@b.com"]}, "unappend": {}},
    },
}


def test_klaviyo_accepts_the_documented_profile_and_metric_service(
    sb: SandboxServer, client: httpx.Client
) -> None:
    event = k_event()
    event["attributes"]["metric"]["data"]["attributes"]["service"] = "api"
    item = {
        "type": "event-bulk-create",
        "attributes": {"profile": {"data": DOC_PROFILE}, "events": {"data": [event]}},
    }
    r = k_post(client, k_job(item))
    assert (r.status_code, r.content) == (202, b"")
    [got] = sb.events("klaviyo_bulk_events")
    assert got["profile"] == {
        **DOC_PROFILE["attributes"],
        "id": DOC_PROFILE["id"],
        "meta": DOC_PROFILE["meta"],
    }
    assert got["event"]["metric"]["data"]["attributes"]["service"] == "api"


@pytest.mark.parametrize("identifier", ["anonymous_id", "_kx"])
def test_klaviyo_anonymous_id_and_kx_identify_a_profile(
    sb: SandboxServer, client: httpx.Client, identifier: str
) -> None:
    # The OAS lists both among the profile identifiers (contracts.md §6.2).
    r = k_post(client, k_job(k_item([k_event()], **{identifier: "anon-1"})))
    assert r.status_code == 202
    assert sb.events("klaviyo_bulk_events")[0]["profile"] == {identifier: "anon-1"}
    r = k_post(client, k_job(k_item([k_event()], **{identifier: ""})))
    assert r.status_code == 400


PROFILE = "/data/attributes/events-bulk-create/data/0/attributes/profile/data"


@pytest.mark.parametrize(
    ("attributes", "meta", "pointer"),
    [
        ({"image": "not a url"}, None, "/attributes/image"),
        ({"image": 5}, None, "/attributes/image"),
        ({"first_name": 5}, None, "/attributes/first_name"),
        ({"locale": ["en-US"]}, None, "/attributes/locale"),
        ({"anonymous_id": 7}, None, "/attributes/anonymous_id"),
        ({"location": "New York"}, None, "/attributes/location"),
        ({"location": {"zip": 10017}}, None, "/attributes/location/zip"),
        ({"location": {"latitude": True}}, None, "/attributes/location/latitude"),
        ({"location": {"city": {"name": "NY"}}}, None, "/attributes/location/city"),
        ({"properties": "gold"}, None, "/attributes/properties"),
        ({"properties": {"s": "é" * 60_000}}, None, "/attributes/properties/s"),
        ({}, "x", "/meta"),
        ({}, {"patch_properties": {"unset": 5}}, "/meta/patch_properties/unset"),
        ({}, {"patch_properties": {"unset": ["a", 1]}}, "/meta/patch_properties/unset"),
        ({}, {"patch_properties": {"append": "skus"}}, "/meta/patch_properties/append"),
        ({}, {"patch_identifiers": {"unappend": []}}, "/meta/patch_identifiers/unappend"),
    ],
)
def test_klaviyo_profile_attribute_types_follow_the_oas(
    client: httpx.Client, attributes: dict[str, Any], meta: Any, pointer: str
) -> None:
    # OAS: every profile attribute is a (nullable) string, image a URL, location an object of
    # strings (latitude/longitude string or number), properties an object; meta.patch_properties
    # append/unappend objects, unset a string or an array of strings.
    item = k_item([k_event()], email="a@b.com", **attributes)
    if meta is not None:
        item["attributes"]["profile"]["data"]["meta"] = meta
    r = k_post(client, k_job(item))
    assert r.status_code == 400
    assert [e["source"]["pointer"] for e in r.json()["errors"]] == [PROFILE + pointer]


@pytest.mark.parametrize("service", [5, ["api"]])
def test_klaviyo_metric_service_is_a_string(client: httpx.Client, service: Any) -> None:
    event = k_event()
    event["attributes"]["metric"]["data"]["attributes"]["service"] = service
    r = k_post(client, k_job(k_item([event])))
    assert r.status_code == 400
    assert r.json()["errors"][0]["source"]["pointer"].endswith(
        "/events/data/0/attributes/metric/data/attributes/service"
    )


def test_klaviyo_string_limit_is_100_kb_in_bytes_not_characters(client: httpx.Client) -> None:
    # OAS: "A single string cannot exceed 100KB": 102,400 bytes, however many characters.
    ok = k_job(k_item([k_event(properties={"s": "é" * 51_200})]))  # 102,400 bytes
    assert k_post(client, ok).status_code == 202
    big = k_job(k_item([k_event(unique_id="x", properties={"s": "é" * 51_201})]))
    r = k_post(client, big)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["source"]["pointer"].endswith("/attributes/properties/s")
    assert "bytes" in err["detail"]


def test_klaviyo_accepts_metric_name_of_127_chars_and_depth_10(client: httpx.Client) -> None:
    deep: Any = "leaf"
    for _ in range(9):
        deep = {"d": deep}
    job = k_job(k_item([k_event("x" * 127, properties={"deep": deep})]))
    assert k_post(client, job).status_code == 202


def test_klaviyo_duplicate_unique_id_in_one_request_fails_everything(
    sb: SandboxServer, client: httpx.Client
) -> None:
    job = k_job(
        k_item([k_event(unique_id="u1"), k_event("Other", unique_id="u1")]),  # ok: other metric
        k_item([k_event(unique_id="u1")], email="c@d.com"),  # ok: other profile
        k_item([k_event(unique_id="u1")]),  # same profile (a@b.com) + metric + unique_id
    )
    r = k_post(client, job)
    assert r.status_code == 400
    [err] = r.json()["errors"]
    assert err["source"]["pointer"] == (
        "/data/attributes/events-bulk-create/data/2/attributes/events/data/0/attributes/unique_id"
    )
    assert sb.events("klaviyo_bulk_events") == []


def test_klaviyo_dedups_across_requests(sb: SandboxServer, client: httpx.Client) -> None:
    assert k_post(client, k_job(k_item([k_event(unique_id="u1")]))).status_code == 202
    job = k_job(k_item([k_event(unique_id="u1"), k_event(unique_id="u2")]))
    assert k_post(client, job).status_code == 202
    assert [e["event"]["unique_id"] for e in sb.events("klaviyo_bulk_events")] == ["u1", "u2"]
    assert sb.stats()["deduplicated"]["klaviyo_bulk_events"] == 1


def test_klaviyo_without_unique_id_collapses_same_second(
    sb: SandboxServer, client: httpx.Client
) -> None:
    a = k_event(unique_id=None, time="2026-06-01T10:00:00.100Z")
    b = k_event(unique_id=None, time="2026-06-01T12:00:00.900+02:00")  # same UTC second
    c = k_event(unique_id=None, time="2026-06-01T10:00:01Z")
    assert k_post(client, k_job(k_item([a, b, c]))).status_code == 202
    assert len(sb.events("klaviyo_bulk_events")) == 2
    assert sb.stats()["deduplicated"]["klaviyo_bulk_events"] == 1


def test_klaviyo_request_limits(client: httpx.Client) -> None:
    events = [k_event(unique_id=str(i)) for i in range(1001)]
    r = k_post(client, k_job(k_item(events[:600]), k_item(events[600:])))
    assert r.status_code == 400
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/events-bulk-create/data"
    assert k_post(client, k_job(k_item(events[:1000]))).status_code == 202
    big = k_job(*[k_item([k_event(properties={"s": "x" * 100_000})]) for _ in range(53)])
    r = k_post(client, big)
    assert r.status_code == 413
    assert r.json()["errors"][0]["status"] == 413


@pytest.mark.parametrize(
    ("job", "pointer"),
    [
        ({}, "/data"),
        ({"data": {"type": "event", "attributes": {}}}, "/data/type"),
        ({"data": {"type": "event-bulk-create-job"}}, "/data/attributes"),
        (k_job(), "/data/attributes/events-bulk-create/data"),
        (k_job({"type": "x"}), "/data/attributes/events-bulk-create/data/0/type"),
        (
            k_job({"type": "event-bulk-create"}),
            "/data/attributes/events-bulk-create/data/0/attributes",
        ),
        (k_job(k_item([])), "/data/attributes/events-bulk-create/data/0/attributes/events/data"),
        (
            k_job({"type": "event-bulk-create", "attributes": {"events": {"data": [k_event()]}}}),
            "/data/attributes/events-bulk-create/data/0/attributes/profile/data",
        ),
    ],
)
def test_klaviyo_structure_errors(client: httpx.Client, job: Any, pointer: str) -> None:
    r = k_post(client, job)
    assert r.status_code == 400
    assert r.json()["errors"][0]["source"]["pointer"] == pointer


def test_klaviyo_content_type_and_parse_errors(client: httpx.Client) -> None:
    r = client.post(KLAVIYO_PATH, content=b"{}", headers={**KLAVIYO, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["errors"][0]["code"] == "unsupported_media_type"
    r = client.post(KLAVIYO_PATH, content=b"{nope", headers=KLAVIYO)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (400, "parse_error")


# -- Rate limits (fake clock, no sleeps) -----------------------------------------------------


def test_brevo_event_rate_limit_10_per_second(clock: FakeClock, client: httpx.Client) -> None:
    for i in range(10):
        r = client.post("/v3/events", json=brevo_event(), headers=BREVO)
        assert r.status_code == 204
        assert r.headers["x-sib-ratelimit-remaining"] == str(9 - i)
    r = client.post("/v3/events", json=brevo_event(), headers=BREVO)
    assert r.status_code == 429
    assert r.json()["code"] == "too_many_requests"
    assert r.headers["x-sib-ratelimit-limit"] == "10"
    assert r.headers["x-sib-ratelimit-remaining"] == "0"
    assert r.headers["x-sib-ratelimit-reset"] == "1"
    assert "Retry-After" not in r.headers
    # unauthenticated requests are not counted but still see the headers
    r = client.post("/v3/events", json=brevo_event())
    assert r.status_code == 401 and r.headers["x-sib-ratelimit-remaining"] == "0"
    clock.advance(1.0)
    assert client.post("/v3/events", json=brevo_event(), headers=BREVO).status_code == 204


def test_brevo_hourly_window_blocks_with_its_own_reset(clock: FakeClock) -> None:
    limits = {"brevo_event": [RateWindow(10, 1.0), RateWindow(3, 3600.0)]}
    with make_server(clock, rate_limits=limits) as server:
        url = server.url + "/v3/events"
        for _ in range(3):
            assert httpx.post(url, json=brevo_event(), headers=BREVO).status_code == 204
            clock.advance(1.5)
        r = httpx.post(url, json=brevo_event(), headers=BREVO)
        assert r.status_code == 429
        assert r.headers["x-sib-ratelimit-limit"] == "3"
        assert r.headers["x-sib-ratelimit-reset"] == str(3600 - 4)  # ceil(3600 - 4.5)


def test_brevo_batch_rate_limit_headers(client: httpx.Client) -> None:
    r = client.post("/v3/events/batch", json=[brevo_event()], headers=BREVO)
    assert r.headers["x-sib-ratelimit-limit"] == "10"
    assert r.headers["x-sib-ratelimit-remaining"] == "9"


def test_tracker_has_no_rate_limit(client: httpx.Client) -> None:
    body = {"email": "a@b.com", "event": "e"}
    for _ in range(30):
        r = client.post("/api/v2/trackEvent", json=body, headers=TRACKER)
        assert r.status_code == 204
    assert not any(h.startswith("x-sib") for h in r.headers)


def test_omnisend_rate_limit_per_minute(clock: FakeClock) -> None:
    with make_server(clock, rate_limits={"omnisend_events": [RateWindow(2, 60.0)]}) as server:
        url = server.url + "/v5/events"
        assert httpx.post(url, json=omni_v5(), headers=OMNI_V5).status_code == 202
        clock.advance(20.5)
        assert httpx.post(url, json=omni_v5(), headers=OMNI_V5).status_code == 202
        r = httpx.post(url, json=omni_v5(), headers=OMNI_V5)
        assert r.status_code == 429
        assert r.json() == {"error": "Too many requests"}
        assert (r.headers["X-Rate-Limit-Remaining"], r.headers["X-Rate-Limit-Reset"]) == ("0", "40")
        clock.advance(40)
        assert httpx.post(url, json=omni_v5(), headers=OMNI_V5).status_code == 202
        assert server.stats()["rate_limited"] == 1


def test_omnisend_v4_default_limit_is_400_per_minute(client: httpx.Client) -> None:
    r = client.post("/v4/track", json=omni_v4(), headers=OMNI_V4)
    assert (r.headers["X-Rate-Limit-Limit"], r.headers["X-Rate-Limit-Remaining"]) == ("400", "399")


def test_klaviyo_burst_and_steady_limits(clock: FakeClock, client: httpx.Client) -> None:
    job = k_job(k_item([k_event()]))
    for i in range(10):
        r = k_post(client, job)
        assert r.status_code == 202
        assert r.headers["RateLimit-Limit"] == "150"
        assert r.headers["RateLimit-Remaining"] == str(149 - i)
        assert r.headers["RateLimit-Reset"] == "60"
    r = k_post(client, job)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert not any(h.lower().startswith("ratelimit") for h in r.headers)
    err = r.json()["errors"][0]
    assert err["code"] == "throttled"
    assert err["detail"] == "Request was throttled. Expected available in 1 second(s)."
    # steady window: 150 per minute
    for _ in range(14):
        clock.advance(1.0)
        for _ in range(10):
            assert k_post(client, job).status_code == 202
    clock.advance(1.0)
    r = k_post(client, job)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "45"  # the minute window opened 15 s ago
    clock.advance(45)
    assert k_post(client, job).status_code == 202


def test_rate_limits_disabled_never_429_and_send_no_limit_headers(clock: FakeClock) -> None:
    with make_server(clock, rate_limits_enabled=False) as server, httpx.Client() as c:
        job = orjson.dumps(k_job(k_item([k_event()])))
        for _ in range(15):
            r = c.post(server.url + "/v3/events", json=brevo_event(), headers=BREVO)
            assert r.status_code == 204
            assert not any(h.startswith("x-sib") for h in r.headers)
            r = c.post(server.url + KLAVIYO_PATH, content=job, headers=KLAVIYO)
            assert r.status_code == 202
            assert not any(h.startswith("ratelimit") for h in r.headers)
        assert server.stats()["rate_limited"] == 0


def test_empty_override_removes_a_limit(clock: FakeClock) -> None:
    with make_server(clock, rate_limits={"brevo_event": []}) as server:
        for _ in range(12):
            r = httpx.post(server.url + "/v3/events", json=brevo_event(), headers=BREVO)
            assert r.status_code == 204
        assert "x-sib-ratelimit-limit" not in r.headers


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown kinds"):
        SandboxOptions(rate_limits={"brevo": [RateWindow(1, 1.0)]})
    with pytest.raises(ValueError, match="brevo_batch_shape"):
        SandboxOptions(brevo_batch_shape="list")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        SandboxOptions(klaviyo_api_keys=("",))
    assert SandboxOptions(brevo_api_keys="k").brevo_api_keys == ("k",)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault(path="/v3/events")
    with pytest.raises(ValueError):
        Fault(status=500, reset=True)


# -- Faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/event-bulk-create-jobs", {"Retry-After": "7"}),
        ("/api/event-bulk-create-jobs", {"RateLimit-Reset": "3"}),
        ("/v3/events/batch", {"x-sib-ratelimit-reset": "1"}),
        ("/v5/events", {"X-Rate-Limit-Reset": "9"}),
        ("/v3/events/batch", {}),
    ],
)
def test_fault_429_sends_exactly_the_given_headers(
    sb: SandboxServer, client: httpx.Client, path: str, headers: dict[str, str]
) -> None:
    sb.inject(Fault(path=path, status=429, headers=headers))
    r = client.post(path, content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 429
    for name, value in headers.items():
        assert r.headers[name] == value
    hint_headers = ("retry-after", "ratelimit-", "x-sib-", "x-rate-limit")
    sent = {h for h in r.headers if h.startswith(hint_headers)}
    assert sent == {name.lower() for name in headers}
    assert sb.stats()["status_429"] == 1
    assert sb.stats()["rate_limited"] == 0


def test_fault_429_on_klaviyo_has_throttled_body(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject(Fault(path=KLAVIYO_PATH, status=429))
    r = k_post(client, k_job(k_item([k_event()])))
    assert r.status_code == 429
    assert r.json()["errors"][0]["detail"].startswith("Request was throttled. Expected available")
    assert "Retry-After" not in r.headers


def test_fault_500_applies_once_then_normal(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject(Fault(path="/v3/events", status=500))
    r = client.post("/v3/events", json=brevo_event(), headers=BREVO)
    assert r.status_code == 500
    assert r.json()["code"] == "internal_server_error"
    assert sb.events("brevo_event") == []
    assert client.post("/v3/events", json=brevo_event(), headers=BREVO).status_code == 204
    assert len(sb.events("brevo_event")) == 1


def test_fault_wildcard_times_and_custom_body(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject(Fault(status=503, times=2, body={"oops": True}))
    assert client.post("/v5/events", json=omni_v5(), headers=OMNI_V5).json() == {"oops": True}
    assert k_post(client, k_job(k_item([k_event()]))).status_code == 503
    assert k_post(client, k_job(k_item([k_event()]))).status_code == 202
    # control endpoints are never faulted
    sb.inject(Fault(status=502))
    assert client.get("/_sandbox/stats").status_code == 200
    assert sb.stats()["faults_pending"] == 1


def test_fault_html_403(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject(Fault.html_403(KLAVIYO_PATH))
    r = k_post(client, k_job(k_item([k_event()])))
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cf-mitigated"] == "challenge"
    assert r.text.startswith("<!DOCTYPE html>")


def test_fault_reset_drops_connection_and_records_nothing(
    sb: SandboxServer, client: httpx.Client
) -> None:
    sb.inject(Fault(path="/v3/events", reset=True))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post("/v3/events", json=brevo_event(), headers=BREVO)
    assert sb.events("brevo_event") == []
    assert sb.requests[-1].status == 0
    assert client.post("/v3/events", json=brevo_event(), headers=BREVO).status_code == 204


def test_fault_reset_after_process_stores_but_client_sees_nothing(
    sb: SandboxServer, client: httpx.Client
) -> None:
    sb.inject(Fault(path=KLAVIYO_PATH, reset=True, after_process=True))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        k_post(client, k_job(k_item([k_event()])))
    assert len(sb.events("klaviyo_bulk_events")) == 1
    # the client's retry is deduplicated by unique_id
    assert k_post(client, k_job(k_item([k_event()]))).status_code == 202
    assert len(sb.events("klaviyo_bulk_events")) == 1


def test_fault_status_after_process_stores_and_answers_500(
    sb: SandboxServer, client: httpx.Client
) -> None:
    sb.inject(Fault(path="/v3/events/batch", status=500, after_process=True))
    r = client.post("/v3/events/batch", json=[brevo_event()], headers=BREVO)
    assert r.status_code == 500
    assert len(sb.events("brevo_events_batch")) == 1


def _post_in_thread(url: str, body: Any, headers: Any, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            out["response"] = httpx.post(url, json=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_fault_hang_holds_until_release(sb: SandboxServer) -> None:
    sb.inject(Fault(path="/v5/events", hang=True))
    out: dict[str, Any] = {}
    thread = _post_in_thread(sb.url + "/v5/events", omni_v5(), OMNI_V5, out)
    assert sb.wait_for_hang(timeout=10)
    assert sb.stats()["hung_now"] == 1
    assert sb.events("omnisend_events") == []  # not processed yet
    assert sb.release() == 1
    thread.join(10)
    assert out["response"].status_code == 202
    assert len(sb.events("omnisend_events")) == 1
    assert sb.stats()["hangs"] == 1


def test_fault_hang_after_process_is_stored_while_client_waits(sb: SandboxServer) -> None:
    sb.inject(Fault(path="/v3/events", hang=True, after_process=True))
    out: dict[str, Any] = {}
    thread = _post_in_thread(sb.url + "/v3/events", brevo_event(), BREVO, out)
    assert sb.wait_for_hang(timeout=10)
    assert len(sb.events("brevo_event")) == 1
    sb.release()
    thread.join(10)
    assert out["response"].status_code == 204


def test_fault_hang_is_released_by_stop(clock: FakeClock) -> None:
    server = make_server(clock).start()
    server.inject(Fault(hang=True))
    out: dict[str, Any] = {}
    thread = _post_in_thread(server.url + "/v5/events", omni_v5(), OMNI_V5, out)
    assert server.wait_for_hang(timeout=10)
    started = time.monotonic()
    server.stop()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert isinstance(out.get("error"), httpx.HTTPError)


def test_fault_delay_makes_client_time_out_and_stop_is_not_blocked(clock: FakeClock) -> None:
    server = make_server(clock).start()
    server.inject(Fault(path="/v3/events", delay_s=60))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v3/events", json=brevo_event(), headers=BREVO, timeout=0.3)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert server.events("brevo_event") == []


def test_fault_short_delay_then_normal_answer(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject(Fault(path="/v3/events", delay_s=0.01))
    assert client.post("/v3/events", json=brevo_event(), headers=BREVO).status_code == 204


# -- Control endpoints -----------------------------------------------------------------------


def test_control_endpoints(sb: SandboxServer, client: httpx.Client) -> None:
    r = client.post(
        "/_sandbox/faults",
        json=[{"path": KLAVIYO_PATH, "status": 429, "headers": {"Retry-After": "2"}}],
    )
    assert r.json() == {"queued": 1}
    assert k_post(client, k_job(k_item([k_event()]))).headers["Retry-After"] == "2"
    assert k_post(client, k_job(k_item([k_event()]))).status_code == 202
    events = client.get("/_sandbox/events/klaviyo_bulk_events").json()
    assert events == sb.events("klaviyo_bulk_events") and len(events) == 1
    stats = client.get("/_sandbox/stats").json()
    assert stats["by_status"] == {"202": 1, "429": 1}
    assert stats["events"]["klaviyo_bulk_events"] == 1
    log = client.get("/_sandbox/requests").json()
    assert [row["status"] for row in log] == [429, 202]
    assert "Authorization" not in str(log) and "pk_sandbox" not in str(log)
    assert client.get("/_sandbox/events/nope").status_code == 404
    assert client.post("/_sandbox/faults", json=[{"path": "/x"}]).status_code == 400
    assert client.post("/_sandbox/faults", json=[{"status": 500, "bogus": 1}]).status_code == 400
    assert client.post("/_sandbox/release").json() == {"released": 0}
    assert client.post("/_sandbox/reset").status_code == 200
    assert sb.events("klaviyo_bulk_events") == [] and sb.requests == []
    assert client.get("/_sandbox/stats").json()["requests"] == 0


def test_control_release_over_http(sb: SandboxServer, client: httpx.Client) -> None:
    client.post("/_sandbox/faults", json={"hang": True, "path": "/v4/track"})
    out: dict[str, Any] = {}
    thread = _post_in_thread(sb.url + "/v4/track", omni_v4(), OMNI_V4, out)
    assert sb.wait_for_hang(timeout=10)
    assert client.post("/_sandbox/release").json() == {"released": 1}
    thread.join(10)
    assert out["response"].status_code == 202


def test_reset_clears_dedup_schemas_and_rate_windows(
    sb: SandboxServer, client: httpx.Client
) -> None:
    client.post("/v4/track", json=omni_v4(properties={"a": 1}), headers=OMNI_V4)
    for _ in range(10):
        k_post(client, k_job(k_item([k_event()])))
    assert k_post(client, k_job(k_item([k_event()]))).status_code == 429
    sb.reset()
    assert k_post(client, k_job(k_item([k_event()]))).status_code == 202
    assert len(sb.events("klaviyo_bulk_events")) == 1
    r = client.post("/v4/track", json=omni_v4(properties={"a": "text"}), headers=OMNI_V4)
    assert r.status_code == 202


def test_custom_key_is_matched_exactly(clock: FakeClock) -> None:
    with make_server(clock, brevo_api_keys="secret-key") as server:
        url = server.url + "/v3/events"
        assert httpx.post(url, json=brevo_event(), headers={"api-key": "secret"}).status_code == 401
        r = httpx.post(url, json=brevo_event(), headers={"api-key": "secret-key"})
        assert r.status_code == 204


def test_unknown_path_and_wrong_method(client: httpx.Client) -> None:
    assert client.post("/v3/nothing", json={}).status_code == 404
    r = client.get("/v3/events")
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")


def test_events_rejects_unknown_kind(sb: SandboxServer) -> None:
    with pytest.raises(KeyError):
        sb.events("brevo")


# -- Sink mode, transport --------------------------------------------------------------------


def test_sink_mode_counts_without_validating_or_storing(clock: FakeClock) -> None:
    with make_server(clock, validate=False) as server, sandbox_client(server.url) as c:
        bad_k = k_job(k_item([k_event("x" * 500), k_event("x" * 500)]), k_item([k_event()]))
        assert k_post(c, bad_k).status_code == 202
        r = c.post("/v3/events/batch", json=[{"nope": 1}] * 5, headers=BREVO)
        assert r.json() == {
            "message": "Batch accepted. Valid events have been added to the processing queue.",
            "count": 5,
        }
        assert c.post("/v3/events", json={"x": 1}, headers=BREVO).status_code == 204
        assert c.post("/v4/track", json={}, headers=OMNI_V4).status_code == 202
        assert c.post("/v5/events", json={}, headers=OMNI_V5).status_code == 202
        assert c.post("/v3/events", json={"x": 1}, headers={"api-key": "no"}).status_code == 401
        assert c.post("/v3/events", content=b"{", headers=BREVO).status_code == 400
        stats = server.stats()
        assert stats["events"]["klaviyo_bulk_events"] == 3
        assert stats["events"]["brevo_events_batch"] == 5
        assert stats["events"]["brevo_event"] == 1
        assert all(server.events(kind) == [] for kind in stats["events"])


def test_keep_alive_reuses_one_connection(sb: SandboxServer) -> None:
    conn = http.client.HTTPConnection(sb.host, sb.port, timeout=10)
    body = orjson.dumps(brevo_event())
    headers = {**BREVO, "Content-Type": "application/json"}
    conn.request("POST", "/v3/events", body=body, headers=headers)
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    conn.request("POST", "/v3/events/batch", body=b"[]", headers=headers)
    second = conn.getresponse()
    assert (first.status, second.status) == (204, 400)
    assert orjson.loads(second.read())["code"] == "missing_parameter"
    assert conn.sock is sock and sock is not None
    conn.close()


def test_chunked_request_body(sb: SandboxServer, client: httpx.Client) -> None:
    data = orjson.dumps(brevo_event())
    chunks = iter([data[:10], data[10:]])
    headers = {**BREVO, "Content-Type": "application/json"}
    assert client.post("/v3/events", content=chunks, headers=headers).status_code == 204
    assert sb.events("brevo_event") == [brevo_event()]


def test_concurrent_keep_alive_clients_with_5mb_bodies(clock: FakeClock) -> None:
    limits: dict[str, list[RateWindow]] = {"klaviyo_bulk_events": []}
    with make_server(clock, rate_limits=limits) as server:
        statuses: list[int] = []
        lock = threading.Lock()

        def send(worker: int) -> None:
            with sandbox_client(server.url, timeout=30) as c:
                for n in range(2):
                    events = [
                        k_event(unique_id=f"{worker}-{n}-{i}", properties={"s": "x" * 100_000})
                        for i in range(50)
                    ]
                    job = k_job(k_item(events))
                    assert 4_900_000 < len(orjson.dumps(job)) <= 5 * 1024 * 1024
                    status = k_post(c, job).status_code
                    with lock:
                        statuses.append(status)

        threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [202] * 8
        assert len(server.events("klaviyo_bulk_events")) == 400


def test_expect_100_continue_is_answered_before_the_body(sb: SandboxServer) -> None:
    body = orjson.dumps(brevo_event())
    with socket.create_connection((sb.host, sb.port), timeout=10) as s:
        s.sendall(
            b"POST /v3/events HTTP/1.1\r\nHost: x\r\napi-key: sandbox-brevo-key\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 100")
        s.sendall(body)
        assert s.recv(4096).startswith(b"HTTP/1.1 204")
    assert sb.events("brevo_event") == [brevo_event()]


def test_latency_option_delays_every_vendor_request(clock: FakeClock) -> None:
    with make_server(clock, latency_s=0.05) as server:
        started = time.monotonic()
        httpx.post(server.url + "/v3/events", json=brevo_event(), headers=BREVO)
        assert time.monotonic() - started >= 0.05


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_in_foreground_until_sigterm() -> None:
    port = _free_port()
    code = f"from connector.sandbox import serve; serve({port})"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        assert "sandbox-brevo-key" in line and "pk_sandbox" in line
        r = httpx.post(f"http://127.0.0.1:{port}/v3/events", json=brevo_event(), headers=BREVO)
        assert r.status_code == 204
        assert httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats").json()["requests"] == 1
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    ("revision", "accepted", "refused"),
    [
        ("2026-07-15", "1990-01-01T00:00:01+00:00", "1990-01-01T00:00:00+00:00"),
        ("2026-10-15.pre", "1995-06-01T00:00:00+00:00", "1989-12-31T23:59:59+00:00"),
        ("2026-04-15", "2000-01-01T00:00:01+00:00", "1995-06-01T00:00:00+00:00"),
        ("2024-10-15", "2000-01-01T00:00:01+00:00", "1999-12-31T23:59:59+00:00"),
    ],
)
def test_klaviyo_minimum_event_time_follows_the_revision(
    client: httpx.Client, revision: str, accepted: str, refused: str
) -> None:
    """OAS ``time`` (bulk_create_events) at 2026-07-15: "The time must be after the year 1990";
    the same text at 2026-04-15 (openapi/stable/apis/bulk_create_events.json @ 8a2e998): "The
    time must be after the year 2000". The sandbox used 1990 whatever the revision."""
    ok = k_post(client, k_job(k_item([k_event(time=accepted)])), revision=revision)
    assert ok.status_code == 202, ok.text
    bad = k_post(client, k_job(k_item([k_event(time=refused, unique_id="b")])), revision=revision)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["source"]["pointer"].endswith("/attributes/time")
