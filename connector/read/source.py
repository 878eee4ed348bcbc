"""Reading rows from any SQLAlchemy warehouse, in ``(cursor, primary key)`` order.

The table or query is wrapped as a subquery; only the mapped columns are selected. Rows are read
in pages by keyset pagination on ``(cursor, primary key)``: a first query finds the key of the
page's last row, sorting only the key columns (``LIMIT 1 OFFSET chunk_size-1``); a second reads
the rows in ``(last key of the previous page, that key]`` in order. Memory is bounded by the page
size on both sides on every dialect (no whole-table sort of the payload held open), each page is
two short queries (no long transaction on the warehouse), and an index on ``(cursor, pk)``
makes both cheap.
Values are always bound parameters and identifiers are quoted by the dialect.

DuckDB pages come straight from DuckDB's Arrow reader; other dialects go through a streaming
SQLAlchemy result and are converted to Arrow per page.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import sqlalchemy as sa

from ..config.sync_file import WAREHOUSE_URL_ENV, ColumnRef, SyncConfig, resolve_env
from ..core.errors import ConfigError, SourceError, mask_url, scrub
from ..core.logcontext import get_logger
from ..model.events import Chunk, key_strings

log = get_logger("connector.source")

DEMO_WAREHOUSE = Path(".connector") / "demo.duckdb"

Position = tuple[Any, ...]  # (cursor, *primary key)


def warehouse_url(sync: SyncConfig) -> str:
    """The sync's URL (``${ENV}`` resolved), else env WAREHOUSE_URL, else the demo DuckDB."""
    if sync.source.url:
        return resolve_env(sync.source.url, f"{sync.source_path}: source.url")
    env = os.environ.get(WAREHOUSE_URL_ENV)
    if env:
        return env
    return f"duckdb:///{DEMO_WAREHOUSE}"


def redact_url(url: str) -> str:
    """The URL without its password or credential query parameters (``?password=``...)."""
    return mask_url(url)


def embedded_file(url: str) -> Path | None:
    """The database file of a DuckDB or SQLite URL (None for servers and in-memory)."""
    try:
        u = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # not a URL, or a bad port
        return None
    if u.get_backend_name() not in {"duckdb", "sqlite"}:
        return None
    db = u.database or ""
    if db in ("", ":memory:") or db.startswith(("md:", "motherduck:")):
        return None
    return Path(db.removeprefix("file:"))


def _read_only(url: str) -> tuple[str, dict[str, Any]]:
    """URL and connect args that open an embedded warehouse file read-only: reading never
    creates or changes the file (a mistyped path is "no such file", not a new empty
    database), and other processes may read it at the same time."""
    if embedded_file(url) is None:
        return url, {}
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "duckdb":
        if "access_mode" in u.query:
            return url, {}
        return url, {"read_only": True}
    if "mode" in u.query or (u.database or "").startswith("file:"):
        return url, {}
    ro = u.set(database=f"file:{u.database}").update_query_dict({"mode": "ro", "uri": "true"})
    return ro.render_as_string(hide_password=False), {}


# DuckDB runs inside this process: without a limit its buffer pool keeps the pages of the
# table it read, so the process grows with the table (docs/performance.md). With one, the
# run's single ordered query and the duplicate-key check spill to ``temp_directory`` instead.
# Settings in the URL (``duckdb:///f.duckdb?memory_limit=1GB``) win over these.
DUCKDB_MEMORY_LIMIT = "48MB"


def _duckdb_config() -> dict[str, str]:
    spill = Path(tempfile.gettempdir()) / f"connector-duckdb-{os.getpid()}"
    return {
        "memory_limit": DUCKDB_MEMORY_LIMIT,
        "temp_directory": str(spill),
        # One thread sorts within the limit (two need more than 48MB for the same sort) and
        # leaves the other core to encoding and sending; insertion order is irrelevant to
        # queries that all have an ORDER BY (and keeping it costs memory).
        "threads": "1",
        "preserve_insertion_order": "false",
    }


_ENGINES: dict[str, sa.Engine] = {}


