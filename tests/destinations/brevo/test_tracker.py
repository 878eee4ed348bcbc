"""Brevo's legacy tracker (``destinations.brevo.tracker``), field by field through a real DuckDB
file → run_sync → the sandbox over real HTTP (issue 8, part 3): its contact ``properties``
take scalars only, and a dotted contact property is a config error."""

from __future__ import annotations

import json

import pytest

from connector.core.errors import ConfigError
from connector.deliver.delivery import Runtime
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.destinations.omnisend.test_events import (
    create_table,
    make_sync,
    reasons,
    row,
    run,
    sandbox,
)

__all__ = ["sandbox"]  # fixtures used by name


def test_brevo_tracker_contact_properties_take_scalars_only(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_table(duck, [row(0, ctx=json.dumps("plain")), row(1, ctx=json.dumps({"a": 1}))])
    sync = make_sync(
        "brevo_tracker",
        duck,
        sandbox,
        mapping={
            "event_properties": {},
            "contact_properties": {"FIRSTNAME": "first_name", "PREFS": "ctx"},
        },
    )

    res = run(sync, state, runtime)

    assert (res.delivered, res.rejected) == (1, 1)
    assert "PREFS is an object/array" in reasons(state, sync)["1"]
    (event,) = sandbox.events("brevo_tracker")
    assert event["properties"] == {"FIRSTNAME": "Ada", "PREFS": "plain"}


def test_brevo_tracker_dotted_contact_property_is_a_config_error(
    duck: Warehouse, sandbox: SandboxServer
) -> None:
    with pytest.raises(
        ConfigError, match=r"contact_properties\.PREFS\.color.*take no nested values"
    ):
        make_sync(
            "brevo_tracker",
            duck,
            sandbox,
            mapping={"contact_properties": {"PREFS.color": "first_name"}},
        )
