"""Rejects are a working list: ``connector rejects`` lists and exports every open one, and
``connector sync --retry-rejects`` re-sends those that pass now and closes them.

End to end on a real DuckDB file and a real PostgreSQL database, the sandbox over real HTTP.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from connector.cli import main as cli
from connector.core.errors import SourceError
from connector.deliver.delivery import Runtime
from connector.read.source import Reader
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store import schema as state_tables
from connector.store.state import CLOSED_DELIVERED, CLOSED_GONE, INCREMENTAL, Reject, StateStore
from tests.conftest import Warehouse, make_sync
from tests.dagster_fixtures import Env, env, klaviyo_ids, materialization, quiet_sandbox
from tests.helpers import BASE, BREVO, create_events_table, event_rows, insert_events, sync_for

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

KIND = "brevo_events_batch"
BATCH_PATH = "/v3/events/batch"

LISTED = """
name: videos
source: {table: ev, cursor: occurred_at, primary_key: event_id, url: "duckdb:///unused.duckdb"}
destination: {type: klaviyo_bulk_events, api_key: "${KLAVIYO_API_KEY}", base_url: "http://x.invalid"}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {email: email}
"""


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def listed(tmp_path: Path) -> Path:
    path = tmp_path / "videos.yaml"
    path.write_text(LISTED)
    return path


def _add(state: StateStore, n: int, scope: str = INCREMENTAL, reason: str = "bad row") -> None:
    payload = json.dumps({"name": "video_played", "identifiers": {"email": None}})
    state.add_rejects(
        "videos", scope, "run-1", [Reject(str(i), f"{reason} {i}", payload) for i in range(n)]
    )


# --------------------------------------------------------------------------- listing


def test_rejects_lists_every_open_reject_with_the_count(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 150)

    code, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed))

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "150 open rejects (videos)"
    assert lines[1].split("\t") == ["key", "reason", "rejected_at", "scope"]
    rows = [line.split("\t") for line in lines[2:]]
    assert sorted(int(r[0]) for r in rows) == list(range(150))
    assert all(r[1] == f"bad row {r[0]}" and r[3] == INCREMENTAL for r in rows)


def test_rejects_limit_shows_the_newest_and_says_how_many_there_are(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 12)

    _, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed), "--limit", "5")

    lines = out.splitlines()
    assert lines[0] == "12 open rejects (videos)"
    assert len(lines) == 2 + 5 + 1
    assert lines[-1] == "(the 5 newest; drop --limit to see all 12)"


def test_closed_rejects_are_left_out_unless_all_is_asked(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 4)
    assert state.close_rejects("videos", INCREMENTAL, ["1", "2"], "run-2", CLOSED_DELIVERED) == 2
    assert state.close_rejects("videos", INCREMENTAL, ["2", "3"], "run-2", CLOSED_GONE) == 1

    _, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed))
    assert out.splitlines()[0] == "1 open rejects (videos)"
    assert [line.split("\t")[0] for line in out.splitlines()[2:]] == ["0"]

    _, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed), "--all")
    lines = out.splitlines()
    assert lines[0] == "1 open rejects, 3 closed (videos)"
    status = {line.split("\t")[0]: line.split("\t")[4] for line in lines[2:]}
    assert status == {
        "0": "open",
        "1": "closed: delivered",
        "2": "closed: delivered",
        "3": "closed: source row gone",
    }
    assert state.count_rejects("videos") == 4  # every recorded reject, as before
    assert state.count_rejects("videos", open_only=True) == 1


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_rejects_export_key_reason_payload_and_when(
    fmt: str, capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 130, reason='bad, "quoted"\nrow')

    code, out, err = _cli(capsys, "--state-url", state.url, "rejects", str(listed), "--format", fmt)

    assert code == 0
    assert "130 open rejects" in err  # the count on stderr: stdout is the export only
    if fmt == "json":
        records = json.loads(out)
        payloads = [r["payload"] for r in records]
    else:
        records = list(csv.DictReader(io.StringIO(out)))
        payloads = [json.loads(r["payload"]) for r in records]
    assert len(records) == 130
    by_key = {r["key"]: r for r in records}
    assert sorted(map(int, by_key)) == list(range(130))
    assert by_key["7"]["reason"] == 'bad, "quoted"\nrow 7'
    assert by_key["7"]["status"] == "open"
    assert all(p == {"name": "video_played", "identifiers": {"email": None}} for p in payloads)
    for r in records:
        when = r["rejected_at"]
        assert when.startswith("20") and "T" in when  # ISO 8601


def test_rejects_piped_into_head_stops_quietly(listed: Path, state: StateStore) -> None:
    _add(state, 3000, reason="x" * 80)  # far more than a pipe buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "--state-url", state.url, "rejects", str(listed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert first.decode().startswith("3,000 open rejects")
    assert "Traceback" not in err and "BrokenPipe" not in err


# --------------------------------------------------------------------------- state schema


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


# --------------------------------------------------------------------------- reading by key


def test_rows_are_read_back_by_composite_key_with_bound_parameters(warehouse: Warehouse) -> None:
    warehouse.run(
        "DROP TABLE IF EXISTS ck",
        f"CREATE TABLE ck (shop VARCHAR(20), n INTEGER, ts {warehouse.timestamptz()}, "
        "email VARCHAR(50))",
    )
    warehouse.insert(
        "ck",
        [
            {"shop": s, "n": n, "ts": BASE + timedelta(seconds=n), "email": f"{n}@x.io"}
            for s in ("a,b", "c%d", "e')--")
            for n in range(3)
        ],
    )
    sync = make_sync(f"""
        name: ck
        source: {{table: ck, cursor: ts, primary_key: [shop, n], url: "{warehouse.url}"}}
        destination: {{type: klaviyo_bulk_events, api_key: "${{KLAVIYO_API_KEY}}"}}
        mapping: {{event_name: x, event_time: ts, identifiers: {{email: email}}}}
        """)
    keys = ["a%2Cb,1", "c%25d,2", "e')--,0", "a%2Cb,7", "nope", "a%2Cb,x"]
    with Reader(sync) as reader:
        chunks = list(reader.rows_by_keys(keys, batch=2))
    got = sorted((r["shop"], r["n"]) for c in chunks for r in c.table.to_pylist())
    assert got == [("a,b", 1), ("c%d", 2), ("e')--", 0)]


def test_a_key_that_cannot_be_read_back_exactly_is_refused_not_closed_as_gone(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    duck.run(f"CREATE TABLE dk (day DATE, ts {duck.timestamptz()}, email VARCHAR(50))")
    duck.insert("dk", [{"day": BASE.date(), "ts": BASE, "email": None}])
    sync = make_sync(f"""
        name: dk
        source: {{table: dk, cursor: ts, primary_key: [day], url: "{duck.url}"}}
        destination: {{type: klaviyo_bulk_events, api_key: "${{KLAVIYO_API_KEY}}",
                       base_url: "{sandbox.url}"}}
        mapping: {{event_name: x, event_time: ts, identifiers: {{email: email}}}}
        """)
    assert run_sync(sync, state=state, runtime=runtime).rejected == 1

    with pytest.raises(SourceError, match="integer, decimal or text primary keys; day is date"):
        run_sync(sync, state=state, runtime=runtime, retry_rejects=True)

    assert [r["key"] for r in state.rejects("dk")] == ["2026-11-01"]  # still open


# --------------------------------------------------------------------------- retry end to end


def _brevo_yaml(tmp_path: Path, wh: Warehouse, sandbox: SandboxServer) -> Path:
    path = tmp_path / "videos.yaml"
    path.write_text(
        BREVO.format(
            name="videos", table="ev", url=wh.url, sandbox=sandbox.url, chunk_size=100, options="{}"
        )
    )
    return path


def _ts(when: datetime) -> str:
    """A UTC instant as SQL both warehouses read the same, whatever the session's zone."""
    return f"CAST('{when:%Y-%m-%d %H:%M:%S}+00' AS TIMESTAMP WITH TIME ZONE)"


