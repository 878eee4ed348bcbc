"""Asset checks shown next to each sync: reject ratio, checkpoint freshness, config validity."""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import dagster as dg

from connector import ConnectorError, Reader, SyncConfig

from .resources import ConnectorResource
from .scopes import Scope, totals

if TYPE_CHECKING:
    from connector import SyncResult

REJECT_RATIO = "reject_ratio"
CHECKPOINT_FRESHNESS = "checkpoint_freshness"
CONFIG_VALID = "config_valid"


def reject_ratio_result(
    sync: SyncConfig, results: Sequence[tuple[Scope, "SyncResult"]], dry_run: bool
) -> dg.AssetCheckResult:
    """Rejected / seen rows of this run against ``checks.reject_ratio_warn`` and ``_error``.

    Seen rows are the rows read plus the rows with a NULL cursor or key (never read, always
    rejected). A run that read nothing passes: its NULL-key rows were judged by the run that
    read rows alongside them.
    """
    t = totals(results)
    rows_read, rejected = int(t["rows_read"]), int(t["rejected"])
    seen = rows_read + int(t["null_key_rows"])
    ratio = rejected / seen if rows_read and seen else 0.0
    cfg = sync.checks
    metadata: dict[str, Any] = {
        "reject_ratio": dg.MetadataValue.float(round(ratio, 6)),
        "rejected": rejected,
        "rows_seen": seen,
        "warn_above": dg.MetadataValue.float(cfg.reject_ratio_warn),
        "error_above": dg.MetadataValue.float(cfg.reject_ratio_error),
        "dry_run": dry_run,
    }
    if ratio > cfg.reject_ratio_error:
        severity, passed = dg.AssetCheckSeverity.ERROR, False
    elif ratio > cfg.reject_ratio_warn:
        severity, passed = dg.AssetCheckSeverity.WARN, False
    else:
        severity, passed = dg.AssetCheckSeverity.ERROR, True
    verdict = "within" if passed else "above"
    limit = (
        cfg.reject_ratio_warn
        if passed or severity == dg.AssetCheckSeverity.WARN
        else cfg.reject_ratio_error
    )
    return dg.AssetCheckResult(
        check_name=REJECT_RATIO,
        passed=passed,
        severity=severity,
        metadata=metadata,
        description=f"{rejected} of {seen} rows rejected ({ratio:.2%}), {verdict} "
        f"{limit:.2%}; see `connector rejects {sync.name}`.",
    )


def _as_utc(value: Any, zone: str) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=ZoneInfo(zone))
    return None


def freshness_result(sync: SyncConfig, connector: ConnectorResource) -> dg.AssetCheckResult:
    """How far the newest delivered cursor (any scope) lags the newest source row."""
    try:
        checkpoints = connector.state().checkpoints_for(sync.name)
        with Reader(sync, connector.warehouse_for(sync)) as reader:
            newest_source = reader.max_cursor()
    except ConnectorError as exc:
        return dg.AssetCheckResult(
            check_name=CHECKPOINT_FRESHNESS, passed=False, description=f"could not measure: {exc}"
        )
    delivered = [pos[0] for pos in checkpoints.values() if pos and pos[0] is not None]
    newest_delivered = max(delivered, default=None)
    max_lag = sync.checks.max_lag_hours
    metadata: dict[str, Any] = {
        "newest_source_cursor": str(newest_source),
        "newest_delivered_cursor": str(newest_delivered),
        "max_lag_hours": dg.MetadataValue.float(max_lag),
    }
    if newest_source is None:
        return dg.AssetCheckResult(
            check_name=CHECKPOINT_FRESHNESS,
            passed=True,
            metadata=metadata,
            description="the source has no rows yet",
        )
    if newest_delivered is None:
        return dg.AssetCheckResult(
            check_name=CHECKPOINT_FRESHNESS,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description="nothing delivered yet; materialize the sync",
        )
    src, dst = (
        _as_utc(newest_source, sync.source.timezone),
        _as_utc(newest_delivered, sync.source.timezone),
    )
    if src is None or dst is None:  # integer cursor: lag in cursor units, no time threshold
        lag_units = newest_source - newest_delivered
        metadata["lag_cursor_units"] = lag_units
        return dg.AssetCheckResult(
            check_name=CHECKPOINT_FRESHNESS,
            passed=True,
            metadata=metadata,
            description=f"cursor {sync.source.cursor} is not a time; lag {lag_units} units",
        )
    lag_hours = max(0.0, (src - dst).total_seconds() / 3600)
    metadata["lag_hours"] = dg.MetadataValue.float(round(lag_hours, 3))
    passed = lag_hours <= max_lag
    return dg.AssetCheckResult(
        check_name=CHECKPOINT_FRESHNESS,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"high-water mark {lag_hours:.1f} h behind the newest source row "
        f"({'within' if passed else 'over'} {max_lag:g} h)",
    )


def build_freshness_check(sync: SyncConfig, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name=CHECKPOINT_FRESHNESS,
        description=f"The newest delivered {sync.source.cursor} is at most "
        f"{sync.checks.max_lag_hours:g} h behind the newest source row (warns otherwise).",
    )
    def _freshness(connector: ConnectorResource) -> dg.AssetCheckResult:
        return freshness_result(sync, connector)

    return _freshness
