"""The SQL of keyset reading: ``(cursor, primary key)`` predicates, page boundaries and pages.

Built with SQLAlchemy Core for the reader's warehouse: identifiers quoted by its dialect (and
its module's case rules), values always bound parameters, text key columns compared by their
bytes where the warehouse module says how (``bytewise``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError
from ..warehouses import Warehouse
from .drift import drift_problems
from .lookback import Lookback, cursor_number, fits, lookback_for

Position = tuple[Any, ...]  # (cursor, *primary key)


@dataclass(frozen=True)
class Window:
    """A half-open time window on the event-time column (partitions/backfills)."""

    start: datetime
    end: datetime


class KeysetSQL:
    """The statements a ``Reader`` runs (a base class: the reader holds the state)."""

    sync: SyncConfig
    warehouse: Warehouse
    dialect: sa.Dialect
    cursor: str
    pk: list[str]
    columns: list[str]
    _names: dict[str, str]
    _bytewise: frozenset[str]
    #: The lookback window's far edge: only rows whose cursor lies above it are read (None:
    #: no lower bound but ``after``). Set by ``Reader.widen``.
    floor: Any = None
    scope: str  # whose checkpoint the positions are (named by the drift message)

    def column_types(self) -> dict[str, str]:
        """Column → kind (see ``Reader.column_types``)."""
        raise NotImplementedError

    def widen(self, checkpoint: Position | None) -> tuple[Position | None, Lookback | None]:
        """Where an incremental run reads from: after ``checkpoint``, or, with the sync's
        lookback window on, from the window's far edge (``floor``; see ``lookback``). Returns
        the ``after`` to read with and the window (None: off; it is returned without a
        checkpoint too, so a first run records what it delivers)."""
        self.check_position(checkpoint)  # drift first: the floor is compared to the column
        window = lookback_for(self.sync, self.column_types().get(self.cursor, ""))
        if window is None or checkpoint is None:
            return checkpoint, window
        if not fits(cursor_number(window.floor(checkpoint[0]))):
            return checkpoint, None  # beyond 64 bits: no window (``lookback.fits``)
        self.floor = window.floor(checkpoint[0])
        return None, window

    def check_columns(self) -> None:
        """See ``Reader.check_columns``."""
        raise NotImplementedError

    def _rows(self, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def check_position(self, after: Position | None) -> None:
        """Schema drift: a config error (exit 2) when a stored position's values no longer fit
        the key columns' types (``drift``), before a query compares them."""
        if after is None:
            return
        fields = [("source.cursor", self.cursor)] + [("source.primary_key", c) for c in self.pk]
        where = self.sync.source_path or self.sync.name
        problems = drift_problems(
            where, self.sync.name, self.scope, fields, self.column_types(), tuple(after)
        )
        if problems:
            raise ConfigError(problems)

    # -- SQL building ------------------------------------------------------------------
    def _q(self, name: str) -> sa.ColumnClause[Any]:
        stored = self._names.get(name, name)
        return sa.literal_column(self.warehouse.quote(self.dialect.identifier_preparer, stored))

    def _from(self) -> sa.FromClause:
        src = self.sync.source
        if src.table:
            schema, _, table = src.table.rpartition(".")
            return sa.table(table, schema=schema or None)
        # Escape ':' so text() never mistakes SQL (casts, literals) for bind parameters.
        assert src.query is not None
        return sa.text(src.query.replace(":", r"\:")).columns().subquery("src")

    def _k(self, name: str) -> sa.ColumnElement[Any]:
        """A key column as it is compared and ordered (by its bytes when ``byte_order``)."""
        col = self._q(name)
        return self.warehouse.bytewise(col) if name in self._bytewise else col

    def _p(self, key: str, name: str, value: Any) -> sa.ColumnElement[Any]:
        """A bound key value, compared as its column is (``_k``)."""
        param: sa.ColumnElement[Any] = sa.bindparam(key, self.warehouse.bind(value))
        return self.warehouse.bytewise(param) if name in self._bytewise else param

    def _not_null(self) -> sa.ColumnElement[bool]:
        return sa.and_(*(self._q(c).is_not(None) for c in [self.cursor, *self.pk]))

    def _beyond(self, pos: Position, *, after: bool) -> sa.ColumnElement[bool]:
        """(cursor, pk...) > pos (``after``), else <= pos (``compare``)."""
        return self.compare(pos, ">" if after else "<=", "p" if after else "u")

    def compare(self, pos: Position, op: str, tag: str) -> sa.ColumnElement[bool]:
        """``(cursor, pk...) op pos`` for ``op`` in ``>``, ``>=``, ``<=``: a row-value
        comparison where the warehouse's planner turns it into one index range
        (``row_values``), else spelled out so every warehouse understands it. ``tag`` names
        its parameters (several comparisons can share a statement)."""
        cols = [self.cursor, *self.pk]
        greater = op.startswith(">")
        if self.warehouse.row_values:
            row = sa.tuple_(*(self._k(c) for c in cols))
            to = sa.tuple_(*(self._p(f"{tag}{i}", c, pos[i]) for i, c in enumerate(cols)))
            return {">": row > to, ">=": row >= to, "<=": row <= to}[op]
        clause: sa.ColumnElement[bool] | None = None
        for i in reversed(range(len(cols))):
            col, name = self._k(cols[i]), cols[i]
            bound = self._p(f"{tag}{i}", name, pos[i])
            if clause is None:
                clause = {">": col > bound, ">=": col >= bound, "<=": col <= bound}[op]
                continue
            equal = self._p(f"{tag}e{i}", name, pos[i])
            past = col > bound if greater else col < bound
            clause = sa.or_(past, sa.and_(col == equal, clause))
        assert clause is not None
        return clause

    def _window(self, window: Window) -> sa.ColumnElement[bool]:
        time_col = self.sync.mapping.event_time
        assert time_col is not None  # windows are for event syncs
        col = self._q(time_col)
        start, end = window.start, window.end
        kind = self.column_types().get(time_col, "")
        if kind == "timestamp":  # naive column: compare in the source's zone
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(self.sync.source.timezone)
            start = start.astimezone(zone).replace(tzinfo=None)
            end = end.astimezone(zone).replace(tzinfo=None)
        elif kind == "date":
            return sa.and_(
                col >= sa.bindparam("ws", start.date()), col < sa.bindparam("we", end.date())
            )
        bind = self.warehouse.bind
        return sa.and_(col >= sa.bindparam("ws", bind(start)), col < sa.bindparam("we", bind(end)))

    def _where(self, after: Position | None, window: Window | None) -> list[Any]:
        where: list[Any] = [self._not_null()]
        if self.floor is not None:
            bound: sa.BindParameter[Any] = sa.bindparam("lookback", self.warehouse.bind(self.floor))
            where.append(self._q(self.cursor) > bound)
        if after is not None:
            where.append(self._beyond(after, after=True))
        if window is not None:
            where.append(self._window(window))
        return where

    def _order(self) -> list[sa.ColumnElement[Any]]:
        return [self._k(c) for c in [self.cursor, *self.pk]]

    def boundary_statement(
        self, after: Position | None, window: Window | None, n: int
    ) -> sa.Select[Any]:
        """The key of the n-th row after ``after``: only key columns are sorted, so the
        warehouse never holds a whole table's payload to find a page."""
        keys = [self._q(c) for c in [self.cursor, *self.pk]]
        return (
            sa.select(*keys)
            .select_from(self._from())
            .where(*self._where(after, window))
            .order_by(*self._order())
            .limit(1)
            .offset(n - 1)
        )

    def window_statement(self, checkpoint: Position, window: Window | None) -> sa.Select[Any]:
        """The ``(cursor, *pk)`` of the rows inside the lookback window (after ``floor``, up to
        ``checkpoint``), in order: what ``connector plan`` checks for late rows."""
        keys = [self.cursor, *self.pk]
        return (
            sa.select(*(self._q(c) for c in keys))
            .select_from(self._from())
            .where(*self._where(None, window), self._beyond(checkpoint, after=False))
            .order_by(*self._order())
        )

    def page_statement(
        self, after: Position | None, window: Window | None, upto: Position | None
    ) -> sa.Select[Any]:
        """The rows in (after, upto], in order."""
        where = self._where(after, window)
        if upto is not None:
            where.append(self._beyond(upto, after=False))
        return (
            sa.select(*(self._q(c) for c in self.columns))
            .select_from(self._from())
            .where(*where)
            .order_by(*self._order())
        )

    def null_key_rows(self, sample: int = 1000) -> tuple[int, list[tuple[str, str]]]:
        """Rows that can never be sent (NULL cursor or primary key): count and a sample."""
        self.check_columns()
        cols = [self.cursor, *self.pk]
        is_null = sa.or_(*(self._q(c).is_(None) for c in cols))
        count_stmt = sa.select(sa.func.count()).select_from(self._from()).where(is_null)
        sample_stmt = (
            sa.select(*(self._q(c) for c in cols))
            .select_from(self._from())
            .where(is_null)
            .order_by(*(self._q(c) for c in cols))  # the same rows get the same keys each run
            .limit(sample)
        )
        count = int(self._rows(count_stmt)[0][0] or 0)
        rows = self._rows(sample_stmt) if count else []
        out = []
        seen: dict[str, int] = {}
        for row in rows:
            pk = row[1:]
            key = ",".join("NULL" if v is None else str(v) for v in pk)
            if any(v is None for v in pk):
                reason = "primary key is NULL: the row cannot be tracked; fix the source"
                # Rows without a key have no name: the second and later are numbered
                # ("NULL#2"), so each is a reject of its own (in this order every run).
                seen[key] = seen.get(key, 0) + 1
                key = key if seen[key] == 1 else f"{key}#{seen[key]}"
            else:
                reason = self.null_cursor_reason()
            out.append((key, reason))
        return count, out

    def null_cursor_reason(self) -> str:
        """The reject reason of a row whose cursor is NULL."""
        return f"cursor column {self.cursor} is NULL: the row is never read; fix the source"
