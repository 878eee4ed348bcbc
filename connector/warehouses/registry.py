"""Every warehouse module, in one list, and the engines made through them.

A warehouse is one module of this package defining ``WAREHOUSE`` (a ``base.Warehouse``) plus
its name in ``WAREHOUSE_MODULES``. A URL is served by the module whose ``backends`` hold the
URL's SQLAlchemy backend name, else by ``generic``. Modules import no driver at import time:
looking a URL up never needs the warehouse's extra installed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .base import Warehouse

WAREHOUSE_MODULES: tuple[str, ...] = (
    "duckdb",
    "postgresql",
    "snowflake",
    "mysql",
    "sqlite",
)
FALLBACK = "generic"


@cache
def warehouses() -> tuple[Warehouse, ...]:
    """The registered warehouses, in ``WAREHOUSE_MODULES`` order."""
    out = []
    for module in WAREHOUSE_MODULES:
        found = importlib.import_module(f"{__package__}.{module}").WAREHOUSE
        assert isinstance(found, Warehouse), f"{module}.WAREHOUSE is no Warehouse"
        out.append(found)
    return tuple(out)


def fallback() -> Warehouse:
    """The generic SQLAlchemy warehouse."""
    found: Warehouse = importlib.import_module(f"{__package__}.{FALLBACK}").WAREHOUSE
    return found


def backend(url: str) -> str | None:
    """The URL's SQLAlchemy backend name (``postgresql``, ``snowflake``), None when it is no
    URL."""
    try:
        return sa.engine.make_url(url).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):  # not a URL, or a bad port
        return None


def warehouse_for(url: str) -> Warehouse:
    """The warehouse serving a URL (the generic one when no module claims its backend)."""
    name = backend(url)
    for wh in warehouses():
        if name in wh.backends:
            return wh
    return fallback()


def embedded_file(url: str) -> Path | None:
    """The database file of an embedded warehouse's URL (None for servers and in-memory)."""
    wh = warehouse_for(url)
    if not wh.embedded or backend(url) is None:
        return None
    return wh.file(sa.engine.make_url(url))


_ENGINES: dict[tuple[str, str], sa.Engine] = {}


def engine_for(url: str, connect_args: Mapping[str, Any] | None = None) -> sa.Engine:
    """One engine per URL and connect arguments per process (pools are reused across runs).
    Raises what the warehouse's ``create_engine`` raises (a bad URL, a missing driver)."""
    key = (url, json.dumps(connect_args or {}, sort_keys=True, default=str))
    eng = _ENGINES.get(key)
    if eng is None:
        eng = warehouse_for(url).create_engine(url, connect_args or {})
        _ENGINES[key] = eng
    return eng


def release_engine(url: str, *, servers: bool = False) -> None:
    """Close the engines of an embedded database (DuckDB, SQLite) after a run.

    An embedded file stays locked while a connection is open: a DuckDB file opened by this
    process cannot be written by another one (the loader filling the warehouse) until it is
    closed. Server databases keep their pool for the next run in the same process, unless
    ``servers`` (a test dropping its database)."""
    if not (servers or warehouse_for(url).embedded):
        return
    for key in [k for k in _ENGINES if k[0] == url]:
        _ENGINES.pop(key).dispose()
