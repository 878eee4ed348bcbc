"""The lookback window's rows handled (``connector_window_keys``): per sync and scope, one row
per source row delivered or rejected whose cursor lies inside the lookback window behind the
checkpoint — its cursor as an ordered integer and a 64-bit hash of ``(cursor, *primary key)``
(``read.lookback``). A run reads the window again and sends only rows whose hash is not here.

Rows are added in the transaction that settles their batch (``LedgerStore.settle``: the same
one that moves the checkpoint) and deleted there once the checkpoint's window has passed them,
so the table holds the window, never the table: about (rows a window holds) × 2 integers.

One more row per scope, the *mark* (``cursor_num`` = ``MARK``, never pruned), says since when
the scope's rows are recorded: its ``row_hash`` holds the cursor number of the checkpoint the
first run that recorded any started from (``NEVER``: from the first row). Rows at or before it
were handled by runs that kept no window (a store from before this table): a run treats them
as handled, as it did before, instead of sending them again as late rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import sqlalchemy as sa

from .base import Tables
from .schema import window_keys

MARK = 2**63 - 1  # the mark row's cursor_num
NEVER = -(2**63)  # a mark's "since" when every row of the scope was recorded


@dataclass(frozen=True)
class WindowWrite:
    """What one settle does to the window table: add ``add`` (``(cursor_num, row_hash)``
    pairs), delete rows whose ``cursor_num`` is below ``prune_below`` (None: keep all) and
    write the scope's mark with ``mark`` as its "since" (None: it is written already)."""

    add: Sequence[tuple[int, int]] = field(default_factory=list)
    prune_below: int | None = None
    mark: int | None = None


def write_window(c: sa.Connection, sync: str, scope: str, write: WindowWrite) -> None:
    """Apply ``write`` inside the caller's transaction."""
    if write.prune_below is not None:
        c.execute(
            window_keys.delete().where(
                window_keys.c.sync == sync,
                window_keys.c.scope == scope,
                window_keys.c.cursor_num < write.prune_below,
            )
        )
    rows = [(MARK, write.mark)] if write.mark is not None else []
    rows += write.add
    if not rows:
        return
    mark = _MARKS.get(c.dialect.paramstyle)
    if mark is None:  # a driver without positional parameters
        c.execute(
            window_keys.insert(),
            [{"sync": sync, "scope": scope, "cursor_num": n, "row_hash": h} for n, h in rows],
        )
        return
    # The driver's executemany over plain tuples: a settle records up to a batch of rows, and
    # building and compiling one parameter dict per row cost more than the insert itself.
    sql = f"INSERT INTO {window_keys.name} (sync, scope, cursor_num, row_hash) VALUES "
    nums, hashes = zip(*rows, strict=True)  # tuples built by zip, not by a loop in Python
    params = list(zip(repeat(sync), repeat(scope), nums, hashes))
    c.exec_driver_sql(sql + f"({', '.join([mark] * 4)})", params)


_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}  # positional parameter marks


class WindowStore(Tables):
    """Reading and clearing the window table (writes go with the settle transaction)."""

    def window_hashes(self, sync: str, scope: str, above: int) -> set[int]:
        """The hashes of the rows handled in ``scope`` whose cursor number is at least
        ``above`` (the window's far edge)."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(window_keys.c.row_hash).where(
                    window_keys.c.sync == sync,
                    window_keys.c.scope == scope,
                    window_keys.c.cursor_num >= above,
                    window_keys.c.cursor_num < MARK,
                )
            )
            return {int(h) for (h,) in rows}

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
        """Rows the window table holds for the sync (in ``scope``, or in all of them)."""
        stmt = sa.select(sa.func.count()).where(
            window_keys.c.sync == sync, window_keys.c.cursor_num < MARK
        )
        if scope is not None:
            stmt = stmt.where(window_keys.c.scope == scope)
        with self.engine.connect() as c:
            return int(c.execute(stmt).scalar_one())

    def clear_window(self, sync: str, scope: str) -> None:
        """Forget the rows handled in ``scope`` (a full refresh sends every row again)."""
        with self._tx() as c:
            c.execute(
                window_keys.delete().where(window_keys.c.sync == sync, window_keys.c.scope == scope)
            )

    def adopt_window(self, sync: str, source: str, into: str) -> None:
        """Move the rows handled in scope ``source`` into scope ``into`` (those ``into`` does
        not hold yet): a reconcile re-send's rows join the scope it re-sent for, so that
        scope's next run does not send again what the re-send delivered inside its window."""
        held = window_keys.alias("held")
        with self._tx() as c:
            c.execute(
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
            c.execute(
                window_keys.delete().where(
                    window_keys.c.sync == sync, window_keys.c.scope == source
                )
            )
