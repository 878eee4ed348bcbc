"""The asset checks of each kind of sync, evaluated in the sync's own step.

- an event sync: ``reject_ratio`` (rejected / rows seen), ``checkpoint_freshness`` (the
  newest delivered cursor against the newest source row) and ``nothing_missing`` (the source's
  rows per day up to the checkpoint against the rows the sync handled: ``connector reconcile``;
  off with ``checks.nothing_missing: false``);
- a contact sync (no cursor, a state diffed each run): ``reject_ratio`` (rows the vendor
  refused / rows that needed sending), ``changed_ratio`` (changed / previously confirmed rows)
  and ``removed_rows`` (confirmed contacts whose source row vanished);
- a contact sync with a ``verify:`` block: ``landed_as_sent`` (a sample of confirmed contacts
  read back from the vendor and compared with the warehouse, ``connector.verify``);
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
NOTHING_MISSING = "nothing_missing"
LANDED_AS_SENT = "landed_as_sent"
_SHOWN_DIFFERENCES = 100  # differences listed in the check's metadata

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
            *_landed_spec(sync, key),
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
    if c.nothing_missing:
        specs.append(
            dg.AssetCheckSpec(
                NOTHING_MISSING,
                asset=key,
                description="Every source row up to the checkpoint was delivered or rejected: "
                "source rows per day (one GROUP BY a scope) against the rows the sync handled "
                "(connector reconcile). Warns with the periods of rows the sync never handled; "
                "`connector reconcile NAME --send-missing` sends them. Off with "
                "checks.nothing_missing: false.",
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


def nothing_missing_result(
    sync: SyncConfig, connector: ConnectorResource, scopes: Sequence[str] | None = None
) -> dg.AssetCheckResult:
    """``connector reconcile`` as the ``nothing_missing`` check: WARN when a period of
    ``scopes`` (default: every scope with a checkpoint) holds rows the sync never handled,
    with those periods in the metadata; a store or warehouse that cannot be read, or a cursor
    reconcile cannot bucket, fails it (WARN)."""
    from connector.run.reconcile import reconcile

    try:
        report = reconcile(
            sync, connector.state(), warehouse_url=connector.warehouse_for(sync), scopes=scopes
        )
    except ConnectorError as exc:
        return dg.AssetCheckResult(
            check_name=NOTHING_MISSING,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"could not reconcile: {exc}",
        )
    missing = [{"scope": s, "period": p, "rows": n} for s, p, n in report.missing_periods()[:100]]
    gone = [{"scope": s, "period": p, "rows": n} for s, p, n in report.gone_periods()[:100]]
    metadata: dict[str, Any] = {
        "missing_rows": report.missing,
        "deleted_at_source_rows": report.gone,
        "source_rows": sum(s.source_rows for s in report.scopes),
        "handled_rows": sum(s.handled_rows for s in report.scopes),
    }
    if missing:
        metadata["missing_periods"] = dg.MetadataValue.json(missing)
    if gone:
        metadata["deleted_at_source_periods"] = dg.MetadataValue.json(gone)
    if report.missing:
        text = (
            f"{report.missing} source row(s) up to the checkpoint were never handled, in "
            f"{len(report.missing_periods())} period(s); send them with `connector reconcile "
            f"{sync.name} --send-missing`"
        )
    else:
        text = "every source row up to the checkpoint was delivered or rejected"
    if report.gone:
        text += f"; {report.gone} handled row(s) are no longer in the source (deleted)"
    return dg.AssetCheckResult(
        check_name=NOTHING_MISSING,
        passed=not report.missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=text,
    )


def _landed_spec(sync: SyncConfig, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """``landed_as_sent`` when the sync file enables it (``verify:``), else nothing."""
    if sync.verify is None:
        return []
    return [
        dg.AssetCheckSpec(
            LANDED_AS_SENT,
            asset=key,
            description=f"After each run, {sync.verify.sample} confirmed contacts read back from "
            "the vendor match the warehouse field by field (verify.sample; reads take "
            f"{sync.verify.read_share:.0%} of the account's rate). Fails with WARN when the only "
            "differences are changes made at the vendor or in the warehouse since; ERROR when a "
            "contact never landed or a field is not as sent. docs/verify.md.",
        )
    ]


def landed_as_sent_result(
    sync: SyncConfig, connector: ConnectorResource, runtime: Any = None
) -> dg.AssetCheckResult:
    """``connector verify`` of a sample as the ``landed_as_sent`` check; its metadata lists
    the differences (key, field, sent, found, kind)."""
    from connector.verify.report import CHANGED_AT_VENDOR, CHANGED_IN_WAREHOUSE
    from connector.verify.run import verify_sync

    cfg = sync.verify
    assert cfg is not None
    try:
        report = verify_sync(
            sync,
            connector.state(),
            sample=cfg.sample,
            share=cfg.read_share,
            runtime=runtime,
            warehouse_url=connector.warehouse_for(sync),
        )
    except ConnectorError as exc:
        return dg.AssetCheckResult(
            check_name=LANDED_AS_SENT, passed=False, description=f"could not verify: {exc}"
        )
    mild = {CHANGED_AT_VENDOR, CHANGED_IN_WAREHOUSE}
    warn_only = all(d.kind in mild for d in report.differences)
    rate = report.match_rate
    shown = [
        {"key": d.key, "field": d.field, "sent": d.sent, "found": d.found, "kind": d.kind}
        for d in report.differences[:_SHOWN_DIFFERENCES]
    ]
    metadata: dict[str, Any] = {
        "match_rate": dg.MetadataValue.float(round(rate, 6) if rate is not None else 0.0),
        "checked": report.checked,
        "matched": report.matched,
        "sampled": report.sampled,
        "gone_from_source": report.gone_from_source,
        "not_read_back": len(report.unreadable),
        "difference_counts": dg.MetadataValue.json(report.counts()),
        "differences": dg.MetadataValue.json(shown),
    }
    if report.ok:
        what = f"all {report.checked} contacts read back hold what the warehouse says"
    elif not report.checked:
        what = "nothing to compare: no confirmed contact could be read back"
    else:
        what = (
            f"{report.matched} of {report.checked} contacts as sent ({rate:.1%}); "
            f"{len(report.differences)} difference{'' if len(report.differences) == 1 else 's'}"
        )
    return dg.AssetCheckResult(
        check_name=LANDED_AS_SENT,
        passed=report.ok,
        severity=dg.AssetCheckSeverity.WARN
        if warn_only and report.checked
        else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=what,
    )