def engine_for(url: str) -> sa.Engine:
    """One engine per URL per process (pools are reused across runs)."""
    eng = _ENGINES.get(url)
    if eng is None:
        try:
            # Pre-ping leaves a half-read "SELECT 1" on an embedded DuckDB connection.
            extra: dict[str, Any] = {}
            if url.startswith("postgres"):
                # json/jsonb arrive as their text: parsing them here would turn
                # 12345678901234567.89 into a float before the encoder sees it.
                extra["json_deserializer"] = _json_text
            target, connect_args = _read_only(url)
            if url.startswith("duckdb"):
                connect_args = {**connect_args, "config": _duckdb_config()}
            eng = sa.create_engine(
                target,
                pool_pre_ping=not url.startswith("duckdb"),
                connect_args=connect_args,
                **extra,
            )
        except Exception as exc:  # noqa: BLE001 — a bad URL, a missing driver, or a dialect's own error: all name the URL
            raise SourceError(
                f"cannot open warehouse {redact_url(url)}: {scrub(str(exc), url)}"
            ) from None
        _ENGINES[url] = eng
    return eng


def release_engine(url: str) -> None:
    """Close an embedded database (DuckDB, SQLite) after a run.

    An embedded file stays locked while a connection is open: a DuckDB file opened by this
    process cannot be written by another one (the loader filling the warehouse) until it is
    closed. Server databases keep their pool for the next run in the same process.
    """
    eng = _ENGINES.get(url)
    if eng is not None and eng.dialect.name in {"duckdb", "sqlite"}:
        del _ENGINES[url]
        eng.dispose()


@dataclass(frozen=True)
class Window:
    """A half-open time window on the event-time column (partitions/backfills)."""

    start: datetime
    end: datetime


