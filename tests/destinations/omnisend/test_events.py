"""Omnisend events (``destinations.omnisend.events``), every documented field reachable and
every documented rule enforced: a real DuckDB file → run_sync → the sandbox over real HTTP
(issue 8, part 3). The dated API ``/api/events`` (2026-03-15) by default (API key, or an OAuth
token with ``auth: bearer``), v5 on request, RFC 9457 error bodies quoted in reject reasons;
v5's contact fields, rules and event id, unit by unit.

The table, sync and fake-clock sandbox here serve the Brevo field tests too
(``brevo/test_vendor.py``, ``brevo/test_tracker.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import yaml

from connector.config.sync_file import SyncConfig, parse_sync
from connector.core.errors import AuthError, ConfigError
from connector.deliver.delivery import Runtime
from connector.destinations.omnisend.events import EVENT_ID_NAMESPACE, contact_fields, event_id
from connector.run.sync import SyncResult, preview, run_sync
from connector.sandbox import Fault, SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import FakeSleep, Warehouse

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
KEYS = {
    "brevo_event": "${BREVO_API_KEY}",
    "brevo_events_batch": "${BREVO_API_KEY}",
    "brevo_tracker": "${BREVO_MA_KEY}",
    "omnisend_events": "${OMNISEND_API_KEY}",
}
IDENTIFIERS = {
    "brevo_event": {"email_id": "email"},
    "brevo_events_batch": {"email_id": "email"},
    "brevo_tracker": {"email": "email"},
    "omnisend_events": {"email": "email"},
}


@pytest.fixture
def sandbox(fake_time: FakeSleep) -> Iterator[SandboxServer]:
    """The sandbox on the test's fake clock, so pacing never sleeps."""
    with SandboxServer(SandboxOptions(clock=fake_time.clock), host="127.0.0.1", port=0) as sb:
        yield sb


def create_table(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    wh.run(
        f"""CREATE TABLE t (
            id INTEGER, ts {wh.timestamptz()}, email VARCHAR(200), obj_type VARCHAR(50),
            oid VARCHAR(50), oext VARCHAR(50), first_name VARCHAR(50), ctx {wh.json_type()})"""
    )
    wh.insert("t", rows)


def row(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": i,
        "ts": T0 + timedelta(seconds=i),
        "email": f"user{i}@example.com",
        "obj_type": "subscription",
        "oid": f"s-{i}",
        "oext": f"x-{i}",
        "first_name": "Ada",
        "ctx": json.dumps({"device": "web"}),
    }
    base.update(over)
    return base


def make_sync(
    kind: str,
    wh: Warehouse,
    sandbox: SandboxServer,
    *,
    mapping: dict[str, Any] | None = None,
    key_ref: str | None = None,
    **options: Any,
) -> SyncConfig:
    doc: dict[str, Any] = {
        "name": f"f_{kind}",
        "source": {"table": "t", "cursor": "ts", "primary_key": ["id"], "url": wh.url},
        "destination": {
            "type": kind,
            "api_key": key_ref or KEYS[kind],
            "base_url": sandbox.url,
            "options": options,
        },
        "mapping": {
            "event_name": "played",
            "event_time": "ts",
            "identifiers": IDENTIFIERS[kind],
            "event_properties": {"ctx": "ctx"},
            **(mapping or {}),
        },
    }
    return parse_sync(yaml.safe_dump(doc), "syncs/test.yaml")


def run(sync: SyncConfig, state: StateStore, runtime: Runtime) -> SyncResult:
    return run_sync(sync, state=state, runtime=runtime)


def reasons(state: StateStore, sync: SyncConfig) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in state.rejects(sync.name)}


# --------------------------------------------------------------------------- Omnisend versions


