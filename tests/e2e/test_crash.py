"""Crash safety: SIGKILL the CLI while a request is in flight, run again, nothing is lost."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from connector.sandbox import Fault, SandboxServer
from connector.store.state import LedgerEntry, StateStore
from tests.conftest import Warehouse
from tests.helpers import (
    connector_process,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    wait_until,
)

SYNC = """
name: videos
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
  chunk_size: 500
destination:
  type: {kind}
  api_key: ${{{key_env}}}
  base_url: {sandbox}
  options: {{concurrency: {concurrency}}}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {idents}
  event_properties: {{title: title}}
"""


def _setup(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, kind: str, rows: int, concurrency: int
) -> tuple[Path, str]:
    create_events_table(duck)
    insert_events(duck, event_rows(0, rows))
    duck.dispose()  # DuckDB lets one process at a time hold the file for writing
    # (a server warehouse: the CLI reads the same database over the network)
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    klaviyo = kind == "klaviyo_bulk_events"
    (config / "syncs" / "videos.yaml").write_text(
        SYNC.format(
            url=duck.url,
            kind=kind,
            sandbox=sandbox.url,
            concurrency=concurrency,
            key_env="KLAVIYO_API_KEY" if klaviyo else "BREVO_API_KEY",
            idents="{email: email, external_id: user_id}"
            if klaviyo
            else "{email_id: email, ext_id: user_id}",
        )
    )
    return config, f"sqlite:///{tmp_path / 'state.db'}"


@pytest.mark.slow
@pytest.mark.parametrize("kind,batch", [("klaviyo_bulk_events", 1000), ("brevo_events_batch", 200)])
@pytest.mark.parametrize("wh_name", ["duck", "pg"], ids=["duckdb", "postgresql"])
def test_kill_9_mid_run_then_rerun_delivers_every_row(
    kind: str,
    batch: int,
    wh_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sandbox: SandboxServer,
) -> None:
    """On the embedded file (the killed process held it open) and the production reference
    server. Every warehouse resumes after a run that ended with a request in flight in
    tests/e2e/test_destinations_single.py (each destination on each warehouse); what a kill -9
    adds is on the side of the process and the state store (SQLite here on both)."""
    warehouse: Warehouse = request.getfixturevalue(wh_name)
    rows = batch * 5
    config, state_url = _setup(tmp_path, warehouse, sandbox, kind, rows, concurrency=1)
    path = "/api/event-bulk-create-jobs" if kind == "klaviyo_bulk_events" else "/v3/events/batch"
    # Two batches are answered; the third is stored by the API, then the reply never comes.
    sandbox.inject(
        Fault(path=path, delay_s=0.001),
        Fault(path=path, delay_s=0.001),
        Fault(path=path, hang=True, after_process=True),
    )

    proc = connector_process(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60), proc.communicate(timeout=5)
    store = StateStore(state_url)
    # The answered batches settle on the main thread, maybe just after the third went out.
    wait_until(
        lambda: (store.checkpoint("videos") or (0, -1))[1] == 2 * batch - 1,
        "the two answered batches to settle",
    )
    _kill(proc, sandbox)

    assert store.checkpoint("videos")[1] == 2 * batch - 1  # type: ignore[index]
    pending = [e for e in store.ledger("videos", "incremental") if e.status == "pending"]
    assert [e.count for e in pending] == [batch]

    rerun = connector_process(config, state_url, "sync", "videos")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err

    ids = delivered_ids(sandbox, kind)
    assert set(ids) == set(range(rows))  # nothing lost
    assert f"possibly duplicated {batch:,}" in out
    if kind == "klaviyo_bulk_events":
        # Re-sent with the same unique_ids: Klaviyo keeps one copy of each.
        assert len(ids) == rows
        assert sandbox.stats()["deduplicated"][kind] == batch
    else:
        # Brevo has no dedup key: exactly the in-flight batch repeats, and the run says so.
        assert len(ids) == rows + batch
    assert store.ledger("videos", "incremental") == []
    assert store.checkpoint("videos")[1] == rows - 1  # type: ignore[index]
    # The killed run is not "running" forever: the rerun marked it, with how far it got.
    killed, rerun_row = sorted(store.runs("videos"), key=lambda r: r["started_at"])
    assert rerun_row["status"] == "success"
    assert killed["status"] == "interrupted" and killed["finished_at"] is not None
    assert killed["summary"]["hwm_after"][1] == 2 * batch - 1
    assert killed["summary"]["in_flight"] == batch
    assert f"{batch} events were in flight" in killed["error"]
    # Its counts as last recorded (once a second at most; the first page is always recorded).
    assert 500 <= killed["summary"]["rows_read"] <= rows
    assert (
        f"at its last progress record {killed['summary']['rows_read']} rows read"
        in (killed["error"])
    )
    show = connector_process(config, state_url, "state", "show", "videos")
    shown, _ = show.communicate(timeout=120)
    assert f"{killed['run_id'][:8]} " in shown and "interrupted: the process ended" in shown


def _received(sandbox: SandboxServer, kind: str) -> int:
    """Events the sandbox processed, whether it kept them or dropped them as duplicates."""
    stats = sandbox.stats()
    return int(stats["events"][kind] + stats["deduplicated"][kind])


def _kill(proc: subprocess.Popen[str], sandbox: SandboxServer) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sandbox.release()


def test_kill_with_several_batches_in_flight_skips_what_was_delivered(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
) -> None:
    rows, batch, kind = 8000, 1000, "klaviyo_bulk_events"
    config, state_url = _setup(tmp_path, duck, sandbox, kind, rows, concurrency=4)
    path = "/api/event-bulk-create-jobs"
    sandbox.inject(Fault(path=path, hang=True, after_process=True))
    store = StateStore(state_url)

    def ledger() -> list[LedgerEntry]:
        return store.ledger("videos", "incremental")

    proc = connector_process(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60)
    # Kill once every other batch is answered: they sit delivered beyond the hung one.
    wait_until(
        lambda: (
            _received(sandbox, kind) == rows
            and [e.status for e in ledger()].count("pending") == 1
            and sum(e.count for e in ledger()) + (store.checkpoint("videos") or (0, -1))[1] + 1
            == rows
        ),
        "every batch but the hung one to settle",
    )
    _kill(proc, sandbox)
    left = ledger()
    delivered = sum(e.count for e in left if e.status == "delivered")
    assert [e.count for e in left if e.status == "pending"] == [batch]
    assert delivered >= 4 * batch  # the hung batch is one of the first four sent

    rerun = connector_process(config, state_url, "sync", "videos")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    ids = delivered_ids(sandbox, kind)
    assert sorted(ids) == list(range(rows))  # every row exactly once at the destination
    # What the sandbox received, not what it kept: every row once, plus the one batch that
    # was in flight; not one row the killed run had delivered.
    assert _received(sandbox, kind) == rows + batch
    assert sandbox.stats()["deduplicated"][kind] == batch
    assert f"skipped             {delivered:,}" in out
    assert f"possibly duplicated {batch:,}" in out


@pytest.mark.slow
def test_two_interrupted_runs_then_one_that_completes_sends_no_delivered_row_again(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
) -> None:
    """A: two batches in flight when killed (both stored). B re-sends them; its first hangs,
    the others are answered and sit delivered beyond it — over A's older pending entry for
    the same rows; killed. C: delivered always wins, and the copies the three runs count add
    up to the extra copies the sandbox stored (Brevo keeps every copy)."""
    rows, batch, kind = 800, 200, "brevo_events_batch"
    config, state_url = _setup(tmp_path, duck, sandbox, kind, rows, concurrency=2)
    path = "/v3/events/batch"
    store = StateStore(state_url)

    def ledger() -> list[LedgerEntry]:
        return store.ledger("videos", "incremental")

    sandbox.inject(*[Fault(path=path, hang=True, after_process=True)] * 2)
    a = connector_process(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60, count=2)
    _kill(a, sandbox)
    assert [(e.status, e.count) for e in ledger()] == [("pending", batch)] * 2
    a_run = ledger()[0].run_id

    sandbox.inject(Fault(path=path, hang=True, after_process=True))
    b = connector_process(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60)

    def b_settled_all_but_its_hung_batch() -> bool:
        mine = [e for e in ledger() if e.run_id != a_run]
        delivered = sum(e.count for e in mine if e.status == "delivered")
        checkpoint = store.checkpoint("videos")
        passed = checkpoint[1] + 1 if checkpoint else 0
        recorded = store.runs("videos")[0]["summary"] or {}
        return (
            [e.status for e in mine].count("pending") == 1
            and delivered + passed == rows - batch
            and recorded.get("possibly_duplicated") == batch
        )

    wait_until(b_settled_all_but_its_hung_batch, "B to settle all but its hung batch")
    _kill(b, sandbox)
    left = ledger()
    skipped = sum(e.count for e in left if e.status == "delivered")
    older_pending = [e for e in left if e.run_id == a_run]
    newer_delivered = [e for e in left if e.run_id != a_run and e.status == "delivered"]
    # The interleaving under test (B's first request is the one that hangs) shows as A's
    # pending entry for rows B delivered; the counts below hold either way.
    overlap = any(p.first <= d.first <= p.last for p in older_pending for d in newer_delivered)

    c = connector_process(config, state_url, "sync", "videos")
    out, err = c.communicate(timeout=120)
    assert c.returncode == 0, err
    ids = delivered_ids(sandbox, kind)
    assert set(ids) == set(range(rows))
    # A stored 2 batches, B 4, C only the batch pending in both A and B.
    assert sandbox.stats()["events"][kind] == len(ids) == rows + 3 * batch
    assert f"skipped             {skipped:,}" in out
    assert skipped == (3 if overlap else 2) * batch
    # Copies: C re-sent rows two killed runs had in flight (2 each); B counted the rows it
    # delivered over A's pending entry when they settled, and its record survived the kill.
    assert f"possibly duplicated {2 * batch:,}" in out
    counted = sum(r["summary"].get("possibly_duplicated", 0) for r in store.runs("videos"))
    assert counted == 3 * batch == len(ids) - rows
    assert ledger() == []