class Reader:
    """Reads one sync's source in ``(cursor, pk)`` order, page by page."""

    def __init__(
        self,
        sync: SyncConfig,
        url: str | None = None,
        *,
        byte_order: bool = False,
        keys_only: bool = False,
    ) -> None:
        """``byte_order``: a full contact scan ordered by key, text key columns compared and
        ordered ``COLLATE "C"`` (byte order, which ``contacts.keyorder`` encodes) on DuckDB
        and PostgreSQL. ``keys_only``: read only the primary key, in key order."""
        self.sync = sync
        self.url = url or warehouse_url(sync)
        path = embedded_file(self.url)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"{sync.source_path or sync.name}: warehouse {redact_url(self.url)}: no such "
                f"file: {path}; check the path (a source file is opened read-only, never "
                "created)"
            )
        self.engine = engine_for(self.url)
        self.dialect = self.engine.dialect
        self.is_duckdb = self.dialect.name == "duckdb"
        src = sync.source
        # A contact sync without a cursor reads in key order: the first key column leads.
        self.cursor: str = src.cursor or src.primary_key[0]
        self.pk = list(src.primary_key)
        if keys_only:
            self.cursor = self.pk[0]
        needed = [self.cursor, *self.pk, *([] if keys_only else sorted(sync.mapping.columns()))]
        self.columns = list(dict.fromkeys(needed))
        self._types: dict[str, str] | None = None
        self._checked = False
        self._bytewise: frozenset[str] = frozenset()
        if byte_order and self.dialect.name in {"duckdb", "postgresql"}:
            types = self.column_types()
            self._bytewise = frozenset(c for c in self.pk if types.get(c) == "string")

    def close(self) -> None:
        """Release the warehouse file if it is embedded (see ``release_engine``)."""
        release_engine(self.url)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQL building ------------------------------------------------------------------
    def _q(self, name: str) -> sa.ColumnClause[Any]:
        return sa.literal_column(self.dialect.identifier_preparer.quote(name))

    def _from(self) -> sa.FromClause:
        src = self.sync.source
        if src.table:
            schema, _, table = src.table.rpartition(".")
            return sa.table(table, schema=schema or None)
        # Escape ':' so text() never mistakes SQL (casts, literals) for bind parameters.
        assert src.query is not None
        return sa.text(src.query.replace(":", r"\:")).columns().subquery("src")

    def _k(self, name: str) -> sa.ColumnElement[Any]:
        """A key column as it is compared and ordered (``COLLATE "C"`` when ``byte_order``)."""
        col = self._q(name)
        return col.collate("C") if name in self._bytewise else col

    def _not_null(self) -> sa.ColumnElement[bool]:
        return sa.and_(*(self._q(c).is_not(None) for c in [self.cursor, *self.pk]))

    def _after(self, pos: Position) -> sa.ColumnElement[bool]:
        """(cursor, pk...) > pos, spelled out so every dialect understands it."""
        cols = [self.cursor, *self.pk]
        clause: sa.ColumnElement[bool] | None = None
        for i in reversed(range(len(cols))):
            gt = self._k(cols[i]) > sa.bindparam(f"p{i}", pos[i])
            clause = (
                gt
                if clause is None
                else sa.or_(gt, sa.and_(self._k(cols[i]) == sa.bindparam(f"e{i}", pos[i]), clause))
            )
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
        return sa.and_(col >= sa.bindparam("ws", start), col < sa.bindparam("we", end))

    def _upto(self, pos: Position) -> sa.ColumnElement[bool]:
        """(cursor, pk...) <= pos."""
        cols = [self.cursor, *self.pk]
        clause: sa.ColumnElement[bool] | None = None
        for i in reversed(range(len(cols))):
            col = self._k(cols[i])
            if clause is None:
                clause = col <= sa.bindparam(f"u{i}", pos[i])
            else:
                clause = sa.or_(
                    col < sa.bindparam(f"u{i}", pos[i]),
                    sa.and_(col == sa.bindparam(f"v{i}", pos[i]), clause),
                )
        assert clause is not None
        return clause

    def _where(self, after: Position | None, window: Window | None) -> list[Any]:
        where: list[Any] = [self._not_null()]
        if after is not None:
            where.append(self._after(after))
        if window is not None:
            where.append(self._window(window))
        return where

    def boundary_statement(
        self, after: Position | None, window: Window | None, n: int
    ) -> sa.Select[Any]:
        """The key of the n-th row after ``after``: only key columns are sorted, so the
        warehouse never holds a whole table's payload to find a page."""
        keys = [self._q(c) for c in [self.cursor, *self.pk]]
        order = [self._k(c) for c in [self.cursor, *self.pk]]
        return (
            sa.select(*keys)
            .select_from(self._from())
            .where(*self._where(after, window))
            .order_by(*order)
            .limit(1)
            .offset(n - 1)
        )

    def page_statement(
        self, after: Position | None, window: Window | None, upto: Position | None
    ) -> sa.Select[Any]:
        """The rows in (after, upto], in order."""
        where = self._where(after, window)
        if upto is not None:
            where.append(self._upto(upto))
        order = [self._k(c) for c in [self.cursor, *self.pk]]
        return (
            sa.select(*(self._q(c) for c in self.columns))
            .select_from(self._from())
            .where(*where)
            .order_by(*order)
        )

    # -- reading -----------------------------------------------------------------------
    def pages(
        self, after: Position | None = None, window: Window | None = None, limit: int | None = None
    ) -> Generator[Chunk]:
        """Chunks of at most ``chunk_size`` rows after ``after``, in order, until exhausted.

        On server warehouses each page is two short queries: the key of the page's last row,
        then the rows up to it. An embedded DuckDB reads the run as one ordered query
        (``_stream``). Memory on both sides stays flat in the table size.
        """
        self.check_columns()
        if self.is_duckdb and (limit is None or limit > self.sync.source.chunk_size):
            # (A preview's few rows are one top-N keyset page: no sort of the whole range.)
            yield from self._stream(after, window, limit)
            return
        yield from self._keyset_pages(after, window, limit)

    def _stream(
        self, after: Position | None, window: Window | None, limit: int | None
    ) -> Iterator[Chunk]:
        """DuckDB: one ordered query for the whole run, read in ``chunk_size`` batches.

        DuckDB has no index, so each keyset page would scan the key columns again (the read
        cost grows with the table); one streamed query sorts once, within the connection's
        ``memory_limit`` (spilling beyond it). Should DuckDB still run out of memory, the
        rest is read in keyset pages after the last row already returned."""
        size = self.sync.source.chunk_size
        remaining = limit
        stmt = self.page_statement(after, window, None)
        last: Position | None = after
        try:
            with self.engine.connect() as conn:
                rel = self._duck_relation(conn, stmt)
                json_cols = frozenset(
                    c for c, t in zip(rel.columns, rel.types, strict=True) if str(t) == "JSON"
                )
                # Closed even when the caller stops early (a failed run closes this generator):
                # an open result would keep the connection, and the file, in use.
                with contextlib.closing(rel.to_arrow_reader(size)) as batches:
                    while remaining is None or remaining > 0:
                        try:
                            batch = batches.read_next_batch()
                        except StopIteration:
                            return
                        if remaining is not None:
                            batch = batch.slice(0, remaining)
                            remaining -= batch.num_rows
                        if not batch.num_rows:
                            continue
                        table = pa.Table.from_batches([batch])
                        end = batch.num_rows - 1
                        last = tuple(table.column(c)[end].as_py() for c in [self.cursor, *self.pk])
                        yield Chunk(table, json_cols)
                return
        except Exception as exc:  # noqa: BLE001 — duckdb raises its own exception types
            if "Out of Memory" not in str(exc):
                raise SourceError(self._explain(exc)) from None
            log.warning(
                "%s: DuckDB ran out of memory sorting the run (%s); reading on in keyset pages "
                "(raise memory_limit in the source URL to avoid this)",
                self.sync.name,
                str(exc).splitlines()[0][:200],
            )
        yield from self._keyset_pages(last, window, remaining)

    def _keyset_pages(
        self, after: Position | None, window: Window | None, limit: int | None
    ) -> Iterator[Chunk]:
        size = self.sync.source.chunk_size
        remaining = limit
        while True:
            n = size if remaining is None else min(size, remaining)
            if n <= 0:
                return
            upto = self._boundary(after, window, n)
            chunk = self._read(self.page_statement(after, window, upto))
            rows = chunk.table.num_rows
            if rows == 0:
                return
            yield chunk
            if upto is None:
                return  # fewer than n rows were left: that was the last page
            if remaining is not None:
                remaining -= rows
            after = upto

    def duplicate_keys(self, after: Position | None, window: Window | None) -> list[str]:
        """Primary keys (their ``key_strings`` text) that occur more than once in the range a
        run reads: one ``GROUP BY key HAVING count(*) > 1`` query (see ``dupkeys``)."""
        self.check_columns()
        cols = [self._q(c) for c in self.pk]
        stmt = (
            sa.select(*cols)
            .select_from(self._from())
            .where(*self._where(after, window))
            .group_by(*cols)
            .having(sa.func.count() > 1)
        )
        table = self._read(stmt).table
        if not table.num_rows:
            return []
        pk = [table.column(i).combine_chunks() for i in range(len(self.pk))]
        keys: list[str] = key_strings(pk).to_pylist()
        return keys

    def _boundary(self, after: Position | None, window: Window | None, n: int) -> Position | None:
        stmt = self.boundary_statement(after, window, n)
        try:
            with self.engine.connect() as conn:
                if self.is_duckdb:
                    # Through Arrow, like the rows: DuckDB's fetchall() cuts TIMESTAMP_NS to
                    # microseconds, and a boundary short of the row's value re-reads its ties.
                    table = self._duck_relation(conn, stmt).to_arrow_table()
                    if not table.num_rows:
                        return None
                    return tuple(col[0].as_py() for col in table.columns)
                row = conn.execute(stmt).first()
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own types
            raise SourceError(self._explain(exc)) from None
        return tuple(row) if row else None

    def _read(self, stmt: sa.Select[Any]) -> Chunk:
        try:
            with self.engine.connect() as conn:
                if self.is_duckdb:
                    return self._read_duckdb(conn, stmt)
                return self._read_generic(conn, stmt)
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(self._explain(exc)) from None

    def _duck_relation(self, conn: sa.Connection, stmt: sa.Select[Any]) -> Any:
        """DuckDB's own relation for a statement (its Arrow reader is the fast path)."""
        compiled = stmt.compile(dialect=self.dialect)
        params = [_duck_param(compiled.params[k]) for k in (compiled.positiontup or [])]
        raw: Any = conn.connection.driver_connection
        return raw.sql(str(compiled), params=params)

    def _read_duckdb(self, conn: sa.Connection, stmt: sa.Select[Any]) -> Chunk:
        try:
            rel = self._duck_relation(conn, stmt)
            json_cols = frozenset(
                c for c, t in zip(rel.columns, rel.types, strict=True) if str(t) == "JSON"
            )
            table = rel.to_arrow_table()
        except Exception as exc:  # noqa: BLE001 — duckdb raises its own exception types
            raise SourceError(self._explain(exc)) from None
        return Chunk(table, json_cols)

    def _read_generic(self, conn: sa.Connection, stmt: sa.Select[Any]) -> Chunk:
        result = conn.execution_options(stream_results=True).execute(stmt)
        names = list(result.keys())
        described = result.cursor.description if result.cursor is not None else None
        json_typed = {d[0] for d in described or () if _dbapi_kind(d[1]) == "json"}
        rows = result.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        arrays: dict[str, pa.Array] = {}
        json_cols: set[str] = set()
        for name, values in zip(names, columns, strict=True):
            if name in json_typed:  # raw JSON text (see engine_for)
                arrays[name], is_json = pa.array(values, pa.string()), True
            else:
                arrays[name], is_json = _to_arrow(values)
            if is_json:
                json_cols.add(name)
        return Chunk(pa.table(arrays) if arrays else pa.table({}), frozenset(json_cols))

    def rows_by_keys(self, keys: list[str], batch: int = 500) -> Iterator[Chunk]:
        """The rows whose primary key is one of ``keys`` (the text form of ``key_strings``),
        ``batch`` keys a query as bound parameters (a tuple ``IN`` for a composite key).

        Unlike ``pages`` this also returns rows with a NULL cursor: the caller decides what
        to do with them. A key that cannot be one of this table's (text where the column is
        an integer, wrong number of parts) matches nothing.
        """
        self.check_columns()
        types = self.column_types()
        for col in self.pk:
            if types.get(col) not in {"integer", "number", "float", "string"}:
                # A date or timestamp key's text form is Arrow's, not the warehouse's: reading
                # it back could miss the row and close a live reject as gone.
                raise SourceError(
                    f"{self.sync.source_path or self.sync.name}: rejects can be re-read only by "
                    f"integer, decimal or text primary keys; {col} is {types.get(col)}"
                )
        values = [v for v in (self._key_values(k) for k in keys) if v is not None]
        cols = [self._q(c) for c in self.pk]
        order = [self._q(c) for c in [self.cursor, *self.pk]]
        for start in range(0, len(values), batch):
            part = values[start : start + batch]
            if len(cols) == 1:
                match = cols[0].in_(
                    [
                        sa.bindparam(f"k{i}", v[0], type_=_bind_type(v[0]))
                        for i, v in enumerate(part)
                    ]
                )
            else:
                match = sa.tuple_(*cols).in_(
                    [
                        sa.tuple_(
                            *(
                                sa.bindparam(f"k{i}_{j}", x, type_=_bind_type(x))
                                for j, x in enumerate(v)
                            )
                        )
                        for i, v in enumerate(part)
                    ]
                )
            stmt = (
                sa.select(*(self._q(c) for c in self.columns))
                .select_from(self._from())
                .where(match)
                .order_by(*order)
            )
            chunk = self._read(stmt)
            if chunk.table.num_rows:
                yield chunk

    def _key_values(self, key: str) -> tuple[Any, ...] | None:
        """A key's text back to typed primary-key values (None: no row can have it)."""
        if len(self.pk) == 1:
            parts = [key]
        else:
            parts = [p.replace("%2C", ",").replace("%25", "%") for p in key.split(",")]
            if len(parts) != len(self.pk):
                return None
        types = self.column_types()
        out: list[Any] = []
        for col, text in zip(self.pk, parts, strict=True):
            kind = types.get(col)
            try:
                if kind == "integer":
                    out.append(int(text))
                elif kind in {"number", "float"}:
                    out.append(Decimal(text))
                else:
                    out.append(text)
            except (ValueError, ArithmeticError):
                return None
        return tuple(out)

    # -- metadata ----------------------------------------------------------------------
    def column_types(self) -> dict[str, str]:
        """Column → kind (timestamptz, timestamp, date, integer, number (decimal), float, string,
        json, boolean, nested, other),
        from a zero-row query (no reflection: it fails on DuckDB, see DESIGN.md)."""
        if self._types is not None:
            return self._types
        # Every column of the source (not only the mapped ones), so a missing column is
        # reported as such instead of as a warehouse binder error.
        stmt: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(self._from()).limit(0)
        try:
            with self.engine.connect() as conn:
                if self.is_duckdb:
                    rel = self._duck_relation(conn, stmt)
                    types = {
                        c: _duck_kind(str(t)) for c, t in zip(rel.columns, rel.types, strict=True)
                    }
                else:
                    result = conn.execute(stmt)
                    types = {d[0]: _dbapi_kind(d[1]) for d in result.cursor.description}
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own types
            raise SourceError(self._explain(exc)) from None
        self._types = types
        return types

    def check_columns(self) -> None:
        """A config error naming each configured column the source does not have (before
        reading, instead of the warehouse's own binder error). One zero-row query per run."""
        if self._checked:
            return
        types = self.column_types()
        where = self.sync.source_path or self.sync.name
        fields = [("source.cursor", self.cursor)]
        fields += [("source.primary_key", c) for c in self.pk]
        fields += [("mapping", c) for c in sorted(self.sync.mapping.columns())]
        missing = [(f, c) for f, c in fields if c not in types]
        if missing:
            have = ", ".join(sorted(types))
            raise ConfigError(
                [
                    f"{where}: {f}: column {c!r} is not in the source; it has: {have}"
                    for f, c in missing
                ]
            )
        problems = type_problems(self.sync, types)
        if problems:
            raise ConfigError(problems)
        self._checked = True

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
            .limit(sample)
        )
        try:
            with self.engine.connect() as conn:
                # .all(), not .scalar(): DuckDB refuses new work on a half-read result.
                count = int(conn.execute(count_stmt).all()[0][0] or 0)
                rows = conn.execute(sample_stmt).fetchall() if count else []
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(self._explain(exc)) from None
        out = []
        for row in rows:
            cursor, pk = row[0], row[1:]
            key = ",".join("NULL" if v is None else str(v) for v in pk)
            if any(v is None for v in pk):
                reason = "primary key is NULL: the row cannot be tracked; fix the source"
            else:
                reason = self.null_cursor_reason()
            del cursor
            out.append((key, reason))
        return count, out

    def null_cursor_reason(self) -> str:
        """The reject reason of a row whose cursor is NULL."""
        return f"cursor column {self.cursor} is NULL: the row is never read; fix the source"

    def max_cursor(self) -> Any:
        """The largest cursor value in the source (None when it has no rows); raises ``SourceError``
        when the query fails."""
        stmt = sa.select(sa.func.max(self._q(self.cursor))).select_from(self._from())
        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).all()[0][0]
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(self._explain(exc)) from None

    def _explain(self, exc: BaseException) -> str:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:500]
        what = self.sync.source.table or "source.query"
        hint = ""
        if self.is_duckdb and "Out of Memory" in text:
            hint = (
                f"; the connector runs DuckDB with memory_limit={DUCKDB_MEMORY_LIMIT} unless the "
                "source URL sets one: raise it there, e.g. duckdb:///file.duckdb?memory_limit=1GB"
            )
        return (
            f"{self.sync.source_path or self.sync.name}: reading {what} from "
            f"{redact_url(self.url)} failed: {scrub(text, self.url)}{hint}"
        )


