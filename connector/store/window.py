"""The lookback window's rows handled: per sync and scope, the rows delivered or rejected whose
cursor lies inside the lookback window behind the checkpoint — each as its cursor as an ordered
integer and a 64-bit hash of ``(cursor, *primary key)`` (``read.lookback``). A run reads the
window again and sends only rows whose hash is recorded here.

A settle records its batch's rows as one *unit* (``connector_window_units``): their pairs packed
as two little-endian int64 arrays, with their smallest and largest cursor number. It is written
in the transaction that settles the batch (``LedgerStore.settle``: the same one that moves the
checkpoint) and deleted there once the checkpoint's window has passed its newest row (a unit
the window's far edge cuts through loses the pairs behind it), so the table holds the window's
settles, never the table: one row per settle, not per source row.

``connector_window_keys`` holds one row per scope, the *mark* (``cursor_num`` = ``MARK``, never
pruned): since when the scope's rows are recorded. Its ``row_hash`` holds the cursor number of
the checkpoint the first run that recorded any started from (``NEVER``: from the first row).
Rows at or before it were handled by runs that kept no window (a store from before the window):
a run treats them as handled, as it did before, instead of sending them again as late rows.
Stores from before the units kept one row per handled row there too: they are still read, and
pruned like the units, so they leave as the checkpoint moves on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from .base import Tables
from .schema import window_keys, window_units

if TYPE_CHECKING:
    import numpy as np
else:
    from ..core.lazy import np  # a no-op run imports no numpy (core/lazy.py)

MARK = 2**63 - 1  # the mark row's cursor_num
NEVER = -(2**63)  # a mark's "since" when every row of the scope was recorded
_LE = "<i8"  # how a unit packs its numbers (a numpy dtype: little-endian int64)
_LE_SIZE = 8  # bytes per packed number


@dataclass(frozen=True)
class Pairs:
    """``(cursor_num, row_hash)`` pairs as two int64 columns of one length."""

    nums: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return len(self.nums)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.nums.tolist(), self.hashes.tolist(), strict=True)


@dataclass(frozen=True)
class WindowWrite:
    """What one settle does to the window: add ``add`` (``(cursor_num, row_hash)`` pairs, as
    one unit), delete units and rows whose newest ``cursor_num`` is below ``prune_below``
    (None: keep all) and write the scope's mark with ``mark`` as its "since" (None: it is
    written already)."""

    add: Sequence[tuple[int, int]] | Pairs = field(default_factory=list)
    prune_below: int | None = None
    mark: int | None = None


def _columns(add: Sequence[tuple[int, int]] | Pairs) -> Pairs:
    if isinstance(add, Pairs):
        return add
    both = np.array(add, dtype=np.int64).reshape(-1, 2)
    return Pairs(both[:, 0], both[:, 1])


def write_window(c: sa.Connection, sync: str, scope: str, write: WindowWrite) -> None:
    """Apply ``write`` inside the caller's transaction."""
    if write.prune_below is not None:
        c.execute(
            window_units.delete().where(
                window_units.c.sync == sync,
                window_units.c.scope == scope,
                window_units.c.max_cursor < write.prune_below,
            )
        )
        c.execute(  # the per-row rows of a store from before the units
            window_keys.delete().where(
                window_keys.c.sync == sync,
                window_keys.c.scope == scope,
                window_keys.c.cursor_num < write.prune_below,
            )
        )
        _trim(c, sync, scope, write.prune_below)
    if write.mark is not None:
        c.execute(
            window_keys.insert(),
            {"sync": sync, "scope": scope, "cursor_num": MARK, "row_hash": write.mark},
        )
    if len(write.add):
        pairs = _columns(write.add)
        c.execute(
            window_units.insert(),
            {
                "sync": sync,
                "scope": scope,
                "min_cursor": int(pairs.nums.min()),
                "max_cursor": int(pairs.nums.max()),
                "cursor_nums": pairs.nums.astype(_LE, copy=False).tobytes(),
                "row_hashes": pairs.hashes.astype(_LE, copy=False).tobytes(),
            },
        )


def _trim(c: sa.Connection, sync: str, scope: str, floor: int) -> None:
    """Drop the pairs below ``floor`` from the units that straddle it (a settle or two: the
    units are in cursor order), so the window holds exactly the rows at or above it."""
    straddling = c.execute(
        sa.select(window_units.c.id, window_units.c.cursor_nums, window_units.c.row_hashes).where(
            window_units.c.sync == sync,
            window_units.c.scope == scope,
            window_units.c.min_cursor < floor,
        )
    ).all()
    for unit_id, nums_b, hashes_b in straddling:
        nums = np.frombuffer(nums_b, _LE)
        keep = nums >= floor
        nums = nums[keep]
        c.execute(
            window_units.update()
            .where(window_units.c.id == unit_id)
            .values(
                min_cursor=int(nums.min()),
                cursor_nums=nums.tobytes(),
                row_hashes=np.frombuffer(hashes_b, _LE)[keep].tobytes(),
            )
        )


