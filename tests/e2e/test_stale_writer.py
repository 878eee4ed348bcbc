"""A stale writer (issue 19 item 3): a run paused past its lease TTL sends nothing more.

A real `connector sync` (Brevo batch, no dedup key, so every copy shows at the sandbox) is
stopped with SIGSTOP while it sends; once its lease expired (read from the store, not timed)
a second run takes the sync over and finishes; then the first run is resumed (SIGCONT). Its
queued and paced batches must not go out: the lease is the write fence of every request.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from connector.core import fence
from connector.core.fence import LeaseLost, fenced
from connector.deliver.delivery import Runtime
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.lease import LEASE_TTL_ENV, Lease, live_holders
from connector.store.schema import leases
from connector.store.state import INCREMENTAL, StateStore, now
from tests.conftest import FakeSleep, Warehouse
from tests.helpers import (
    connector_process,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    sync_for,
    wait_until,
)

KIND = "brevo_events_batch"
ROWS = 8000  # 40 batches of 200
WAIT_S = 120.0  # a bound on waiting for an observable condition, never a pause
SHORT_LEASE = {LEASE_TTL_ENV: "2"}  # the paused run loses its lease soon

SYNC = """
name: videos
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
  chunk_size: 1000
destination:
  type: brevo_events_batch
  api_key: ${{BREVO_API_KEY}}
  base_url: {sandbox}
  options: {{concurrency: 4, rate_limit: {{per_second: {rate}}}}}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email_id: email, ext_id: user_id}}
  event_properties: {{title: title}}
"""


@pytest.mark.slow
def test_a_run_paused_past_its_lease_sends_nothing_after_another_run_took_over(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, ROWS))
    duck.dispose()
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    sync_file = config / "syncs" / "videos.yaml"
    # The first run is paced (1 request/s), so it is still sending when it is stopped, and
    # it is stopped while it waits for its next slot: after its first batch settled (the
    # checkpoint is there), never inside the store's transaction (a SQLite file stays
    # locked by a stopped process that holds its write lock, which no fence can undo).
    sync_file.write_text(SYNC.format(url=duck.url, sandbox=sandbox.url, rate=1))
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(state_url)

    def received() -> int:
        return len(sandbox.events(KIND))

    stale = connector_process(config, state_url, "-v", "sync", "videos", env=SHORT_LEASE)
    try:
        wait_until(
            lambda: store.checkpoint("videos") is not None or stale.poll() is not None,
            "the first batch to settle",
            WAIT_S,
        )
        assert stale.poll() is None, stale.communicate()
        stale.send_signal(signal.SIGSTOP)
        # Its lease expires by the store's clock while it is stopped (no heartbeat runs).
        wait_until(
            lambda: live_holders(store, "videos") == [], "the stopped run's lease to expire", WAIT_S
        )

        # Another run takes the sync over and finishes it (unpaced this time).
        sync_file.write_text(SYNC.format(url=duck.url, sandbox=sandbox.url, rate=1000))
        other = connector_process(config, state_url, "-v", "sync", "videos", env=SHORT_LEASE)
        out, err = other.communicate(timeout=WAIT_S)
        assert other.returncode == 0, out + err
        assert "took over the lease" in err
        before = received()
        assert set(delivered_ids(sandbox, KIND)) == set(range(ROWS))
    finally:
        stale.send_signal(signal.SIGCONT)

    out, err = stale.communicate(timeout=WAIT_S)
    stale_copies = received() - before
    assert stale_copies == 0, f"the resumed run sent {stale_copies} more events"
    assert stale.returncode == 1, out + err
    assert "lease was lost" in err and "Traceback" not in err
    assert "sends nothing more" in err
    # Its run record says so, with what it may have sent and not settled.
    runs = sorted(store.runs("videos"), key=lambda r: r["started_at"])
    first = runs[0]
    assert first["status"] == "failed" and "lease was lost" in first["error"]
    assert first["summary"]["possibly_duplicated"] >= 0
    assert store.checkpoint("videos")[1] == ROWS - 1  # type: ignore[index]


def test_on_postgresql_the_fence_reads_the_lease_row_by_the_stores_clock(pg_url: str) -> None:
    """A PostgreSQL store is shared by machines: each check reads the row (this token,
    unexpired by ``clock_timestamp()``), so a takeover is seen before the next request even
    when the local deadline has not passed."""
    store = StateStore(pg_url)
    lease = Lease(store, "videos", INCREMENTAL, ttl_s=600)
    lease.acquire()
    with fenced(lease):
        fence.check()  # held: nothing happens
        # The row's expiry passed by the database's clock (a clock-skewed holder).
        with store.engine.begin() as c:
            c.execute(
                leases.update()
                .where(leases.c.holder == lease.token)
                .values(expires_at=sa.func.clock_timestamp() - sa.text("interval '1 second'"))
            )
        with pytest.raises(LeaseLost, match=r"lease was lost \(it expired") as lost:
            fence.check(maybe_sent=True)
        assert lost.value.maybe_sent

    other = Lease(store, "videos", INCREMENTAL, ttl_s=600)
    with store.engine.begin() as c:  # another run took the row over
        c.execute(leases.update().values(holder=other.token))
    fresh = Lease(store, "videos", INCREMENTAL, ttl_s=600)
    fresh.token, fresh.expires, fresh.deadline = lease.token, lease.expires, None
    with pytest.raises(LeaseLost, match="another run took it over"):
        fresh.check()


class _PauseOnFirstRequest(httpx.BaseTransport):
    """Sends every request to the sandbox; while the first is on the wire, ``pause()`` runs
    (the test moves the store's clock past the lease's expiry: the process "was paused")."""

    def __init__(self, pause: Callable[[], None]) -> None:
        self.inner = httpx.HTTPTransport()
        self.pause: Callable[[], None] | None = pause

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pause = self.pause
        if pause is not None:
            self.pause = None
            pause()
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


# 200 rows: the answered batch meets the fence when it settles; 1000 rows: the next batch
# meets it first (the run stops there, the answered one is counted as it winds down).
@pytest.mark.parametrize("rows", [200, 1000])
def test_a_batch_answered_after_the_lease_expired_is_not_settled_but_counted(
    duck: Warehouse, sandbox: SandboxServer, tmp_path: Path, fake_time: FakeSleep, rows: int
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, rows))
    sync = sync_for(KIND, duck, sandbox.url, chunk_size=1000, options="{concurrency: 1}")
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    t = [now()]
    state.clock = lambda: t[0]

    def expire() -> None:
        t[0] += timedelta(minutes=5)  # far past the 60 s TTL: no heartbeat renewed it

    transport = _PauseOnFirstRequest(expire)
    runtime = Runtime(fake_time.clock, fake_time.sleep, lambda: 0.5, transport=transport)
    with pytest.raises(LeaseLost, match="lease was lost"):
        run_sync(sync, state=state, runtime=runtime)

    # The batch on the wire reached the API; nothing went after it, nothing was settled.
    assert len(sandbox.events(KIND)) == 200
    assert state.checkpoint("videos") is None
    (run,) = state.runs("videos")
    assert run["status"] == "failed" and "lease was lost" in run["error"]
    assert run["summary"]["possibly_duplicated"] == 200  # sent, recorded nowhere else
    # Its ledger entry stays pending: the next run sends those rows again, and says so.
    pending = [e for e in state.ledger("videos", INCREMENTAL) if e.status == "pending"]
    assert [e.count for e in pending] == [200]