# --------------------------------------------------------------------------- type rules

CURSOR_KINDS = frozenset({"timestamptz", "timestamp", "date", "integer", "number"})
EVENT_TIME_KINDS = frozenset({"timestamptz", "timestamp", "date"})
_CURSOR_WHY = {
    "string": "text orders '10' before '9', so rows after a checkpoint would be skipped",
    "float": "a float cannot hold every value exactly, so a checkpoint may land between rows",
    "boolean": "two values cannot order the rows",
}


def type_problems(
    sync: SyncConfig, types: dict[str, str], warnings: list[str] | None = None
) -> list[str]:
    """The type rules of the configured columns, given the source's column kinds: one
    function, used by ``validate`` and by every run before it reads a row (``check_columns``),
    so both refuse the same columns with the same message. Columns missing from ``types``
    and kinds this module does not know (``other``) are not judged here. Columns whose rows
    may not all fit their field (text for a number or a time: each row that does not parse
    is a reject) are ``warnings``, which ``validate`` prints."""
    where = sync.source_path or sync.name
    src, m = sync.source, sync.mapping
    problems: list[str] = []
    kind = types.get(src.cursor) if src.cursor else None  # contact syncs: optional
    if kind is not None and kind != "other" and kind not in CURSOR_KINDS:
        why = _CURSOR_WHY.get(kind)
        problems.append(
            f"{where}: source.cursor must be a timestamp, date, integer or decimal column "
            f"({src.cursor} is {kind}" + (f": {why})" if why else ")")
        )
    kind = types.get(m.event_time) if m.event_time else None
    if kind == "string":
        if warnings is not None:
            warnings.append(
                f"{where}: mapping.event_time: column {m.event_time} is text; rows whose text "
                "is not an ISO 8601 time become rejects"
            )
    elif kind is not None and kind != "other" and kind not in EVENT_TIME_KINDS:
        problems.append(
            f"{where}: mapping.event_time must be a timestamp or date column "
            f"({m.event_time} is {kind})"
        )
    for field, col in m.identifiers.items():
        kind = types.get(col)
        if kind in {"timestamptz", "timestamp", "date", "json", "boolean"}:
            problems.append(
                f"{where}: mapping.identifiers.{field}: column {col} is {kind}; "
                "identifiers must be text or integer"
            )
    return problems + _fit_problems(sync, types, where, warnings)


