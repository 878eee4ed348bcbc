"""The state store's schema version and its migrations (``store.migrate``): new stores get the
latest version, older ones are migrated, every migration runs once in order; a broken store is
an error that says how to recover (never a fresh start), one from a newer connector is
refused, and ``state reset --broken-store`` recovers."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.cli import main as cli
from connector.core.errors import StateError
from connector.store import migrate
from connector.store import state as state_module
from connector.store.migrate import BrokenStoreError, Migration
from connector.store.schema import MIGRATIONS, SCHEMA_VERSION
from connector.store.state import INCREMENTAL, StateStore, reset_broken_store

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def _version(url: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return c.execute(sa.text("SELECT version FROM connector_schema_version")).scalar()
    finally:
        engine.dispose()


def _store_with_a_checkpoint(path: Path) -> str:
    url = f"sqlite:///{path}"
    store = StateStore(url)
    store.settle("videos", INCREMENTAL, "r0", [], [], (BASE, 41), [])
    for _ in range(200):  # a few pages, so that truncating the file loses some of them
        store.finish_run(store.start_run("videos", INCREMENTAL), "success", {"n": "x" * 300})
    store.engine.dispose()
    return url


# --------------------------------------------------------------------------- new stores


def test_a_new_sqlite_store_is_initialised_silently_with_the_latest_version(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'state.db'}"
    store = StateStore(url)
    assert store.checkpoint("videos") is None
    assert _version(url) == SCHEMA_VERSION == len(MIGRATIONS)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir() if ".init" in p.name) == []
    StateStore(url)  # opening again changes nothing
    assert _version(url) == SCHEMA_VERSION


def test_a_new_postgresql_store_is_initialised_and_a_store_made_before_versions_is_migrated(
    pg_url: str,
) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE warehouse_table (id INTEGER)")  # not ours: ignored
    StateStore(pg_url).settle("videos", INCREMENTAL, "r0", [], [], (BASE, 7), [])
    assert _version(pg_url) == SCHEMA_VERSION
    # The same store as the connector left it before versioning: no version table, no leases.
    with engine.begin() as c:
        c.exec_driver_sql("DROP TABLE connector_schema_version")
        c.exec_driver_sql("DROP TABLE connector_leases")
    engine.dispose()
    store = StateStore(pg_url)
    assert store.checkpoint("videos") == (BASE, 7)
    assert _version(pg_url) == SCHEMA_VERSION


def test_every_migration_runs_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).settle("videos", INCREMENTAL, "r0", [], [], (BASE, 1), [])
    applied: list[int] = []
    extra = sa.Table("connector_test_extra", sa.MetaData(), sa.Column("id", sa.Integer))

    def add_extra(c: sa.Connection) -> None:
        applied.append(1)
        extra.create(c)

    later = [*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "a later table", add_extra)]
    monkeypatch.setattr(state_module, "MIGRATIONS", later)
    store = StateStore(url)
    StateStore(url)
    assert applied == [1]  # the older steps were not run again, the new one once
    assert _version(url) == len(later)
    assert store.checkpoint("videos") == (BASE, 1)
    assert "connector_test_extra" in sa.inspect(store.engine).get_table_names()
    with pytest.raises(AssertionError, match="is number"):
        migrate.check_list([MIGRATIONS[0], MIGRATIONS[2]])


def _record(applied: list[int], table: sa.Table, c: sa.Connection) -> None:
    applied.append(1)
    table.create(c)


# --------------------------------------------------------------------------- broken stores


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"this is not SQLite " * 500)


def _version_row_gone(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("DELETE FROM connector_schema_version")


def _some_tables_only(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("DROP TABLE connector_schema_version")
        c.execute("DROP TABLE connector_runs")


def _no_connector_tables(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE something_else (id INTEGER)")


BROKEN: list[tuple[str, Callable[[Path], None], str]] = [
    ("empty-file", _empty, "is an empty file (truncated?)"),
    ("truncated-file", _truncated, "cannot be read (database disk image is malformed)"),
    ("not-a-database", _not_a_database, "cannot be read (file is not a database)"),
    ("version-row-gone", _version_row_gone, "has a schema-version table without its row"),
    ("some-tables-only", _some_tables_only, "has only some of the connector tables"),
    ("no-connector-tables", _no_connector_tables, "exists but holds no connector tables"),
]


@pytest.mark.parametrize("breaks,fragment", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_sqlite_store_is_an_error_that_says_how_to_recover_never_a_fresh_start(
    tmp_path: Path, breaks: Callable[[Path], None], fragment: str
) -> None:
    path = tmp_path / "state.db"
    url = _store_with_a_checkpoint(path)
    breaks(path)
    size, tables = path.stat().st_size, _tables(path)
    with pytest.raises(BrokenStoreError) as err:
        StateStore(url)
    assert fragment in str(err.value)
    assert "restore it from a backup" in str(err.value)
    assert "connector state reset --broken-store" in str(err.value)
    # Not "repaired" into an empty store: the same size, the same tables (none created).
    assert (path.stat().st_size, _tables(path)) == (size, tables)


def _tables(path: Path) -> list[str] | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
            return sorted(r[0] for r in c.execute("SELECT name FROM sqlite_master"))
    except sqlite3.DatabaseError:
        return None


def test_a_broken_postgresql_store_is_an_error(pg_url: str) -> None:
    StateStore(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.exec_driver_sql("DELETE FROM connector_schema_version")
    engine.dispose()
    with pytest.raises(BrokenStoreError, match="drops the connector_\\* tables"):
        StateStore(pg_url)
    assert "dropped the connector tables" in reset_broken_store(pg_url)
    assert StateStore(pg_url).checkpoint("videos") is None
    assert _version(pg_url) == SCHEMA_VERSION


def test_a_store_from_a_newer_connector_is_refused(tmp_path: Path) -> None:
    url = _store_with_a_checkpoint(tmp_path / "state.db")
    with sqlite3.connect(tmp_path / "state.db") as c:
        c.execute("UPDATE connector_schema_version SET version = 99")
    with pytest.raises(StateError, match="schema version 99, made by a newer connector"):
        StateStore(url)


def test_the_cli_refuses_a_truncated_store_and_state_reset_broken_store_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.db"
    url = _store_with_a_checkpoint(path)
    _truncated(path)
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[2] / "config/syncs/order_placed.yaml", config / "syncs")
    base = ["--config-dir", str(config), "--state-url", url]

    assert cli.main([*base, "state", "show", "order_placed"]) == 1
    err = capsys.readouterr().err
    assert "database disk image is malformed" in err and "Traceback" not in err

    assert cli.main([*base, "state", "reset", "--broken-store"]) == 0
    out = capsys.readouterr().out
    assert "the old file is now" in out and "made an empty store" in out
    [aside] = [p for p in tmp_path.iterdir() if ".broken-" in p.name and p.suffix != ".db-wal"]
    assert aside.stat().st_size > 0  # kept for whoever wants to dig in it
    assert cli.main([*base, "state", "show", "order_placed"]) == 0
    assert "no checkpoint yet" in capsys.readouterr().out
    # A store that opens is never thrown away by mistake.
    assert cli.main([*base, "state", "reset", "--broken-store"]) == 1
    assert "opens fine: nothing was reset" in capsys.readouterr().err
    assert len([p for p in tmp_path.iterdir() if ".broken-" in p.name]) == 1
    assert cli.main([*base, "state", "show", "--broken-store"]) == 2
