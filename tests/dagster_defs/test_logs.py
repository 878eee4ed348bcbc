"""The step's Dagster log shows the connector's lines with the sync name and run id, from the
sender threads too."""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
import pytest

from connector.sandbox import Fault
from tests.dagster_defs.test_assets import demo_defs
from tests.dagster_fixtures import Env, env, quiet_sandbox

__all__ = ["demo_defs", "env", "quiet_sandbox"]  # fixtures used by name


def _materialize(defs: dg.Definitions, env: Env, name: str) -> tuple[dict[str, Any], list[str]]:
    """Materialize one asset of the demo: its connector run (from the state store) and the
    messages of its Dagster run's log."""
    key = dg.AssetKey(["reverse_etl", name])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([defs.resolve_assets_def(key)], instance=instance)
    assert result.success
    (run,) = env.state.runs(name)
    return run, [str(e.message) for e in instance.all_logs(result.run_id)]


def test_the_step_log_shows_connector_lines_with_the_sync_name_and_run_id(
    demo_defs: dg.Definitions, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connector")  # the 429 line is INFO
    env.sandbox.inject(Fault(path="/v3/events/batch", status=429, headers={"Retry-After": "2"}))
    run, lines = _materialize(demo_defs, env, "order_placed")
    waited = [m for m in lines if "429, waiting" in m]
    assert len(waited) == 1, lines
    assert (
        f"[order_placed run {run['run_id']}] brevo_events_batch: POST answered 429, waiting"
        in waited[0]
    )
    # Nothing of the connector is forwarded once the step is over.
    assert not any(
        isinstance(h, logging.Handler) and type(h).__name__ == "_StepLog"
        for h in logging.getLogger("connector").handlers
    )


def test_a_contact_syncs_lines_reach_its_step_log_too(
    demo_defs: dg.Definitions, env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Contact runs set the run context as event runs do (their lines said "[- run -]" and
    the step dropped them); their job client logs its 429 waits as event senders do."""
    caplog.set_level(logging.INFO, logger="connector")
    env.sandbox.inject(
        Fault(path="/api/profile-bulk-import-jobs", status=429, headers={"Retry-After": "1"})
    )
    run, lines = _materialize(demo_defs, env, "customers_to_klaviyo")
    waited = [m for m in lines if "429, waiting" in m]
    assert len(waited) == 1, lines
    assert (
        f"[customers_to_klaviyo run {run['run_id']}] klaviyo_profiles: POST answered 429, "
        "waiting 1.0s"
    ) in waited[0]
