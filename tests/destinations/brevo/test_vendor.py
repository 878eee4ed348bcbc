"""What Brevo's event endpoints share (``destinations.brevo.vendor``), for ``brevo_event`` and
``brevo_events_batch`` alike: property keys checked at every depth; ``object.type`` from a
column with empty object identifiers omitted, and event properties of any JSON type as the
OpenAPI allows (arrays, nested nulls), through a real DuckDB file → run_sync → the sandbox over
real HTTP (issue 8, part 3)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.deliver.delivery import Runtime
from connector.destinations.brevo.vendor import key_problem
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.destinations.omnisend.test_events import create_table, make_sync, row, run, sandbox

__all__ = ["sandbox"]  # fixtures used by name


def test_brevo_keys_are_checked_at_every_depth() -> None:
    assert key_problem({"ok": {"also_ok-1": [{"fine": 1}]}}) is None
    assert "'ok.bad key'" in (key_problem({"ok": {"bad key": 1}}) or "")
    assert "'a[0].b c'" in (key_problem({"a": [{"b c": 1}]}) or "")


def by_email(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(e["identifiers"]["email_id"][4:].split("@")[0]): e for e in events}


BREVO_KINDS = ("brevo_event", "brevo_events_batch")


# --------------------------------------------------------------------------- Brevo object


@pytest.mark.parametrize("kind", BREVO_KINDS)
def test_brevo_object_type_from_a_column_arrives_and_empty_members_are_omitted(
    kind: str, duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_table(
        duck,
        [
            row(0, oext=""),
            row(1, obj_type="vehicle", oid=None),
            row(2, obj_type="", oid="", oext=None),
        ],
    )
    obj = {"type": {"column": "obj_type"}, "id": "oid", "ext_id": "oext"}
    sync = make_sync(kind, duck, sandbox, mapping={"object": obj})

    res = run(sync, state, runtime)

    assert (res.status, res.delivered, res.rejected) == ("success", 3, 0)
    got = by_email(sandbox.events(kind))
    assert got[0]["object"] == {"type": "subscription", "identifiers": {"id": "s-0"}}
    assert got[1]["object"] == {"type": "vehicle", "identifiers": {"ext_id": "x-1"}}
    assert "object" not in got[2]  # nothing left to link: no empty object, no ""


@pytest.mark.parametrize("kind", BREVO_KINDS)
def test_brevo_literal_object_type_with_empty_identifiers_sends_no_empty_strings(
    kind: str, duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_table(duck, [row(0, oid="", oext=None), row(1)])
    sync = make_sync(
        kind, duck, sandbox, mapping={"object": {"type": "order", "id": "oid", "ext_id": "oext"}}
    )

    run(sync, state, runtime)

    got = by_email(sandbox.events(kind))
    assert got[0]["object"] == {"type": "order"}
    assert got[1]["object"] == {"type": "order", "identifiers": {"id": "s-1", "ext_id": "x-1"}}


def test_object_type_column_is_checked_like_every_mapped_column(
    duck: Warehouse, sandbox: SandboxServer
) -> None:
    create_table(duck, [row(0)])
    sync = make_sync(
        "brevo_event", duck, sandbox, mapping={"object": {"type": {"column": "obj_type"}}}
    )
    assert "obj_type" in sync.mapping.columns()


# --------------------------------------------------------------------------- Brevo values


@pytest.mark.parametrize("kind", BREVO_KINDS)
def test_brevo_event_property_arrays_and_nested_nulls_are_sent_as_the_openapi_allows(
    kind: str, duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """The OpenAPI of POST /v3/events and /v3/events/batch types an event property as string,
    integer, boolean, object (of "Any type") or array (of "Any type"): arrays and nulls inside
    are documented values (issue 19 item 12; they used to be refused locally)."""
    create_table(
        duck,
        [
            row(0, ctx=json.dumps({"device": {"os": "ios", "v": 17.2, "beta": False}})),
            row(1, ctx=json.dumps({"tags": ["a", "b"], "items": [{"sku": "x", "n": 2}]})),
            row(2, ctx=json.dumps({"device": {"os": None}})),
            row(3, ctx=json.dumps({"note": "[not an array] null"})),
        ],
    )
    sync = make_sync(kind, duck, sandbox)

    res = run(sync, state, runtime)

    assert (res.status, res.delivered, res.rejected) == ("success", 4, 0)
    got = by_email(sandbox.events(kind))
    assert got[0]["event_properties"] == {
        "ctx": {"device": {"os": "ios", "v": 17.2, "beta": False}}
    }
    assert got[1]["event_properties"] == {
        "ctx": {"tags": ["a", "b"], "items": [{"sku": "x", "n": 2}]}
    }
    assert got[2]["event_properties"] == {"ctx": {"device": {"os": None}}}
    assert got[3]["event_properties"] == {"ctx": {"note": "[not an array] null"}}
