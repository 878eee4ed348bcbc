"""Honest counts: "possibly duplicated" equals the copies the vendor may hold twice, checked
against the sandbox's own count of what it stored (Brevo's batch endpoint has no dedup key,
so every copy it receives is stored). Crashes (kill -9) are in test_crash.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from connector.core.errors import AuthError, RetriesExhausted
from connector.deliver.delivery import Runtime
from connector.run.sync import SyncResult, run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import create_events_table, delivered_ids, event_rows, insert_events, sync_for

KIND = "brevo_events_batch"
PATH = "/v3/events/batch"
ROWS = 200  # one batch (Brevo's limit is 200 events a request)


def _stored(sandbox: SandboxServer) -> int:
    return int(sandbox.stats()["events"][KIND])


def _extra_copies(sandbox: SandboxServer) -> int:
    return sum(n - 1 for n in Counter(delivered_ids(sandbox, KIND)).values())


# The client's timeout where an attempt hangs: long enough that the sandbox answers the other
# attempts of the run within it on a loaded 2-core machine (0.5 s was not: a re-send timed out
# too and counted its copies twice), short enough to keep the test quick.
HANG_TIMEOUT = 2.0


def _run(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, timeout: float = 30
) -> SyncResult:
    sync = sync_for(
        KIND,
        duck,
        sandbox.url,
        chunk_size=500,
        options=f"{{concurrency: 1, timeout_s: {timeout}, max_retries: 3}}",
    )
    return run_sync(sync, state=state, runtime=Runtime(sleep=lambda s: None))


@pytest.fixture
def state(tmp_path: Path, duck: Warehouse) -> StateStore:
    create_events_table(duck)
    insert_events(duck, event_rows(0, ROWS))
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_a_timeout_then_a_per_item_400_counts_the_rest_and_rejects_no_stored_row(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    # The vendor stores the batch but the answer never comes (the client times out); the
    # retry is refused with a 400 naming event 5; the other 199 are re-sent and stored again.
    refused = {"errors": [{"eventIndex": [5], "message": "invalid email"}]}
    sandbox.inject(
        Fault(path=PATH, hang=True, after_process=True),
        Fault(path=PATH, status=400, body=refused),
    )
    res = _run(duck, sandbox, state, timeout=HANG_TIMEOUT)
    sandbox.release()
    assert res.status == "success"
    assert _stored(sandbox) == ROWS + (ROWS - 1)
    assert res.possibly_duplicated == ROWS - 1 == _extra_copies(sandbox)
    # Event 5 was stored by the first attempt: no reject invites sending it again.
    assert res.rejected == 0 and state.rejects("videos") == []
    assert res.delivered == ROWS


@pytest.mark.parametrize("status", [401, 403])
def test_a_batch_refused_with_401_or_403_stored_nothing_and_is_not_counted(
    status: int, duck: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    sandbox.inject(Fault(path=PATH, status=status))
    with pytest.raises(AuthError):
        _run(duck, sandbox, state)
    assert _stored(sandbox) == 0
    assert state.ledger("videos", "incremental") == []  # nothing left to count
    res = _run(duck, sandbox, state)
    assert res.status == "success"
    assert _stored(sandbox) == ROWS
    assert res.possibly_duplicated == 0 == _extra_copies(sandbox)


def test_a_timeout_then_401_leaves_the_batch_counted_once_by_the_next_run(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    sandbox.inject(Fault(path=PATH, hang=True, after_process=True), Fault(path=PATH, status=401))
    with pytest.raises(AuthError):
        _run(duck, sandbox, state, timeout=HANG_TIMEOUT)
    sandbox.release()
    assert [e.status for e in state.ledger("videos", "incremental")] == ["pending"]
    first = state.runs("videos")[0]["summary"]["possibly_duplicated"]
    res = _run(duck, sandbox, state)
    assert _stored(sandbox) == 2 * ROWS
    assert first + res.possibly_duplicated == ROWS == _extra_copies(sandbox)


def test_every_attempt_that_may_have_stored_counts_one_copy(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    # Two 503s after the vendor stored the batch, then a success: three copies, two extra.
    sandbox.inject(Fault(path=PATH, status=503, after_process=True, times=2))
    res = _run(duck, sandbox, state)
    assert _stored(sandbox) == 3 * ROWS
    assert res.possibly_duplicated == 2 * ROWS == _extra_copies(sandbox)


def test_a_batch_that_outlives_its_retries_counts_its_copies_across_runs(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore
) -> None:
    # max_retries 3: four attempts, each stored and answered 503; the next run sends once more.
    sandbox.inject(Fault(path=PATH, status=503, after_process=True, times=4))
    with pytest.raises(RetriesExhausted):
        _run(duck, sandbox, state)
    failed = state.runs("videos")[0]["summary"]["possibly_duplicated"]
    res = _run(duck, sandbox, state)
    assert _stored(sandbox) == 5 * ROWS
    assert failed + res.possibly_duplicated == 4 * ROWS == _extra_copies(sandbox)
