"""The asset checks of each kind of sync, evaluated in the sync's own step.

- an event sync: ``reject_ratio`` (rejected / rows seen) and ``checkpoint_freshness`` (the
  newest delivered cursor against the newest source row);
- a contact sync (no cursor, a state diffed each run): ``reject_ratio`` (rows the vendor
  refused / rows that needed sending), ``changed_ratio`` (changed / previously confirmed rows)
  and ``removed_rows`` (confirmed contacts whose source row vanished);
- a broken sync file: ``config_valid`` (``factory``).

Thresholds live in the check descriptions and the sync file, not in the check metadata: the
metadata holds what was measured, so the UI plots measurements only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from connector import ConnectorError, SyncConfig, SyncResult
from connector.report.health import (
    FreshnessState,
    Level,
    Share,
    Totals,
    contact_shares,
    measure_freshness,
    reject_ratio,
)

from .resources import ConnectorResource

REJECT_RATIO = "reject_ratio"
CHECKPOINT_FRESHNESS = "checkpoint_freshness"
CHANGED_RATIO = "changed_ratio"
REMOVED_ROWS = "removed_rows"
CONFIG_VALID = "config_valid"

_SEVERITY = {
    Level.OK: dg.AssetCheckSeverity.ERROR,  # a passing check keeps Dagster's default
    Level.WARN: dg.AssetCheckSeverity.WARN,
    Level.ERROR: dg.AssetCheckSeverity.ERROR,
}


def check_specs(sync: SyncConfig, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks of a sync's asset, by kind (see the module doc)."""
    c = sync.checks
    if sync.is_contact_sync:
        return [
            dg.AssetCheckSpec(
                REJECT_RATIO,
                asset=key,
                description=f"Rows the vendor refused / rows that needed sending (added or "
                f"changed) in a run: warn above {c.reject_ratio_warn:.1%}, error above "
                f"{c.reject_ratio_error:.1%} (checks.reject_ratio_warn / _error).",
            ),
            dg.AssetCheckSpec(
                CHANGED_RATIO,
                asset=key,
                description=f"Changed rows / rows the vendor had confirmed before, in a run: warn "
                f"above {c.changed_ratio_warn:.0%} (checks.changed_ratio_warn). Many at once "
                "is usually a mapping change or a rebuilt source table re-sending everything.",
            ),
            dg.AssetCheckSpec(
                REMOVED_ROWS,
                asset=key,
                description=f"Confirmed contacts whose source row vanished / all confirmed ones, "
                f"in a run: warn above {c.removed_ratio_warn:.0%}, error above "
                f"{c.removed_ratio_error:.0%} (checks.removed_ratio_warn / _error): an emptied "
                "or half-loaded source table?",
            ),
        ]
    specs = [
        dg.AssetCheckSpec(
            REJECT_RATIO,
            asset=key,
            description=f"Rejected rows / rows read in a run: warn above "
            f"{c.reject_ratio_warn:.1%}, error above {c.reject_ratio_error:.1%} "
            "(checks.reject_ratio_warn / _error).",
        )
    ]
    if sync.source.cursor:
        specs.append(
            dg.AssetCheckSpec(
                CHECKPOINT_FRESHNESS,
                asset=key,
                description=f"The newest delivered {sync.source.cursor} is at most "
                f"{c.max_lag_hours:g} h behind the newest source row (warns otherwise; "
                "checks.max_lag_hours). Runs after each materialization, or alone (Execute).",
            )
        )
    return specs


def run_check_results(
    sync: SyncConfig, results: Sequence[SyncResult], t: Totals, *, dry_run: bool
) -> list[dg.AssetCheckResult]:
    """The checks judged on a run's counts: ``reject_ratio`` for an event sync, the three
    contact checks for a contact sync."""
    if sync.is_contact_sync:
        return [
            _share_result(name, s, dry_run=dry_run)
            for name, s in contact_shares(sync, results).items()
        ]
    return [reject_ratio_result(sync, t, dry_run=dry_run)]


def _share_result(name: str, s: Share, *, dry_run: bool) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=s.passed,
        severity=_SEVERITY[s.level],
        metadata={
            "ratio": dg.MetadataValue.float(round(s.ratio, 6)),
            "count": s.part,
            "of": s.whole,
            "dry_run": dry_run,
        },
        description=s.describe(),
    )


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
            "rejects_known": r.known,
            "rows_seen": r.seen,
            "dry_run": dry_run,
        },
        description=r.describe(sync.name),
    )


def freshness_result(sync: SyncConfig, connector: ConnectorResource) -> dg.AssetCheckResult:
    """The core's :func:`~connector.report.health.measure_freshness` as the
    ``checkpoint_freshness`` check (WARN severity); a store or warehouse that cannot be read
    fails it."""
    try:
        f = measure_freshness(sync, connector.state(), connector.warehouse_for(sync))
    except ConnectorError as exc:
        return dg.AssetCheckResult(
            check_name=CHECKPOINT_FRESHNESS, passed=False, description=f"could not measure: {exc}"
        )
    metadata: dict[str, Any] = {
        "newest_source_cursor": str(f.newest_source),
        "newest_delivered_cursor": str(f.newest_delivered),
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
