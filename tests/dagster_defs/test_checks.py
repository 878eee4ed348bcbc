"""Asset checks: the reject ratio against its warn/error thresholds, checkpoint freshness."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from tests.dagster_fixtures import (
    DAY0,
    PARTITIONED,
    Env,
    create_table,
    dated_rows,
    env,
    quiet_sandbox,
)

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

KEY = dg.AssetKey(["reverse_etl", "plays"])


def _run_day(env: Env, day: str = "2026-11-01") -> dg.AssetCheckEvaluation:
    defs = env.defs()
    result = dg.materialize(
        [defs.resolve_assets_def(KEY)], partition_key=day, instance=dg.DagsterInstance.ephemeral()
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    # The event-sync checks are judged in the sync's own step.
    assert set(checks) == {"reject_ratio", "checkpoint_freshness", "nothing_missing"}
    return checks["reject_ratio"]


@pytest.mark.parametrize(
    ("bad_every", "passed", "severity"),
    [
        (0, True, None),  # no rejects
        (10, False, dg.AssetCheckSeverity.WARN),  # 10% > warn 5%, <= error 20%
        (4, False, dg.AssetCheckSeverity.ERROR),  # 25% > error 20%
    ],
)
def test_reject_ratio_check_fails_above_its_thresholds(
    env: Env, bad_every: int, passed: bool, severity: dg.AssetCheckSeverity | None
) -> None:
    create_table(env.warehouse, dated_rows(days=1, per_day=20, bad_every=bad_every))
    env.write_sync("plays", PARTITIONED, warn=0.05, error=0.20)
    check = _run_day(env)
    assert check.passed is passed
    if severity is not None:
        assert check.severity == severity
    rejected = 20 // bad_every if bad_every else 0
    assert check.metadata["rejected"].value == rejected
    assert check.metadata["rows_seen"].value == 20


def test_a_run_that_reads_nothing_passes_the_reject_ratio(env: Env) -> None:
    create_table(env.warehouse, dated_rows(days=1, per_day=20, bad_every=2))
    env.write_sync("plays", PARTITIONED, warn=0.05, error=0.20)
    assert not _run_day(env).passed
    assert _run_day(env).passed  # nothing new: no verdict on old rejects


def _freshness(env: Env) -> dg.AssetCheckEvaluation:
    check_key = dg.AssetCheckKey(KEY, "checkpoint_freshness")
    only_check = dg.define_asset_job(
        "freshness_only", selection=dg.AssetSelection.checks(check_key)
    )
    defs = dg.Definitions.merge(env.defs(), dg.Definitions(jobs=[only_check]))
    result = defs.resolve_job_def("freshness_only").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    [check] = result.get_asset_check_evaluations()
    return check


def test_freshness_check_measures_the_lag_of_the_high_water_mark(env: Env) -> None:
    rows = dated_rows(days=3, per_day=4)
    create_table(env.warehouse, rows)
    env.write_sync("plays", PARTITIONED, warn=0.05, error=0.2)
    # max_lag_hours defaults to 24 h.
    never = _freshness(env)
    assert not never.passed and never.severity == dg.AssetCheckSeverity.WARN

    _run_day(env, "2026-11-01")  # delivered up to day 0 18:00; newest row day 2 18:00
    behind = _freshness(env)
    assert not behind.passed
    assert behind.metadata["lag_hours"].value == pytest.approx(48.0)

    _run_day(env, "2026-11-03")
    fresh = _freshness(env)
    assert fresh.passed and fresh.metadata["lag_hours"].value == 0.0
    newest = fresh.metadata["newest_source_cursor"]
    assert isinstance(newest, dg.TextMetadataValue)
    assert str(DAY0 + timedelta(days=2, hours=18)) in newest.value
