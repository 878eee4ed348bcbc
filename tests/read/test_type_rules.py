"""Cursor columns: the type rules (one function for validate and runs) and full precision.

Every supported cursor type on DuckDB and PostgreSQL: a complete run, then a second run that
sends nothing — counted at the sandbox, which keeps every Brevo copy. Ties (three rows per
cursor value) and pages of 100 rows put positions on page boundaries and checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.core.errors import ConfigError
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import Warehouse, make_sync

ROWS = 250

SYNC = """
name: cur
source:
  table: c
  cursor: cur
  primary_key: [id]
  url: "{url}"
  chunk_size: 100
destination:
  type: brevo_events_batch
  api_key: ${{BREVO_API_KEY}}
  base_url: "{sandbox}"
mapping:
  event_name: seen
  event_time: {event_time}
  identifiers: {{email_id: email}}
"""

# Cursor expressions of the row number i; d is i // 3, so three rows share each value.
DUCK = {
    "timestamp_ns": "CAST('2026-11-01 00:00:00.' || lpad(CAST(d * 333 AS VARCHAR), 9, '0') "
    "AS TIMESTAMP_NS)",
    "timestamp": "CAST(TIMESTAMP '2026-11-01' + to_microseconds(d * 7) AS TIMESTAMP)",
    "timestamptz": "TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_microseconds(d * 7)",
    "date": "DATE '2026-01-01' + CAST(d AS INTEGER)",
    "bigint": "CAST(9223372036854775000 + d AS BIGINT)",
    "hugeint": "CAST('170141183460469231731687303715884100000' AS HUGEINT) + d",
    "decimal": "CAST('1234567890123456789012345678.' || lpad(CAST(d AS VARCHAR), 10, '0') "
    "AS DECIMAL(38, 10))",
}
PG = {
    "timestamp": "TIMESTAMP '2026-11-01' + (d * 7) * INTERVAL '1 microsecond'",
    "timestamptz": "TIMESTAMPTZ '2026-11-01 00:00:00+00' + (d * 7) * INTERVAL '1 microsecond'",
    "date": "DATE '2026-01-01' + d",
    "bigint": "9223372036854775000 + d",
    "numeric": "CAST('1234567890123456789012345678.' || lpad(CAST(d AS VARCHAR), 10, '0') "
    "AS NUMERIC(38, 10))",
}
CASES = [("duckdb", k, v) for k, v in DUCK.items()] + [("postgresql", k, v) for k, v in PG.items()]


def _table(wh: Warehouse, cursor_sql: str) -> None:
    div = "//" if wh.kind == "duckdb" else "/"
    wh.run(
        "DROP TABLE IF EXISTS c",
        f"""CREATE TABLE c AS
            SELECT i AS id, {cursor_sql} AS cur,
                   TIMESTAMPTZ '2026-11-01 00:00:00+00' AS ts,
                   'u' || CAST(i AS VARCHAR) || '@example.com' AS email
            FROM (SELECT i, i {div} 3 AS d FROM generate_series(0, {ROWS - 1}) AS g(i)) AS s""",
    )


@pytest.mark.parametrize("kind,name,cursor_sql", CASES, ids=[f"{k}-{n}" for k, n, _ in CASES])
def test_a_second_run_after_a_complete_run_sends_nothing(
    kind: str,
    name: str,
    cursor_sql: str,
    tmp_path: Path,
    sandbox: SandboxServer,
    request: pytest.FixtureRequest,
) -> None:
    wh: Warehouse = request.getfixturevalue("duck" if kind == "duckdb" else "pg")
    _table(wh, cursor_sql)
    sync = make_sync(SYNC.format(url=wh.url, sandbox=sandbox.url, event_time="ts"))
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")

    first = run_sync(sync, state=state)
    assert (first.rows_read, first.delivered) == (ROWS, ROWS)
    assert len(sandbox.events("brevo_events_batch")) == ROWS

    second = run_sync(sync, state=state)
    assert (second.rows_read, second.delivered) == (0, 0)
    assert len(sandbox.events("brevo_events_batch")) == ROWS  # nothing sent again
    cursor, key = state.checkpoint("cur", INCREMENTAL)  # type: ignore[misc]
    assert key == ROWS - 1
    if name == "timestamp_ns":
        assert cursor.nanosecond == (((ROWS - 1) // 3) * 333) % 1000


# --------------------------------------------------------------------------- type rules

BAD_CURSORS = [
    ("VARCHAR", "CAST(i AS VARCHAR)", "cur is string: text orders '10' before '9'"),
    ("BOOLEAN", "i % 2 = 0", "cur is boolean: two values cannot order the rows"),
    ("DOUBLE", "CAST(i AS DOUBLE) / 3", "cur is float: a float cannot hold every value exactly"),
]


def _project(tmp_path: Path, wh: Warehouse, event_time: str = "ts") -> list[str]:
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True, exist_ok=True)
    (config / "syncs" / "cur.yaml").write_text(
        SYNC.format(url=wh.url, sandbox="http://127.0.0.1:9", event_time=event_time)
    )
    return ["--config-dir", str(config), "--state-url", f"sqlite:///{tmp_path / 's.db'}"]


@pytest.mark.parametrize("sql_type,cursor_sql,why", BAD_CURSORS, ids=[b[0] for b in BAD_CURSORS])
def test_a_run_refuses_the_cursor_types_validate_refuses_with_the_same_message(
    sql_type: str,
    cursor_sql: str,
    why: str,
    tmp_path: Path,
    duck: Warehouse,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _table(duck, cursor_sql)
    base = _project(tmp_path, duck)

    assert cli.main([*base, "validate"]) == 2
    validate_err = capsys.readouterr().err.strip()
    assert cli.main([*base, "sync", "cur"]) == 2
    sync_err = capsys.readouterr().err.strip()

    message = (
        f"syncs/cur.yaml: source.cursor must be a timestamp, date, integer or decimal column ({why}"
    )
    assert message in validate_err and message in sync_err
    assert validate_err.splitlines()[-1] == sync_err.splitlines()[-1]
    assert "Traceback" not in sync_err
    assert StateStore(f"sqlite:///{tmp_path / 's.db'}").runs("cur") == []  # no run started


def test_a_varchar_cursor_on_postgresql_is_refused_before_reading(
    tmp_path: Path, pg: Warehouse
) -> None:
    _table(pg, "CAST(i AS VARCHAR)")
    sync = make_sync(SYNC.format(url=pg.url, sandbox="http://127.0.0.1:9", event_time="ts"))
    with pytest.raises(ConfigError, match="cur is string: text orders '10' before '9'"):
        run_sync(sync, state=StateStore(f"sqlite:///{tmp_path / 's.db'}"))


def test_an_event_time_that_is_no_time_is_refused_by_run_and_validate_alike(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    _table(duck, "i")
    base = _project(tmp_path, duck, event_time="id")
    assert cli.main([*base, "validate"]) == 2
    validate_err = capsys.readouterr().err
    assert cli.main([*base, "sync", "cur"]) == 2
    sync_err = capsys.readouterr().err
    message = "mapping.event_time must be a timestamp or date column (id is integer)"
    assert message in validate_err and message in sync_err


def test_a_decimal_cursor_is_accepted_by_validate(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    _table(duck, DUCK["decimal"])
    assert cli.main([*_project(tmp_path, duck), "validate"]) == 0, capsys.readouterr()
