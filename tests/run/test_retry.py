"""``connector sync --retry-rejects`` (``run.retry``): the open rejects that pass now are sent
again and closed; a fixed row whose cursor moved is left to the incremental run, a row with a
NULL key stays open while it exists, a dry run changes nothing, and a key that cannot be read
back exactly is refused, not closed as gone.

End to end on a real DuckDB file and a real PostgreSQL database, the sandbox over real HTTP.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.core.errors import SourceError
from connector.deliver.delivery import Runtime
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.state import CLOSED_DELIVERED, CLOSED_GONE, StateStore
from tests.cli.test_records import listed
from tests.conftest import Warehouse, make_sync
from tests.helpers import BASE, BREVO, create_events_table, event_rows, insert_events, sync_for

__all__ = ["listed"]  # fixtures used by name

KIND = "brevo_events_batch"
BATCH_PATH = "/v3/events/batch"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
