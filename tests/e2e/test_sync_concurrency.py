"""The default concurrent path, deterministically: 2-8 requests in flight, answered out of order.

A gate transport holds every request the run sends until the test lets it through to the
sandbox, in an order the test chooses; after each answer the test waits for the run to settle
that batch and reads the checkpoint. So out-of-order completion is exercised without a sleep:
the checkpoint must only ever cover the contiguous prefix of answered batches, and the run must
end with every row delivered exactly once (counted as the sandbox received them).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from connector.deliver.delivery import BatchOutcome, Runtime
from connector.run.events import EventRun
from connector.run.sync import SyncResult, run_sync
from connector.sandbox import SandboxServer
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import FakeSleep, Warehouse
from tests.helpers import create_events_table, delivered_ids, event_rows, insert_events, sync_for

BATCH = 200  # Brevo batch's documented maximum: each batch is one request
BATCHES = 8
WAIT_S = 60.0  # a bound on waiting for the run's threads, never a pause


class Gate(httpx.BaseTransport):
    """Holds each request (by its batch number) until ``release``; then sends it for real."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.cond = threading.Condition()
        self.held: set[int] = set()
        self.released: set[int] = set()
        self.peak = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        data = orjson.loads(request.read())
        events = data if isinstance(data, list) else data["events"]
        batch = int(events[0]["identifiers"]["ext_id"].removeprefix("u-")) // BATCH
        with self.cond:
            self.held.add(batch)
            self.peak = max(self.peak, len(self.held))
            self.cond.notify_all()
            self.cond.wait_for(lambda: batch in self.released)
            self.held.discard(batch)
        return self.inner.handle_request(request)

    def wait_held(self, count: int) -> set[int]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.held) == count, WAIT_S), self.held
            return set(self.held)

    def release(self, batch: int) -> None:
        with self.cond:
            self.released.add(batch)
            self.cond.notify_all()

    def close(self) -> None:
        self.inner.close()


class WatchedState(StateStore):
    """Counts the run's settlements, so the test can wait for the next one."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.cond = threading.Condition()
        self.settled = 0

    def settle(self, *args: Any, **kwargs: Any) -> None:
        super().settle(*args, **kwargs)
        with self.cond:
            self.settled += 1
            self.cond.notify_all()

    def wait_settled(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.settled >= count, WAIT_S), self.settled


PRIORITY = [3, 1, 0, 2, 7, 5, 4, 6]  # among the requests held, the first of these goes next


@pytest.mark.parametrize(
    ("concurrency", "order", "checkpoints"),
    [
        # Two in flight: {0,1} → 1, {0,2} → 0, {2,3} → 3, ...: each answer after the first
        # of a pair completes a prefix.
        (2, [1, 0, 3, 2, 5, 4, 7, 6], [None, 1, 1, 3, 3, 5, 5, 7]),
        # Four in flight: {0,1,2,3} → 3, {0,1,2,4} → 1, {0,2,4,5} → 0, ...
        (4, [3, 1, 0, 2, 7, 5, 4, 6], [None, None, 1, 3, 3, 3, 5, 7]),
        # Eight in flight: every request is on the wire before the first answer.
        (8, PRIORITY, [None, None, 1, 3, 3, 3, 5, 7]),
    ],
)
def test_out_of_order_answers_move_the_checkpoint_only_over_the_answered_prefix(
    duck: Warehouse,
    sandbox: SandboxServer,
    tmp_path: Any,
    fake_time: FakeSleep,
    concurrency: int,
    order: list[int],
    checkpoints: list[int | None],
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, BATCH * BATCHES))
    options = f"{{concurrency: {concurrency}, rate_limit: {{per_second: 1000}}}}"
    sync = sync_for(
        "brevo_events_batch", duck, sandbox.url, chunk_size=BATCH * BATCHES, options=options
    )
    state = WatchedState(f"sqlite:///{tmp_path / 'state.db'}")
    gate = Gate()
    runtime = Runtime(fake_time.clock, fake_time.sleep, lambda: 0.5, transport=gate)
    outcome: list[SyncResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(run_sync(sync, state=state, runtime=runtime))
        except BaseException as exc:  # noqa: BLE001 — handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        released: list[int] = []
        seen: list[int | None] = []
        for step in range(BATCHES):
            held = gate.wait_held(min(concurrency, BATCHES - step))
            nxt = min(held, key=PRIORITY.index)
            released.append(nxt)
            gate.release(nxt)
            state.wait_settled(step + 1)
            point = state.checkpoint("videos")
            seen.append(None if point is None else point[1] // BATCH)
    finally:
        for b in range(BATCHES):
            gate.release(b)
        thread.join(WAIT_S)
        gate.close()

    assert released == order
    assert seen == checkpoints
    assert gate.peak == concurrency
    (res,) = outcome
    assert isinstance(res, SyncResult), res
    assert (res.delivered, res.rejected, res.requests) == (BATCH * BATCHES, 0, BATCHES)
    assert state.checkpoint("videos")[1] == BATCH * BATCHES - 1  # type: ignore[index]
    assert state.ledger("videos", INCREMENTAL) == []  # every batch settled and dropped
    # Exactly once, as received (the Brevo sandbox keeps every copy: no dedup key).
    assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(BATCH * BATCHES))
    assert sandbox.stats()["requests"] == BATCHES


def test_batches_that_finished_together_are_judged_in_batch_order() -> None:
    """The circuit breaker meets finished batches in row order, whatever the set's order: it
    once met them in hash order, so a breaker test tripped on its second batch's rejects
    first ("160 of 200") about once in 40 runs, when two answers were in before the look."""
    judged: list[int] = []

    class Judge:
        def _judge(self, batch: Any, outcome: BatchOutcome) -> None:
            judged.append(batch.seq)

    inflight: dict[Future[BatchOutcome], Any] = {}
    for seq in [5, 3, 7, 0, 6, 1, 4, 2, 9, 8]:
        fut: Future[BatchOutcome] = Future()
        fut.set_result(BatchOutcome([], []))
        inflight[fut] = SimpleNamespace(seq=seq)

    assert EventRun._drain(Judge(), inflight, block=True) is None  # type: ignore[arg-type]

    assert judged == list(range(10)) and not inflight