def _fit_problems(
    sync: SyncConfig, types: dict[str, str], where: str, warnings: list[str] | None
) -> list[str]:
    """Columns whose type cannot fit their field: every row would be a reject (a problem), or
    some rows may be (a warning)."""
    m = sync.mapping
    problems: list[str] = []
    texts = {f"identifiers.{f}": c for f, c in m.identifiers.items()}
    if isinstance(m.event_name, ColumnRef):
        texts["event_name"] = m.event_name.column
    if isinstance(m.value_currency, ColumnRef):
        texts["value_currency"] = m.value_currency.column
    for field, col in texts.items():
        if types.get(col) == "nested":
            problems.append(
                f"{where}: mapping.{field}: column {col} is a struct/list/map, which has no "
                "text form; map a text column"
            )
    kind = types.get(m.value) if m.value else None
    if kind == "string":
        if warnings is not None:
            warnings.append(
                f"{where}: mapping.value: column {m.value} is text; rows whose text is not a "
                "number (like 18.99) become rejects"
            )
    elif kind in {"timestamptz", "timestamp", "date", "json", "boolean", "nested"}:
        problems.append(
            f"{where}: mapping.value: column {m.value} is {kind}; value needs a numeric column"
        )
    return problems


def _duck_param(value: Any) -> Any:
    """A bound value as DuckDB must see it: a timestamp with nanoseconds as its text (DuckDB
    binds a ``pandas.Timestamp`` as microseconds, and ``cursor > value`` would re-read it)."""
    if getattr(value, "nanosecond", 0):
        return str(value)
    return value


