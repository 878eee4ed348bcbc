"""Asset checks shown next to each sync: reject ratio, checkpoint freshness, config validity."""

from typing import Any

import dagster as dg

from connector import ConnectorError, SyncConfig
from connector.report.health import (
    FreshnessState,
    Level,
    Totals,
    measure_freshness,
    reject_ratio,
)

from .resources import ConnectorResource

REJECT_RATIO = "reject_ratio"
CHECKPOINT_FRESHNESS = "checkpoint_freshness"
CONFIG_VALID = "config_valid"

_SEVERITY = {
    Level.OK: dg.AssetCheckSeverity.ERROR,  # a passing check keeps Dagster's default
    Level.WARN: dg.AssetCheckSeverity.WARN,
    Level.ERROR: dg.AssetCheckSeverity.ERROR,
}


def reject_ratio_result(sync: SyncConfig, t: Totals, *, dry_run: bool) -> dg.AssetCheckResult:
    """The core's :func:`~connector.report.health.reject_ratio` of a run's totals as the
    ``reject_ratio`` check: failed with WARN or ERROR severity above the sync's thresholds."""
    r = reject_ratio(
        t, warn_above=sync.checks.reject_ratio_warn, error_above=sync.checks.reject_ratio_error
    )
    return dg.AssetCheckResult(
        check_name=REJECT_RATIO,
        passed=r.passed,
        severity=_SEVERITY[r.level],
        metadata={
            "reject_ratio": dg.MetadataValue.float(round(r.ratio, 6)),
            "rejected": r.rejected,
            "rows_seen": r.seen,
            "warn_above": dg.MetadataValue.float(r.warn_above),
            "error_above": dg.MetadataValue.float(r.error_above),
            "dry_run": dry_run,
        },
        description=r.describe(sync.name),
    )


def freshness_result(sync: SyncConfig, connector: ConnectorResource) -> dg.AssetCheckResult:
    """The core's :func:`~connector.report.health.measure_freshness` as the ``checkpoint_freshness``
    check (WARN severity); a store or warehouse that cannot be read fails it."""
    try:
        f = measure_freshness(sync, connector.state(), connector.warehouse_for(sync))
    except ConnectorError as exc:
        return dg.AssetCheckResult(
            check_name=CHECKPOINT_FRESHNESS, passed=False, description=f"could not measure: {exc}"
        )
    metadata: dict[str, Any] = {
        "newest_source_cursor": str(f.newest_source),
        "newest_delivered_cursor": str(f.newest_delivered),
        "max_lag_hours": dg.MetadataValue.float(f.max_lag_hours),
    }
    if f.state is FreshnessState.NOT_A_TIME:
        metadata["lag_cursor_units"] = f.lag_units
    if f.lag_hours is not None:
        metadata["lag_hours"] = dg.MetadataValue.float(round(f.lag_hours, 3))
    warns = f.state in (FreshnessState.NOTHING_DELIVERED, FreshnessState.MEASURED)
    return dg.AssetCheckResult(
        check_name=CHECKPOINT_FRESHNESS,
        passed=f.passed,
        severity=dg.AssetCheckSeverity.WARN if warns else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=f.describe(),
    )


def build_freshness_check(sync: SyncConfig, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    """The ``checkpoint_freshness`` asset check of a sync's asset ``key`` (see
    ``freshness_result``)."""

    @dg.asset_check(
        asset=key,
        name=CHECKPOINT_FRESHNESS,
        description=(
            f"The newest delivered {sync.source.cursor} is at most "
            f"{sync.checks.max_lag_hours:g} h behind the newest source row (warns otherwise)."
            if sync.source.cursor
            else "Not applicable: the sync has no cursor, so every run reads every row."
        ),
    )
    def _freshness(connector: ConnectorResource) -> dg.AssetCheckResult:
        return freshness_result(sync, connector)

    return _freshness
