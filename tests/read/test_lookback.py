"""The lookback window (issue 20 part 1), through the CLI: a row whose transaction commits after
a run passed its cursor value is delivered exactly once by the next run with the default
config, on PostgreSQL (real concurrent transactions) and DuckDB (a row inserted behind the
checkpoint, which is what a late commit looks like to the connector)."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.cli.main import main
from connector.sandbox import Fault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import connector_process, wait_until

KIND = "klaviyo_bulk_events"

SYNC = """
name: late
source:
  table: ev
  cursor: {cursor}
  primary_key: [id]
  url: {url}
  chunk_size: 100
{lookback}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {{concurrency: 1}}
mapping:
  event_name: signed_up
  event_time: loaded_at
  identifiers: {{email: email}}
"""

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Cli:
    """``connector`` in this process, against one config dir and state store."""

    def __init__(
        self,
        tmp_path: Path,
        wh: Warehouse,
        sandbox: SandboxServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        *,
        cursor: str = "loaded_at",
        lookback: str = "",
    ) -> None:
        self.wh, self.capsys = wh, capsys
        self.config = tmp_path / "config"
        (self.config / "syncs").mkdir(parents=True)
        (self.config / "syncs" / "late.yaml").write_text(
            SYNC.format(
                cursor=cursor,
                url=wh.url,
                sandbox=sandbox.url,
                lookback=f"  lookback: {lookback}" if lookback else "",
            )
        )
        self.state_url = f"sqlite:///{tmp_path / 'state.db'}"
        monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(self.config))
        monkeypatch.setenv("CONNECTOR_STATE_URL", self.state_url)

    def run(self, *argv: str) -> tuple[int, str, str]:
        if self.wh.kind == "duckdb":
            self.wh.dispose()  # the connector opens the file read-only
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def sync(self, *args: str) -> dict[str, Any]:
        code, out, err = self.run("sync", "late", "--json", *args)
        assert code == 0, (out, err)
        result: dict[str, Any] = json.loads(out)
        return result

    def plan(self) -> dict[str, Any]:
        code, out, err = self.run("plan", "late", "--json")
        assert code == 0, (out, err)
        result: dict[str, Any] = json.loads(out)
        return result


def delivered(sandbox: SandboxServer) -> Counter[int]:
    """Source ids of the events the sandbox kept, with how often each arrived (duplicates the
    sandbox dropped by dedup id included: a re-send shows)."""
    ids = Counter(int(ev["event"]["unique_id"].split(":", 1)[1]) for ev in sandbox.events(KIND))
    return ids


def received(sandbox: SandboxServer) -> int:
    stats = sandbox.stats()
    return int(stats["events"][KIND] + stats["deduplicated"][KIND])


def create_pg(wh: Warehouse) -> None:
    wh.run(
        "CREATE TABLE ev (id bigserial PRIMARY KEY, loaded_at timestamptz NOT NULL DEFAULT "
        "now(), email text)"
    )


def insert_pg(c: sa.Connection, first: int, count: int) -> None:
    c.execute(
        sa.text("INSERT INTO ev (email) VALUES (:e)"),
        [{"e": f"u{first + i}@example.com"} for i in range(count)],
    )


# -------------------------------------------------------------------- PostgreSQL: late commits


@pytest.mark.parametrize("cursor", ["loaded_at", "id"])
def test_a_row_that_commits_late_is_delivered_once_by_the_next_run(
    cursor: str,
    tmp_path: Path,
    pg: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Transaction 1 inserts A (its loaded_at and id are given now), transaction 2 inserts
    B..Z and commits, a sync reads B..Z and checkpoints past A, then A commits: the next sync
    delivers A, once, with the default config (on main A was lost and every run exited 0)."""
    create_pg(pg)
    cli = Cli(tmp_path, pg, sandbox, monkeypatch, capsys, cursor=cursor)
    held = sa.create_engine(pg.url)
    try:
        with held.connect() as c1:
            tx = c1.begin()
            insert_pg(c1, 0, 1)  # A: id 1, loaded_at = the start of transaction 1
            with pg.engine.begin() as c2:
                insert_pg(c2, 1, 25)  # B..Z: ids 2..26, later loaded_at
            first = cli.sync()
            assert first["delivered"] == 25 and first["late_rows"] == 0
            tx.commit()
    finally:
        held.dispose()
    assert cli.plan()["late_rows"] == 1
    second = cli.sync()
    assert (second["delivered"], second["late_rows"], second["rows_read"]) == (1, 1, 1)
    assert second["window_reread"] == 25  # B..Z read again, skipped
    assert second["hwm_after"] == first["hwm_after"]  # the checkpoint never moves back
    assert delivered(sandbox) == Counter(range(1, 27))
    third = cli.sync()
    assert (third["delivered"], third["late_rows"], third["rows_read"]) == (0, 0, 0)
    assert received(sandbox) == 26  # nothing sent twice


