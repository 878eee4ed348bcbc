"""Partitioned runs. Backfills the way the UI launches them: the ``launchPartitionBackfill`` GraphQL
mutation, then the backfill daemon's iteration, on an instance whose run coordinator and
launcher execute the requested runs synchronously in this process."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from connector import INCREMENTAL, run_sync
from connector.config.sync_file import parse_sync
from tests.dagster_fixtures import (
    DAY0,
    PARTITIONED,
    PLAYS_KEY,
    Env,
    create_table,
    dated_rows,
    env,
    klaviyo_ids,
    materialization,
    quiet_sandbox,
)

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]


def _code_location(env: Env, tmp_path: Path) -> Path:
    """A definitions file like a user's, pointing at the test's warehouse and state store."""
    env.write_sync("plays", PARTITIONED, warn=0.01, error=0.05)
    path = tmp_path / "defs_for_test.py"
    path.write_text(
        textwrap.dedent(f"""
        import dagster as dg
        from dagster_defs import ConnectorResource, build_defs
        defs = dg.Definitions.merge(
            build_defs(
                {str(env.config_dir)!r},
                resource=ConnectorResource(warehouse_url={env.warehouse.url!r},
                                           state_url={env.state.url!r},
                                           duckdb_read_only=False),
            ),
            # Runs execute in this process (a subprocess per step would only be slower here).
            dg.Definitions(executor=dg.in_process_executor),
        )
    """)
    )
    return path


@contextmanager
def _workspace(instance: dg.DagsterInstance, defs_file: Path) -> Iterator[WorkspaceProcessContext]:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            python_file=str(defs_file), attribute="defs", working_directory=str(defs_file.parent)
        )
    )
    with create_test_daemon_workspace_context(
        InProcessWorkspaceLoadTarget(origin), instance
    ) as ctx:
        yield ctx


def _backfill(
    ctx: WorkspaceProcessContext, days: list[str], run_config: dict[str, Any] | None = None
) -> str:
    """Launch a backfill as the UI does, then let the daemon run it to completion."""
    params: dict[str, Any] = {"partitionNames": days, "assetSelection": [{"path": PLAYS_KEY.path}]}
    if run_config:
        params["runConfigData"] = run_config
    result = execute_dagster_graphql(
        ctx.create_request_context(), LAUNCH_PARTITION_BACKFILL_MUTATION, {"backfillParams": params}
    )
    assert result.data, result.errors
    answer = result.data["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    backfill_id: str = answer["backfillId"]
    instance = ctx.instance
    for _ in range(10):  # each iteration submits the runs it can, then records completion
        list(execute_backfill_iteration(ctx, logging.getLogger("test_backfill")))
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        if backfill.status != BulkActionStatus.REQUESTED:
            break
    assert backfill is not None
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status
    return backfill_id


def _runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter.for_backfill(backfill_id)))


def _scheduler(env: Env) -> Callable[[], dict[str, Any]]:
    """What the schedule's tick on 2026-11-03 20:00 launches, run in process (one instance):
    with lookback 2 that is one run over 11-01, 11-02 and 11-03. Returns the run's metadata."""
    defs = env.defs()
    schedule = next(s for s in defs.schedules or [] if s.name == "reverse_etl_plays_schedule")
    assert isinstance(schedule, dg.ScheduleDefinition)
    asset = defs.resolve_assets_def(PLAYS_KEY)
    instance = dg.DagsterInstance.ephemeral()

    def scheduled_run() -> dict[str, Any]:
        at = DAY0 + timedelta(days=2, hours=20)
        with dg.build_schedule_context(scheduled_execution_time=at) as context:
            [request] = schedule.evaluate_tick(context).run_requests or []
        return materialization(
            dg.materialize([asset], tags=request.tags, instance=instance), PLAYS_KEY
        )

    return scheduled_run


