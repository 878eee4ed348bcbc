"""``connector reconcile``: rows per period at the source against the rows the sync handled.

End to end through the CLI on a real DuckDB file and a real PostgreSQL database, the sandbox
over real HTTP (Klaviyo's bulk endpoint deduplicates by ``unique_id``, Brevo's batch does not).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.cli import main as cli
from connector.sandbox import Fault, SandboxServer
from connector.store.periods import period_keys
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import (
    BASE,
    TEMPLATES,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
)

KLAVIYO = "klaviyo_bulk_events"


def _write_sync(tmp_path: Path, wh: Warehouse, sandbox: SandboxServer, kind: str = KLAVIYO) -> str:
    text = TEMPLATES[kind].format(
        name="videos", table="ev", url=wh.url, sandbox=sandbox.url, chunk_size=100, options="{}"
    )
    path = tmp_path / "videos.yaml"
    path.write_text(text)
    return str(path)


def _cli(capsys: pytest.CaptureFixture[str], state: StateStore, *argv: str) -> tuple[int, str]:
    code = cli.main(["--state-url", state.url, *argv])
    out, err = capsys.readouterr()
    return code, out + err


def _json(
    capsys: pytest.CaptureFixture[str], state: StateStore, *argv: str
) -> tuple[int, dict[str, Any]]:
    code = cli.main(["--state-url", state.url, *argv, "--json"])
    out, _ = capsys.readouterr()
    data: dict[str, Any] = json.loads(out)
    return code, data


def _reconcile(
    capsys: pytest.CaptureFixture[str], state: StateStore, sync: str, *argv: str
) -> tuple[int, dict[str, Any]]:
    return _json(capsys, state, "reconcile", sync, *argv)


def _late(event_id: int, when: timedelta) -> dict[str, object]:
    row = event_rows(event_id, 1)[0]
    row["occurred_at"] = BASE + when
    return row


@pytest.fixture(params=["duck", "pg"])
def wh(request: pytest.FixtureRequest) -> Warehouse:
    warehouse: Warehouse = request.getfixturevalue(request.param)
    return warehouse


def test_a_row_inserted_behind_the_checkpoint_is_reported_and_sent_once(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    wh: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
) -> None:
    create_events_table(wh)
    insert_events(wh, event_rows(0, 30))  # 2026-11-01, 00:00:00 to 00:00:09
    sync = _write_sync(tmp_path, wh, sandbox)
    assert _cli(capsys, state, "sync", sync)[0] == 0
    code, report = _reconcile(capsys, state, sync)
    assert code == 0 and report["missing"] == 0 and report["deleted_at_source"] == 0

    # Two rows committed late with cursors behind the checkpoint: one ten days back (a period
    # of its own), one in the period the sync delivered (30 rows already at the vendor).
    insert_events(wh, [_late(1000, -timedelta(days=10)), _late(1001, timedelta(seconds=1))])
    code, report = _reconcile(capsys, state, sync)
    assert code == 1
    assert report["missing"] == 2
    periods = {p["period"]: p for s in report["scopes"] for p in s["periods"]}
    assert periods["2026-10-22"]["missing"] == 1
    assert periods["2026-11-01"] == {
        "period": "2026-11-01",
        "source": 31,
        "delivered": 30,
        "rejected": 0,
        "missing": 1,
        "deleted_at_source": 0,
    }
    code, text = _cli(capsys, state, "reconcile", sync)
    assert code == 1 and "2026-10-22: source 1, delivered 0, rejected 0: 1 missing" in text

    code, report = _reconcile(capsys, state, sync, "--send-missing")
    assert code == 0, report
    assert report["missing"] == 0 and report["deleted_at_source"] == 0
    sent = {s["period"]: s for s in report["sent"]}
    assert sent["2026-11-01"]["rows_read"] == 31  # the whole period, by dedup id
    ids = Counter(delivered_ids(sandbox, KLAVIYO))
    assert ids[1000] == 1 and ids[1001] == 1
    assert set(ids.values()) == {1} and len(ids) == 32  # every row stored exactly once

    # Nothing is left for the next run, and the scope's checkpoint did not move back.
    code, summary = _json(capsys, state, "sync", sync)
    assert code == 0 and summary["delivered"] == 0
    assert Counter(delivered_ids(sandbox, KLAVIYO)) == ids
    assert _reconcile(capsys, state, sync)[0] == 0


def test_a_row_deleted_at_the_source_is_reported_without_failing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    wh: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
) -> None:
    create_events_table(wh)
    insert_events(wh, event_rows(0, 30))
    sync = _write_sync(tmp_path, wh, sandbox)
    assert _cli(capsys, state, "sync", sync)[0] == 0
    wh.run("DELETE FROM ev WHERE event_id = 7")

    code, report = _reconcile(capsys, state, sync, "--period", "hour")
    assert code == 0
    assert report["missing"] == 0 and report["deleted_at_source"] == 1
    (scope,) = report["scopes"]
    assert scope["periods"] == [
        {
            "period": "2026-11-01T00",
            "source": 29,
            "delivered": 30,
            "rejected": 0,
            "missing": 0,
            "deleted_at_source": 1,
        }
    ]
    code, text = _cli(capsys, state, "reconcile", sync)
    assert code == 0 and "2026-11-01: source 29, delivered 30, rejected 0: 1 deleted" in text


def test_rejects_count_as_handled_and_a_full_refresh_counts_afresh(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 30)
    for row in rows[::5]:
        row["email"] = row["user_id"] = None  # no identifier: a local reject
    insert_events(duck, rows)
    sync = _write_sync(tmp_path, duck, sandbox)
    assert _cli(capsys, state, "sync", sync)[0] == 0
    assert _cli(capsys, state, "sync", sync, "--full-refresh")[0] == 0
    code, report = _reconcile(capsys, state, sync)
    assert code == 0 and report["missing"] == 0 and report["deleted_at_source"] == 0
    assert state.period_counts("videos", "incremental") == {"2026-11-01T00": (24, 6)}


def test_a_destination_without_dedup_gets_the_command_not_duplicates(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    sync = _write_sync(tmp_path, duck, sandbox, "brevo_events_batch")
    assert _cli(capsys, state, "sync", sync)[0] == 0
    insert_events(duck, [_late(1000, -timedelta(days=3))])

    code, text = _cli(capsys, state, "reconcile", sync, "--send-missing")
    assert code == 2
    assert "does not deduplicate" in text
    assert "connector reconcile videos --period day --send-missing --accept-duplicates" in text
    assert len(sandbox.events("brevo_events_batch")) == 30

    code, text = _cli(capsys, state, "reconcile", sync, "--send-missing", "--accept-duplicates")
    assert code == 0, text
    assert [e["identifiers"]["ext_id"] for e in sandbox.events("brevo_events_batch")][30:] == [
        "u-1000"
    ]  # the period held only the missing row


def test_an_integer_cursor_is_counted_in_buckets_of_ids(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
) -> None:
    create_events_table(duck)
    insert_events(duck, [r for r in event_rows(0, 30) if r["event_id"] != 10])
    path = _write_sync(tmp_path, duck, sandbox)
    text = Path(path).read_text().replace("cursor: occurred_at", "cursor: event_id")
    Path(path).write_text(text)
    assert _cli(capsys, state, "sync", path)[0] == 0
    insert_events(duck, event_rows(10, 1))

    code, report = _reconcile(capsys, state, path)
    assert code == 1
    assert [p["period"] for s in report["scopes"] for p in s["periods"]] == ["0"]
    code, text = _cli(capsys, state, "reconcile", path, "--period", "hour")
    assert code == 2 and "buckets of 100,000 ids" in text
    assert _reconcile(capsys, state, path, "--send-missing")[0] == 0
    assert Counter(delivered_ids(sandbox, KLAVIYO))[10] == 1


# --------------------------------------------------------------------------- the seam


@pytest.mark.parametrize("unit", ["hour", "day", "month"])
def test_each_warehouse_buckets_as_the_stored_counts_do(
    warehouse: Warehouse, sandbox: SandboxServer, tmp_path: Path, unit: str
) -> None:
    """The warehouse's GROUP BY and the settle's tally put every row in the same period,
    across midnight, month ends and an instant written with another offset."""
    import pyarrow as pa

    from connector.config.sync_file import parse_sync
    from connector.run.reconcile import PeriodReader
    from connector.store.periods import rollup

    create_events_table(warehouse)
    offsets = [timedelta(0), timedelta(hours=23, minutes=59), timedelta(days=29, hours=23)]
    offsets += [timedelta(days=30), timedelta(days=-1, seconds=1), timedelta(hours=5)]
    rows = [_late(i, when) for i, when in enumerate(offsets)]
    insert_events(warehouse, rows)
    sync = parse_sync(Path(_write_sync(tmp_path, warehouse, sandbox)).read_text(), "s.yaml")
    reader = PeriodReader(sync, warehouse.url)
    try:
        last = max(r["occurred_at"] for r in rows)  # type: ignore[type-var]
        got = reader.counts((last, 10**6), None, unit)
    finally:
        reader.close()
    stored = period_keys(pa.array([r["occurred_at"] for r in rows], pa.timestamp("us", "UTC")))
    assert got == {
        k: d for k, (d, _) in rollup({k: (n, 0) for k, n in stored.items()}, unit).items()
    }


# --------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_counts_stay_exact_through_a_kill_9_with_batches_settled_beyond_the_checkpoint(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    """Batches delivered past a hung one are counted in their settle; the killed run leaves
    them beyond its checkpoint. Reconcile is exact then, and after the rerun."""
    from tests.e2e.test_crash import _kill, _received, _setup
    from tests.helpers import connector_process, wait_until

    rows, kind = 8000, KLAVIYO
    config, state_url = _setup(tmp_path, duck, sandbox, kind, rows, concurrency=4)
    sandbox.inject(Fault(path="/api/event-bulk-create-jobs", hang=True, after_process=True))
    store = StateStore(state_url)

    def settled() -> bool:
        left = store.ledger("videos", "incremental")
        upto = (store.checkpoint("videos") or (0, -1))[1] + 1
        done = [e.status for e in left].count("pending") == 1
        return (
            _received(sandbox, kind) == rows and done and sum(e.count for e in left) + upto == rows
        )

    proc = connector_process(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60)
    wait_until(settled, "every batch but the hung one to settle")
    _kill(proc, sandbox)
    assert any(e.status == "delivered" for e in store.ledger("videos", "incremental"))

    def reconcile() -> tuple[int, dict[str, Any]]:
        done = connector_process(
            config, state_url, "reconcile", "videos", "--json", "--period", "hour"
        )
        out, err = done.communicate(timeout=120)
        return done.returncode, json.loads(out) if out else {"err": err}

    code, report = reconcile()
    assert code == 0 and report["missing"] == 0 and report["deleted_at_source"] == 0, report
    (scope,) = report["scopes"]
    assert scope["source_rows"] == scope["handled_rows"] == rows - 1000  # the hung batch aside

    rerun = connector_process(config, state_url, "sync", "videos")
    assert rerun.communicate(timeout=120) and rerun.returncode == 0
    code, report = reconcile()
    assert code == 0 and report["scopes"][0]["handled_rows"] == rows, report
    assert store.period_counts("videos", "incremental") == {"2026-11-01T00": (rows, 0)}


def test_reconcile_needs_no_api_key_until_it_sends(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    sync = _write_sync(tmp_path, duck, sandbox)
    assert _cli(capsys, state, "sync", sync)[0] == 0
    monkeypatch.delenv("KLAVIYO_API_KEY")
    insert_events(duck, [_late(1000, -timedelta(days=10))])
    code, text = _cli(capsys, state, "reconcile", sync)
    assert code == 1 and "1 row(s) missing" in text
    code, text = _cli(capsys, state, "reconcile", sync, "--send-missing")
    assert code == 2 and "KLAVIYO_API_KEY is not set" in text


def test_a_store_made_before_the_counts_compares_the_rows_after_its_checkpoint(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
) -> None:
    """Migration 7 on a store with checkpoints: the rows up to them were handled before
    anything counted, so they are not reported missing; rows after them are compared."""
    from connector.store.schema import periods, periods_migration

    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))  # up to 00:00:09
    sync = _write_sync(tmp_path, duck, sandbox)
    assert _cli(capsys, state, "sync", sync)[0] == 0
    with state.engine.begin() as c:  # as if these runs happened before the counts existed
        c.execute(periods.delete())
        periods_migration(c)
    code, report = _reconcile(capsys, state, sync)
    assert code == 0 and report["scopes"][0]["source_rows"] == 0, report

    insert_events(duck, event_rows(30, 30))  # 00:00:10 to 00:00:19
    assert _cli(capsys, state, "sync", sync)[0] == 0
    code, report = _reconcile(capsys, state, sync)
    assert code == 0 and report["scopes"][0]["source_rows"] == 30, report
    assert report["scopes"][0]["handled_rows"] == 30

    insert_events(duck, [_late(1000, timedelta(seconds=15))])  # after the baseline
    code, report = _reconcile(capsys, state, sync)
    assert code == 1 and report["missing"] == 1, report
    code, report = _reconcile(capsys, state, sync, "--send-missing")
    assert code == 0 and report["missing"] == report["deleted_at_source"] == 0, report
    assert report["sent"][0]["rows_read"] == 31  # the period after the baseline, not before
    ids = Counter(delivered_ids(sandbox, KLAVIYO))
    assert len(ids) == 61 and set(ids.values()) == {1}