def test_with_the_window_off_the_late_row_is_not_read(
    tmp_path: Path,
    pg: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``lookback: off`` is the old behaviour, documented: the late row is never read."""
    create_pg(pg)
    cli = Cli(tmp_path, pg, sandbox, monkeypatch, capsys, cursor="id", lookback="off")
    held = sa.create_engine(pg.url)
    try:
        with held.connect() as c1:
            tx = c1.begin()
            insert_pg(c1, 0, 1)
            with pg.engine.begin() as c2:
                insert_pg(c2, 1, 5)
            cli.sync()
            tx.commit()
    finally:
        held.dispose()
    again = cli.sync()
    assert (again["delivered"], again["late_rows"], again["lookback"]) == (0, 0, None)
    assert 1 not in delivered(sandbox)


def test_many_runs_with_new_and_late_rows_store_every_row_once(
    tmp_path: Path,
    pg: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each round a transaction holds a row open while others commit and a sync runs; it
    commits after. Every row arrives exactly once, and the window table stays bounded."""
    create_pg(pg)
    cli = Cli(tmp_path, pg, sandbox, monkeypatch, capsys, cursor="id", lookback="500")
    held = sa.create_engine(pg.url)
    n = 0
    late = 0
    try:
        for round_ in range(8):
            with held.connect() as c1:
                tx = c1.begin()
                insert_pg(c1, n, 1 + round_ % 3)
                n += 1 + round_ % 3
                with pg.engine.begin() as c2:
                    insert_pg(c2, n, 40)
                n += 40
                late += cli.sync()["late_rows"]
                tx.commit()
    finally:
        held.dispose()
    late += cli.sync()["late_rows"]
    assert late == sum(1 + r % 3 for r in range(8))
    assert delivered(sandbox) == Counter(range(1, n + 1))
    assert received(sandbox) == n
    size = StateStore(cli.state_url).window_size("late")
    assert 0 < size <= 500  # the ids inside the window behind the checkpoint, no more


# -------------------------------------------------------------------- DuckDB


def create_duck(wh: Warehouse, rows: list[tuple[int, datetime, str | None]]) -> None:
    wh.run(
        "DROP TABLE IF EXISTS ev",
        "CREATE TABLE ev (id BIGINT PRIMARY KEY, loaded_at TIMESTAMPTZ, email VARCHAR)",
    )
    add_duck(wh, rows)


def add_duck(wh: Warehouse, rows: list[tuple[int, datetime, str | None]]) -> None:
    wh.insert("ev", [{"id": i, "loaded_at": t, "email": e} for i, t, e in rows])


def rows_at(first: int, count: int, start: datetime, step_s: int = 1) -> list[Any]:
    return [
        (first + i, start + timedelta(seconds=i * step_s), f"u{first + i}@example.com")
        for i in range(count)
    ]


def test_duckdb_late_rows_rejects_and_the_window_edge(
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows that appear behind the checkpoint are caught once; a row rejected inside the
    window stays one reject (not re-sent, not rejected again); a late row in the window's
    oldest tenth warns, naming the option; a row older than the window is not read."""
    create_duck(duck, [*rows_at(1, 50, T0), (51, T0 + timedelta(seconds=60), None)])
    cli = Cli(tmp_path, duck, sandbox, monkeypatch, capsys)
    first = cli.sync()
    assert (first["delivered"], first["rejected"]) == (50, 1)
    checkpoint = T0 + timedelta(seconds=60)
    add_duck(
        duck,
        [
            (100, checkpoint - timedelta(minutes=10), "late1@example.com"),
            (101, checkpoint - timedelta(minutes=57), "edge@example.com"),  # oldest tenth
            (102, checkpoint - timedelta(minutes=61), "lost@example.com"),  # beyond 1 h
            (103, checkpoint + timedelta(seconds=1), "new@example.com"),
        ],
    )
    code, out, err = cli.run("sync", "late")
    assert code == 0, err
    assert "late rows caught    2  (lookback 1h, 1 near its far edge" in out
    assert "window, which may be too short: raise source.lookback" in out
    assert "oldest 10% of the lookback window (source.lookback 1h)" in caplog.text
    assert delivered(sandbox) == Counter([*range(1, 51), 100, 101, 103])
    third = cli.sync()
    assert (third["delivered"], third["rejected"], third["late_rows"]) == (0, 0, 0)
    assert StateStore(cli.state_url).open_reject_keys("late", "incremental") == ["51"]


def test_full_refresh_resends_everything_and_keeps_the_window_exact(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--full-refresh`` keeps its meaning: every row again, then incremental runs as
    before (the window table rebuilt by the refresh, no row twice after it)."""
    create_duck(duck, rows_at(1, 30, T0))
    cli = Cli(tmp_path, duck, sandbox, monkeypatch, capsys)
    cli.sync()
    refresh = cli.sync("--full-refresh")
    assert (refresh["delivered"], refresh["late_rows"]) == (30, 0)
    assert StateStore(cli.state_url).window_size("late") == 30
    add_duck(duck, [(40, T0 + timedelta(seconds=5, microseconds=1), "late@example.com")])
    again = cli.sync()
    assert (again["delivered"], again["late_rows"]) == (1, 1)


def test_a_lookback_that_does_not_fit_the_cursor_is_a_config_error(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_duck(duck, rows_at(1, 3, T0))
    cli = Cli(tmp_path, duck, sandbox, monkeypatch, capsys, cursor="id", lookback="1h")
    code, _, err = cli.run("sync", "late")
    assert code == 2
    assert "source.lookback: '1h' is a duration, but the cursor id is integer" in err


# -------------------------------------------------------------------- kill -9


def test_kill_9_during_a_run_whose_window_holds_delivered_rows(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run 1 delivers 1,000 rows (all inside the window). 100 late rows and 2,900 new ones
    appear; run 2 is killed while its second request hangs (stored by the API, unanswered).
    Run 3 loses nothing, and the only rows sent twice are those of the batch in flight."""
    create_duck(duck, rows_at(0, 1000, T0))
    cli = Cli(tmp_path, duck, sandbox, monkeypatch, capsys)
    assert cli.sync()["delivered"] == 1000
    add_duck(
        duck,
        [
            *rows_at(1000, 100, T0 + timedelta(milliseconds=500), step_s=2),  # late
            *rows_at(1100, 2900, T0 + timedelta(seconds=2000)),  # new
        ],
    )
    duck.dispose()
    path = "/api/event-bulk-create-jobs"
    sandbox.inject(Fault(path=path, delay_s=0.001), Fault(path=path, hang=True, after_process=True))
    before = received(sandbox)
    proc = connector_process(cli.config, cli.state_url, "sync", "late")
    assert sandbox.wait_for_hang(timeout=60), proc.communicate(timeout=5)
    store = StateStore(cli.state_url)
    wait_until(
        lambda: (
            not [e for e in store.ledger("late", "incremental") if e.status != "pending"]
            and received(sandbox) - before == 2000
            and (store.checkpoint("late") or (None, -1))[1] > 999
        ),
        "the first batch of run 2 to settle",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sandbox.release()
    pending = [e for e in store.ledger("late", "incremental") if e.status == "pending"]
    assert [e.count for e in pending] == [1000]

    third = cli.sync()
    assert delivered(sandbox) == Counter(range(4000))  # nothing lost
    # Every row once, plus the one batch that was in flight when run 2 died.
    assert received(sandbox) == 4000 + 1000
    assert third["possibly_duplicated"] == 1000
    assert store.ledger("late", "incremental") == []


# -------------------------------------------------------------------- window arithmetic


def _sync(lookback: str | None) -> Any:
    from tests.conftest import make_sync

    line = f"\n  lookback: {lookback}" if lookback is not None else ""
    return make_sync(
        f"""
name: w
source:
  table: ev
  cursor: c
  primary_key: [id]{line}
destination: {{type: klaviyo_bulk_events, api_key: "${{KLAVIYO_API_KEY}}"}}
mapping: {{event_name: e, event_time: c, identifiers: {{email: email}}}}
"""
    )


@pytest.mark.parametrize(
    "value,kind,span",
    [
        (None, "timestamptz", timedelta(hours=1)),
        ("15m", "timestamp", timedelta(minutes=15)),
        ("2d", "timestamptz", timedelta(days=2)),
        (None, "date", timedelta(days=1)),
        ("3", "date", timedelta(days=3)),
        ("48h", "date", timedelta(days=2)),
        (None, "integer", 10_000),
        ("250", "integer", 250),
        (None, "number", 10_000),
    ],
)
def test_the_window_by_cursor_kind(value: str | None, kind: str, span: Any) -> None:
    from connector.read.lookback import lookback_for

    lb = lookback_for(_sync(value), kind)
    assert lb is not None and lb.span == span


@pytest.mark.parametrize("value", ["0", "off", "no", "false"])
def test_zero_and_off_disable_it(value: str) -> None:
    from connector.read.lookback import lookback_for

    assert lookback_for(_sync(value), "timestamptz") is None


@pytest.mark.parametrize(
    "value,kind,message",
    [
        ("3600", "timestamptz", "3600 is a count, but the cursor c is a timestamptz"),
        ("1h", "integer", "'1h' is a duration, but the cursor c is integer"),
        ("36h", "date", "'36h' is not whole days, but the cursor c is a date"),
    ],
)
def test_a_window_that_does_not_fit_the_cursor(value: str, kind: str, message: str) -> None:
    from connector.core.errors import ConfigError
    from connector.read.lookback import lookback_for

    with pytest.raises(ConfigError, match=message):
        lookback_for(_sync(value), kind)


@pytest.mark.parametrize("value", ["1 hour", "-5", "1.5h", "yes"])
def test_a_malformed_window_is_refused_when_the_file_is_read(value: str) -> None:
    from connector.core.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="lookback"):
        _sync(value)


def test_cursor_numbers_order_as_the_cursor_and_the_edge() -> None:
    from datetime import date
    from decimal import Decimal

    from connector.read.lookback import Lookback, cursor_number, row_hash

    assert cursor_number(T0) < cursor_number(T0 + timedelta(microseconds=1))
    assert cursor_number(date(2026, 1, 2)) - cursor_number(date(2026, 1, 1)) == 1
    assert cursor_number(Decimal("7.9")) == 7
    lb = Lookback("timestamptz", timedelta(hours=1), "1h")
    assert lb.near_edge(T0 - timedelta(minutes=55), T0)
    assert not lb.near_edge(T0 - timedelta(minutes=50), T0)
    assert row_hash((T0, 1)) != row_hash((T0, 2)) and row_hash((T0, 1)) == row_hash((T0, 1))


# -------------------------------------------------------------------- rules


def test_a_deleted_then_reinserted_key_is_a_new_row_when_its_cursor_is_new(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The documented rule: inside the window a row is its key *and* cursor value. Key 5
    deleted and inserted again with a new cursor value behind the checkpoint is sent again;
    key 6 inserted again with its old cursor value is the row already delivered."""
    create_duck(duck, rows_at(1, 10, T0))
    cli = Cli(tmp_path, duck, sandbox, monkeypatch, capsys)
    cli.sync()
    duck.run("DELETE FROM ev WHERE id IN (5, 6)")
    add_duck(
        duck,
        [
            (5, T0 + timedelta(seconds=4, milliseconds=500), "u5@example.com"),
            (6, T0 + timedelta(seconds=5), "u6@example.com"),
        ],
    )
    again = cli.sync()
    assert (again["delivered"], again["late_rows"]) == (1, 1)
    assert received(sandbox) == 11


def test_a_partition_scope_reads_its_own_window(tmp_path: Path, duck: Warehouse) -> None:
    """Backfill partitions (scope ``partition:<key>``) get the same window inside their time
    window, with their own rows in the window table; the incremental scope is untouched."""
    from connector.read.source import Window
    from connector.run.sync import run_sync
    from tests.conftest import make_sync

    create_duck(duck, rows_at(1, 20, T0))
    duck.dispose()
    with SandboxServer(host="127.0.0.1", port=0) as sb:
        sync = make_sync(SYNC.format(cursor="loaded_at", url=duck.url, sandbox=sb.url, lookback=""))
        state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        day = Window(T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
        scope = "partition:2026-11-01"
        first = run_sync(sync, state=state, scope=scope, window=day)
        assert first.delivered == 20 and state.window_size("late", scope) == 20
        add_duck(duck, [(30, T0 + timedelta(seconds=3, milliseconds=1), "p@example.com")])
        duck.dispose()
        again = run_sync(sync, state=state, scope=scope, window=day)
        assert (again.delivered, again.late_rows, again.window_reread) == (1, 1, 20)
        assert state.checkpoint("late") is None and state.window_size("late", "incremental") == 0
        assert sorted(int(e["event"]["unique_id"].split(":")[1]) for e in sb.events(KIND)) == [
            *range(1, 21),
            30,
        ]


def test_turning_the_window_on_over_an_old_checkpoint_sends_no_row_again(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A store whose runs kept no window (made before it, or with ``lookback: off``): the
    first run with the window treats the rows behind its checkpoint as handled, as before,
    instead of re-sending an hour of rows as late; from then on late rows are caught."""
    create_duck(duck, rows_at(1, 20, T0))
    off = Cli(tmp_path, duck, sandbox, monkeypatch, capsys, lookback="off")
    assert off.sync()["delivered"] == 20
    sync_file = off.config / "syncs" / "late.yaml"
    sync_file.write_text(sync_file.read_text().replace("  lookback: off\n", ""))
    add_duck(duck, [(21, T0 + timedelta(seconds=30), "u21@example.com")])
    first = off.sync()
    assert (first["delivered"], first["late_rows"], first["window_reread"]) == (1, 0, 20)
    add_duck(duck, [(22, T0 + timedelta(seconds=25), "late@example.com")])
    assert off.plan()["late_rows"] == 1
    code, out, _ = off.run("plan", "late")
    assert code == 0 and "late rows           1  (inside the lookback window" in out
    second = off.sync()
    assert (second["delivered"], second["late_rows"]) == (1, 1)
    assert received(sandbox) == 22
