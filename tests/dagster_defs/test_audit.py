"""The audit tables as Dagster assets (``dagster_defs.audit``, docs/audit.md): downstream of
the sync's asset with their row counts, and the ``audit_written`` check warning while rows wait
for an audit database that cannot be reached."""

from __future__ import annotations

import dagster as dg
import pytest

from tests.audit.test_audit import Audit, _closed_port
from tests.dagster_fixtures import (
    PARTITIONED,
    PLAYS_KEY,
    Env,
    create_table,
    dated_rows,
    env,
    quiet_sandbox,
)

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name


@pytest.mark.parametrize("reachable", [True, False])
def test_dagster_shows_the_audit_tables_downstream_with_row_counts_and_checks_the_write(
    env: Env, reachable: bool
) -> None:
    create_table(env.warehouse, dated_rows(days=1, per_day=20, bad_every=10))
    down = f"postgresql+psycopg://u:p@127.0.0.1:{_closed_port()}/audit?connect_timeout=2"
    audit = "audit: {{}}\n" if reachable else f"audit: {{{{url: '{down}'}}}}\n"
    env.write_sync("plays", PARTITIONED + audit, warn=0.5, error=0.9)
    defs = env.defs()
    tables = [dg.AssetKey(["reverse_etl_audit", t]) for t in ("runs", "changelog", "snapshot")]
    graph = defs.resolve_asset_graph()
    for key in tables:
        assert graph.get(key).parent_keys == {PLAYS_KEY}

    result = dg.materialize(
        [defs.resolve_assets_def(PLAYS_KEY)],
        partition_key="2026-11-01",
        instance=dg.DagsterInstance.ephemeral(),
    )
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["audit_written"]
    counts = {
        m.event_specific_data.materialization.asset_key.path[-1]: (  # type: ignore[union-attr]
            m.event_specific_data.materialization.metadata["dagster/row_count"].value  # type: ignore[union-attr]
        )
        for m in result.get_asset_materialization_events()
        if m.asset_key in tables
    }
    if reachable:
        assert check.passed
        assert counts == {"runs": 1, "changelog": 20, "snapshot": 20}
        (run,) = Audit(env.warehouse).runs()
        assert run["dagster_run_id"] == result.run_id
    else:
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.metadata["rows_waiting"].value == 20
        assert counts == {}
