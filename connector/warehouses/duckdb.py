"""DuckDB: an embedded file read in this process, through DuckDB's own Arrow reader.

The file is opened read-only (a mistyped path is "no such file", never a new empty database;
other processes may read it at the same time) and released after each run, so the loader can
write it. DuckDB has no index: a run is one ordered query streamed in batches instead of
keyset pages that would scan the key columns again for each page.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..model.events import Chunk
from .base import Warehouse

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


# DuckDB runs inside this process: without a limit its buffer pool keeps the pages of the
# table it read, so the process grows with the table (docs/performance.md). With one, the
# run's single ordered query and the duplicate-key check spill to ``temp_directory`` instead.
# Settings in the URL (``duckdb:///f.duckdb?memory_limit=1GB``) win over these.
DUCKDB_MEMORY_LIMIT = "48MB"

_INTEGERS = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    }
)


def duckdb_config() -> dict[str, str]:
    """The connection settings of a run's DuckDB (memory limit, spill directory, threads)."""
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


def duck_kind(t: str) -> str:
    """A DuckDB type name's kind."""
    t = t.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return "timestamptz"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    if t in _INTEGERS:
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


# duckdb_engine's dialect, less its spare in-memory databases (``duckdb_dialect``), by name:
# SQLAlchemy otherwise finds duckdb_engine through the package's entry point, reading the
# metadata of every installed distribution (~15 ms at each start with Dagster's). Registered
# lazily (a module path): nothing is imported until an engine is made. Also when duckdb_engine
# was loaded already (an engine made before this import): later engines get this one.
sa.dialects.registry.register("duckdb", "connector.warehouses.duckdb_dialect", "Dialect")


class DuckDB(Warehouse):
    """DuckDB files (and MotherDuck URLs, which are servers to it)."""

    name = "duckdb"
    backends = frozenset({"duckdb"})
    dagster_kind = "duckdb"
    embedded = True
    key_order = True
    streams_runs = True
    audit_indexes = False

    def file(self, url: sa.URL) -> Path | None:
        """The database file (None in memory or on MotherDuck)."""
        db = url.database or ""
        if db in ("", ":memory:") or db.startswith(("md:", "motherduck:")):
            return None
        return Path(db.removeprefix("file:"))

    def connect_args(self, url: sa.URL, args: dict[str, Any]) -> tuple[sa.URL, dict[str, Any]]:
        """Read-only unless the URL sets ``access_mode``; the run's memory settings."""
        if self.file(url) is not None and "access_mode" not in url.query:
            args.setdefault("read_only", True)
        args["config"] = {**duckdb_config(), **args.get("config", {})}
        return url, args

    def engine_options(self) -> dict[str, Any]:
        """No pre-ping: it leaves a half-read "SELECT 1" on an embedded connection."""
        return {"pool_pre_ping": False}

    def kinds(self, conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[str, str]]:
        """From DuckDB's relation types (its DB-API description says less)."""
        rel = _relation(conn, stmt)
        return [(c, duck_kind(str(t))) for c, t in zip(rel.columns, rel.types, strict=True)]

    def bytewise(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``COLLATE "C"`` (binary), whatever collation the column declares."""
        return expr.collate("C")

    def bind(self, value: Any) -> Any:
        """A timestamp with nanoseconds as its text (DuckDB binds a ``pandas.Timestamp`` as
        microseconds, and ``cursor > value`` would re-read it)."""
        if getattr(value, "nanosecond", 0):
            return str(value)
        return value

    def read(self, conn: sa.Connection, stmt: sa.Select[Any], kinds: Sequence[str]) -> Chunk:
        """Straight from DuckDB's Arrow reader."""
        rel = _relation(conn, stmt, self.bind)
        return Chunk(rel.to_arrow_table(), _json_columns(rel))

    def first(self, conn: sa.Connection, stmt: sa.Select[Any]) -> tuple[Any, ...] | None:
        """Through Arrow, like the rows: DuckDB's fetchall() cuts TIMESTAMP_NS to
        microseconds, and a boundary short of the row's value re-reads its ties."""
        table = _relation(conn, stmt, self.bind).to_arrow_table()
        if not table.num_rows:
            return None
        return tuple(col[0].as_py() for col in table.columns)

    def rows(self, conn: sa.Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """Through the relation (DuckDB refuses new work on a half-read result)."""
        return [tuple(r) for r in _relation(conn, stmt, self.bind).fetchall()]

    def stream(
        self, conn: sa.Connection, stmt: sa.Select[Any], size: int
    ) -> Iterator[pa.RecordBatch]:
        """One ordered query, sorted once within the connection's ``memory_limit``."""
        rel = _relation(conn, stmt, self.bind)
        # Closed even when the caller stops early (a failed run closes this generator): an
        # open result would keep the connection, and the file, in use.
        with contextlib.closing(rel.to_arrow_reader(size)) as batches:
            while True:
                try:
                    yield batches.read_next_batch()
                except StopIteration:
                    return

    def out_of_memory(self, exc: BaseException) -> bool:
        """DuckDB's own out-of-memory error."""
        return "Out of Memory" in str(exc)

    def audit_engine(self, url: str) -> sa.Engine:
        """Read-write (a file made when missing), with the run's memory settings."""
        parsed = sa.engine.make_url(url)
        path = self.file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        args = {"read_only": False, "config": duckdb_config()}
        return sa.create_engine(parsed, connect_args=args, **self.engine_options())

    def stage(self, conn: sa.Connection, name: str, table: pa.Table) -> sa.TableClause:
        """The Arrow table itself, registered as a view: DuckDB reads it where a statement
        selects from it (no copy, no row leaves Arrow)."""
        raw: Any = conn.connection.driver_connection
        raw.register(name, table)
        return sa.table(name, *(sa.column(f.name) for f in table.schema))

    def unstage(self, conn: sa.Connection, temp: sa.TableClause) -> None:
        """Unregister the Arrow table."""
        raw: Any = conn.connection.driver_connection
        raw.unregister(temp.name)

    def hint(self, message: str) -> str:
        """How to give DuckDB more memory."""
        if "Out of Memory" not in message:
            return ""
        return (
            f"; the connector runs DuckDB with memory_limit={DUCKDB_MEMORY_LIMIT} unless the "
            "source URL sets one: raise it there, e.g. duckdb:///file.duckdb?memory_limit=1GB"
        )


def _relation(conn: sa.Connection, stmt: sa.Select[Any], bind: Any = None) -> Any:
    """DuckDB's own relation for a statement (its Arrow reader is the fast path)."""
    compiled = stmt.compile(dialect=conn.dialect)
    params = [compiled.params[k] for k in (compiled.positiontup or [])]
    if bind is not None:
        params = [bind(p) for p in params]
    raw: Any = conn.connection.driver_connection
    return raw.sql(str(compiled), params=params)


def _json_columns(rel: Any) -> frozenset[str]:
    return frozenset(c for c, t in zip(rel.columns, rel.types, strict=True) if str(t) == "JSON")


WAREHOUSE = DuckDB()
