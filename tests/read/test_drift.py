"""Schema drift (issue 19 item 7): a key column whose type changed under a stored checkpoint.

The cursor switched to a column of another type, or a primary key column's type changed
(int → varchar): the run must stop before its first query with a config error (exit 2) that
names the column, both types and what to do, on every run until it is fixed, instead of the
warehouse's own error (DuckDB: "Binder Error: Cannot compare BIGINT and TIMESTAMP").
Real DuckDB file and real PostgreSQL; real HTTP to the sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config.sync_file import SyncConfig, parse_sync
from connector.core.errors import ConfigError
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import BREVO, create_events_table, event_rows, insert_events

ROWS = 30


def _sync(wh: Warehouse, sandbox: SandboxServer, cursor: str = "occurred_at") -> SyncConfig:
    text = BREVO.format(
        name="videos", table="ev", url=wh.url, sandbox=sandbox.url, chunk_size=100, options="{}"
    ).replace("cursor: occurred_at", f"cursor: {cursor}")
    return parse_sync(text, "syncs/videos.yaml")


@pytest.fixture(params=["duck", "pg"])
def wh(request: pytest.FixtureRequest) -> Warehouse:
    fixture: Warehouse = request.getfixturevalue(request.param)
    create_events_table(fixture)
    insert_events(fixture, event_rows(0, ROWS))
    fixture.run("ALTER TABLE ev ADD COLUMN seq BIGINT", "UPDATE ev SET seq = event_id")
    return fixture


def _first_run(wh: Warehouse, sandbox: SandboxServer, state: StateStore) -> None:
    res = run_sync(_sync(wh, sandbox), state=state)
    assert res.status == "success" and res.delivered == ROWS


def test_cursor_switched_to_a_column_of_another_type_is_a_config_error_every_run(
    wh: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    _first_run(wh, sandbox, state)
    sent = len(sandbox.events("brevo_events_batch"))
    for _ in range(2):  # every run until it is fixed
        with pytest.raises(ConfigError) as err:
            run_sync(_sync(wh, sandbox, cursor="seq"), state=state)
        text = str(err.value)
        assert "source.cursor: column seq is integer now" in text
        assert "the checkpoint of scope 'incremental' holds a timestamp" in text
        assert "`connector state reset videos`" in text and "CAST(seq AS" in text
        assert "Binder Error" not in text and "operator does not exist" not in text
    assert len(sandbox.events("brevo_events_batch")) == sent  # nothing sent
    # The way out it names works: after the reset the run starts over on the new cursor.
    state.reset("videos", None)
    assert run_sync(_sync(wh, sandbox, cursor="seq"), state=state).delivered == ROWS


def test_key_changed_from_int_to_varchar_is_a_config_error(
    wh: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    _first_run(wh, sandbox, state)
    using = " USING event_id::varchar" if wh.kind == "postgresql" else ""
    wh.run(f"ALTER TABLE ev ALTER COLUMN event_id TYPE VARCHAR(20){using}")
    for _ in range(2):
        with pytest.raises(ConfigError) as err:
            run_sync(_sync(wh, sandbox), state=state)
        text = str(err.value)
        assert "source.primary_key: column event_id is string now" in text
        assert "holds an integer (29)" in text and "`connector state reset videos`" in text


def test_the_cli_exits_2_on_drift(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, ROWS))
    duck.run("ALTER TABLE ev ADD COLUMN seq BIGINT", "UPDATE ev SET seq = event_id")
    _first_run(duck, sandbox, state)
    duck.dispose()
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    text = BREVO.format(
        name="videos", table="ev", url=duck.url, sandbox=sandbox.url, chunk_size=100, options="{}"
    )
    drifted = text.replace("cursor: occurred_at", "cursor: seq")
    (config / "syncs" / "videos.yaml").write_text(drifted)
    env = {**os.environ, "CONNECTOR_CONFIG_DIR": str(config), "CONNECTOR_STATE_URL": state.url}
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", "sync", "videos"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "column seq is integer now" in proc.stderr and "Traceback" not in proc.stderr
