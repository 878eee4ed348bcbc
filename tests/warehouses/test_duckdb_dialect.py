"""The ``duckdb`` dialect the connector registers (``connector.warehouses.duckdb_dialect``):
duckdb_engine's, less the spare in-memory databases it opens per engine; same SQL, same
settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import duckdb_engine
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS

from connector.warehouses import duckdb as _registers_the_dialect  # noqa: F401
from connector.warehouses import duckdb_dialect
from connector.warehouses.registry import engine_for


def _db(tmp_path: Path) -> str:
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute('CREATE TABLE t (id INTEGER, "qualify" VARCHAR, "pivot" VARCHAR)')
    con.execute("INSERT INTO t VALUES (1, 'a', 'b')")
    con.close()
    return f"duckdb:///{path}"


def _no_spare_database(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail on duckdb_engine's two spare databases; record every ``duckdb.connect``."""

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a spare DuckDB database was opened")

    monkeypatch.setattr(duckdb, "cursor", refuse)  # the preparer's keyword query
    monkeypatch.setattr(duckdb_engine, "get_core_config", refuse)  # the settings' list
    calls: list[Any] = []
    real = duckdb.connect

    def connect(*a: Any, **k: Any) -> Any:
        calls.append(a[0] if a else k.get("database"))
        return real(*a, **k)

    monkeypatch.setattr(duckdb, "connect", connect)
    return calls


def test_the_registered_duckdb_dialect_is_the_connectors() -> None:
    assert sa.dialects.registry.load("duckdb") is duckdb_dialect.Dialect
    assert issubclass(duckdb_dialect.Dialect, duckdb_engine.Dialect)


def test_the_static_reserved_words_are_duckdbs_own_less_postgresqls() -> None:
    live = {
        k for (k,) in duckdb.connect(":memory:").execute(duckdb_dialect.RESERVED_SQL).fetchall()
    }
    assert live - RESERVED_WORDS == duckdb_dialect.DUCKDB_ONLY_RESERVED


def test_a_run_engine_opens_only_its_own_file_and_reads_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _db(tmp_path)
    calls = _no_spare_database(monkeypatch)
    engine = engine_for(url, {})
    t = sa.table("t", sa.column("id"), sa.column("qualify"), sa.column("pivot"))
    stmt = sa.select(t.c.qualify, t.c.pivot).where(t.c.id == 1)
    # Reserved in DuckDB only: quoted before any connection (the static list) and after.
    assert '"qualify"' in str(stmt.compile(dialect=engine.dialect))
    with engine.connect() as conn:
        assert conn.execute(stmt).all() == [("a", "b")]
        assert conn.exec_driver_sql("SELECT current_setting('threads')").scalar() == 1
        memory = str(conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar())
    assert '"pivot"' in str(stmt.compile(dialect=engine.dialect))
    # Its own set: duckdb_engine's preparer adds DuckDB's keywords to PostgreSQL's shared one.
    assert engine.dialect.identifier_preparer.reserved_words is not RESERVED_WORDS
    engine.dispose()
    assert calls == [str(tmp_path / "w.duckdb")]
    assert memory.endswith(("MiB", "MB")) and float(memory.split()[0]) < 64  # the 48MB limit


def test_settings_in_the_url_reach_duckdb_core_or_not(tmp_path: Path) -> None:
    url = _db(tmp_path)
    # memory_limit is one of the known core settings (straight to duckdb.connect);
    # default_null_order is not in that list and takes duckdb_engine's own path.
    engine = sa.create_engine(
        f"{url}?memory_limit=100MB&default_null_order=nulls_first_on_asc_last_on_desc"
    )
    with engine.connect() as conn:
        memory = str(conn.exec_driver_sql("SELECT current_setting('memory_limit')").scalar())
        order = conn.exec_driver_sql("SELECT current_setting('default_null_order')").scalar()
    engine.dispose()
    assert memory.startswith("95.3")  # 100MB as DuckDB prints it (MiB)
    assert order == "NULLS_FIRST_ON_ASC_LAST_ON_DESC"