@pytest.mark.slow
def test_backfill_of_three_days_sends_exactly_their_rows_once(env: Env, tmp_path: Path) -> None:
    rows = dated_rows(days=6, per_day=8)
    create_table(env.warehouse, rows)
    defs_file = _code_location(env, tmp_path)
    # An incremental run (the CLI's scope) first: the backfill must not move its checkpoint.
    sync = parse_sync((env.config_dir / "syncs" / "plays.yaml").read_text(), "syncs/plays.yaml")
    run_sync(sync, state=env.state, warehouse_url=env.warehouse.url, runtime=env.runtime, limit=5)
    incremental = env.state.checkpoint("plays", INCREMENTAL)
    sent_before = len(klaviyo_ids(env.sandbox))
    expected = sorted(r["event_id"] for r in rows if 1000 <= r["event_id"] < 4000)

    with (
        instance_for_test(
            synchronous_run_coordinator=True, synchronous_run_launcher=True
        ) as instance,
        _workspace(instance, defs_file) as ctx,
    ):
        first = _backfill(ctx, DAYS)
        runs = _runs(instance, first)
        # Single-run backfill policy: the three partitions travel in one run.
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags["dagster/asset_partition_range_start"] == DAYS[0]
        assert runs[0].tags["dagster/asset_partition_range_end"] == DAYS[-1]
        assert sorted(klaviyo_ids(env.sandbox)[sent_before:]) == expected
        assert env.state.checkpoint("plays", INCREMENTAL) == incremental
        for day in DAYS:
            assert env.state.checkpoint("plays", f"partition:{day}") is not None
        materialized = instance.get_materialized_partitions(PLAYS_KEY)
        assert materialized == set(DAYS)

        # The same backfill again: every partition resumes after its checkpoint, sends 0.
        requests_before = len(env.sandbox.requests)
        second = _backfill(ctx, DAYS)
        assert len(env.sandbox.requests) == requests_before
        record = instance.get_latest_materialization_event(PLAYS_KEY)
        assert record is not None and record.asset_materialization is not None
        assert record.run_id == _runs(instance, second)[0].run_id
        assert record.asset_materialization.metadata["delivered"].value == 0

        # full_refresh in the backfill's run config re-sends those windows (Klaviyo dedups
        # them by unique_id, so the sandbox counts them as duplicates).
        config = {"ops": {"reverse_etl_plays": {"config": {"full_refresh": True}}}}
        third = _backfill(ctx, DAYS, run_config=config)
        assert env.sandbox.stats()["deduplicated"]["klaviyo_bulk_events"] == len(expected)
        # One materialization per partition, each with that partition's own counts.
        counts = _partition_counts(instance, _runs(instance, third)[0].run_id)
        assert counts == {day: (8, 8) for day in DAYS}
        assert sum(d for d, _ in counts.values()) == len(expected)
    assert env.state.checkpoint("plays", INCREMENTAL) == incremental


def _partition_counts(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[int, int]]:
    """Partition → (delivered, dagster/row_count) of the materializations a run recorded."""
    records = instance.fetch_materializations(PLAYS_KEY, limit=100).records
    out = {}
    for record in records:
        if record.run_id != run_id:
            continue
        mat = record.asset_materialization
        assert mat is not None and mat.partition is not None
        md = mat.metadata
        delivered, rows = md["delivered"].value, md["dagster/row_count"].value
        assert isinstance(delivered, int) and isinstance(rows, int)
        out[mat.partition] = (delivered, rows)
    return out


def test_a_backfill_records_each_partitions_own_counts_an_empty_one_zero(
    env: Env, tmp_path: Path
) -> None:
    rows = [r for r in dated_rows(days=3, per_day=5) if r["occurred_at"].day != 2]  # 11-02 empty
    create_table(env.warehouse, rows)
    defs_file = _code_location(env, tmp_path)
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    with (
        instance_for_test(
            synchronous_run_coordinator=True, synchronous_run_launcher=True
        ) as instance,
        _workspace(instance, defs_file) as ctx,
    ):
        run_id = _runs(instance, _backfill(ctx, days))[0].run_id
        counts = _partition_counts(instance, run_id)
        assert counts == {"2026-11-01": (5, 5), "2026-11-02": (0, 0), "2026-11-03": (5, 5)}
        # The row-count plot sums to what the run delivered.
        assert sum(c for _, c in counts.values()) == len(rows) == len(klaviyo_ids(env.sandbox))
        empty = next(
            r.asset_materialization
            for r in instance.fetch_materializations(PLAYS_KEY, limit=10).records
            if r.asset_materialization and r.asset_materialization.partition == "2026-11-02"
        )
        assert empty is not None
        assert empty.metadata["scope"].value == "partition:2026-11-02"
        assert "sample_rejects" not in empty.metadata


