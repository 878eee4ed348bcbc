"""The run shell (connector/run/shell.py): one lifecycle for every run, tested once for each
strategy it runs — the event ledger strategy and the contact diff strategy — on a real DuckDB
file, a real SQLite state store and the sandbox over loopback HTTP.

- a lease held by another run: ``LeaseHeld`` before anything is read, sent or recorded (a dry
  run takes no lease and records nothing);
- a failure: the run is recorded ``failed`` with its error, the checkpoint does not move; a
  run whose end cannot be recorded raises instead of reporting success;
- progress: the counts so far are in the run's row while it runs, the final ones at its end;
- rejects: counted, sampled (``SAMPLE_REJECTS``) and written to the store in buffers, not a
  statement per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from connector.core.errors import ConnectorError, LeaseHeld, StateError
from connector.deliver.delivery import Runtime
from connector.run import shell as shell_module
from connector.run.result import SAMPLE_REJECTS, SyncResult
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.lease import Lease
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import Warehouse, make_sync
from tests.contact_fixtures import make_customers
from tests.helpers import create_events_table, event_rows, insert_events, sync_for

ROWS = 300
BAD = 25  # rows each case makes a reject of: more than the sample keeps

CONTACTS = """
name: customers
source: {{table: customers, primary_key: [customer_id], url: "{url}", chunk_size: 100}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, list_id: LIST1}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name, plan: plan}}
"""


@dataclass
class Case:
    """One strategy's sync over ``ROWS`` source rows, ``BAD`` of them rejects."""

    name: str
    sync: Any
    sent: Callable[[], int]  # items the sandbox stored


def events_case(wh: Warehouse, sandbox: SandboxServer) -> Case:
    create_events_table(wh)
    insert_events(wh, event_rows(0, ROWS))
    # A NULL cursor: never sent, a reject of every run (through the shell's buffer).
    wh.run(f"UPDATE ev SET occurred_at = NULL WHERE event_id < {BAD}")
    wh.dispose()
    sync = sync_for("brevo_events_batch", wh, sandbox.url, chunk_size=100)
    return Case("videos", sync, lambda: len(sandbox.events("brevo_events_batch")))


def contacts_case(wh: Warehouse, sandbox: SandboxServer) -> Case:
    make_customers(wh, ROWS)
    # Not an e-mail address: a local reject of the contact destination's rules.
    wh.run(f"UPDATE customers SET email = 'nobody' WHERE customer_id <= {BAD}")
    wh.dispose()
    sync = make_sync(CONTACTS.format(url=wh.url, sandbox=sandbox.url))
    return Case("customers", sync, lambda: len(sandbox.events("klaviyo_profiles")))


@pytest.fixture(params=["events", "contacts"])
def case(request: pytest.FixtureRequest, duck: Warehouse, sandbox: SandboxServer) -> Case:
    make = events_case if request.param == "events" else contacts_case
    return make(duck, sandbox)


class Ticking:
    """A clock a quarter second further on each reading: a run's ticks see time pass."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        self.now += 0.25
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ticking() -> Runtime:
    t = Ticking()
    return Runtime(clock=t.clock, sleep=t.sleep, random=lambda: 0.5)


def test_a_run_refused_the_lease_reads_sends_and_records_nothing(
    case: Case, state: StateStore, sandbox: SandboxServer, ticking: Runtime
) -> None:
    other = Lease(state, case.name, INCREMENTAL)
    other.acquire()
    try:
        with pytest.raises(LeaseHeld, match="already running"):
            run_sync(case.sync, state=state, runtime=ticking)
        assert sandbox.requests == [] and case.sent() == 0
        assert state.runs(case.name) == [] and state.rejects(case.name) == []
        assert state.checkpoint(case.name) is None
        # A dry run takes no lease: it runs beside the holder and records nothing.
        dry = run_sync(case.sync, state=state, runtime=ticking, dry_run=True)
        assert dry.status == "dry_run" and dry.run_id is None and dry.rejected == BAD
        assert sandbox.requests == [] and state.runs(case.name) == []
    finally:
        other.release()
    done = run_sync(case.sync, state=state, runtime=ticking)
    assert done.status == "success" and case.sent() == ROWS - BAD


def test_a_failed_run_is_recorded_failed_with_its_error(
    case: Case, state: StateStore, sandbox: SandboxServer, ticking: Runtime
) -> None:
    sandbox.inject(Fault(path="*", status=401, times=1000))  # the key is refused
    with pytest.raises(ConnectorError) as err:
        run_sync(case.sync, state=state, runtime=ticking)
    (run,) = state.runs(case.name)
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["error"] == str(err.value) and "401" in run["error"]
    assert run["summary"]["status"] == "failed" and run["summary"]["rows_read"] > 0
    assert state.checkpoint(case.name) is None and case.sent() == 0
    # The rejects the run found before it failed are recorded all the same.
    assert len(state.rejects(case.name)) == BAD


def test_progress_is_recorded_while_the_run_runs(
    case: Case, state: StateStore, ticking: Runtime
) -> None:
    seen: list[tuple[str, int, int]] = []

    def progress(res: SyncResult) -> None:
        (row,) = state.runs(case.name)
        recorded = row["summary"] or {}
        seen.append((row["status"], recorded.get("rows_read", -1), res.rows_read))

    res = run_sync(case.sync, state=state, runtime=ticking, progress=progress)
    running = [s for s in seen if s[0] == "running"]
    # Recorded at the same tick that called back: the row holds the counts the callback got.
    assert running and all(stored == now for _, stored, now in running)
    assert any(0 < stored < ROWS for _, stored, _ in running)
    # The end, recorded, then called back once more (an event run reads no NULL-cursor row).
    assert seen[-1] == ("success", res.rows_read, res.rows_read) and res.rows_read >= ROWS - BAD
    (row,) = state.runs(case.name)
    assert row["summary"]["delivered"] == res.delivered == ROWS - BAD
    assert "sample_rejects" not in row["summary"]  # samples live in the rejects table


def test_rejects_are_counted_sampled_and_written_in_buffers(
    case: Case, state: StateStore, ticking: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell_module, "REJECT_BUFFER", 10)
    writes: list[int] = []
    add = state.add_rejects

    def counted(sync: str, scope: str, run_id: str, new: Any) -> None:
        writes.append(len(new))
        add(sync, scope, run_id, new)

    monkeypatch.setattr(state, "add_rejects", counted)
    res = run_sync(case.sync, state=state, runtime=ticking)
    assert (res.status, res.rejected, res.delivered) == ("success", BAD, ROWS - BAD)
    assert len(res.sample_rejects) == SAMPLE_REJECTS < BAD
    stored = state.rejects(case.name)
    assert len(stored) == BAD and {r["run_id"] for r in stored} == {res.run_id}
    assert {k for k, _ in res.sample_rejects} <= {r["key"] for r in stored}
    # Written in buffers (at least one of 10 here, the rest at the end): not a row at a time.
    assert sum(writes) == BAD and 1 <= len(writes) <= 3 and max(writes) >= 10


def test_a_run_whose_end_cannot_be_recorded_does_not_report_success(
    case: Case, state: StateStore, ticking: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_: Any, **__: Any) -> None:
        raise StateError("state store sqlite:///s.db is unavailable (the disk is full)")

    monkeypatch.setattr(state, "finish_run", down)
    with pytest.raises(StateError, match="the disk is full"):
        run_sync(case.sync, state=state, runtime=ticking)
    # The rows went out; the run stays "running" until the next run marks it interrupted.
    assert case.sent() == ROWS - BAD
    assert state.runs(case.name)[0]["status"] == "running"