class WindowStore(Tables):
    """Reading and clearing the window (writes go with the settle transaction)."""

    def window_hashes(self, sync: str, scope: str, above: int) -> set[int]:
        """The hashes of the rows handled in ``scope`` whose cursor number is at least
        ``above`` (the window's far edge)."""
        with self.engine.connect() as c:
            units = c.execute(
                sa.select(window_units.c.cursor_nums, window_units.c.row_hashes).where(
                    window_units.c.sync == sync,
                    window_units.c.scope == scope,
                    window_units.c.max_cursor >= above,
                )
            )
            parts = []
            for nums_b, hashes_b in units:
                nums = np.frombuffer(nums_b, _LE)
                parts.append(np.frombuffer(hashes_b, _LE)[nums >= above])
            known: set[int] = set(np.concatenate(parts).tolist()) if parts else set()
            rows = c.execute(  # a store from before the units: one row per row handled
                sa.select(window_keys.c.row_hash).where(
                    window_keys.c.sync == sync,
                    window_keys.c.scope == scope,
                    window_keys.c.cursor_num >= above,
                    window_keys.c.cursor_num < MARK,
                )
            )
            known.update(int(h) for (h,) in rows)
            return known

    def window_since(self, sync: str, scope: str) -> int | None:
        """The scope's mark: the cursor number up to which rows were handled without being
        recorded (``NEVER``: none were), or None before any run recorded its rows."""
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(sa.func.min(window_keys.c.row_hash)).where(
                    window_keys.c.sync == sync,
                    window_keys.c.scope == scope,
                    window_keys.c.cursor_num == MARK,
                )
            ).first()
        return None if row is None or row[0] is None else int(row[0])

    def window_size(self, sync: str, scope: str | None = None) -> int:
        """Rows the window holds for the sync (in ``scope``, or in all of them)."""
        old = sa.select(sa.func.count()).where(
            window_keys.c.sync == sync, window_keys.c.cursor_num < MARK
        )
        units = sa.select(window_units.c.cursor_nums).where(window_units.c.sync == sync)
        if scope is not None:
            old = old.where(window_keys.c.scope == scope)
            units = units.where(window_units.c.scope == scope)
        with self.engine.connect() as c:
            packed = sum(len(b) for (b,) in c.execute(units)) // _LE_SIZE
            return int(c.execute(old).scalar_one()) + packed

    def window_unit_count(self, sync: str, scope: str) -> int:
        """Units (settles' rows, packed) the window holds for ``scope``."""
        stmt = sa.select(sa.func.count()).where(
            window_units.c.sync == sync, window_units.c.scope == scope
        )
        with self.engine.connect() as c:
            return int(c.execute(stmt).scalar_one())

    def clear_window(self, sync: str, scope: str) -> None:
        """Forget the rows handled in ``scope`` (a full refresh sends every row again)."""
        with self._tx() as c:
            for table in (window_keys, window_units):
                c.execute(table.delete().where(table.c.sync == sync, table.c.scope == scope))

    def adopt_window(self, sync: str, source: str, into: str) -> None:
        """Move the rows handled in scope ``source`` into scope ``into``: a reconcile re-send's
        rows join the scope it re-sent for, so that scope's next run does not send again what
        the re-send delivered inside its window. Units are copied whole (a row both scopes
        hold is harmless: a run reads the hashes as a set)."""
        held = window_keys.alias("held")
        with self._tx() as c:
            c.execute(
                window_units.insert().from_select(
                    ["sync", "scope", "min_cursor", "max_cursor", "cursor_nums", "row_hashes"],
                    sa.select(
                        window_units.c.sync,
                        sa.literal(into),
                        window_units.c.min_cursor,
                        window_units.c.max_cursor,
                        window_units.c.cursor_nums,
                        window_units.c.row_hashes,
                    )
                    .where(window_units.c.sync == sync, window_units.c.scope == source)
                    .order_by(window_units.c.id),
                )
            )
            c.execute(  # the per-row rows of a store from before the units
                window_keys.insert().from_select(
                    ["sync", "scope", "cursor_num", "row_hash"],
                    sa.select(
                        window_keys.c.sync,
                        sa.literal(into),
                        window_keys.c.cursor_num,
                        window_keys.c.row_hash,
                    ).where(
                        window_keys.c.sync == sync,
                        window_keys.c.scope == source,
                        window_keys.c.cursor_num < MARK,
                        ~sa.exists().where(
                            held.c.sync == sync,
                            held.c.scope == into,
                            held.c.cursor_num == window_keys.c.cursor_num,
                            held.c.row_hash == window_keys.c.row_hash,
                        ),
                    ),
                )
            )
            for table in (window_keys, window_units):
                c.execute(table.delete().where(table.c.sync == sync, table.c.scope == source))
