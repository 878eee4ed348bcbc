"""One run per sync and scope at a time: the lease (connector/lease.py).

Real processes (`connector sync`) against the sandbox on loopback; a hang fault keeps the first
run busy for as long as a test needs, so nothing here depends on timing. Lease expiry and the
heartbeat run on an injected clock (``StateStore.clock``), never on sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core.errors import LeaseHeld
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.lease import LEASE_TTL_ENV, Lease, lease_ttl, process_gone, process_identity
from connector.store.schema import leases
from connector.store.state import INCREMENTAL, StateStore, now
from tests.conftest import Warehouse, make_sync
from tests.helpers import (
    connector_process,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
)

ROWS = 600  # three Brevo batches of 200 at concurrency 1
PATH = "/v3/events/batch"

SYNC = """
name: {name}
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
destination:
  type: brevo_events_batch
  api_key: ${{BREVO_API_KEY}}
  base_url: {sandbox}
  options: {{concurrency: 1}}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email_id: email, ext_id: user_id}}
  event_properties: {{title: title}}
"""


def _project(tmp_path: Path, duck: Warehouse, sandbox: SandboxServer) -> tuple[Path, str]:
    create_events_table(duck)
    insert_events(duck, event_rows(0, ROWS))
    duck.dispose()
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    for name in ("videos", "videos_copy"):
        (config / "syncs" / f"{name}.yaml").write_text(
            SYNC.format(name=name, url=duck.url, sandbox=sandbox.url)
        )
    return config, f"sqlite:///{tmp_path / 'state.db'}"


def _hang_first_run(
    config: Path, state_url: str, sandbox: SandboxServer, sync: str = "videos"
) -> subprocess.Popen[str]:
    """A `connector sync` whose second request is stored, then hangs until released."""
    sandbox.inject(Fault(path=PATH, delay_s=0.001), Fault(path=PATH, hang=True, after_process=True))
    first = connector_process(config, state_url, "sync", sync)
    assert sandbox.wait_for_hang(timeout=60), first.communicate(timeout=5)
    return first


def test_a_second_run_of_the_same_sync_exits_1_and_sends_nothing(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    config, state_url = _project(tmp_path, duck, sandbox)
    first = _hang_first_run(config, state_url, sandbox)
    requests_before = sandbox.stats()["requests"]

    second = connector_process(config, state_url, "sync", "videos")
    out, err = second.communicate(timeout=120)

    assert second.returncode == 1, out + err
    assert "videos [incremental] is already running since " in err
    assert f"pid {first.pid} on host " in err
    assert "this run sends nothing" in err and "Traceback" not in err
    assert sandbox.stats()["requests"] == requests_before  # not one request from the second

    sandbox.release()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # Brevo keeps every copy: exactly one of each row means nothing was sent twice.
    assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(ROWS))
    with sa.create_engine(state_url).connect() as c:  # the lease was given back
        assert c.execute(sa.select(sa.func.count()).select_from(leases)).scalar() == 0


def test_different_syncs_and_scopes_run_in_parallel(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    config, state_url = _project(tmp_path, duck, sandbox)
    first = _hang_first_run(config, state_url, sandbox)

    other = connector_process(config, state_url, "sync", "videos_copy")
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    assert "delivered           600" in out

    # Another scope of the held sync (a Dagster partition) runs too.
    sync = make_sync(SYNC.format(name="videos", url=duck.url, sandbox=sandbox.url))
    res = run_sync(sync, state=StateStore(state_url), scope="partition:2026-11-01")
    assert res.status == "success" and res.delivered == ROWS

    sandbox.release()
    assert first.wait(timeout=120) == 0
    assert len(delivered_ids(sandbox, "brevo_events_batch")) == 3 * ROWS


def test_a_lease_left_by_kill_9_blocks_until_it_expires_then_the_next_run_takes_over(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    config, state_url = _project(tmp_path, duck, sandbox)
    first = _hang_first_run(config, state_url, sandbox)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    sandbox.release()
    sent = len(delivered_ids(sandbox, "brevo_events_batch"))
    # Seen from another machine, the dead holder's process cannot be checked: only the
    # lease's expiry frees it.
    engine = sa.create_engine(state_url)
    with engine.begin() as c:
        c.execute(leases.update().values(process="other-machine/4026531836/123", host="elsewhere"))
        expires = c.execute(sa.select(leases.c.expires_at)).scalar_one()
    engine.dispose()

    sync = make_sync(SYNC.format(name="videos", url=duck.url, sandbox=sandbox.url))
    store = StateStore(state_url)
    with pytest.raises(LeaseHeld, match=r"already running since .*pid \d+ on host elsewhere"):
        run_sync(sync, state=store)
    assert len(delivered_ids(sandbox, "brevo_events_batch")) == sent

    store.clock = lambda: expires.replace(tzinfo=now().tzinfo) + timedelta(seconds=1)
    res = run_sync(sync, state=store)
    assert res.status == "success"
    assert set(delivered_ids(sandbox, "brevo_events_batch")) == set(range(ROWS))
    statuses = sorted(r["status"] for r in store.runs("videos"))
    assert statuses == ["interrupted", "success"]


def test_a_run_killed_with_9_on_this_machine_is_taken_over_at_once(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    config, state_url = _project(tmp_path, duck, sandbox)
    first = _hang_first_run(config, state_url, sandbox)
    held = process_identity(first.pid)
    assert held and not process_gone(held, first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    sandbox.release()
    assert process_gone(held, first.pid)

    rerun = connector_process(config, state_url, "sync", "videos")
    _out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert set(delivered_ids(sandbox, "brevo_events_batch")) == set(range(ROWS))


class _Beats:
    """An injected heartbeat wait: each beat moves the fake clock by the interval."""

    def __init__(self, clock: list[datetime], beats: int) -> None:
        self.clock, self.left, self.done = clock, beats, threading.Event()

    def __call__(self, seconds: float) -> bool:
        if self.left == 0:
            self.done.set()
            return True  # stop
        self.left -= 1
        self.clock[0] += timedelta(seconds=seconds)
        return False


@pytest.mark.parametrize("store_kind", ["sqlite", "postgresql"])
def test_the_heartbeat_keeps_a_long_runs_lease_and_a_stalled_run_loses_it(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 's.db'}"
        if store_kind == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    start = now()
    t: list[datetime] = [start]
    clock: Callable[[], datetime] = lambda: t[0]  # noqa: E731
    holder_store, other_store = StateStore(url), StateStore(url)
    holder_store.clock = other_store.clock = clock

    lease = Lease(holder_store, "videos", INCREMENTAL, ttl_s=30)
    lease.acquire()
    beats = _Beats(t, beats=10)  # 10 × 10 s: over three TTLs past the first expiry
    lease.start_heartbeat(wait=beats)
    assert beats.done.wait(timeout=60)
    lease.stop_heartbeat()
    assert t[0] == start + timedelta(seconds=100)  # the original expiry is long past
    assert lease.expires == t[0] + timedelta(seconds=30)

    other = Lease(other_store, "videos", INCREMENTAL, ttl_s=30)
    with pytest.raises(LeaseHeld, match="already running since"):
        other.acquire()
    lease.check()  # still this run's
    Lease(other_store, "videos", "partition:2026-11-01", ttl_s=30).acquire()  # another scope

    # The holder stalls (no heartbeat) past its expiry: the next run takes over and the
    # stalled run stops before its next batch.
    t[0] += timedelta(seconds=31)
    other.acquire()
    with pytest.raises(LeaseHeld, match="lease was lost"):
        lease.check()
    assert lease.renew() is False
    lease.release()  # gives back nothing: the lease is the other run's now
    with pytest.raises(LeaseHeld):
        Lease(holder_store, "videos", INCREMENTAL, ttl_s=30).acquire()
    holder_store.engine.dispose()
    other_store.engine.dispose()


def test_the_ttl_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEASE_TTL_ENV, "5")
    assert lease_ttl() == 5.0
    monkeypatch.setenv(LEASE_TTL_ENV, "soon")
    with pytest.raises(Exception, match="must be a number of seconds"):
        lease_ttl()


def test_a_postgresql_state_store_holds_the_lease_across_processes(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, pg_url: str
) -> None:
    config, _ = _project(tmp_path, duck, sandbox)
    held = Lease(StateStore(pg_url), "videos", INCREMENTAL, ttl_s=60)
    held.acquire()  # a run on another worker of the same shared store

    second = connector_process(config, pg_url, "sync", "videos")
    _out, err = second.communicate(timeout=120)
    assert second.returncode == 1 and "videos [incremental] is already running since" in err
    assert sandbox.stats()["requests"] == 0

    held.release()
    third = connector_process(config, pg_url, "sync", "videos")
    _out, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(ROWS))


def test_a_contact_run_that_lost_its_lease_submits_no_further_job(
    duck: Warehouse, state: StateStore, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As event runs stop before their next batch, a contact run checks its lease before each
    import job: taken over after its first job, it submits no second one."""
    from connector.contacts.hashes import HashStore
    from connector.run import contact_jobs as engine
    from connector.run.contacts import ContactRun
    from tests.contacts.test_merge import people, sync_for
    from tests.contacts_fakes import FakeKlaviyo

    people(duck, "int", list(range(1, 251)))
    monkeypatch.setattr(engine, "ROWS_PER_JOB", 100)  # three jobs of 100, 100, 50
    t = [now()]
    state.clock = lambda: t[0]
    lease = Lease(state, "merge_k", INCREMENTAL, ttl_s=30)
    lease.acquire()
    other = Lease(state, "merge_k", INCREMENTAL, ttl_s=30)
    fake = FakeKlaviyo()

    def handle(request: Any) -> Any:
        reply = fake.handle(request)
        if request.method == "POST" and len(fake.job_bodies) == 1:
            t[0] += timedelta(seconds=31)  # the run stalls past its expiry...
            other.acquire()  # ...and another run takes the sync over
        return reply

    import httpx

    run = ContactRun(
        sync_for(duck, "int"),
        state,
        runtime=runtime,
        transport=httpx.MockTransport(handle),
        lease=lease,
    )
    with pytest.raises(LeaseHeld, match="lease was lost"):
        run.execute()
    assert len(fake.job_bodies) == 1
    assert HashStore(state).count("merge_k") == 0  # job 1 never confirmed: sent again

    other.release()
    again = ContactRun(sync_for(duck, "int"), state, runtime=runtime, transport=fake.transport)
    again.execute()
    assert (again.res.added, again.res.sent) == (250, 250)
