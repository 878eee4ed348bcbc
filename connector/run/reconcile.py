"""``connector reconcile``: what the source holds now, per period, against what the sync handled.

For each scope with a checkpoint, one ``GROUP BY`` query counts the source rows per period of
the cursor up to the checkpoint (the period expression is the warehouse module's ``period``);
the state store has the rows each run delivered or rejected per period (``store.periods``,
added as batches settle). A period where the source holds more rows than were handled has
*missing* rows (a late commit beyond the lookback window, a row inserted with an old cursor, a
bug); one with more handled than the source holds had rows *deleted (or moved) at the source*.
A deletion and a missing row in the same period cancel out in the counts.

``send_missing`` re-sends every row of each missing period through the normal event run (read,
map, plan, ledger, settle): the state store keeps no per-key record of delivered events, so
the rows cannot be told apart by key. Each row goes with its usual dedup id, so a vendor that
deduplicates (``limits.dedup``) stores only the rows it never had; for one that does not, it is
refused unless the caller accepts duplicates. The re-send is a run in its own checkpoint scope
``reconcile:<scope>:<period>`` (the scope's checkpoint never moves back) whose counts go to the
reconciled scope and period, zeroed in its first settle: afterwards the period's counts are
every row of it, handled once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError
from ..deliver.delivery import Runtime
from ..deliver.factory import make_event_destination
from ..plan.ledger import DELIVERED
from ..read.source import Position, Reader, Window
from ..store.periods import FORMATS, ID_BUCKET, keys_within, rollup
from ..store.schema import batches, checkpoints
from ..store.state import INCREMENTAL, StateStore
from .events import EventRun
from .result import SyncResult
from .shell import RunShell

UNITS = ("hour", "day", "month")
RESEND_PREFIX = "reconcile:"


@dataclass(frozen=True)
class PeriodDiff:
    """One period whose source count differs from the rows the sync handled in it."""

    period: str
    source: int
    delivered: int
    rejected: int

    @property
    def missing(self) -> int:
        """Source rows the sync never handled."""
        return max(self.source - self.delivered - self.rejected, 0)

    @property
    def gone(self) -> int:
        """Rows handled that the source no longer holds (deleted, or their cursor moved)."""
        return max(self.delivered + self.rejected - self.source, 0)


@dataclass
class ScopeReport:
    """The comparison of one scope, up to its checkpoint."""

    scope: str
    checkpoint: Position | None  # None: the first batch has not settled yet
    kind: str  # the cursor's kind
    source_rows: int = 0
    handled_rows: int = 0
    since: Position | None = None  # the baseline: rows up to it were handled before counting
    periods: list[PeriodDiff] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Rows missing in this scope."""
        return sum(p.missing for p in self.periods)

    @property
    def gone(self) -> int:
        """Rows deleted at the source in this scope."""
        return sum(p.gone for p in self.periods)


@dataclass
class Reconciliation:
    """What ``reconcile`` found for one sync."""

    sync: str
    unit: str
    scopes: list[ScopeReport] = field(default_factory=list)

    @property
    def missing(self) -> int:
        """Rows missing in every scope."""
        return sum(s.missing for s in self.scopes)

    @property
    def gone(self) -> int:
        """Rows deleted at the source in every scope."""
        return sum(s.gone for s in self.scopes)

    def missing_periods(self) -> list[tuple[str, str, int]]:
        """(scope, period, rows) of every period with missing rows."""
        return [(s.scope, p.period, p.missing) for s in self.scopes for p in s.periods if p.missing]

    def gone_periods(self) -> list[tuple[str, str, int]]:
        """(scope, period, rows) of every period with rows deleted at the source."""
        return [(s.scope, p.period, p.gone) for s in self.scopes for p in s.periods if p.gone]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "sync": self.sync,
            "period": self.unit,
            "missing": self.missing,
            "deleted_at_source": self.gone,
            "scopes": [
                {
                    "scope": s.scope,
                    "checkpoint": None if s.checkpoint is None else [str(v) for v in s.checkpoint],
                    "source_rows": s.source_rows,
                    "handled_rows": s.handled_rows,
                    "periods": [
                        {
                            "period": p.period,
                            "source": p.source,
                            "delivered": p.delivered,
                            "rejected": p.rejected,
                            "missing": p.missing,
                            "deleted_at_source": p.gone,
                        }
                        for p in s.periods
                    ],
                }
                for s in self.scopes
            ],
        }


