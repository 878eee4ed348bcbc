"""Every body the sandbox receives validates against the vendor's published request schema
(issue 19 item 11): syncs of every destination an OpenAPI covers, over a table of every column
kind (an INTEGER for string fields, DECIMAL, DOUBLE, REAL, BOOLEAN, DATE, TIMESTAMP, JSON with
arrays and nulls inside), run end to end; the raw bodies are checked with
``openapi-schema-validator`` against ``tests/openapi/`` (provenance and the spec's own drift in
its README). The sandbox follows the documents, and so must what we send."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from connector.config.sync_file import parse_sync
from connector.deliver.delivery import Runtime
from connector.run.sync import run_sync
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import CONTACT_SYNC
from tests.openapi_bodies import problems

ATTRIBUTES = {
    "FIRSTNAME": "text",
    "AGE": "float",
    "VIP": "boolean",
    "BORN": "date",
    "EXT_ID": "text",
}


@pytest.fixture
def recording() -> Iterator[SandboxServer]:
    opts = SandboxOptions(keep_bodies=True, brevo_attributes=ATTRIBUTES, contact_job_polls=0)
    with SandboxServer(opts, host="127.0.0.1", port=0) as sb:
        yield sb


def wide_table(wh: Warehouse) -> None:
    wh.run(
        "CREATE TABLE wide (id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, first VARCHAR, "
        "zip INTEGER, tiny DECIMAL(20, 10), amount DECIMAL(10, 2), score DOUBLE, r REAL, "
        "vip BOOLEAN, born DATE, seen TIMESTAMP, ctx JSON, big BIGINT, lat DOUBLE)",
        "INSERT INTO wide VALUES "
        "(1, '2026-11-01 10:00:00+00', 'a@example.com', 'Ada', 75001, 0.0000000001, 18.99, "
        "CAST('-0.0' AS DOUBLE), 0.1, true, '1990-05-06', '2026-03-29 02:30:00', "
        """'{"items": [{"sku": "x", "n": 2}], "tags": ["a"], "gone": null, "deep": {"k": 1.5}}', """
        "9223372036854775807, 48.85), "
        "(2, '2026-11-01 10:00:01+00', 'b@example.com', NULL, 2139, 1, 5.00, 1e16, 3.5, false, "
        "NULL, NULL, 'null', 42, NULL)",
    )


def check(sandbox: SandboxServer, *, expected_paths: set[str]) -> None:
    bodies = [(path, body) for path, body in sandbox.bodies() if body]  # GETs carry none
    assert {path for path, _ in bodies} >= expected_paths, bodies
    for path, body in bodies:
        assert problems(path, body) == [], (path, body.decode()[:2000])


EVENT_SYNC = """
name: wide
source: {{table: wide, cursor: occurred_at, primary_key: id, url: "{url}"}}
destination:
  type: {dtype}
  api_key: "${{{key}}}"
  base_url: "{sandbox}"
  options: {options}
