"""Klaviyo bulk events field by field (seed 004, contracts.md §6.2): every documented profile and
metric field is reachable from a mapping or an option, and every documented rule is enforced
before sending. Real DuckDB file → run_sync → sandbox over loopback HTTP. Which error answers
are about the request (a failed run naming the fix) and which point into the events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest

from connector.config.sync_file import parse_sync
from connector.core.errors import ConfigError
from connector.deliver.delivery import Runtime
from connector.destinations.klaviyo.bulk import _about_request
from connector.run.sync import SyncResult, run_sync
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse, make_sync
from tests.helpers import BASE, KLAVIYO_ITEM, klaviyo_errors

SYNC = """
name: people
source:
  table: people
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {options}
mapping:
  event_name: Signed Up
  event_time: occurred_at
  identifiers: {identifiers}
  event_properties: {event_properties}
  contact_properties: {contact_properties}
"""


def people(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    wh.run(
        "DROP TABLE IF EXISTS people",
        """CREATE TABLE people (
            event_id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, anon VARCHAR, kx VARCHAR,
            city VARCHAR, zip INTEGER, lat DOUBLE, lon DOUBLE, tz VARCHAR, image VARCHAR,
            tier VARCHAR, note VARCHAR, vip BOOLEAN
        )""",
    )
    full = [
        {
            "event_id": i,
            "occurred_at": BASE + timedelta(seconds=i),
            **dict.fromkeys(
                (
                    "email",
                    "anon",
                    "kx",
                    "city",
                    "zip",
                    "lat",
                    "lon",
                    "tz",
                    "image",
                    "tier",
                    "note",
                    "vip",
                )
            ),
            **row,
        }
        for i, row in enumerate(rows)
    ]
    wh.insert("people", full)


def sync(
    wh: Warehouse,
    sandbox: SandboxServer,
    *,
    identifiers: str = "{email: email}",
    event_properties: str = "{}",
    contact_properties: str = "{}",
    options: str = "{}",
) -> Any:
    return make_sync(
        SYNC.format(
            url=wh.url,
            sandbox=sandbox.url,
            options=options,
            identifiers=identifiers,
            event_properties=event_properties,
            contact_properties=contact_properties,
        )
    )


def profiles(sandbox: SandboxServer) -> dict[int, dict[str, Any]]:
    """Source event id → the profile the sandbox stored with that event."""
    return {
        int(ev["event"]["unique_id"].split(":", 1)[1]): ev["profile"]
        for ev in sandbox.events("klaviyo_bulk_events")
    }


def reasons(state: StateStore) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in state.rejects("people")}


def run(cfg: Any, state: StateStore, runtime: Runtime) -> SyncResult:
    return run_sync(cfg, state=state, runtime=runtime)


@pytest.mark.parametrize(("identifier", "column"), [("anonymous_id", "anon"), ("_kx", "kx")])
def test_a_row_identified_only_by_anonymous_id_or_kx_is_delivered(
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    identifier: str,
    column: str,
) -> None:
    people(duck, [{column: "anon-0"}, {"email": "b@example.com"}, {}])
    cfg = sync(duck, sandbox, identifiers=f"{{email: email, {identifier}: {column}}}")

    res = run(cfg, state, runtime)

    assert (res.delivered, res.rejected) == (2, 1)
    assert profiles(sandbox) == {0: {identifier: "anon-0"}, 1: {"email": "b@example.com"}}
    assert reasons(state)["2"] == (
        "no profile identifier: email, phone_number, external_id, anonymous_id, _kx and id "
        "are all empty"
    )


def test_location_arrives_as_the_documented_object_of_strings(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    people(
        duck,
        [
            {
                "email": "a@example.com",
                "city": "New York",
                "zip": 10017,
                "lat": 40.7128,
                "lon": -74.006,
                "tz": "America/New_York",
                "vip": True,
            },
            {"email": "b@example.com", "city": "Paris"},
            {"email": "c@example.com"},
        ],
    )
    cfg = sync(
        duck,
        sandbox,
        contact_properties="{location.city: city, location.zip: zip, location.latitude: lat, "
        "location.longitude: lon, location.timezone: tz, title: vip}",
    )

    res = run(cfg, state, runtime)

    assert (res.delivered, res.rejected) == (3, 0)
    got = profiles(sandbox)
    # ProfileLocation: strings (an INTEGER zip is sent as text), latitude/longitude numbers.
    assert got[0]["location"] == {
        "city": "New York",
        "zip": "10017",
        "latitude": 40.7128,
        "longitude": -74.006,
        "timezone": "America/New_York",
    }
    assert got[0]["title"] == "true"  # a BOOLEAN mapped to a string attribute: its text
    assert got[1]["location"] == {"city": "Paris"}
    assert "location" not in got[2]  # every field NULL: no location at all


@pytest.mark.parametrize(
    ("contact_properties", "field", "message"),
    [
        ("{location.cty: city}", "mapping.contact_properties.location.cty", "address1, address2"),
        ("{location: city}", "mapping.contact_properties.location", "location.city"),
        ("{first_name.x: city}", "mapping.contact_properties.first_name.x", "a string"),
        ("{anonymous_id: anon}", "mapping.contact_properties.anonymous_id", "identifiers"),
    ],
)
def test_profile_attribute_mappings_are_checked_when_the_config_loads(
    duck: Warehouse, sandbox: SandboxServer, contact_properties: str, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        sync(duck, sandbox, contact_properties=contact_properties)
    assert field in str(exc.value)
    assert message in str(exc.value)


def test_an_image_that_is_not_a_url_is_rejected_before_sending(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    people(
        duck,
        [
            {"email": "a@example.com", "image": "https://cdn.example.com/a.png"},
            {"email": "b@example.com", "image": "a.png"},
        ],
    )
    cfg = sync(duck, sandbox, contact_properties="{image: image}")

    res = run(cfg, state, runtime)

    assert (res.delivered, res.rejected) == (1, 1)
    assert profiles(sandbox)[0]["image"] == "https://cdn.example.com/a.png"
    assert reasons(state) == {"1": "profile image is not a URL (e.g. https://…/photo.jpg)"}
    assert len(sandbox.requests) == 1  # the bad row never reached Klaviyo


def test_an_object_for_a_string_attribute_is_rejected_and_a_number_is_sent_as_text(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    duck.run("DROP TABLE IF EXISTS people")
    duck.run(
        "CREATE TABLE people (event_id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, o JSON)"
    )
    duck.insert(
        "people",
        [
            {"event_id": 0, "occurred_at": BASE, "email": "a@example.com", "o": '"Acme"'},
            {"event_id": 1, "occurred_at": BASE, "email": "b@example.com", "o": '{"n": 1}'},
            {"event_id": 2, "occurred_at": BASE, "email": "c@example.com", "o": "1e3"},
        ],
    )
    cfg = sync(duck, sandbox, contact_properties="{organization: o}")

    res = run(cfg, state, runtime)

    assert (res.delivered, res.rejected) == (2, 1)
    assert profiles(sandbox)[0]["organization"] == "Acme"
    assert profiles(sandbox)[2]["organization"] == "1e3"  # a JSON number: its text
    assert reasons(state) == {
        "1": "profile organization is a string attribute: the JSON holds an object or array"
    }


def test_metric_service_is_sent_when_configured(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    people(duck, [{"email": "a@example.com"}])
    run(sync(duck, sandbox, options="{metric_service: warehouse}"), state, runtime)
    [ev] = sandbox.events("klaviyo_bulk_events")
    assert ev["event"]["metric"]["data"]["attributes"] == {
        "name": "Signed Up",
        "service": "warehouse",
    }


def test_a_null_profile_property_is_unset_with_the_option_and_omitted_without(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    people(
        duck,
        [
            {"email": "a@example.com", "tier": "gold", "city": "Paris"},
            {"email": "b@example.com"},
        ],
    )
    props = "{tier: tier, properties.home: city, location.city: city}"
    cfg = sync(duck, sandbox, contact_properties=props, options="{null_profile_properties: unset}")

    assert run(cfg, state, runtime).delivered == 2

    got = profiles(sandbox)
    assert got[0] == {
        "email": "a@example.com",
        "location": {"city": "Paris"},
        "properties": {"tier": "gold", "home": "Paris"},
    }
    # NULL custom properties are removed from the profile (location is no custom property).
    assert got[1] == {
        "email": "b@example.com",
        "meta": {"patch_properties": {"unset": ["tier", "home"]}},
    }


@pytest.mark.parametrize("block", ["event_properties", "contact_properties"])
def test_a_string_over_100_kb_in_bytes_is_rejected_even_under_100k_characters(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime, block: str
) -> None:
    # 60,000 characters of "é" are 120,000 UTF-8 bytes: over Klaviyo's 100 KB (102,400 bytes).
    people(
        duck,
        [
            {"email": "a@example.com", "note": "é" * 51_200},  # exactly 102,400 bytes: fine
            {"email": "b@example.com", "note": "é" * 60_000},
        ],
    )
    cfg = sync(duck, sandbox, **{block: "{note: note}"})

    res = run(cfg, state, runtime)

    assert (res.delivered, res.rejected) == (1, 1)
    where = "note" if block == "event_properties" else "profile.note"
    assert reasons(state) == {"1": f"{where} is a string of 120000 bytes (max 102400)"}


def test_a_json_null_is_a_null_omitted_like_every_null(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    # One rule (README "Value rules"): a JSON column holding null is NULL, and NULL is omitted
    # (it used to be sent as null on this path only, and omitted on every other).
    duck.run("DROP TABLE IF EXISTS people")
    duck.run(
        "CREATE TABLE people (event_id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, o JSON)"
    )
    duck.insert("people", [{"event_id": 0, "occurred_at": BASE, "email": "a@x.com", "o": "null"}])
    cfg = sync(duck, sandbox, contact_properties="{image: o, organization: o}")

    res = run(cfg, state, runtime)

    assert (res.delivered, res.rejected) == (1, 0)
    assert profiles(sandbox)[0] == {"email": "a@x.com"}


def test_klaviyo_errors_pointing_into_the_events_are_item_level() -> None:
    item = {"detail": "Invalid email.", "source": {"pointer": KLAVIYO_ITEM.format(3)}}
    root = {"detail": "Too many events.", "source": {"pointer": KLAVIYO_ITEM.split("/{}")[0]}}
    assert _about_request([item]) is None
    assert _about_request([root]) is None  # about the events array: split, not fail
    assert _about_request([{"detail": "Something odd."}]) is None  # unknown: split decides
    header = {"detail": "Revision 2023-10-15 does not support this endpoint."}
    assert _about_request([{**header, "source": {"header": "revision"}}])
    assert _about_request([{**header, "source": {}}])  # no source, the words say it
    assert _about_request([{"code": "parse_error", "detail": "x"}])
    assert _about_request([{"detail": "data is required", "source": {"pointer": "/data"}}])


def test_klaviyo_interpret_names_the_revision_fix() -> None:
    sync = parse_sync(
        """
name: s
source: {table: t, cursor: c, primary_key: k}
destination:
  type: klaviyo_bulk_events
  api_key: "${KLAVIYO_API_KEY}"
  options: {revision: "2023-10-15"}
mapping: {event_name: e, event_time: c, identifiers: {email: m}}
""",
        "syncs/s.yaml",
    )
    from connector.deliver.factory import make_event_destination
    from connector.destinations.base import Request

    dest = make_event_destination(sync)
    body = orjson.dumps(
        klaviyo_errors(
            {
                "detail": "Revision 2023-10-15 does not support this endpoint.",
                "source": {"header": "revision"},
            }
        )
    )
    out = dest.interpret(Request("/p", b"", {}, []), 400, httpx.Headers({}), body)
    assert out.fatal and not out.rejected and not out.split
    assert "destination.options.revision (now 2023-10-15)" in out.fatal
