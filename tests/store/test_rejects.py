"""Rejects in the state store (``store.rejects``): a store made before reject status gains it
and keeps its rejects, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.store import schema as state_tables
from connector.store.state import CLOSED_DELIVERED, INCREMENTAL, StateStore

OLD_REJECTS = """CREATE TABLE connector_rejects (
    sync VARCHAR(128) NOT NULL, scope VARCHAR(200) NOT NULL, key VARCHAR(1000) NOT NULL,
    reason TEXT NOT NULL, payload TEXT, run_id VARCHAR(64) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (sync, scope, key))"""


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_store_made_before_reject_status_gains_it_and_keeps_its_rejects(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if store == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = sa.create_engine(url)
    with engine.begin() as c:
        # A store of that time: its other tables as they are, no schema version yet.
        for table in (state_tables.checkpoints, state_tables.batches, state_tables.runs):
            table.create(c)
        c.exec_driver_sql(OLD_REJECTS)
        c.exec_driver_sql(
            "INSERT INTO connector_rejects VALUES "
            "('videos', 'incremental', '7', 'no identifier', NULL, 'r0', '2026-11-01 00:00:00+00')"
        )
    engine.dispose()

    state = StateStore(url)
    again = StateStore(url)  # a second open (another process) finds nothing to add

    assert [r["key"] for r in state.rejects("videos")] == ["7"]
    assert state.count_rejects("videos", open_only=True) == 1
    assert again.close_rejects("videos", INCREMENTAL, ["7"], "r1", CLOSED_DELIVERED) == 1
    assert state.rejects("videos") == []
    [closed] = state.rejects("videos", include_closed=True)
    assert (closed["closed_by_run"], closed["resolution"]) == ("r1", CLOSED_DELIVERED)
    state.engine.dispose()
    again.engine.dispose()
