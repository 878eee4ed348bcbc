"""Reading rows from any SQLAlchemy warehouse, in ``(cursor, primary key)`` order.

The table or query is wrapped as a subquery; only the mapped columns are selected. Rows are read
in pages by keyset pagination on ``(cursor, primary key)``: a first query finds the key of the
page's last row, sorting only the key columns (``LIMIT 1 OFFSET chunk_size-1``); a second reads
the rows in ``(last key of the previous page, that key]`` in order. Memory is bounded by the page
size on both sides on every warehouse (no whole-table sort of the payload held open), each page
is two short queries (no long transaction on the warehouse), and an index on ``(cursor, pk)``
makes both cheap. A warehouse without indexes (DuckDB) streams the run as one ordered query.
Values are always bound parameters and identifiers are quoted by the dialect.

What differs between warehouses (connecting, names, types, byte order, the fastest read) is
asked of the sync's ``connector.warehouses`` module; nothing here names a dialect.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..config.env import resolve_env, resolve_tree
from ..config.sync_file import WAREHOUSE_URL_ENV, SyncConfig
from ..core.errors import ConfigError, SourceError, mask_url, scrub
from ..core.logcontext import get_logger
from ..model.events import Chunk, key_strings
from ..warehouses import embedded_file, engine_for, release_engine, warehouse_for
from .driver import missing_driver
from .keyset import KeysetSQL, Position, Window
from .type_rules import CURSOR_KINDS, EVENT_TIME_KINDS, type_problems

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


__all__ = [
    "CURSOR_KINDS",
    "DEMO_WAREHOUSE",
    "EVENT_TIME_KINDS",
    "Position",
    "Reader",
    "Window",
    "embedded_file",
    "engine_for",
    "redact_url",
    "release_engine",
    "type_problems",
    "warehouse_url",
]

log = get_logger("connector.source")

DEMO_WAREHOUSE = Path(".connector") / "demo.duckdb"


def warehouse_url(sync: SyncConfig) -> str:
    """The sync's URL (``${ENV}`` resolved), else env WAREHOUSE_URL, else the demo DuckDB."""
    if sync.source.url:
        return resolve_env(sync.source.url, f"{sync.source_path}: source.url")
    env = os.environ.get(WAREHOUSE_URL_ENV)
    if env:
        return env
    return f"duckdb:///{DEMO_WAREHOUSE}"


def connect_args(sync: SyncConfig) -> dict[str, Any]:
    """``source.connect_args`` with its ``${ENV}`` references resolved (never stored)."""
    resolved: dict[str, Any] = resolve_tree(
        sync.source.connect_args, f"{sync.source_path}: source.connect_args"
    )
    return resolved


def redact_url(url: str) -> str:
    """The URL without its password or credential query parameters (``?password=``...)."""
    return mask_url(url)