def _received(sandbox: SandboxServer) -> list[int]:
    return [int(ev["identifiers"]["ext_id"].removeprefix("u-")) for ev in sandbox.events(KIND)]


def _open(state: StateStore) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in state.rejects("videos")}


def test_retry_rejects_sends_exactly_the_fixed_rows_and_closes_them(
    warehouse: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_events_table(warehouse)
    rows = event_rows(0, 20)
    rows[3]["email"] = rows[3]["user_id"] = None  # no identifier
    rows[5]["kind"] = "bad name!"  # breaks Brevo's event name rule
    rows[9]["occurred_at"] = None  # NULL cursor: never read by an incremental run
    rows[12]["kind"] = "bad name!"  # rejected, then deleted from the source
    insert_events(warehouse, rows)
    path = _brevo_yaml(tmp_path, warehouse, sandbox)
    # The vendor refuses the third event of the first request (nothing of a 400 is stored;
    # the others are sent again): items are rows 0, 1, 2, 4, ... so index 2 is row 2.
    sandbox.inject(
        Fault(
            BATCH_PATH,
            status=400,
            body={"errors": [{"eventIndex": [2], "message": "contact is temporarily blocked"}]},
        )
    )
    base = ["--state-url", state.url]
    code, _, _ = _cli(capsys, *base, "sync", str(path), "--json")
    assert code == 0
    first = sorted(_received(sandbox))
    assert first == [i for i in range(20) if i not in (2, 3, 5, 9, 12)]
    assert set(_open(state)) == {"2", "3", "5", "9", "12"}
    checkpoint = state.checkpoint("videos")

    # Fix rows 2 (nothing to fix: the vendor's error was transient), 5 and 9; row 3 gets
    # identifiers but now breaks the event name rule; row 12 is deleted.
    warehouse.run(
        "UPDATE ev SET kind = 'video_played' WHERE event_id = 5",
        f"UPDATE ev SET occurred_at = {_ts(BASE)} WHERE event_id = 9",
        "UPDATE ev SET email = 'fixed3@example.com', user_id = 'u-3', kind = 'bad name!' "
        "WHERE event_id = 3",
        "DELETE FROM ev WHERE event_id = 12",
    )
    code, out, _ = _cli(capsys, *base, "sync", str(path), "--retry-rejects", "--json")

    assert code == 0
    res = json.loads(out)
    assert res["status"] == "success"
    assert (res["rows_read"], res["delivered"], res["rejected"]) == (4, 3, 1)
    assert (res["rejects_retried"], res["rejects_gone"], res["rejects_deferred"]) == (5, 1, 0)
    assert sorted(_received(sandbox)[len(first) :]) == [2, 5, 9]  # exactly those
    dedup = {ev["identifiers"]["ext_id"] for ev in sandbox.events(KIND)}
    assert len(dedup) == len(sandbox.events(KIND))  # nothing sent twice
    assert state.checkpoint("videos") == checkpoint
    still = _open(state)
    assert list(still) == ["3"] and "event name" in still["3"]
    closed = {
        r["key"]: r["resolution"]
        for r in state.rejects("videos", include_closed=True)
        if r["closed_at"] is not None
    }
    assert closed == {
        "2": CLOSED_DELIVERED,
        "5": CLOSED_DELIVERED,
        "9": CLOSED_DELIVERED,
        "12": CLOSED_GONE,  # reported (count above, `rejects --all`), never dropped
    }

    _, out, _ = _cli(capsys, *base, "rejects", str(path))
    assert out.splitlines()[0] == "1 open rejects (videos)"

    # The last bad row is fixed: the next retry closes it, and the list is empty.
    warehouse.run("UPDATE ev SET kind = 'video_played' WHERE event_id = 3")
    code, out, _ = _cli(capsys, *base, "sync", str(path), "--retry-rejects")
    assert code == 0 and "1 retried" in out
    assert _received(sandbox)[-1] == 3
    _, out, _ = _cli(capsys, *base, "rejects", str(path))
    assert out.splitlines() == ["0 open rejects (videos)"]
    # An incremental run afterwards reads nothing new and sends nothing again.
    code, out, _ = _cli(capsys, *base, "sync", str(path), "--json")
    assert json.loads(out)["rows_read"] == 0
    assert len(sandbox.events(KIND)) == 20 - 1
    assert state.checkpoint("videos") == checkpoint


def test_a_fixed_row_whose_cursor_moved_is_left_to_the_incremental_run_which_closes_it(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 6)
    rows[1]["kind"] = "bad name!"
    insert_events(duck, rows)
    sync = sync_for(KIND, duck, sandbox.url)
    assert run_sync(sync, state=state, runtime=runtime).rejected == 1
    checkpoint = state.checkpoint("videos")
    later = BASE + timedelta(hours=1)
    duck.run(f"UPDATE ev SET kind = 'video_played', occurred_at = {_ts(later)} WHERE event_id = 1")

    retry = run_sync(sync, state=state, runtime=runtime, retry_rejects=True)

    assert (retry.delivered, retry.rejects_deferred) == (0, 1)
    assert list(_open(state)) == ["1"]
    assert state.checkpoint("videos") == checkpoint

    incremental = run_sync(sync, state=state, runtime=runtime)

    assert incremental.delivered == 1
    assert _open(state) == {}
    [r] = state.rejects("videos", include_closed=True)
    assert (r["resolution"], r["closed_by_run"]) == (CLOSED_DELIVERED, incremental.run_id)
    assert sorted(_received(sandbox)) == list(range(6))
    # Nothing is left for a retry to send twice.
    assert run_sync(sync, state=state, runtime=runtime, retry_rejects=True).requests == 0
    assert len(sandbox.events(KIND)) == 6


def test_a_row_with_a_null_key_stays_open_while_it_exists_and_closes_when_gone(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 4)
    rows[2]["event_id"] = None
    insert_events(duck, rows)
    sync = sync_for(KIND, duck, sandbox.url)
    assert run_sync(sync, state=state, runtime=runtime).null_key_rows == 1
    assert list(_open(state)) == ["NULL"]

    retry = run_sync(sync, state=state, runtime=runtime, retry_rejects=True)

    assert (retry.delivered, retry.rejected, retry.rejects_gone) == (0, 1, 0)
    assert "primary key is NULL" in _open(state)["NULL"]
    duck.run("DELETE FROM ev WHERE event_id IS NULL")
    gone = run_sync(sync, state=state, runtime=runtime, retry_rejects=True)
    assert (gone.rejected, gone.rejects_gone) == (0, 1)
    assert _open(state) == {}


def test_a_dry_run_retry_counts_and_changes_nothing(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 5)
    rows[0]["kind"] = rows[4]["kind"] = "bad name!"
    insert_events(duck, rows)
    sync = sync_for(KIND, duck, sandbox.url)
    run_sync(sync, state=state, runtime=runtime)
    duck.run("UPDATE ev SET kind = 'video_played' WHERE event_id = 4")

    res = run_sync(sync, state=state, runtime=runtime, retry_rejects=True, dry_run=True)

    assert (res.status, res.delivered, res.rejected) == ("dry_run", 1, 1)
    assert set(_open(state)) == {"0", "4"}
    assert len(sandbox.events(KIND)) == 3


def test_retry_rejects_with_full_refresh_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    code, _, err = _cli(
        capsys, "--state-url", state.url, "sync", str(listed), "--retry-rejects", "--full-refresh"
    )
    assert code == 2
    assert "retry_rejects and full_refresh cannot be combined" in err


# --------------------------------------------------------------------------- Dagster


UNPARTITIONED = """
name: {name}
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{title: title}}
checks:
  reject_ratio_warn: 0.6
  reject_ratio_error: 0.9
"""


def test_the_asset_retries_rejects_from_its_run_config(env: Env) -> None:
    from tests.dagster_fixtures import create_table, dated_rows

    create_table(env.warehouse, dated_rows(days=1, per_day=6, bad_every=3))  # 2 without email
    env.write_sync("plays", UNPARTITIONED)
    key = dg.AssetKey(["reverse_etl", "plays"])
    asset = env.defs().resolve_assets_def(key)
    instance = dg.DagsterInstance.ephemeral()
    run: Callable[..., dg.ExecuteInProcessResult] = lambda **cfg: dg.materialize(  # noqa: E731
        [asset],
        instance=instance,
        run_config={"ops": {asset.op.name: {"config": cfg}}} if cfg else None,
    )
    assert materialization(run(), key)["rejected"] == 2
    bad = sorted(int(k) for k in _open_plays(env))
    checkpoint = env.state.checkpoint("plays")
    env.warehouse.run(f"UPDATE ev SET email = 'fixed@example.com' WHERE event_id = {bad[0]}")

    result = run(retry_rejects=True)

    md = materialization(result, key)
    assert (md["rows_read"], md["delivered"], md["rejected"]) == (2, 1, 1)
    assert md["rejects_retried"] == 2 and md["rejects_closed_source_row_gone"] == 0
    assert klaviyo_ids(env.sandbox).count(bad[0]) == 1 and len(klaviyo_ids(env.sandbox)) == 5
    assert sorted(int(k) for k in _open_plays(env)) == bad[1:]
    assert env.state.checkpoint("plays") == checkpoint


def _open_plays(env: Env) -> dict[str, Any]:
    return {r["key"]: r for r in env.state.rejects("plays")}