def test_omnisend_default_is_the_dated_api_with_its_auth_and_version_headers(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_table(duck, [row(0), row(1)])
    sync = make_sync("omnisend_events", duck, sandbox)

    (req,) = preview(sync, limit=1)["requests"]
    assert req["url"] == sandbox.url + "/api/events"
    assert req["headers"]["Authorization"] == "Omnisend-API-Key ****"
    assert req["headers"]["Omnisend-Version"] == "2026-03-15"
    assert "X-API-KEY" not in req["headers"]

    res = run(sync, state, runtime)

    assert (res.status, res.delivered) == ("success", 2)
    assert [r.path for r in sandbox.requests] == ["/api/events"] * 2
    # Four requests in flight: the arrival order is not the row order.
    assert sorted(e["contact"]["email"] for e in sandbox.events("omnisend_events")) == [
        "user0@example.com",
        "user1@example.com",
    ]


def test_omnisend_api_version_v5_keeps_the_v5_endpoint_and_x_api_key(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_table(duck, [row(0)])
    sync = make_sync("omnisend_events", duck, sandbox, api_version="v5")

    (req,) = preview(sync, limit=1)["requests"]
    assert req["headers"]["X-API-KEY"] == "****"
    assert "Omnisend-Version" not in req["headers"]

    res = run(sync, state, runtime)

    assert (res.status, res.delivered) == ("success", 1)
    assert [r.path for r in sandbox.requests] == ["/v5/events"]


def test_omnisend_events_sends_an_oauth_token_as_bearer_with_auth_bearer(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """OpenAPI 2026-03-15: every operation takes ``security: [{Bearer: [...]},
    {ApiKeyAuth: []}]``. v4 (``omnisend_track``) users hold only an OAuth token; before
    ``auth: bearer`` it could only be sent as ``Omnisend-API-Key <token>``, which is refused."""
    create_table(duck, [row(0), row(1)])
    token = "${OMNISEND_TOKEN}"  # the sandbox's OAuth token (conftest)
    plain = make_sync("omnisend_events", duck, sandbox, key_ref=token, max_retries=0)
    with pytest.raises(AuthError, match="401"):
        run(plain, state, runtime)

    sync = make_sync("omnisend_events", duck, sandbox, key_ref=token, auth="bearer")
    (req,) = preview(sync, limit=1)["requests"]
    assert req["headers"]["Authorization"] == "Bearer ****"
    assert req["headers"]["Omnisend-Version"] == "2026-03-15"
    res = run(sync, state, runtime)
    assert (res.status, res.delivered) == ("success", 2)
    assert [r.status for r in sandbox.requests][-2:] == [202, 202]


def test_auth_bearer_needs_the_dated_api(duck: Warehouse, sandbox: SandboxServer) -> None:
    with pytest.raises(ConfigError, match="auth: bearer needs api_version 2026-03-15"):
        make_sync("omnisend_events", duck, sandbox, auth="bearer", api_version="v5")


def test_omnisend_unknown_api_version_is_a_config_error(
    duck: Warehouse, sandbox: SandboxServer
) -> None:
    with pytest.raises(ConfigError, match=r"api_version.*2026-03-15"):
        make_sync("omnisend_events", duck, sandbox, api_version="v3")


def test_an_rfc_9457_problem_on_400_becomes_a_reject_reason_quoting_its_detail(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_table(duck, [row(0), row(1)])
    sync = make_sync("omnisend_events", duck, sandbox, concurrency=1)
    problem = {
        "type": "https://problems.omnisend.com/validation-failed",
        "title": "Validation failed",
        "status": 400,
        "detail": "One or more fields are invalid.",
        "errors": [{"field": "contact.email", "code": "invalid_format", "message": "blocked"}],
    }
    sandbox.inject(Fault("/api/events", status=400, body=problem))

    res = run(sync, state, runtime)

    assert (res.status, res.delivered, res.rejected) == ("success", 1, 1)
    why = reasons(state, sync)["0"]
    assert "400" in why and "One or more fields are invalid." in why
    assert "contact.email: blocked" in why


def test_v5_contact_fields_split_known_fields_from_custom_properties() -> None:
    contact, why = contact_fields(
        {
            "firstName": "Ada",
            "gender": "f",
            "birthdate": "1815-12-10",
            "postalCode": 75001,
            "tags": ["vip"],
            "plan": "pro",
            "customProperties": {"tier": "gold"},
        }
    )
    assert why == ""
    assert contact == {
        "firstName": "Ada",
        "gender": "f",
        "birthdate": "1815-12-10",
        "postalCode": "75001",
        "tags": ["vip"],
        "customProperties": {"tier": "gold", "plan": "pro"},
    }


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"firstName": "x" * 51}, "firstName is 51 characters (max 50)"),
        ({"countryCode": "FRAN"}, "countryCode is 4 characters (max 3)"),
        ({"gender": "x"}, "gender must be 'm' or 'f'"),
        ({"birthdate": "10/12/1815"}, "birthdate must be YYYY-MM-DD"),
        ({"tags": [str(i) for i in range(101)]}, "tags has 101 items (max 100)"),
        ({"tags": [1]}, "tags must be strings"),
        ({"optIns": [{}] * 11}, "optIns has 11 items (max 10)"),
        ({"city": {"a": 1}}, "city must be a string"),
        ({"likes": [1, 2]}, "array of non-strings"),
    ],
)
def test_v5_contact_rules(props: dict[str, object], reason: str) -> None:
    contact, why = contact_fields(props)
    assert reason in why and contact == {}


def test_v5_event_id_is_a_deterministic_uuid5_of_the_dedup_id() -> None:
    a = event_id("orders:ord-1")
    assert a == event_id("orders:ord-1") == str(uuid.uuid5(EVENT_ID_NAMESPACE, "orders:ord-1"))
    assert uuid.UUID(a).version == 5
    assert a != event_id("orders:ord-2")


def test_omnisend_problem_bodies_are_request_level_only_without_field_errors() -> None:
    """RFC 9457 bodies of the dated API: ``errors[]`` names fields (the event); a bare
    ``detail`` about the version header is about the request."""
    from connector.destinations.omnisend.events import OmnisendEvents

    dest = OmnisendEvents.__new__(OmnisendEvents)  # about_request reads no config
    version = orjson.dumps(
        {"title": "Bad Request", "detail": "Unsupported API version in Omnisend-Version header"}
    )
    assert dest.about_request(400, version, "")
    fields = orjson.dumps(
        {
            "title": "Validation failed",
            "detail": "Invalid header value",
            "errors": [{"field": "contact.email", "message": "blocked"}],
        }
    )
    assert not dest.about_request(400, fields, "")
    # Without errors[] the problem is about the request, whatever its words (issue 19 item 1).
    assert dest.about_request(
        400, orjson.dumps({"title": "Bad Request", "detail": "contact has no identifier"}), ""
    )
    sandbox_words = {"title": "Bad request", "detail": "Unsupported Omnisend-Version '2025-01-01'"}
    assert dest.about_request(400, orjson.dumps(sandbox_words), "")
