"""What runs and checkpoints say, as numbers and verdicts: pure, shared by every front end.

- :func:`totals` sums the results of the scopes of one run (a Dagster run over several
  partitions, or a single CLI run);
- :func:`reject_ratio` judges rejected / seen rows against the sync's thresholds;
- :func:`freshness` measures how far the newest delivered cursor lags the newest source row;
- :func:`measure_freshness` reads the two cursors (state store and warehouse) and calls it;
- :func:`contact_shares` judges a contact run: rejects of the rows sent, changed and removed
  shares of the confirmed rows.

The Dagster layer (``dagster_defs``) only turns these into metadata and check results; the CLI
summary (``summary``) prints a result. Nothing here imports Dagster.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from ..config.sync_file import SyncConfig
    from ..run.sync import SyncResult
    from ..store.state import StateStore


@dataclass(frozen=True)
class Totals:
    """Counts summed over the scopes of one run.

    ``null_key_rows`` are rows with a NULL cursor or key: they belong to no time window, so only
    the first scope of a run counts them and the sum counts them once.
    """

    rows_read: int = 0
    delivered: int = 0
    rejected: int = 0
    null_key_rows: int = 0
    skipped: int = 0
    possibly_duplicated: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    rejects_retried: int = 0
    rejects_gone: int = 0
    rejects_deferred: int = 0
    rejects_known: int = 0  # of ``rejected``: refused again unchanged, left out of the ratio
    duration_s: float = 0.0

    @property
    def rows_per_s(self) -> float:
        """Rows read per second of run time, to one decimal (0.0 for a run that took no time)."""
        return round(self.rows_read / self.duration_s, 1) if self.duration_s else 0.0

    @property
    def rows_seen(self) -> int:
        """Rows the run judged: those read plus those with a NULL cursor or key (never read,
        always rejected)."""
        return self.rows_read + self.null_key_rows


_COUNTS = tuple(f for f in Totals.__dataclass_fields__ if f != "duration_s")


def totals(results: Iterable[SyncResult]) -> Totals:
    """The counts of ``results`` summed; the duration summed and rounded to milliseconds."""
    rs = list(results)
    sums = {name: sum(int(getattr(r, name)) for r in rs) for name in _COUNTS}
    return Totals(**sums, duration_s=round(sum(r.duration_s for r in rs), 3))


class Level(enum.Enum):
    """How a measure compares with its thresholds."""

    OK = "ok"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class RejectRatio:
    """Rejected / seen rows of a run, and its level against ``warn_above`` and ``error_above``.

    A run that read no row is OK whatever its NULL-key rows: those were judged by the run that
    read rows alongside them.
    """

    rejected: int
    seen: int
    ratio: float
    warn_above: float
    error_above: float
    level: Level
    known: int = 0  # rejects found again unchanged, not in ``rejected`` nor the ratio

    @property
    def passed(self) -> bool:
        """True when the ratio is at or below ``warn_above``."""
        return self.level is Level.OK

    def describe(self, sync_name: str) -> str:
        """One line for people: the counts, the ratio, the threshold, where to look."""
        limit = self.error_above if self.level is Level.ERROR else self.warn_above
        verdict = "within" if self.passed else "above"
        known = (
            f" ({self.known:,} known reject(s) found again unchanged, still open, not counted)"
            if self.known
            else ""
        )
        return (
            f"{self.rejected} of {self.seen} rows rejected ({self.ratio:.2%}), {verdict} "
            f"{limit:.2%}{known}; see `connector rejects {sync_name}`."
        )


def reject_ratio(t: Totals, *, warn_above: float, error_above: float) -> RejectRatio:
    """Judge the rejected share of the rows a run saw (see :class:`RejectRatio`)."""
    seen = t.rows_seen
    # A reject found again unchanged (still open and listed) was judged by the run that found
    # it first: it counts once, not in every later run's ratio.
    rejected = max(0, t.rejected - t.rejects_known)
    ratio = rejected / seen if t.rows_read and seen else 0.0
    if ratio > error_above:
        level = Level.ERROR
    elif ratio > warn_above:
        level = Level.WARN
    else:
        level = Level.OK
    return RejectRatio(rejected, seen, ratio, warn_above, error_above, level, t.rejects_known)


@dataclass(frozen=True)
class Share:
    """``part`` of ``whole`` as a ratio, and its level against ``warn_above`` and (when set)
    ``error_above``; ``what`` and ``of`` name both for people ("changed", "confirmed rows")."""

    what: str
    of: str
    part: int
    whole: int
    ratio: float
    warn_above: float
    error_above: float | None
    level: Level

    @property
    def passed(self) -> bool:
        """True when the ratio is at or below ``warn_above``."""
        return self.level is Level.OK

    def describe(self) -> str:
        """One line: the counts, the ratio and the threshold it is within or above."""
        limit = self.error_above if self.level is Level.ERROR else self.warn_above
        verdict = "within" if self.passed else "above"
        return (
            f"{self.part:,} of {self.whole:,} {self.of} {self.what} ({self.ratio:.2%}), "
            f"{verdict} {limit:.2%}"
        )


def share(
    what: str, of: str, part: int, whole: int, *, warn_above: float, error_above: float | None
) -> Share:
    """Judge ``part / whole`` (0 when ``whole`` is 0: nothing to judge)."""
    ratio = part / whole if whole else 0.0
    if error_above is not None and ratio > error_above:
        level = Level.ERROR
    elif ratio > warn_above:
        level = Level.WARN
    else:
        level = Level.OK
    return Share(what, of, part, whole, ratio, warn_above, error_above, level)


def contact_shares(sync: SyncConfig, results: Iterable[SyncResult]) -> dict[str, Share]:
    """The measures of a contact run (``ContactResult`` counts, summed), by check name.

    - ``reject_ratio``: rows the vendor refused of the rows that needed sending (added and
      changed; unchanged rows are not judged), against ``checks.reject_ratio_warn/error``;
    - ``changed_ratio``: changed rows of the rows the vendor had confirmed before (changed and
      unchanged), against ``checks.changed_ratio_warn`` — many at once is a mapping change or a
      rebuilt source table re-sending everything;
    - ``removed_rows``: confirmed contacts whose source row vanished, of all confirmed ones
      (changed, unchanged and removed), against ``checks.removed_ratio_warn/error``.
    """
    rs = list(results)

    def total(name: str) -> int:
        return sum(int(getattr(r, name, 0)) for r in rs)

    added, changed, unchanged = total("added"), total("changed"), total("unchanged")
    removed, rejected = total("removed"), total("rejected")
    c = sync.checks
    return {
        "reject_ratio": share(
            "rejected",
            "rows to send",
            rejected,
            added + changed,
            warn_above=c.reject_ratio_warn,
            error_above=c.reject_ratio_error,
        ),
        "changed_ratio": share(
            "changed",
            "confirmed rows",
            changed,
            changed + unchanged,
            warn_above=c.changed_ratio_warn,
            error_above=None,
        ),
        "removed_rows": share(
            "vanished from the source",
            "confirmed contacts",
            removed,
            changed + unchanged + removed,
            warn_above=c.removed_ratio_warn,
            error_above=c.removed_ratio_error,
        ),
    }


class FreshnessState(enum.Enum):
    """What could be measured about a sync's lag."""

    EMPTY_SOURCE = "empty_source"  # the source has no rows: nothing to lag behind
    NOTHING_DELIVERED = "nothing_delivered"  # rows exist, no checkpoint in any scope
    NOT_A_TIME = "not_a_time"  # an integer cursor: lag in cursor units, no time threshold
    NO_CURSOR = "no_cursor"  # no cursor (a contact sync reads every row): no lag to measure
    MEASURED = "measured"  # lag in hours against ``max_lag_hours``


