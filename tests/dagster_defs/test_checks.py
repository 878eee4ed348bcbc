"""Asset checks (``dagster_defs.checks``): the reject ratio against its warn/error thresholds,
checkpoint freshness, nothing missing (warning with the periods of the missing rows); each kind
of sync has its own checks (thresholds in their descriptions), and a contact run judges its
own in its step."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from connector.cli.demo import build_demo_warehouse
from dagster_defs import ConnectorResource, build_defs
from tests.conftest import FakeSleep
from tests.dagster_fixtures import (
    DAY0,
    PARTITIONED,
    PLAYS_KEY,
    Env,
    create_table,
    dated_rows,
    env,
    materialization,
    quiet_sandbox,
)

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name


def _run_day(env: Env, day: str = "2026-11-01") -> dg.AssetCheckEvaluation:
    defs = env.defs()
    result = dg.materialize(
        [defs.resolve_assets_def(PLAYS_KEY)],
        partition_key=day,
        instance=dg.DagsterInstance.ephemeral(),
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
    check_key = dg.AssetCheckKey(PLAYS_KEY, "checkpoint_freshness")
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


SHIPPED = Path(__file__).resolve().parents[2] / "config"
CONTACTS = dg.AssetKey(["reverse_etl", "customers_to_brevo"])
EVENTS = dg.AssetKey(["reverse_etl", "video_played"])


@pytest.fixture
def demo_defs(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_time: FakeSleep
) -> dg.Definitions:
    monkeypatch.setenv("SANDBOX_URL", env.sandbox.url)
    demo = build_demo_warehouse(tmp_path / "demo.duckdb", events=40, orders=25)
    resource = ConnectorResource(warehouse_url=f"duckdb:///{demo}", state_url=env.state.url)
    return build_defs(SHIPPED, resource=resource, runtime=env.runtime)


def _checks(defs: dg.Definitions, key: dg.AssetKey) -> set[str]:
    return {c.name for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key == key}


def test_each_kind_of_sync_has_its_own_checks_and_only_the_metadata_that_applies() -> None:
    defs = build_defs(SHIPPED)
    assert _checks(defs, CONTACTS) == {"reject_ratio", "changed_ratio", "removed_rows"}
    assert _checks(defs, EVENTS) == {"reject_ratio", "checkpoint_freshness", "nothing_missing"}
    graph = defs.resolve_asset_graph()
    contact_md = graph.get(CONTACTS).metadata
    assert "cursor" not in contact_md and "event_time" not in contact_md
    assert contact_md["sync_kind"] == "contacts"
    assert graph.get(EVENTS).metadata["cursor"] == "occurred_at"
    # The thresholds are in the descriptions, not in measured metadata.
    spec = next(
        s for s in defs.resolve_assets_def(CONTACTS).check_specs if s.name == "removed_rows"
    )
    assert "warn above 5%, error above 50%" in (spec.description or "")


def test_a_contact_run_judges_its_own_checks(demo_defs: dg.Definitions, env: Env) -> None:
    instance = dg.DagsterInstance.ephemeral()
    asset = demo_defs.resolve_assets_def(CONTACTS)
    first = dg.materialize([asset], instance=instance)
    checks = {c.check_name: c for c in first.get_asset_check_evaluations()}
    assert set(checks) == {"reject_ratio", "changed_ratio", "removed_rows"}
    assert all(c.passed for c in checks.values())
    assert checks["reject_ratio"].metadata["of"].value == 500  # every row needed sending
    assert "warn_above" not in checks["reject_ratio"].metadata
    md = materialization(first, CONTACTS)
    assert "hwm_before" not in md and "sample_rejects" not in md
    # The warehouse table is observed: its row count, by the sync that read it.
    logs = instance.all_logs(first.run_id)
    [obs] = [e.asset_observation for e in logs if e.asset_observation is not None]
    assert obs is not None and obs.asset_key == dg.AssetKey(["warehouse", "analytics", "customers"])
    assert obs.metadata["dagster/row_count"].value == 500


# --------------------------------------------------------------------------- Dagster


def _materialize_day(env: Env, day: str) -> dict[str, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [env.defs().resolve_assets_def(PLAYS_KEY)],
        partition_key=day,
        instance=dg.DagsterInstance.ephemeral(),
    )
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def _check_alone(env: Env) -> dg.AssetCheckEvaluation:
    job = dg.define_asset_job(
        "missing_only",
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(PLAYS_KEY, "nothing_missing")),
    )
    defs = dg.Definitions.merge(env.defs(), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("missing_only").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    [check] = result.get_asset_check_evaluations()
    return check


def test_the_nothing_missing_check_warns_with_the_periods_of_missing_rows(env: Env) -> None:
    create_table(env.warehouse, dated_rows(days=2, per_day=4))
    env.write_sync("plays", PARTITIONED, warn=0.05, error=0.2)
    first = _materialize_day(env, "2026-11-01")["nothing_missing"]
    assert first.passed
    assert first.metadata["source_rows"].value == first.metadata["handled_rows"].value == 4

    # A row of the partition committed late, behind its checkpoint (day 0, 18:00).
    late = {"event_id": 999, "occurred_at": DAY0 + timedelta(minutes=30)}
    env.warehouse.insert("ev", [{**late, "email": "late@example.com", "title": "late"}])
    again = _materialize_day(env, "2026-11-01")["nothing_missing"]
    assert not again.passed and again.severity == dg.AssetCheckSeverity.WARN
    assert again.metadata["missing_rows"].value == 1
    assert again.metadata["missing_periods"].value == [
        {"scope": "partition:2026-11-01", "period": "2026-11-01", "rows": 1}
    ]
    assert "connector reconcile plays --send-missing" in (again.description or "")

    alone = _check_alone(env)  # Execute on the check: every scope with a checkpoint
    assert not alone.passed and alone.metadata["missing_rows"].value == 1

    env.write_sync("plays", PARTITIONED + "  nothing_missing: false\n", warn=0.05, error=0.2)
    assert "nothing_missing" not in _materialize_day(env, "2026-11-02")
