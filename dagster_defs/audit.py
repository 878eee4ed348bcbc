"""The audit tables as Dagster assets, and the ``audit_written`` check (docs/audit.md).

``runs``, ``changelog`` and ``snapshot`` are assets keyed ``<prefix>_audit/<table>`` that
depend on every sync writing them (lineage). The sync's step reports a materialization of each
with the sync's row count in it (``dagster/row_count``) after its run, and the check
``audit_written`` on the sync's asset warns when rows of the run are still waiting in the
state store's outbox (the audit database could not be written; the next run writes them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from connector import SyncConfig
from connector.audit import audit_settings, audited, outbox, table_counts
from connector.audit.tables import CHANGELOG, RUNS, SNAPSHOT

from .resources import ConnectorResource

AUDIT_WRITTEN = "audit_written"
TABLES = (RUNS, CHANGELOG, SNAPSHOT)
DESCRIPTIONS = {
    RUNS: "One row per run and scope of each sync (docs/audit.md).",
    CHANGELOG: "One row per row a run handled: its operation, result and reason.",
    SNAPSHOT: "The latest result of every key of each sync (a view: contact keys however "
    "old, event keys while their changelog row is kept).",
}


def audit_key(prefix: str, table: str) -> dg.AssetKey:
    """The asset key of an audit table."""
    return dg.AssetKey([f"{prefix}_audit", table])


def audit_specs(audited_keys: Sequence[dg.AssetKey], prefix: str) -> list[dg.AssetSpec]:
    """The audit tables' specs, downstream of the syncs that write them (none: no spec)."""
    if not audited_keys:
        return []
    return [
        dg.AssetSpec(
            audit_key(prefix, table),
            deps=list(audited_keys),
            description=DESCRIPTIONS[table],
            group_name=f"{prefix}_audit",
            kinds={"sql"},
        )
        for table in TABLES
    ]


def audit_check_specs(sync: SyncConfig, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """``audit_written`` for a sync that writes audit tables."""
    if not audited(sync):
        return []
    return [
        dg.AssetCheckSpec(
            AUDIT_WRITTEN,
            asset=key,
            description="The run's audit rows are in the audit tables; warns while some wait "
            "in the state store for the next run (the audit database could not be written).",
        )
    ]


def audit_results(
    context: dg.AssetExecutionContext,
    sync: SyncConfig,
    connector: ConnectorResource,
    prefix: str,
    selected: Iterable[str],
) -> list[dg.AssetCheckResult]:
    """After a run: the audit tables' row counts (materializations) and the check."""
    if not audited(sync):
        return []
    state = connector.state()
    waiting = outbox.backlog(state, sync.name)
    try:
        settings = audit_settings(sync, connector.warehouse_for(sync))
        counts = table_counts(settings, sync.name) if settings is not None else {}
    except Exception as exc:  # noqa: BLE001 — counting never fails a run
        context.log.warning(f"{sync.name}: the audit tables were not counted: {exc}")
        counts = {}
    for table, n in counts.items():
        context.log_event(
            dg.AssetMaterialization(
                asset_key=audit_key(prefix, table),
                metadata={"dagster/row_count": n, "sync": sync.name},
            )
        )
    if AUDIT_WRITTEN not in set(selected):
        return []
    return [
        dg.AssetCheckResult(
            check_name=AUDIT_WRITTEN,
            passed=waiting == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                "every audit row of the sync is in the audit tables"
                if waiting == 0
                else f"{waiting:,} audit rows wait in the state store: the audit database "
                "could not be written (see the run's warnings); the next run writes them"
            ),
            metadata={"rows_waiting": waiting, **{f"{t}_rows": n for t, n in counts.items()}},
        )
    ]