class PeriodReader(Reader):
    """A reader that counts rows per period, and (``limit_to``) reads one period's rows only."""

    _range: tuple[Any, Any, Position] | None = None
    _since: Position | None = None

    def cursor_kind(self) -> str:
        """The cursor's kind; a config error when reconcile cannot bucket it."""
        self.check_columns()
        kind = self.column_types().get(self.cursor, "other")
        if kind not in {"timestamptz", "timestamp", "date", "integer"}:
            raise ConfigError(
                f"{self.sync.source_path or self.sync.name}: reconcile counts rows per period "
                f"of a time, date or integer cursor; {self.cursor} is {kind}"
            )
        return kind

    def counts(
        self,
        upto: Position | None,
        window: Window | None,
        unit: str,
        beyond: Sequence[tuple[Position, Position]] = (),
        since: Position | None = None,
    ) -> dict[str, int]:
        """Source rows per period up to ``upto``, and in the ``beyond`` ranges (batches an
        interrupted run settled past its checkpoint), after ``since`` (the baseline): one
        ``GROUP BY`` query."""
        kind = self.cursor_kind()
        expr = self.warehouse.period(self._q(self.cursor), kind, unit).label("period")
        handled = [] if upto is None else [self.compare(upto, "<=", "r")]
        for i, (first, last) in enumerate(beyond):
            handled.append(
                sa.and_(self.compare(first, ">=", f"f{i}"), self.compare(last, "<=", f"l{i}"))
            )
        if not handled:
            return {}
        where = [self._not_null(), sa.or_(*handled)]
        if since is not None:
            where.append(self.compare(since, ">", "s"))
        if window is not None:
            where.append(self._window(window))
        stmt = (
            sa.select(expr, sa.func.count()).select_from(self._from()).where(*where).group_by(expr)
        )
        out: dict[str, int] = {}
        for value, n in self._rows(stmt):
            if value is None:
                continue
            key = period_key(value, unit)
            out[key] = out.get(key, 0) + int(n)
        return out

    def limit_to(self, low: Any, high: Any, upto: Position, since: Position | None) -> None:
        """Read only rows with ``low <= cursor < high``, ``(cursor, pk) <= upto`` and, with a
        baseline, ``(cursor, pk) > since``."""
        self._range = (low, high, upto)
        self._since = since

    def _where(self, after: Position | None, window: Window | None) -> list[Any]:
        where = super()._where(after, window)
        if self._range is not None:
            low, high, upto = self._range
            col, bind = self._q(self.cursor), self.warehouse.bind
            where += [
                col >= sa.bindparam("rlo", bind(low)),
                col < sa.bindparam("rhi", bind(high)),
                self.compare(upto, "<=", "r"),
            ]
            if self._since is not None:
                where.append(self.compare(self._since, ">", "s"))
        return where