mapping:
  event_name: order_placed
  event_time: occurred_at
  identifiers: {identifiers}
  event_properties: {{tiny: tiny, amount: amount, score: score, r: r, vip: vip, born: born,
                      seen: seen, ctx: ctx, big: big, zip: zip}}
  contact_properties: {contact}
{extra}"""

EVENT_CASES = {
    "klaviyo_bulk_events": dict(
        key="KLAVIYO_API_KEY",
        identifiers="{email: email, external_id: id}",
        contact="{first_name: first, location.zip: zip, location.latitude: lat, "
        "organization: big, title: vip, tier: vip, born: born}",
        extra="  value: amount\n  value_currency: EUR\n",
        options="{}",
        paths={"/api/event-bulk-create-jobs"},
    ),
    "brevo_event": dict(
        key="BREVO_API_KEY",
        identifiers="{email_id: email, contact_id: big, ext_id: id}",
        contact="{FIRSTNAME: first, AGE: zip, VIP: vip}",
        extra="  object: {type: order, id: id}\n",
        options="{}",
        paths={"/v3/events"},
    ),
    "brevo_events_batch": dict(
        key="BREVO_API_KEY",
        identifiers="{email_id: email, contact_id: big, ext_id: id}",
        contact="{FIRSTNAME: first, AGE: zip, VIP: vip}",
        extra="  object: {type: order, id: id}\n",
        options="{body_shape: object}",
        paths={"/v3/events/batch"},
    ),
    "omnisend_events": dict(
        key="OMNISEND_API_KEY",
        identifiers="{email: email}",
        contact="{firstName: first, postalCode: zip, birthdate: born, city: big, score: score}",
        extra="",
        options="{}",
        paths={"/api/events"},
    ),
}


@pytest.mark.parametrize("dtype", sorted(EVENT_CASES))
def test_event_bodies_validate_against_the_vendor_schema(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    case = EVENT_CASES[dtype]
    wide_table(duck)
    text = EVENT_SYNC.format(url=duck.url, dtype=dtype, sandbox=recording.url, **case)
    if dtype == "brevo_events_batch":
        recording.options.brevo_batch_shape = "both"
    res = run_sync(parse_sync(text, "syncs/wide.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 2, 0)
    check(recording, expected_paths=case["paths"])  # type: ignore[arg-type]


def test_the_brevo_batch_array_shape_validates_as_the_events_of_the_object(
    duck: Warehouse, recording: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    case = {**EVENT_CASES["brevo_events_batch"], "options": "{body_shape: array}"}
    wide_table(duck)
    text = EVENT_SYNC.format(
        url=duck.url, dtype="brevo_events_batch", sandbox=recording.url, **case
    )
    assert run_sync(parse_sync(text, "syncs/wide.yaml"), state=state, runtime=runtime).delivered
    [(_, body)] = recording.bodies()
    assert body.startswith(b"[")
    check(recording, expected_paths={"/v3/events/batch"})


CONTACT_CASES = {
    "klaviyo_profiles": dict(
        key="KLAVIYO_API_KEY",
        identifiers="{email: email, external_id: id}",
        contact="{first_name: first, location.zip: zip, location.latitude: lat, "
        "organization: big, tiny: tiny, score: score, ctx: ctx, vip: vip, born: born}",
        options=", list_id: LIST1, null_standard_fields: clear, on_removed: unlist, "
        "max_unlist_ratio: 1",
        paths={
            "/api/profile-bulk-import-jobs",
            "/api/profile-import",
            "/api/lists/LIST1/relationships/profiles",
        },
    ),
    "omnisend_contacts": dict(
        key="OMNISEND_API_KEY",
        identifiers="{email: email}",
        contact="{firstName: first, postalCode: zip, birthdate: born, city: big, "
        "score: score, tiny: tiny, vip: vip}",
        options=", null_fields: keep",
        paths={"/api/batches"},
    ),
    "omnisend_contacts_single": dict(
        key="OMNISEND_API_KEY",
        identifiers="{email: email}",
        contact="{firstName: first, postalCode: zip, birthdate: born, score: score}",
        options=", null_fields: keep, mode: single",
        paths={"/api/contacts"},
    ),
    "brevo_contacts": dict(
        key="BREVO_API_KEY",
        identifiers="{email: email, ext_id: id}",
        contact="{FIRSTNAME: first, AGE: zip, VIP: vip, BORN: born}",
        options=", list_ids: [7], on_removed: unlist, max_unlist_ratio: 1",
        paths={"/v3/contacts/import", "/v3/contacts/lists/7/contacts/remove"},
    ),
}


@pytest.mark.parametrize("name", sorted(CONTACT_CASES))
def test_contact_bodies_validate_against_the_vendor_schema(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    name: str,
) -> None:
    case = CONTACT_CASES[name]
    dtype = name.removesuffix("_single")
    wide_table(duck)
    text = CONTACT_SYNC.format(
        table="wide", url=duck.url, dtype=dtype, sandbox=recording.url, **case
    )
    sync = parse_sync(text, "syncs/wide.yaml")
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 2, 0)
    if "on_removed: unlist" in case["options"]:
        duck.run("DELETE FROM wide WHERE id = 2")
        assert run_sync(sync, state=state, runtime=runtime).status == "success"
    check(recording, expected_paths=case["paths"])  # type: ignore[arg-type]


def test_the_validator_finds_what_main_sent() -> None:
    """The bodies issue 19 quoted, as main built them: an INTEGER zip in a Klaviyo profile
    import and in an Omnisend contact, and Klaviyo's ``value`` as text."""
    profile = {"type": "profile", "attributes": {"email": "a@b.co", "location": {"zip": 75001}}}
    job = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [profile]}},
        }
    }
    assert problems("/api/profile-bulk-import-jobs", orjson.dumps(job)) == [
        "data/attributes/profiles/data/0/attributes/location/zip: 75001 is not of type 'string'"
    ]
    contact = {"identifiers": [{"type": "email", "id": "a@b.co"}], "postalCode": 75001}
    assert problems("/api/contacts", orjson.dumps(contact)) == [
        "postalCode: 75001 is not of type 'string'"
    ]
    event = {
        "type": "event",
        "attributes": {
            "properties": {},
            "metric": {"data": {"type": "metric", "attributes": {"name": "m"}}},
            "value": "9.99",
        },
    }
    bulk = {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {
                "events-bulk-create": {
                    "data": [
                        {
                            "type": "event-bulk-create",
                            "attributes": {
                                "profile": {
                                    "data": {"type": "profile", "attributes": {"email": "a@b.co"}}
                                },
                                "events": {"data": [event]},
                            },
                        }
                    ]
                }
            },
        }
    }
    found = problems("/api/event-bulk-create-jobs", orjson.dumps(bulk))
    assert len(found) == 1 and found[0].endswith("'9.99' is not of type 'number'"), found
