"""SQLite files: opened read-only (``mode=ro``), released after each run like DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .base import ID_BUCKET, Warehouse


class SQLite(Warehouse):
    """SQLite (tests, small local sources)."""

    name = "sqlite"
    backends = frozenset({"sqlite"})
    dagster_kind = "sqlite"
    embedded = True
    has_schemas = False

    def file(self, url: sa.URL) -> Path | None:
        """The database file (None in memory)."""
        db = url.database or ""
        if db in ("", ":memory:"):
            return None
        return Path(db.removeprefix("file:"))

    def connect_args(self, url: sa.URL, args: dict[str, Any]) -> tuple[sa.URL, dict[str, Any]]:
        """A URI with ``mode=ro`` unless the URL sets a mode or is a URI already: reading
        never creates or changes the file."""
        if (
            self.file(url) is None
            or "mode" in url.query
            or (url.database or "").startswith("file:")
        ):
            return url, args
        ro = url.set(database=f"file:{url.database}").update_query_dict(
            {"mode": "ro", "uri": "true"}
        )
        return ro, args

    def period(self, expr: sa.ColumnElement[Any], kind: str, unit: str) -> sa.ColumnElement[Any]:
        """``strftime`` text; integer buckets by integer division (non-negative ids)."""
        if kind == "integer":
            n: sa.ColumnElement[Any] = sa.literal_column(str(ID_BUCKET))
            return sa.cast(expr / n, sa.Integer) * n
        fmt = {"hour": "%Y-%m-%d %H", "day": "%Y-%m-%d", "month": "%Y-%m"}[unit]
        return sa.func.strftime(sa.literal_column(f"'{fmt}'"), expr)


WAREHOUSE = SQLite()
