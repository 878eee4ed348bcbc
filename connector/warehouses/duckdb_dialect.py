"""duckdb_engine's SQLAlchemy dialect, without the work it does on a spare database per engine.

duckdb_engine opens DuckDB's default in-memory database when a dialect is made (to list the
reserved keywords for its identifier preparer) and a second one at the first connection (to
list DuckDB's settings and tell them from extension settings). Each new database costs 20-35 ms
of CPU here: on a frequent no-op schedule, a tenth of the process (docs/performance.md,
start-up). This subclass:

- takes the reserved keywords from the run's own connection when the engine first connects
  (``initialize``), over a list of DuckDB's current ones for statements compiled before that;
- connects straight to DuckDB when every setting given is one of DuckDB's core settings named
  in ``CORE_SETTINGS`` (the connector's own and ``access_mode``); any other (an extension's
  setting in the URL, preloaded extensions, file systems) takes duckdb_engine's own path.

Everything else is duckdb_engine's. Imported only when an engine is made (the ``duckdb``
dialect is registered by module path in ``warehouses.duckdb``).
"""

from __future__ import annotations

from typing import Any

import duckdb
import duckdb_engine
from sqlalchemy.dialects.postgresql.base import PGIdentifierPreparer

RESERVED_SQL = "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"

# DuckDB's reserved keywords that PostgreSQL does not reserve (DuckDB 2.0); the connection
# adds any newer ones when the engine first connects (a test compares the two).
DUCKDB_ONLY_RESERVED = frozenset(
    {
        "describe",
        "lambda",
        "lateral",
        "pivot",
        "pivot_longer",
        "pivot_wider",
        "qualify",
        "show",
        "summarize",
        "unpivot",
    }
)

# DuckDB core settings (``duckdb_settings()``) that may go to ``duckdb.connect`` as config
# without asking DuckDB which settings it has: the ones ``warehouses.duckdb`` sets, and the
# URL's usual ones.
CORE_SETTINGS = frozenset(
    {
        "access_mode",
        "memory_limit",
        "max_memory",
        "temp_directory",
        "threads",
        "preserve_insertion_order",
    }
)


class Preparer(duckdb_engine.DuckDBIdentifierPreparer):
    """duckdb_engine's preparer, with the reserved words in its own set (duckdb_engine adds
    DuckDB's to PostgreSQL's shared set) and without a query at construction."""

    def __init__(self, dialect: Any, **kwargs: Any) -> None:
        PGIdentifierPreparer.__init__(self, dialect, **kwargs)
        self.reserved_words = set(self.reserved_words) | DUCKDB_ONLY_RESERVED


class Dialect(duckdb_engine.Dialect):
    """duckdb_engine's dialect (see the module docstring)."""

    preparer = Preparer
    identifier_preparer: Preparer
    supports_statement_cache = False  # as duckdb_engine's (SQLAlchemy asks each subclass)

    def initialize(self, connection: Any) -> None:
        """duckdb_engine's, then the reserved keywords of the DuckDB actually connected."""
        super().initialize(connection)
        rows = connection.exec_driver_sql(RESERVED_SQL).fetchall()
        self.identifier_preparer.reserved_words.update(name for (name,) in rows)

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        """Straight to ``duckdb.connect`` when only core settings are given."""
        config = {**cparams.get("config", {}), **cparams.get("url_config", {})}
        special = ("preload_extensions", "register_filesystems")
        if not set(config) <= CORE_SETTINGS or any(cparams.get(k) for k in special):
            return super().connect(*cargs, **cparams)
        for key in ("url_config", *special):
            cparams.pop(key, None)
        if duckdb_engine.supports_user_agent:
            config["custom_user_agent"] = (
                f"duckdb_engine/{duckdb_engine.__version__}"
                f"(sqlalchemy/{duckdb_engine.sqlalchemy_version})"
            )
        cparams["config"] = config
        return duckdb_engine.ConnectionWrapper(duckdb.connect(*cargs, **cparams))
