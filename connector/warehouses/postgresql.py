"""PostgreSQL (and engines that speak its protocol and type ids) through psycopg."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from .base import Warehouse

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
else:
    from ..core.lazy import pa, pa_csv


# Type ids (pg_type.oid) of the cursor description.
_OIDS = {
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


def _json_text(raw: str | bytes) -> str:
    """psycopg's json/jsonb loader, keeping the text as the server sent it."""
    return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")


class PostgreSQL(Warehouse):
    """PostgreSQL: keyset pages on an index of ``(cursor, pk)``, text keys ``COLLATE "C"``."""

    name = "postgresql"
    backends = frozenset({"postgresql"})
    dagster_kind = "postgres"
    drivers: ClassVar[Mapping[str, tuple[str, ...]]] = {"psycopg": ("psycopg",)}
    key_order = True
    row_values = True

    def engine_options(self) -> dict[str, Any]:
        """json/jsonb arrive as their text: parsing them here would turn
        12345678901234567.89 into a float before the encoder sees it."""
        return {"pool_pre_ping": True, "json_deserializer": _json_text}

    def kind(self, column: Sequence[Any]) -> str:
        """By type id."""
        code = column[1]
        return _OIDS.get(code, "other") if isinstance(code, int) else "other"

    def bytewise(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``COLLATE "C"``: byte order whatever the database's collation."""
        return expr.collate("C")

    def load_stage(self, conn: sa.Connection, temp: sa.Table, table: pa.Table) -> None:
        """COPY, fed CSV written by Arrow (a NULL is an empty field, an empty text ``""``)."""
        raw: Any = conn.connection.driver_connection
        cols = ", ".join(conn.dialect.identifier_preparer.quote(c.name) for c in temp.columns)
        name = conn.dialect.identifier_preparer.quote(temp.name)
        options = pa_csv.WriteOptions(include_header=False)
        with raw.cursor() as cur, cur.copy(f"COPY {name} ({cols}) FROM STDIN (FORMAT csv)") as cp:
            for batch in table.to_batches(50_000):
                sink = pa.BufferOutputStream()
                pa_csv.write_csv(batch, sink, options)
                cp.write(sink.getvalue().to_pybytes())


WAREHOUSE = PostgreSQL()
