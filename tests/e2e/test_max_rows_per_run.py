"""``destination.max_rows_per_run``: the same per-run row cap in the CLI, the demo and Dagster
(issue 22, item 6). The run itself applies it, the plan shows it, and the checkpoint moves only
past the rows sent, so the next run continues there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from connector.config.sync_file import SyncConfig, parse_sync
from connector.core.errors import ConfigError
from connector.deliver.delivery import Runtime
from connector.run.run_plan import plan_run
from connector.run.sync import capped, run_sync
from connector.sandbox import SandboxServer
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import Warehouse
from tests.dagster_fixtures import PARTITIONED, Env, create_table, dated_rows, env, quiet_sandbox
from tests.helpers import create_events_table, delivered_ids, event_rows, insert_events, sync_for

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

REPO = Path(__file__).resolve().parents[2]


def _capped(sync: SyncConfig, cap: int) -> SyncConfig:
    dest = sync.destination.model_copy(update={"max_rows_per_run": cap})
    return sync.model_copy(update={"destination": dest})


def test_each_run_sends_at_most_the_cap_and_the_next_continues(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 250))
    sync = _capped(sync_for("klaviyo_bulk_events", duck, sandbox.url), 130)

    plan = plan_run(sync, state)
    assert (plan.rows, plan.rows_this_run, plan.requests) == (250, 130, 1)
    assert "130 this run (destination.max_rows_per_run)" in plan.line()

    first = run_sync(sync, state=state, runtime=runtime)
    assert (first.rows_read, first.delivered) == (130, 130)
    assert first.hwm_after is not None and first.hwm_after[1] == 129  # past what was sent
    assert state.checkpoint(sync.name, INCREMENTAL) is not None
    second = run_sync(sync, state=state, runtime=runtime)
    assert (second.rows_read, second.delivered) == (120, 120)
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(250))
    # A caller's smaller limit still wins; nothing is left, so nothing is sent.
    assert capped(5, 130) == 5 and capped(None, 130) == 130 and capped(200, None) == 200
    assert run_sync(sync, state=state, runtime=runtime).rows_read == 0


def test_dagster_applies_the_same_cap_over_a_run_of_partitions(env: Env) -> None:
    create_table(env.warehouse, dated_rows(days=3, per_day=20))
    path = env.write_sync("plays", PARTITIONED, warn=0.5, error=0.9)
    path.write_text(
        path.read_text().replace("  base_url:", "  max_rows_per_run: 30\n  base_url:", 1)
    )
    defs = env.defs()
    key = dg.AssetKey(["reverse_etl", "plays"])
    # The cap is on the asset's definition, as its config metadata.
    assert defs.resolve_assets_def(key).metadata_by_key[key]["max_rows_per_run"] == 30
    result = dg.materialize(
        [defs.resolve_assets_def(key)],
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2026-11-01",
            "dagster/asset_partition_range_end": "2026-11-03",
        },
    )
    by_partition = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    assert by_partition["2026-11-01"]["delivered"] == 20
    assert by_partition["2026-11-02"]["delivered"] == 10  # the run's 30 rows are used up
    assert "max_rows_per_run 30" in str(by_partition["2026-11-03"])
    assert len(env.sandbox.events("klaviyo_bulk_events")) == 30


def test_the_asset_definition_shows_the_cap_when_one_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster_defs.translator import ReverseEtlTranslator

    monkeypatch.setenv("KLAVIYO_API_KEY", "k")
    text = """
name: plays
source: {table: plays, cursor: at, primary_key: [id]}
destination: {type: klaviyo_bulk_events, api_key: "${KLAVIYO_API_KEY}"%s}
mapping: {event_name: played, event_time: at, identifiers: {email: email}}
"""
    capped = ReverseEtlTranslator().get_asset_spec(
        parse_sync(text % ", max_rows_per_run: 500", "x")
    )
    assert capped.metadata["max_rows_per_run"] == 500
    plain = ReverseEtlTranslator().get_asset_spec(parse_sync(text % "", "x"))
    assert "max_rows_per_run" not in plain.metadata


def test_a_contact_sync_refuses_the_option() -> None:
    text = """
name: people
source: {table: people, primary_key: [id]}
destination:
  type: klaviyo_profiles
  api_key: ${KLAVIYO_API_KEY}
  max_rows_per_run: 10
mapping:
  identifiers: {email: email}
"""
    with pytest.raises(ConfigError, match="max_rows_per_run"):
        parse_sync(text, "syncs/people.yaml")


def test_connector_plan_shows_the_cap(tmp_path: Path) -> None:
    """The demo's single-event sync files set the cap; `connector plan` prints it."""
    from connector.cli.demo import build_demo_warehouse

    build_demo_warehouse(tmp_path / ".connector" / "demo.duckdb", events=200)
    out = subprocess.run(
        [sys.executable, "-m", "connector.cli", "plan", "order_placed_omnisend_events"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "CONNECTOR_CONFIG_DIR": str(REPO / "config"),
            "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "this run            40 (destination.max_rows_per_run 40)" in out
    assert "1,000 events, 40 this run (destination.max_rows_per_run) → 40 " in out
