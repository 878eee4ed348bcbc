"""Rows handled per period (``connector_periods``): what ``connector reconcile`` compares with
the source.

One small row per (sync, scope, period): how many source rows of that period a run delivered
and how many it rejected. The counts are added in the transaction that settles their batch
(``LedgerStore.settle``), so they move with the checkpoint and a crash can neither lose nor
double them. Not a row per key: the table stays as small as the number of periods.

A period is a text key of the row's cursor value, at the finest grain reconcile reports:

- a time cursor (``timestamptz`` in UTC, a naive ``timestamp`` as its wall-clock value): the
  hour, ``2026-12-06T13`` (rolled up to ``2026-12-06`` for days, ``2026-12`` for months);
- a ``date`` cursor: the day, ``2026-12-06``;
- an integer cursor: the first id of its bucket of ``ID_BUCKET`` (100,000) ids, ``4200000``.

``PeriodCounts`` is what one settle adds; ``reset`` zeroes periods first (a full refresh
counts every row again, ``reconcile --send-missing`` re-counts the periods it re-sends).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .base import Tables, now
from .positions import Position, decode_position
from .schema import BASELINE, periods

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:
    from ..core.lazy import np, pa


ID_BUCKET = 100_000
HOUR_FORMAT = "%Y-%m-%dT%H"
DAY_FORMAT = "%Y-%m-%d"
# A period key's format by unit (reconcile rolls the stored hours up to days and months).
FORMATS = {"hour": HOUR_FORMAT, "day": DAY_FORMAT, "month": "%Y-%m"}
_EPOCH = datetime(1970, 1, 1)
_TICKS_PER_HOUR = {"s": 3600, "ms": 3_600_000, "us": 3_600_000_000, "ns": 3_600_000_000_000}


@dataclass
class PeriodCounts:
    """Rows delivered and rejected per period key, to add to ``scope``'s counts in a settle.

    ``reset``: period keys (stored grain) whose counts are zeroed first; ``reset_all``: every
    period of the scope is zeroed first (a full refresh's first settle)."""

    scope: str
    delivered: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    reset: frozenset[str] = frozenset()
    reset_all: bool = False

    def add(self, cursors: pa.Array, *, rejected: bool) -> None:
        """Count the rows of these cursor values as delivered (or rejected)."""
        into = self.rejected if rejected else self.delivered
        for key, n in period_keys(cursors).items():
            into[key] = into.get(key, 0) + n

    def add_rows(self, rows: Iterable[tuple[Any, int]], *, rejected: bool) -> None:
        """Count rows given as ``(events, row)`` (anything with a ``cursor`` Arrow array),
        one ``take`` per chunk."""
        by_chunk: dict[int, tuple[Any, list[int]]] = {}
        for events, row in rows:
            by_chunk.setdefault(id(events), (events, []))[1].append(row)
        for events, idx in by_chunk.values():
            self.add(events.cursor.take(pa.array(idx, pa.int64())), rejected=rejected)

    def __bool__(self) -> bool:
        return bool(self.delivered or self.rejected or self.reset or self.reset_all)


def period_keys(cursors: pa.Array) -> dict[str, int]:
    """Period key → rows, of an array of cursor values (NULLs are never counted: such rows are
    never read). Vectorized: integer arithmetic on the values, one ``unique``, then a key per
    distinct period (a batch of 1,000 rows costs tens of microseconds)."""
    arr = cursors.combine_chunks() if isinstance(cursors, pa.ChunkedArray) else cursors
    arr = arr.drop_null()
    if len(arr) == 0:
        return {}
    t = arr.type
    if pa.types.is_timestamp(t):  # tz-aware values are stored as UTC: bucketed in UTC
        ticks = arr.view(pa.int64()).to_numpy()
        hours, n = np.unique(ticks // _TICKS_PER_HOUR[t.unit], return_counts=True)
        return {
            (_EPOCH + timedelta(hours=int(h))).strftime(HOUR_FORMAT): int(c)
            for h, c in zip(hours, n, strict=True)
        }
    if pa.types.is_date(t):
        days_arr = arr.cast(pa.date32()).view(pa.int32()).to_numpy()
        days, n = np.unique(days_arr, return_counts=True)
        return {
            (_EPOCH + timedelta(days=int(d))).strftime(DAY_FORMAT): int(c)
            for d, c in zip(days, n, strict=True)
        }
    if pa.types.is_integer(t):
        ids = arr.cast(pa.int64()).to_numpy()
        buckets, n = np.unique(ids // ID_BUCKET, return_counts=True)
        return {str(int(b) * ID_BUCKET): int(c) for b, c in zip(buckets, n, strict=True)}
    return {}  # a decimal cursor: reconcile says it cannot bucket it


def apply_periods(c: sa.Connection, sync: str, counts: PeriodCounts) -> None:
    """Add ``counts`` to the stored counts inside the caller's (settle) transaction."""
    where = [periods.c.sync == sync, periods.c.scope == counts.scope]
    if counts.reset_all:
        c.execute(periods.delete().where(*where))
    elif counts.reset:
        c.execute(periods.delete().where(*where, periods.c.period.in_(sorted(counts.reset))))
    for key in sorted(set(counts.delivered) | set(counts.rejected)):
        d, r = counts.delivered.get(key, 0), counts.rejected.get(key, 0)
        updated = c.execute(
            periods.update()
            .where(*where, periods.c.period == key)
            .values(
                delivered=periods.c.delivered + d,
                rejected=periods.c.rejected + r,
                updated_at=now(),
            )
        )
        if updated.rowcount == 0:
            c.execute(
                periods.insert().values(
                    sync=sync,
                    scope=counts.scope,
                    period=key,
                    delivered=d,
                    rejected=r,
                    updated_at=now(),
                )
            )


class PeriodStore(Tables):
    """Reading the per-period counts (they are written by ``apply_periods`` in a settle)."""

    def period_counts(self, sync: str, scope: str) -> dict[str, tuple[int, int]]:
        """Stored period key → (delivered, rejected) of ``sync`` in ``scope``."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(periods.c.period, periods.c.delivered, periods.c.rejected).where(
                    periods.c.sync == sync, periods.c.scope == scope
                )
            ).all()
        return {str(p): (int(d), int(r)) for p, d, r in rows if p != BASELINE}

    def period_baseline(self, sync: str, scope: str) -> Position | None:
        """The checkpoint ``scope`` had when the store began counting (a store made before
        the counts), else None: only rows after it are counted."""
        with self.engine.connect() as c:
            text = c.execute(
                sa.select(periods.c.position).where(
                    periods.c.sync == sync, periods.c.scope == scope, periods.c.period == BASELINE
                )
            ).scalar()
        return decode_position(text) if text else None

    def period_scopes(self, sync: str) -> list[str]:
        """The scopes of ``sync`` that have counts."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(periods.c.scope).where(periods.c.sync == sync).distinct()
            ).all()
        return sorted(str(r[0]) for r in rows)


def rollup(stored: Mapping[str, tuple[int, int]], unit: str) -> dict[str, tuple[int, int]]:
    """Stored counts summed to ``unit`` (``hour``, ``day``, ``month``; integer buckets and
    dates stay as they are where the unit is finer than what was stored)."""
    out: dict[str, tuple[int, int]] = {}
    for key, (d, r) in stored.items():
        k = roll_key(key, unit)
        pd, pr = out.get(k, (0, 0))
        out[k] = (pd + d, pr + r)
    return out


def roll_key(key: str, unit: str) -> str:
    """A stored key at ``unit``: ``2026-12-06T13`` → ``2026-12-06`` (day), ``2026-12`` (month)."""
    if not key[:1].isdigit() or "-" not in key[1:]:
        return key  # an integer bucket
    return {"month": key[:7], "day": key[:10]}.get(unit, key)


def keys_within(stored: Iterable[str], period: str, unit: str) -> frozenset[str]:
    """The stored keys that roll up to ``period`` at ``unit``."""
    return frozenset(k for k in stored if roll_key(k, unit) == period)