class Reader(KeysetSQL):
    """Reads one sync's source in ``(cursor, pk)`` order, page by page."""

    def __init__(
        self,
        sync: SyncConfig,
        url: str | None = None,
        *,
        byte_order: bool = False,
        keys_only: bool = False,
        scope: str = "incremental",
    ) -> None:
        """``byte_order``: a full contact scan ordered by key, text key columns compared and
        ordered by their bytes (the order ``contacts.keyorder`` encodes) on warehouses whose
        module has that order (``key_order``). ``keys_only``: read only the primary key, in
        key order. ``scope``: whose checkpoint the positions given to it are (named by
        the schema drift message, ``drift``)."""
        self.sync = sync
        self.scope = scope
        self.url = url or warehouse_url(sync)
        self.warehouse = warehouse_for(self.url)
        path = embedded_file(self.url)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"{sync.source_path or sync.name}: warehouse {redact_url(self.url)}: no such "
                f"file: {path}; check the path (a source file is opened read-only, never "
                "created)"
            )
        args = connect_args(sync)
        # Values given to the driver (passwords, passphrases) never reach a message.
        self._secrets = sorted(_strings(args), key=len, reverse=True)
        try:
            self.engine = engine_for(self.url, args)
        except ConfigError:
            raise
        except (ImportError, sa.exc.NoSuchModuleError) as exc:  # a driver not installed
            where = f"{sync.source_path or sync.name}: source.url"
            raise ConfigError(
                missing_driver(where, self.url, self.warehouse.extra, self._scrub(str(exc)), exc)
            ) from None
        except Exception as exc:  # noqa: BLE001 — a bad URL, a missing driver, or a dialect's own error: all name the URL
            raise SourceError(
                f"cannot open warehouse {redact_url(self.url)}: {self._scrub(str(exc))}"
            ) from None
        self.dialect = self.engine.dialect
        src = sync.source
        # A contact sync without a cursor reads in key order: the first key column leads.
        self.cursor: str = src.cursor or src.primary_key[0]
        self.pk = list(src.primary_key)
        if keys_only:
            self.cursor = self.pk[0]
        needed = [self.cursor, *self.pk, *([] if keys_only else sorted(sync.mapping.columns()))]
        self.columns = list(dict.fromkeys(needed))
        self._source: list[tuple[str, str]] | None = None  # (column as stored, kind)
        self._names: dict[str, str] = {}  # configured name → column as stored
        self._types: dict[str, str] | None = None
        self._checked = False
        self._bytewise: frozenset[str] = frozenset()
        if byte_order and self.key_order:
            types = self.column_types()
            self._bytewise = frozenset(c for c in self.pk if types.get(c) == "string")

    @property
    def key_order(self) -> bool:
        """The warehouse orders integer and (byte-compared) text keys in byte order, so a full
        contact scan can merge with the stored hashes."""
        return self.warehouse.key_order

    def close(self) -> None:
        """Release the warehouse file if it is embedded (see ``release_engine``)."""
        release_engine(self.url)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------
    def pages(
        self, after: Position | None = None, window: Window | None = None, limit: int | None = None
    ) -> Generator[Chunk]:
        """Chunks of at most ``chunk_size`` rows after ``after``, in order, until exhausted.

        On server warehouses each page is two short queries: the key of the page's last row,
        then the rows up to it. A warehouse that ``streams_runs`` (DuckDB) reads the run as
        one ordered query (``_stream``). Memory on both sides stays flat in the table size.
        """
        self.check_columns()
        self.check_position(after)
        if self.warehouse.streams_runs and (limit is None or limit > self.sync.source.chunk_size):
            # (A preview's few rows are one top-N keyset page: no sort of the whole range.)
            yield from self._stream(after, window, limit)
            return
        yield from self._keyset_pages(after, window, limit)

    def _stream(
        self, after: Position | None, window: Window | None, limit: int | None
    ) -> Iterator[Chunk]:
        """One ordered query for the whole run, read in ``chunk_size`` batches.

        Without an index each keyset page would scan the key columns again (the read cost
        grows with the table); one streamed query sorts once. Should the warehouse run out of
        memory doing so, the rest is read in keyset pages after the last row returned."""
        remaining = limit
        last: Position | None = after
        try:
            with self.engine.connect() as conn:
                stmt = self.page_statement(after, window, None)
                for batch in self.warehouse.stream(conn, stmt, self.sync.source.chunk_size):
                    if remaining is not None:
                        batch = batch.slice(0, remaining)
                        remaining -= batch.num_rows
                    if batch.num_rows:
                        chunk = self._named(Chunk(pa.Table.from_batches([batch])), self.columns)
                        end = batch.num_rows - 1
                        last = tuple(chunk.table.column(c)[end].as_py() for c in self._keys())
                        yield chunk
                    if remaining is not None and remaining <= 0:
                        return
                return
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own exception types
            if not self.warehouse.out_of_memory(exc):
                raise SourceError(self._explain(exc)) from None
            log.warning(
                "%s: %s ran out of memory sorting the run (%s); reading on in keyset pages "
                "(raise its memory limit in the source URL to avoid this)",
                self.sync.name,
                self.warehouse.name,
                str(exc).splitlines()[0][:200],
            )
        yield from self._keyset_pages(last, window, remaining)

    def _keys(self) -> list[str]:
        return [self.cursor, *self.pk]

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
            chunk = self._read(self.page_statement(after, window, upto), self.columns)
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
        self.check_position(after)
        cols = [self._q(c) for c in self.pk]
        stmt = (
            sa.select(*cols)
            .select_from(self._from())
            .where(*self._where(after, window))
            .group_by(*cols)
            .having(sa.func.count() > 1)
        )
        table = self._read(stmt, self.pk).table
        if not table.num_rows:
            return []
        pk = [table.column(i).combine_chunks() for i in range(len(self.pk))]
        keys: list[str] = key_strings(pk).to_pylist()
        return keys

    def count(self, after: Position | None, window: Window | None) -> int:
        """Rows a run would read: after ``after``, in the window, cursor and key not NULL."""
        self.check_columns()
        self.check_position(after)
        stmt = (
            sa.select(sa.func.count()).select_from(self._from()).where(*self._where(after, window))
        )
        return int(self._rows(stmt)[0][0] or 0)

    def any_rows(self, after: Position | None, window: Window | None) -> bool:
        """Whether a run would read any row (``count`` > 0), by one ``LIMIT 1`` query through
        the driver's rows, not Arrow: a run that reads nothing imports no pyarrow."""
        self.check_columns()
        self.check_position(after)
        stmt = (
            sa.select(sa.literal(1))
            .select_from(self._from())
            .where(*self._where(after, window))
            .limit(1)
        )
        return bool(self._rows(stmt))

    def _boundary(self, after: Position | None, window: Window | None, n: int) -> Position | None:
        stmt = self.boundary_statement(after, window, n)
        try:
            with self.engine.connect() as conn:
                return self.warehouse.first(conn, stmt)
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own types
            raise SourceError(self._explain(exc)) from None

    def _rows(self, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.engine.connect() as conn:
                return self.warehouse.rows(conn, stmt)
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own types
            raise SourceError(self._explain(exc)) from None

    def _read(self, stmt: sa.Select[Any], names: list[str]) -> Chunk:
        """The rows of ``stmt``, which selects ``names`` (configured names) in order."""
        kinds = [self._kind(n) for n in names]
        try:
            with self.engine.connect() as conn:
                chunk = self.warehouse.read(conn, stmt, kinds)
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own types
            raise SourceError(self._explain(exc)) from None
        return self._named(chunk, names)

    def _named(self, chunk: Chunk, names: list[str]) -> Chunk:
        """The chunk's columns under their configured names (a warehouse may report them in
        another case), JSON columns by the kinds the warehouse declared as well."""
        table = chunk.table
        got = table.column_names
        json_cols = {n for n, g in zip(names, got, strict=True) if g in chunk.json_columns}
        json_cols |= {n for n in names if self._kind(n) == "json"}
        if got != names:
            table = table.rename_columns(names)
        return Chunk(table, frozenset(json_cols))

    def _kind(self, name: str) -> str:
        return self.column_types().get(name, "other")

    def rows_by_keys(self, keys: list[str], batch: int = 500) -> Iterator[Chunk]:
        """The rows whose primary key is one of ``keys`` (the text form of ``key_strings``),
        ``batch`` keys a query as bound parameters (a tuple ``IN`` for a composite key).

        Unlike ``pages`` this also returns rows with a NULL cursor: the caller decides what
        to do with them. A key that cannot be one of this table's (text where the column is
        an integer, wrong number of parts) matches nothing.
        """
        order = [self._q(c) for c in self._keys()]
        for match in self._key_matches(keys, batch):
            stmt = (
                sa.select(*(self._q(c) for c in self.columns))
                .select_from(self._from())
                .where(match)
                .order_by(*order)
            )
            chunk = self._read(stmt, self.columns)
            if chunk.table.num_rows:
                yield chunk

    def count_keys(
        self, keys: list[str], after: Position | None = None, batch: int = 500
    ) -> tuple[int, int]:
        """Of the rows ``rows_by_keys(keys)`` returns: how many there are, and how many of
        them a run reading after ``after`` (``pages``' predicate) reads too. Reads no row."""
        self.check_position(after)
        found = again = 0
        for match in self._key_matches(keys, batch):
            count = sa.select(sa.func.count()).select_from(self._from())
            found += int(self._rows(count.where(match))[0][0] or 0)
            within = count.where(match, *self._where(after, None))
            again += int(self._rows(within)[0][0] or 0)
        return found, again

    def _key_matches(self, keys: list[str], batch: int) -> Iterator[sa.ColumnElement[bool]]:
        """The predicates matching ``keys``, ``batch`` keys each (see ``rows_by_keys``)."""
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
        for start in range(0, len(values), batch):
            part = values[start : start + batch]
            if len(cols) == 1:
                yield cols[0].in_(
                    [
                        sa.bindparam(f"k{i}", v[0], type_=_bind_type(v[0]))
                        for i, v in enumerate(part)
                    ]
                )
            else:
                yield sa.tuple_(*cols).in_(
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
        json, boolean, nested, other) of every source column, mapped columns under their
        configured names, from a zero-row query (no reflection: it fails on DuckDB, see
        DESIGN.md). Resolves the configured names to the columns as stored (``_names``)."""
        if self._types is not None:
            return self._types
        # Every column of the source (not only the mapped ones), so a missing column is
        # reported as such instead of as a warehouse binder error.
        stmt: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(self._from()).limit(0)
        try:
            with self.engine.connect() as conn:
                source = self.warehouse.kinds(conn, stmt)
        except Exception as exc:  # noqa: BLE001 — drivers (duckdb) raise their own types
            raise SourceError(self._explain(exc)) from None
        kinds = dict(source)
        types = dict(kinds)
        for name in self._configured():
            found = self.warehouse.matches(name, kinds)
            if len(found) == 1:
                self._names[name] = found[0]
                types.pop(found[0], None)
        for name, stored in self._names.items():
            types[name] = kinds[stored]
        self._source, self._types = source, types
        return types

    def _configured(self) -> list[str]:
        return list(dict.fromkeys([*self.columns, *sorted(self.sync.mapping.columns())]))

    def check_columns(self) -> None:
        """A config error naming each configured column the source does not have, or that
        matches two of its columns (before reading, instead of the warehouse's own binder
        error). One zero-row query per run."""
        if self._checked:
            return
        types = self.column_types()
        where = self.sync.source_path or self.sync.name
        fields = [("source.cursor", self.cursor)]
        fields += [("source.primary_key", c) for c in self.pk]
        fields += [("mapping", c) for c in sorted(self.sync.mapping.columns())]
        stored = [c for c, _ in self._source or ()]
        problems = []
        for field, col in fields:
            found = self.warehouse.matches(col, stored)
            if not found:
                have = ", ".join(sorted(stored))
                problems.append(
                    f"{where}: {field}: column {col!r} is not in the source; it has: {have}"
                )
            elif len(found) > 1:
                problems.append(
                    f"{where}: {field}: column {col!r} matches "
                    + " and ".join(repr(c) for c in found)
                    + f" ({self.warehouse.name} names are case-insensitive unless quoted); "
                    "write the name exactly as the column is stored, or rename one"
                )
        if problems:
            raise ConfigError(list(dict.fromkeys(problems)))
        problems = type_problems(self.sync, types)
        if problems:
            raise ConfigError(problems)
        self._checked = True

    def max_cursor(self) -> Any:
        """The largest cursor value in the source (None when it has no rows); raises ``SourceError``
        when the query fails."""
        self.column_types()  # the cursor's name as stored
        stmt = sa.select(sa.func.max(self._q(self.cursor))).select_from(self._from())
        return self._rows(stmt)[0][0]

    def _scrub(self, text: str) -> str:
        text = scrub(text, self.url)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _explain(self, exc: BaseException) -> str:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:500]
        what = self.sync.source.table or "source.query"
        hint = self.warehouse.hint(text)
        return (
            f"{self.sync.source_path or self.sync.name}: reading {what} from "
            f"{redact_url(self.url)} failed: {self._scrub(text)}{hint}"
        )


def _strings(node: Any) -> list[str]:
    """The string values of a nested ``connect_args`` of at least 4 characters."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) and len(node) >= 4 else []


def _bind_type(value: Any) -> Any:
    """Text keys bind untyped: PostgreSQL then reads them as the column's type (text, uuid)
    instead of refusing ``uuid = varchar``."""
    return sa.types.NullType() if isinstance(value, str) else None