@dataclass(frozen=True)
class Freshness:
    """How far the newest delivered cursor (any scope) lags the newest source row."""

    state: FreshnessState
    newest_source: Any
    newest_delivered: Any
    max_lag_hours: float
    lag_hours: float | None = None
    lag_units: Any = None
    cursor: str = ""

    @property
    def passed(self) -> bool:
        """False when nothing was delivered yet or the lag is over ``max_lag_hours``."""
        if self.state is FreshnessState.NOTHING_DELIVERED:
            return False
        if self.state is FreshnessState.MEASURED:
            return self.lag_hours is not None and self.lag_hours <= self.max_lag_hours
        return True

    def describe(self) -> str:
        """One line for people: the lag and the threshold, or why there is none."""
        if self.state is FreshnessState.EMPTY_SOURCE:
            return "the source has no rows yet"
        if self.state is FreshnessState.NOTHING_DELIVERED:
            return "nothing delivered yet; materialize the sync"
        if self.state is FreshnessState.NOT_A_TIME:
            return f"cursor {self.cursor} is not a time; lag {self.lag_units} units"
        if self.state is FreshnessState.NO_CURSOR:
            return "the sync has no cursor (every run reads every row); freshness does not apply"
        return (
            f"high-water mark {self.lag_hours:.1f} h behind the newest source row "
            f"({'within' if self.passed else 'over'} {self.max_lag_hours:g} h)"
        )


