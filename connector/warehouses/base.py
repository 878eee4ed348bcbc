"""What a warehouse kind decides, with the behaviour of any SQLAlchemy database as the default.

A warehouse module (``duckdb.py``, ``snowflake.py``, ...) subclasses :class:`Warehouse`,
overrides what its engine does differently and names the instance ``WAREHOUSE``;
``registry.WAREHOUSE_MODULES`` lists the modules. The reader, the contact merge and the
Dagster translator ask the instance and never name a dialect. docs/warehouses.md walks
through adding one.

Everything is positional where results are concerned: a driver may report a column under
another case than the one it was selected by (Snowflake's dialect lower-cases folded names,
its cursor does not), so kinds and values are matched to the selected columns by position.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import sqlalchemy as sa

from ..core.errors import ConfigError
from ..model.events import Chunk

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


# The kinds a column can have (``Reader.column_types``): the type rules and the value
# encoders key on these, never on a warehouse's own type names.
KINDS = frozenset(
    {
        "timestamptz",  # an instant (a time with an offset or in UTC)
        "timestamp",  # a wall-clock time without a zone (read in source.timezone)
        "date",
        "integer",
        "number",  # exact decimal
        "float",
        "string",
        "json",  # JSON text or a JSON value: sent as an object
        "boolean",
        "nested",  # struct, list or map without a text form
        "other",
    }
)


class Warehouse:
    """One kind of warehouse; the base class is the generic SQLAlchemy fallback."""

    #: Short name shown in messages and docs (``duckdb``, ``snowflake``, ``sql``).
    name: ClassVar[str] = "sql"
    #: SQLAlchemy backend names (``make_url(url).get_backend_name()``) this module serves.
    backends: ClassVar[frozenset[str]] = frozenset()
    #: The kind tag Dagster draws an icon for (empty: the URL's backend name).
    dagster_kind: ClassVar[str] = ""
    #: ``pip install 'warehouse-events-connector[<extra>]'`` installs the driver.
    extra: ClassVar[str | None] = None
    #: SQLAlchemy driver name (``+pymysql``; the dialect's default when the URL names none)
    #: → the modules it needs, which ``extra`` installs (a missing one is named with it).
    drivers: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: The database is a file opened inside this process (released after each run).
    embedded: ClassVar[bool] = False
    #: ORDER BY of an integer key and of a ``bytewise`` text key is byte order: a full
    #: contact scan can merge with the stored hashes (``contacts.keyorder``).
    key_order: ClassVar[bool] = False
    #: Unquoted identifiers are case-insensitive: a mapped name matches a column in any case.
    folds_case: ClassVar[bool] = False
    #: ``(cursor, pk) > (:c, :k)`` is one index range to its planner (else the comparison is
    #: spelled out as ``cursor > :c OR (cursor = :c AND pk > :k)``).
    row_values: ClassVar[bool] = False
    #: One ordered query can stream a whole run (no index to make keyset pages cheap).
    streams_runs: ClassVar[bool] = False
    #: Tables live in named schemas (the audit tables' ``schema``; SQLite has none).
    has_schemas: ClassVar[bool] = True
    #: The audit tables get indexes on their keys (not where a scan is the fast way).
    audit_indexes: ClassVar[bool] = True

    # -- connecting ----------------------------------------------------------------------
    def file(self, url: sa.URL) -> Path | None:
        """The database file of an embedded warehouse URL (None for servers, in-memory)."""
        return None

    def connect_args(self, url: sa.URL, args: dict[str, Any]) -> tuple[sa.URL, dict[str, Any]]:
        """The URL and connect arguments the engine is made with, from the sync's URL and
        its ``source.connect_args`` (already resolved). Read-only where the engine allows,
        the session time zone, moved URL parameters."""
        return url, args

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of ``sqlalchemy.create_engine`` besides the URL and connect args."""
        return {"pool_pre_ping": True}

    def create_engine(self, url: str, connect_args: Mapping[str, Any]) -> sa.Engine:
        """The engine for a URL; a missing driver names the install extra."""
        parsed = sa.engine.make_url(url)
        self.require_driver(parsed)
        target, args = self.connect_args(parsed, dict(connect_args))
        return sa.create_engine(target, connect_args=args, **self.engine_options())

    def require_driver(self, url: sa.URL) -> None:
        """Raise a ``ConfigError`` naming the extra when the URL's driver is not installed
        (instead of SQLAlchemy's import traceback)."""
        driver = url.drivername.partition("+")[2] or ""
        for module in self.drivers.get(driver, ()):
            try:
                importlib.import_module(module)
            except ImportError:
                extra = f"[{self.extra}]" if self.extra else ""
                raise ConfigError(
                    f"a {self.name} warehouse ({url.drivername}://) needs the {module} "
                    f"package: pip install 'warehouse-events-connector{extra}'"
                ) from None

    # -- names ---------------------------------------------------------------------------
    def matches(self, name: str, columns: Iterable[str]) -> list[str]:
        """The source columns a mapped name refers to (more than one is a config error).

        Exact match; where unquoted names fold, any column equal ignoring case."""
        cols = list(columns)
        if not self.folds_case:
            return [c for c in cols if c == name]
        return [c for c in cols if c.casefold() == name.casefold()]

    def quote(self, preparer: Any, name: str) -> str:
        """A source column, as reported by the warehouse, quoted for SQL where needed."""
        return str(preparer.quote(name))

    # -- types ---------------------------------------------------------------------------
    def kinds(self, conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[str, str]]:
        """(column, kind) of every column of a zero-row query, in order, as the warehouse
        names them (no reflection: it fails on DuckDB, see DESIGN.md)."""
        result = conn.execute(stmt)
        try:
            described = result.cursor.description if result.cursor is not None else None
            return [(d[0], self.kind(d)) for d in described or ()]
        finally:
            result.close()

    def kind(self, column: Sequence[Any]) -> str:
        """A DB-API ``cursor.description`` entry's kind; unknown types are ``other`` (the type
        rules then do not judge the column)."""
        return "other"

    # -- ordering and binding ------------------------------------------------------------
    def bytewise(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A text expression compared and ordered by its UTF-8 bytes (``key_order``)."""
        return expr

    def bind(self, value: Any) -> Any:
        """A key or window value as the driver must bind it."""
        return value

    # -- reconciling ---------------------------------------------------------------------
    def period(self, expr: sa.ColumnElement[Any], kind: str, unit: str) -> sa.ColumnElement[Any]:
        """The period a cursor value falls in, for ``connector reconcile``'s one ``GROUP BY``:
        a ``timestamptz`` truncated to ``unit`` (``hour``, ``day``, ``month``) in UTC, a
        ``timestamp`` or ``date`` truncated as it is, an ``integer`` as the first id of its
        bucket of ``ID_BUCKET`` ids. What comes back may be a date, a time or text that starts
        with the ISO date; reconcile reads any of them. Constants are inlined (never bound), so
        the same expression can be grouped by on every warehouse."""
        if kind == "integer":
            n: sa.ColumnElement[Any] = sa.literal_column(str(ID_BUCKET))
            return sa.func.floor(expr / n) * n
        if kind == "timestamptz":
            expr = sa.func.timezone(sa.literal_column("'UTC'"), expr)
        return sa.func.date_trunc(sa.literal_column(f"'{_unit(unit)}'"), expr)

    # -- reading -------------------------------------------------------------------------
    def read(self, conn: sa.Connection, stmt: sa.Select[Any], kinds: Sequence[str]) -> Chunk:
        """All rows of ``stmt`` as Arrow, column by column (``kinds`` are the selected
        columns' kinds, in order). JSON text stays text: the encoder parses it exactly."""
        result = conn.execution_options(stream_results=True).execute(stmt)
        names = list(result.keys())
        rows = result.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return rows_to_chunk(names, columns, kinds, self.to_arrow)

    def to_arrow(self, values: Sequence[Any], kind: str) -> tuple[pa.Array, bool]:
        """One column's Python values as an Arrow array, and whether it holds JSON text."""
        return python_to_arrow(values, kind)

    def first(self, conn: sa.Connection, stmt: sa.Select[Any]) -> tuple[Any, ...] | None:
        """The first row of ``stmt`` (a page boundary), values as the driver returns them."""
        row = conn.execute(stmt).first()
        return tuple(row) if row else None

    def rows(self, conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """Every row of a small query (counts, samples)."""
        return [tuple(r) for r in conn.execute(stmt).all()]

    def stream(
        self, conn: sa.Connection, stmt: sa.Select[Any], size: int
    ) -> Iterator[pa.RecordBatch]:
        """A whole run as one ordered query, in batches (``streams_runs`` only)."""
        raise NotImplementedError(f"{self.name} reads in keyset pages")

    def out_of_memory(self, exc: BaseException) -> bool:
        """The warehouse ran out of memory streaming a run: go on in keyset pages."""
        return False

    def hint(self, message: str) -> str:
        """Advice appended to a failed query's message (``; ...``), or empty."""
        return ""

    # -- writing (the audit tables, ``connector.audit``) -----------------------------------
    def audit_engine(self, url: str) -> sa.Engine:
        """An engine that writes (the sync's reading engine may be read-only); the caller
        disposes it."""
        parsed = sa.engine.make_url(url)
        self.require_driver(parsed)
        return sa.create_engine(parsed, **self.engine_options())

    def stage(self, conn: sa.Connection, name: str, table: pa.Table) -> sa.TableClause:
        """A temporary table ``name`` holding ``table``'s rows, inside ``conn``'s transaction,
        by the engine's fastest bulk path (here: an executemany of 10,000 rows at a time).
        ``unstage`` drops it."""
        temp = sa.Table(
            name,
            sa.MetaData(),
            *(sa.Column(f.name, _sql_type(f.type)) for f in table.schema),
            prefixes=["TEMPORARY"],
            # MySQL: the audit tables' collation (a mix fails comparisons); others ignore it.
            mysql_charset="utf8mb4",
            mysql_collate="utf8mb4_bin",
        )
        conn.execute(sa.schema.DropTable(temp, if_exists=True))
        conn.execute(sa.schema.CreateTable(temp))
        self.load_stage(conn, temp, table)
        return temp

    def load_stage(self, conn: sa.Connection, temp: sa.Table, table: pa.Table) -> None:
        """Fill the staging table ``temp`` (made by ``stage``) with ``table``'s rows."""
        for batch in table.to_batches(10_000):
            conn.execute(temp.insert(), batch.to_pylist())

    def unstage(self, conn: sa.Connection, temp: sa.TableClause) -> None:
        """Drop a staging table."""
        conn.execute(
            sa.text(f"DROP TABLE IF EXISTS {conn.dialect.identifier_preparer.quote(temp.name)}")
        )


def _sql_type(t: pa.DataType) -> Any:
    """The SQL type a staged Arrow column is created with."""
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=t.tz is not None)
    if pa.types.is_int32(t) or pa.types.is_int16(t) or pa.types.is_int8(t):
        return sa.Integer()
    if pa.types.is_integer(t):
        return sa.BigInteger()
    if pa.types.is_boolean(t):
        return sa.Boolean()
    if pa.types.is_floating(t):
        return sa.Float()
    return sa.Text()


# The bucket of an integer cursor's period (``store.periods.ID_BUCKET`` is the same number).
ID_BUCKET = 100_000
_UNITS = frozenset({"hour", "day", "month"})


def _unit(unit: str) -> str:
    """A period unit checked against the three there are (it is inlined into SQL)."""
    if unit not in _UNITS:
        raise ValueError(f"period unit {unit!r}: use hour, day or month")
    return unit


def python_to_arrow(values: Sequence[Any], kind: str) -> tuple[pa.Array, bool]:
    """Python values as Arrow: JSON text as text, dicts and lists as JSON text, anything
    Arrow cannot hold exactly (a decimal wider than 76 digits) as its text."""
    if kind == "json":
        return pa.array(
            [v if v is None or isinstance(v, str) else _json_text(v) for v in values], pa.string()
        ), True
    first = next((v for v in values if v is not None), None)
    if isinstance(first, (dict, list)):
        return pa.array([None if v is None else _json_text(v) for v in values], pa.string()), True
    try:
        return pa.array(values), False
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string()), False


def _json_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return orjson.dumps(value).decode()


def rows_to_chunk(
    names: Sequence[str],
    columns: Sequence[Sequence[Any]],
    kinds: Sequence[str],
    to_arrow: Any,
) -> Chunk:
    """Columns of Python values as a chunk (``to_arrow(values, kind) -> (array, is_json)``)."""
    arrays: list[pa.Array] = []
    json_cols: set[str] = set()
    for i, (name, values) in enumerate(zip(names, columns, strict=True)):
        array, is_json = to_arrow(values, kinds[i] if i < len(kinds) else "other")
        arrays.append(array)
        if is_json:
            json_cols.add(name)
    return Chunk(pa.Table.from_arrays(arrays, names=list(names)), frozenset(json_cols))
