"""A toy warehouse for tests/warehouses/test_warehouses.py: SQLite's engine under a made-up
SQLAlchemy name (``toysql:///file``), as a third-party dialect would bring it. It declares what a
warehouse module declares: its backend name, its Dagster kind, its column kinds (SQLite's cursor
says none, so from the declared types) and a byte-order key comparison (SQLite's BINARY)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import registry as dialects

from .base import Warehouse

dialects.register("toysql", "sqlalchemy.dialects.sqlite.pysqlite", "SQLiteDialect_pysqlite")

_KINDS = {"INTEGER": "integer", "TEXT": "string", "REAL": "float", "NUMERIC": "number"}


class Toy(Warehouse):
    """The toy warehouse."""

    name = "toysql"
    backends = frozenset({"toysql"})
    dagster_kind = "toysql"
    key_order = True

    def kinds(self, conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[str, str]]:
        """The declared types of the source table (``source.table`` only)."""
        table = stmt.get_final_froms()[0]
        declared = {
            row[1]: str(row[2]).upper()
            for row in conn.exec_driver_sql(f"PRAGMA table_info({getattr(table, 'name', '')})")
        }
        described = conn.execute(stmt).cursor.description or ()
        return [(d[0], _KINDS.get(declared.get(d[0], ""), "other")) for d in described]

    def bytewise(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """SQLite's BINARY collation compares UTF-8 bytes."""
        return expr.collate("BINARY")


WAREHOUSE = Toy()