def as_utc(value: Any, zone: str) -> datetime | None:
    """A cursor value as an aware UTC datetime: naive times and dates are read in ``zone``;
    None for values that are not times (integer cursors)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=ZoneInfo(zone))
    return None


def freshness(
    newest_source: Any,
    checkpoints: Mapping[str, Sequence[Any] | None],
    *,
    zone: str,
    max_lag_hours: float,
    cursor: str = "",
) -> Freshness:
    """Measure the lag of the newest checkpoint cursor of any scope behind ``newest_source``.

    ``checkpoints`` maps scope → position ``(cursor, *pk)``; times are compared in UTC (naive
    ones read in ``zone``), a negative lag counts as 0. Integer cursors give a lag in cursor
    units and always pass.
    """
    delivered = [pos[0] for pos in checkpoints.values() if pos and pos[0] is not None]
    newest_delivered = max(delivered, default=None)
    base = {
        "newest_source": newest_source,
        "newest_delivered": newest_delivered,
        "max_lag_hours": max_lag_hours,
        "cursor": cursor,
    }
    if newest_source is None:
        return Freshness(FreshnessState.EMPTY_SOURCE, **base)
    if newest_delivered is None:
        return Freshness(FreshnessState.NOTHING_DELIVERED, **base)
    src, dst = as_utc(newest_source, zone), as_utc(newest_delivered, zone)
    if src is None or dst is None:
        return Freshness(
            FreshnessState.NOT_A_TIME, **base, lag_units=newest_source - newest_delivered
        )
    lag = max(0.0, (src - dst).total_seconds() / 3600)
    return Freshness(FreshnessState.MEASURED, **base, lag_hours=lag)


def measure_freshness(sync: SyncConfig, state: StateStore, warehouse_url: str | None) -> Freshness:
    """Read the sync's checkpoints and the source's newest cursor, then :func:`freshness`.

    A sync without a cursor (a contact sync that reads every row each run) has no high-water
    mark to lag: it gets ``FreshnessState.NO_CURSOR`` (passed) without reading anything.

    Raises ``ConnectorError`` (``StateError``, ``SourceError``) when either cannot be read.
    """
    if sync.source.cursor is None:
        return Freshness(
            FreshnessState.NO_CURSOR, None, None, max_lag_hours=sync.checks.max_lag_hours
        )
    from ..read.source import Reader  # pyarrow and the warehouse driver: only when measured

    checkpoints = state.checkpoints_for(sync.name)
    with Reader(sync, warehouse_url) as reader:
        newest_source = reader.max_cursor()
    return freshness(
        newest_source,
        checkpoints,
        zone=sync.source.timezone,
        max_lag_hours=sync.checks.max_lag_hours,
        cursor=sync.source.cursor,
    )