def test_scheduled_runs_pick_up_late_rows_of_the_lookback_partitions(env: Env) -> None:
    create_table(env.warehouse, dated_rows(days=3, per_day=4))  # 00:00, 06:00, 12:00, 18:00
    env.write_sync("plays", PARTITIONED, warn=0.5, error=0.9)
    scheduled_run = _scheduler(env)
    assert scheduled_run()["delivered"] == 12
    late = [
        # after the last row delivered for 11-01 (18:00): caught by the next scheduled run
        {
            "event_id": 9001,
            "occurred_at": DAY0 + timedelta(hours=23),
            "email": "late@x.io",
            "title": "late",
        },
        # before it: below that partition's checkpoint, only a full_refresh backfill sends it
        {
            "event_id": 9002,
            "occurred_at": DAY0 + timedelta(hours=1),
            "email": "later@x.io",
            "title": "later",
        },
    ]
    env.warehouse.insert("ev", late)
    again = scheduled_run()
    assert again["delivered"] == 1
    assert 9001 in klaviyo_ids(env.sandbox) and 9002 not in klaviyo_ids(env.sandbox)
    assert env.state.checkpoint("plays", INCREMENTAL) is None


def test_with_a_load_time_cursor_scheduled_runs_catch_late_rows_with_an_old_event_time(
    env: Env,
) -> None:
    """The pattern docs/dagster.md recommends when rows land late: partitions on the event time,
    the cursor on the load time. A late row has an old event time but a new load time, so it is
    after its partition's checkpoint and the next scheduled run sends it."""
    rows = dated_rows(days=3, per_day=4)
    for r in rows:
        r["loaded_at"] = r["occurred_at"] + timedelta(minutes=5)
    env.warehouse.run(
        "DROP TABLE IF EXISTS ev",
        "CREATE TABLE ev (event_id INTEGER, occurred_at TIMESTAMPTZ, loaded_at TIMESTAMPTZ,"
        " email VARCHAR, title VARCHAR)",
    )
    env.warehouse.insert("ev", rows)
    env.write_sync(
        "plays",
        PARTITIONED.replace("cursor: occurred_at", "cursor: loaded_at"),
        warn=0.5,
        error=0.9,
    )
    scheduled_run = _scheduler(env)
    assert scheduled_run()["delivered"] == 12
    late = {
        "event_id": 9002,
        "occurred_at": DAY0 + timedelta(hours=1),  # 11-01 01:00, before 11-01's last row
        "loaded_at": DAY0 + timedelta(days=2, hours=19),  # landed today
        "email": "later@x.io",
        "title": "later",
    }
    env.warehouse.insert("ev", [late])
    again = scheduled_run()
    assert again["delivered"] == 1
    assert klaviyo_ids(env.sandbox).count(9002) == 1
    assert scheduled_run()["delivered"] == 0


def test_a_run_over_several_partitions_counts_null_cursor_rows_once(env: Env) -> None:
    rows = dated_rows(days=3, per_day=4)
    rows.append({"event_id": 7777, "occurred_at": None, "email": "x@y.io", "title": "no time"})
    create_table(env.warehouse, rows)
    env.write_sync("plays", PARTITIONED, warn=0.5, error=0.9)
    md = _scheduler(env)()  # one run over three partitions
    assert md["delivered"] == 12
    assert md["rejected"] == 1 and md["null_cursor_or_key_rows"] == 1
    recorded = env.state.rejects("plays")
    assert [r["key"] for r in recorded] == ["7777"]
    assert "cursor column occurred_at is NULL" in recorded[0]["reason"]