def _json_text(raw: str | bytes) -> str:
    """psycopg's json/jsonb loader, keeping the text as the server sent it."""
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")


def _bind_type(value: Any) -> Any:
    """Text keys bind untyped: PostgreSQL then reads them as the column's type (text, uuid)
    instead of refusing ``uuid = varchar``."""
    return sa.types.NullType() if isinstance(value, str) else None


def _to_arrow(values: tuple[Any, ...]) -> tuple[pa.Array, bool]:
    first = next((v for v in values if v is not None), None)
    if isinstance(first, (dict, list)):
        return pa.array(
            [None if v is None else orjson.dumps(v).decode() for v in values], pa.string()
        ), True
    try:
        return pa.array(values), False
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string()), False


def _duck_kind(t: str) -> str:
    t = t.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return "timestamptz"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    if t in {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    }:
        return "integer"
    if t.startswith("DECIMAL"):
        return "number"
    if t.startswith(("DOUBLE", "FLOAT", "REAL")):
        return "float"
    if t in {"VARCHAR", "UUID"}:
        return "string"
    if t == "JSON":
        return "json"
    if t == "BOOLEAN":
        return "boolean"
    if t.startswith(("STRUCT", "MAP", "UNION")) or t.endswith("]"):
        return "nested"  # struct, map, list or array: no text or number form
    return "other"


_PG_OIDS = {
    1184: "timestamptz",
    1114: "timestamp",
    1082: "date",
    20: "integer",
    21: "integer",
    23: "integer",
    1700: "number",
    700: "float",
    701: "float",
    25: "string",
    1043: "string",
    1042: "string",
    2950: "string",
    114: "json",
    3802: "json",
    16: "boolean",
}


def _dbapi_kind(type_code: Any) -> str:
    if isinstance(type_code, int):
        return _PG_OIDS.get(type_code, "other")
    return _duck_kind(str(type_code)) if type_code is not None else "other"