def period_key(value: Any, unit: str) -> str:
    """A warehouse's period value (date, time, ISO text or a bucket's first id) as its key."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime(FORMATS[unit])
    if isinstance(value, date):
        return value.strftime(FORMATS["month" if unit == "month" else "day"])
    if isinstance(value, (int, float, Decimal)):
        return str(int(value))
    text = str(value).replace(" ", "T")
    return text[: {"hour": 13, "day": 10, "month": 7}[unit]]


def period_bounds(period: str, kind: str, unit: str) -> tuple[Any, Any]:
    """The cursor range ``[low, high)`` of a period key."""
    if kind == "integer":
        low = int(period)
        return low, low + ID_BUCKET
    if unit == "month":
        start = datetime.strptime(period + "-01", "%Y-%m-%d")
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    else:
        start = datetime.strptime(period, FORMATS[unit])
        end = start + (timedelta(hours=1) if unit == "hour" else timedelta(days=1))
    if kind == "date":
        return start.date(), end.date()
    if kind == "timestamptz":
        return start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    return start, end


def scope_window(sync: SyncConfig, scope: str) -> Window | None:
    """The event-time window of a ``partition:<key>`` scope (Dagster's partition key
    formats: ``2026-11-01`` daily, ``2026-11-01-13:00`` hourly), None for other scopes."""
    if not scope.startswith("partition:") or sync.partitions is None:
        return None
    key, parts = scope.removeprefix("partition:"), sync.partitions
    hourly = parts.period == "hourly"
    try:
        start = datetime.strptime(key, "%Y-%m-%d-%H:%M" if hourly else "%Y-%m-%d")
    except ValueError:
        raise ConfigError(f"{sync.name}: scope {scope}: not a partition key of this sync") from None
    start = start.replace(tzinfo=ZoneInfo(parts.timezone))
    return Window(start, start + (timedelta(hours=1) if hourly else timedelta(days=1)))


def reconcile(
    sync: SyncConfig,
    state: StateStore,
    *,
    scope: str | None = None,
    unit: str | None = None,
    warehouse_url: str | None = None,
    scopes: Sequence[str] | None = None,
) -> Reconciliation:
    """Compare the source's rows per period with the rows the sync handled, in ``scope`` (or
    ``scopes`` that have a checkpoint, or every scope with a checkpoint, re-send scopes
    aside)."""
    if sync.is_contact_sync:
        raise ConfigError(
            f"{sync.name} is a contact sync: each run compares the whole source with what the "
            "vendor confirmed, so reconcile does not apply"
        )
    marks = state.checkpoints_for(sync.name)
    every = set(marks) | set(state.period_scopes(sync.name))
    names = [scope] if scope is not None else sorted(every if scopes is None else scopes)
    names = [s for s in names if not s.startswith(RESEND_PREFIX)]
    reader = PeriodReader(sync, warehouse_url)
    try:
        kind = reader.cursor_kind()
        unit = check_unit(kind, unit)
        report = Reconciliation(sync.name, unit)
        for name in names:
            upto = marks.get(name)
            if name not in every:
                if scope is not None and scope != INCREMENTAL:
                    raise ConfigError(f"{sync.name}: scope {scope} has no checkpoint")
                continue
            # Batches an interrupted run settled past the checkpoint are counted: so are
            # their rows at the source (the ledger keeps their ranges until it passes them).
            beyond = [
                (e.first, e.last) for e in state.ledger(sync.name, name) if e.status == DELIVERED
            ]
            since = state.period_baseline(sync.name, name)
            source = reader.counts(upto, scope_window(sync, name), unit, beyond, since)
            found = _compare(state, sync.name, name, upto, kind, unit, source)
            found.since = since
            report.scopes.append(found)
    finally:
        reader.close()
    return report


def check_unit(kind: str, unit: str | None) -> str:
    """The period unit for a cursor kind (day by default; integers are buckets of ids)."""
    if kind == "integer":
        if unit not in (None, "day"):
            raise ConfigError(
                f"an integer cursor is counted in buckets of {ID_BUCKET:,} ids; --period "
                "applies to time and date cursors only"
            )
        return "day"  # unused: an integer period is its bucket
    unit = unit or "day"
    if unit not in UNITS:
        raise ConfigError(f"--period {unit}: use one of {', '.join(UNITS)}")
    if kind == "date" and unit == "hour":
        raise ConfigError("a date cursor has no hours: use --period day or month")
    return unit


def _compare(
    state: StateStore,
    sync: str,
    scope: str,
    upto: Position | None,
    kind: str,
    unit: str,
    source: dict[str, int],
) -> ScopeReport:
    handled = rollup(state.period_counts(sync, scope), unit)
    report = ScopeReport(scope, upto, kind)
    for key in sorted(set(source) | set(handled), key=lambda k: _order(k, kind)):
        d, r = handled.get(key, (0, 0))
        n = source.get(key, 0)
        report.source_rows += n
        report.handled_rows += d + r
        if n != d + r:
            report.periods.append(PeriodDiff(key, n, d, r))
    return report


def _order(key: str, kind: str) -> Any:
    return int(key) if kind == "integer" else key


# -- sending the missing rows ----------------------------------------------------------------
def send_missing(
    sync: SyncConfig,
    state: StateStore,
    report: Reconciliation,
    *,
    warehouse_url: str | None = None,
    runtime: Runtime | None = None,
    accept_duplicates: bool = False,
) -> list[tuple[str, str, SyncResult]]:
    """Re-send every row of each missing period through the normal event run (see the module
    doc); returns (scope, period, result) per period. A ``ConfigError`` when the destination
    does not deduplicate and duplicates were not accepted."""
    wanted = report.missing_periods()
    if not wanted:
        return []
    if (
        not make_event_destination(sync, resolve_secret=False).limits.dedup
        and not accept_duplicates
    ):
        raise ConfigError(resend_refusal(sync, report))
    runtime = runtime or Runtime()
    out = []
    by_scope = {s.scope: s for s in report.scopes}
    for scope, period, _ in wanted:
        if by_scope[scope].checkpoint is None:
            continue  # the scope's first batch never settled: its next run reads every row
        result = _resend(sync, state, by_scope[scope], period, report.unit, warehouse_url, runtime)
        out.append((scope, period, result))
    return out


def resend_refusal(sync: SyncConfig, report: Reconciliation) -> str:
    """Why the rows are not re-sent to a destination that does not deduplicate, and the
    command that would send them anyway."""
    periods = ", ".join(f"{p} ({s})" for s, p, _ in report.missing_periods())
    return (
        f"{sync.name}: destination {sync.destination.type} does not deduplicate events, and "
        "the state store keeps no per-key record of delivered events: re-sending the missing "
        f"periods ({periods}) would also send again the rows the vendor already holds. To "
        "send them anyway (the already delivered rows of those periods are duplicated): "
        f"connector reconcile {sync.name} --period {report.unit} --send-missing "
        "--accept-duplicates"
    )


def _resend(
    sync: SyncConfig,
    state: StateStore,
    scope: ScopeReport,
    period: str,
    unit: str,
    warehouse_url: str | None,
    runtime: Runtime,
) -> SyncResult:
    name = f"{RESEND_PREFIX}{scope.scope}:{period}"
    run = EventRun(
        sync,
        make_event_destination(sync),
        state,
        name,
        dry_run=False,
        full_refresh=False,
        window=scope_window(sync, scope.scope),
        limit=None,
        runtime=runtime,
        warehouse_url=warehouse_url,
        check_null_keys=False,
    )
    run.reader.close()
    reader = PeriodReader(sync, warehouse_url)
    low, high = period_bounds(period, scope.kind, unit)
    assert scope.checkpoint is not None  # (send_missing skips the others)
    reader.limit_to(low, high, scope.checkpoint, scope.since)
    run.reader = reader
    run.period_scope = scope.scope
    if state.checkpoint(sync.name, name) is None:  # a fresh re-send counts the period anew
        run.period_reset = keys_within(state.period_counts(sync.name, scope.scope), period, unit)
    shell = RunShell(state, run.result, run.stats, dry_run=False, clock=runtime.clock)
    try:
        result = shell.execute(run)
    finally:
        reader.close()
    state.adopt_window(sync.name, name, scope.scope)
    _forget_progress(state, sync.name, name)
    return result


def _forget_progress(state: StateStore, sync: str, scope: str) -> None:
    """The re-send is done: drop its checkpoint and ledger rows (its rejects stay; its
    lookback rows joined its scope's), so a later re-send of the same period starts afresh."""
    with state.engine.begin() as c:
        for table in (checkpoints, batches):
            c.execute(table.delete().where(table.c.sync == sync, table.c.scope == scope))


def describe(report: Reconciliation) -> Sequence[str]:
    """The report as lines for the terminal."""
    lines = []
    for s in report.scopes:
        upto = "no checkpoint yet" if s.checkpoint is None else f"checkpoint {s.checkpoint[0]}"
        lines.append(
            f"{report.sync} [{s.scope}] up to {upto}: "
            f"{s.source_rows} source rows, {s.handled_rows} handled"
        )
        for p in s.periods:
            what = (
                f"{p.missing} missing (never handled)"
                if p.missing
                else f"{p.gone} deleted at the source"
            )
            lines.append(
                f"  {p.period}: source {p.source}, delivered {p.delivered}, "
                f"rejected {p.rejected}: {what}"
            )
    if not report.scopes:
        lines.append(f"{report.sync}: no scope has a checkpoint yet; nothing to compare")
    lines.append(
        f"{report.missing} row(s) missing, {report.gone} deleted at the source"
        if report.missing or report.gone
        else "nothing missing"
    )
    return lines
