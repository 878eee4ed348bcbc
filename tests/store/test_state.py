"""The state store (``store.state``): a StateError instead of a traceback when the store is
locked, its server is down or goes down mid-run, or its directory cannot be written."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.core.errors import StateError
from connector.store import state as state_module
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import _free_port

BASE = datetime(2026, 11, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- StateError


def test_a_locked_sqlite_store_is_a_state_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    monkeypatch.setattr(state_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    store.engine.dispose()  # new connections get the short timeout
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing and never letting go
    try:
        with pytest.raises(StateError, match=r"stayed locked by another process for 0\.05 s"):
            store.settle("videos", INCREMENTAL, "r", [], [], (BASE, 1), [])
        with pytest.raises(StateError, match="database is locked"):
            store.start_run("videos", INCREMENTAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_state_server_that_is_down_is_a_state_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://conn:s3cret@127.0.0.1:{_free_port()}/state"
    with pytest.raises(StateError) as err:
        StateStore(url)
    assert "is unavailable" in str(err.value) and "conn:***@" in str(err.value)
    assert "check that the server runs" in str(err.value) and "s3cret" not in str(err.value)


def test_a_state_server_that_goes_down_mid_run_is_a_state_error(pg_server: str) -> None:
    """Every method, not only open: SQLAlchemy errors of any statement become StateError."""
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    name = "t_state_down"
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    store = StateStore(url)
    store.engine.dispose()
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()
    for call in (
        lambda: store.checkpoint("videos"),
        lambda: store.rejects("videos"),
        lambda: store.runs("videos"),
        lambda: store.start_run("videos", INCREMENTAL),
    ):
        with pytest.raises(StateError, match=f"state store .*{name}"):
            call()


def test_an_unwritable_state_directory_is_a_state_error(tmp_path: Path) -> None:
    # /proc refuses new files even to root (chmod would not stop a root test run).
    with pytest.raises(
        StateError, match=r"cannot be opened for writing .*make the file and its directory writable"
    ):
        StateStore("sqlite:////proc/connector-state.db")
