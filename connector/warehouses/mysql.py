"""MySQL and MariaDB through PyMySQL (the ``mysql`` extra) or mysqlclient.

Sessions are read-only and in UTC: a ``TIMESTAMP`` column (stored as an instant) then arrives
as UTC and is sent as such, a ``DATETIME`` (a wall-clock time) is read in ``source.timezone``.
Column names are case-insensitive. Text keys are ordered by their bytes (``CAST(k AS BINARY)``:
the binary collations of MySQL and MariaDB ignore trailing spaces, byte order does not).
MariaDB's ``JSON`` is ``LONGTEXT`` with a ``json_valid`` check: the check, read from
``information_schema``, makes the column JSON, as MySQL's own ``JSON`` type does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from ..core.errors import ConfigError
from ..model.events import Chunk
from .base import Warehouse, python_to_arrow, rows_to_chunk

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


# MySQL protocol field types (include/mysql_com.h ``enum_field_types``).
_KINDS = {
    0: "number",  # DECIMAL
    246: "number",  # NEWDECIMAL
    1: "integer",  # TINYINT (TINYINT(1) is BOOLEAN, see kind())
    2: "integer",
    3: "integer",
    8: "integer",
    9: "integer",
    13: "integer",  # YEAR
    4: "float",
    5: "float",
    7: "timestamptz",  # TIMESTAMP: an instant, read in the session's UTC
    12: "timestamp",  # DATETIME: a wall-clock time
    10: "date",
    14: "date",
    245: "json",
    15: "string",
    253: "string",
    254: "string",
    247: "string",  # ENUM
    249: "string",
    250: "string",
    251: "string",
    252: "string",  # the BLOB/TEXT family: text unless its character set is binary
}
_BLOBS = frozenset({249, 250, 251, 252})
_BINARY_CHARSET = 63


class MySQL(Warehouse):
    """MySQL 8 and MariaDB 10.5+."""

    name = "mysql"
    audit_indexes = False  # TEXT columns need a prefix length in an index
    backends = frozenset({"mysql", "mariadb"})
    dagster_kind = "mysql"
    extra = "mysql"
    drivers: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "pymysql": ("pymysql",),
        "": ("MySQLdb",),
        "mysqldb": ("MySQLdb",),
    }
    key_order = True
    folds_case = True

    def require_driver(self, url: sa.URL) -> None:
        """The extra installs PyMySQL; a URL naming no driver means mysqlclient."""
        try:
            super().require_driver(url)
        except ConfigError:
            if "+" in url.drivername:
                raise
            raise ConfigError(
                f"{url.drivername}:// uses mysqlclient, which is not installed: write "
                f"{url.get_backend_name()}+pymysql:// and pip install "
                "'warehouse-events-connector[mysql]'"
            ) from None

    def connect_args(self, url: sa.URL, args: dict[str, Any]) -> tuple[sa.URL, dict[str, Any]]:
        """utf8mb4 unless the URL names a charset."""
        if "charset" not in url.query:
            args.setdefault("charset", "utf8mb4")
        return url, args

    def create_engine(self, url: str, connect_args: Any) -> sa.Engine:
        """Every connection read-only and in UTC (``TIMESTAMP`` values arrive as UTC)."""
        engine = super().create_engine(url, connect_args)

        @sa.event.listens_for(engine, "connect")
        def _session(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()

        return engine

    def kinds(self, conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[str, str]]:
        """From the result's column definitions; MariaDB's JSON from its check constraint."""
        result = conn.execute(stmt)
        try:
            cursor: Any = result.cursor
            fields = getattr(getattr(cursor, "_result", None), "fields", None)
            out = [(d[0], self.kind(d)) for d in cursor.description or ()]
        finally:
            result.close()
        if fields is None:  # another driver: no column definitions to refine the kinds
            return out
        for i, f in enumerate(fields):
            if f.type_code in _BLOBS | {253, 254} and f.charsetnr == _BINARY_CHARSET:
                out[i] = (out[i][0], "other")  # bytes
        if getattr(conn.dialect, "is_mariadb", False):
            for i in _json_checked(conn, fields):
                out[i] = (out[i][0], "json")
        return out

    def kind(self, column: Sequence[Any]) -> str:
        """By protocol type; ``TINYINT(1)`` (MySQL's BOOLEAN) is boolean."""
        code = column[1]
        if code == 1 and column[3] == 1:
            return "boolean"
        return _KINDS.get(code, "other") if isinstance(code, int) else "other"

    def bytewise(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The UTF-8 bytes (no PAD SPACE: ``'a'`` sorts before ``'a '``)."""
        return sa.cast(expr, sa.LargeBinary)

    def bind(self, value: Any) -> Any:
        """An instant as the session's UTC wall time (the driver drops offsets)."""
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def period(self, expr: sa.ColumnElement[Any], kind: str, unit: str) -> sa.ColumnElement[Any]:
        """``DATE_FORMAT`` text (the session is UTC, so a ``TIMESTAMP`` is bucketed in UTC)."""
        if kind == "integer":
            return super().period(expr, kind, unit)
        fmt = {"hour": "%Y-%m-%d %H", "day": "%Y-%m-%d", "month": "%Y-%m"}[unit]
        return sa.func.date_format(expr, sa.literal(fmt, sa.String))

    def read(self, conn: sa.Connection, stmt: sa.Select[Any], kinds: Sequence[str]) -> Chunk:
        """Streamed (server-side cursor), column by column."""
        result = conn.execution_options(stream_results=True).execute(stmt)
        names = list(result.keys())
        rows = result.fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        return rows_to_chunk(names, columns, kinds, self.to_arrow)

    def to_arrow(self, values: Sequence[Any], kind: str) -> tuple[pa.Array, bool]:
        """TIMESTAMP values as UTC instants; TINYINT(1) as booleans while it holds 0 and 1
        only (any other value keeps the column's integers: nothing is rounded to a bool)."""
        if kind == "timestamptz":
            return pa.array(values, pa.timestamp("us", tz="UTC")), False
        if kind == "boolean" and all(v in (0, 1, None) for v in values):
            return pa.array([None if v is None else bool(v) for v in values], pa.bool_()), False
        return python_to_arrow(values, kind)


def _json_checked(conn: sa.Connection, fields: Sequence[Any]) -> list[int]:
    """Positions of text columns that MariaDB declared ``JSON`` (``json_valid`` checks)."""
    wanted: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for i, f in enumerate(fields):
        if f.type_code in _BLOBS and f.org_table and f.charsetnr != _BINARY_CHARSET:
            db = f.db.decode() if isinstance(f.db, bytes) else str(f.db)
            wanted.setdefault((db, f.org_table), []).append((i, f.org_name))
    found: list[int] = []
    for (db, table), cols in wanted.items():
        clauses = {
            str(r[0]).replace(" ", "").lower()
            for r in conn.execute(
                sa.text(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = :db AND TABLE_NAME = :t"
                ),
                {"db": db, "t": table},
            )
        }
        found += [i for i, col in cols if f"json_valid(`{col.lower()}`)" in clauses]
    return found


WAREHOUSE = MySQL()
