"""The event ledger strategy: read → map → plan → batches through the sender → settle in the
ledger, inside the run shell (``shell.RunShell``: lease, run record, rows handled, progress).

Delivery semantics (DESIGN.md):
- rows are read in ``(cursor, primary key)`` order after the checkpoint of the run's scope;
- each batch is written to the ledger as *pending* before it is sent; when it settles, the
  checkpoint moves to the end of the longest settled prefix, in the same transaction;
- after a crash, the next run skips rows of batches that were delivered beyond the prefix and
  re-sends the pending ones with the same dedup ids, reporting the copies as possibly
  duplicated (the decisions are the pure ``plan.ledger.Ledger``; chunks are planned by
  ``plan.planner.ChunkPlanner``, which ``preview`` uses too);
- rows that break a rule become rejects with a reason; the checkpoint passes them;
- an error about the request itself fails the run (``RequestError``): no reject, no checkpoint
  past it; so does a run whose API-side rejects pass ``max_reject_ratio`` (circuit breaker,
  ``breaker``): batches with API-side rejects are held back until ``reject_ratio_min_rows``
  rows were answered, so a breaker that trips on them records none of their rejects;
- a run that delivers a row with an open reject closes that reject (``openrejects``).
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextvars import copy_context
from typing import TYPE_CHECKING

from ..config.sync_file import DestinationSettings, SyncConfig
from ..core import fence, giveup
from ..core.errors import DeliveryError, GaveUp, RequestError
from ..core.fence import LeaseLost
from ..core.logcontext import get_logger
from ..deliver.delivery import BatchOutcome, Runtime, Sender, Stats
from ..deliver.shared_pacer import account_of, destination_pacer
from ..destinations.base import Item, Learned
from ..destinations.event_endpoint import EventDestination
from ..map.mapper import Chunk, Events, Mapper
from ..plan.batching import Batch, Batcher
from ..plan.ledger import Ledger, Settlement
from ..plan.planner import ChunkPlanner
from ..plan.planner import payload as _payload
from ..read.dupkeys import DuplicateKeys, EveryKey, KnownDuplicates
from ..read.source import Reader, Window
from ..store.periods import PeriodCounts
from ..store.state import Reject, StateStore
from .breaker import ALIKE_MIN_ROWS, Breaker, Trip
from .late import BatchRows, account, open_window
from .openrejects import OpenRejects, split_known
from .result import SyncResult
from .shell import KeyView, RunShell

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


log = get_logger("connector.sync")


class _Unsent(Exception):
    """A batch dropped before it went out: the run had already failed (``EventRun.stopped``)."""


class EventRun:
    """One event run of ``sync`` to ``dest`` in ``scope`` (see the module docstring); the
    shell calls ``run``. ``result`` and ``stats`` are the shell's."""

    shell: RunShell  # set by ``run``

    def __init__(
        self,
        sync: SyncConfig,
        dest: EventDestination[DestinationSettings],
        state: StateStore,
        scope: str,
        *,
        dry_run: bool,
        full_refresh: bool,
        window: Window | None,
        limit: int | None,
        runtime: Runtime,
        warehouse_url: str | None,
        check_null_keys: bool,
    ) -> None:
        self.sync = sync
        self.state = state
        self.scope = scope
        self.dry_run = dry_run
        self.full_refresh = full_refresh
        self.window = window
        self.limit = limit
        self.rt = runtime
        self.dest = dest
        self.reader = Reader(sync, warehouse_url, scope=scope)
        self.mapper = Mapper(sync)
        self.stats = Stats()
        self.account = account = account_of(self.dest)
        self.pacer = destination_pacer(self.dest, runtime, state.engine)
        self.dest.attach(state, account)
        self.concurrency = self.dest.options.concurrency or self.dest.limits.concurrency
        self.result = SyncResult(sync.name, scope, None, destination_dedups=self.dest.limits.dedup)
        self.dups: DuplicateKeys = EveryKey()  # a normal run asks the warehouse (run)
        self.check_null_keys = check_null_keys
        # The exactly-once bookkeeping (main thread only); replaced in ``run``.
        self.ledger = Ledger()
        self.planner = ChunkPlanner(self.dest, self.dups, self.ledger)
        # Copies the destination may already hold of items to send (id(item) → copies).
        self.copies: dict[int, int] = {}
        self.open_rejects = OpenRejects()  # keys whose reject a delivery here closes
        self.rows = BatchRows()  # the rows each batch covers (the lookback window, ``late``)
        # Circuit breaker (main thread only): batches with API-side rejects are held, not
        # settled, while too few rows were answered to judge (``breaker``).
        self.breaker: Breaker[tuple[Batch, BatchOutcome]] = Breaker(
            self.dest.options,
            lambda held: self._settle(*held),
            self._trip_message,
            alike_min_rows=ALIKE_MIN_ROWS,  # every row refused alike fails the run
            drop=lambda held: self._forget(held[0]),  # such batches stored nothing
        )
        # Rows handled per period (``store.periods``), added in each settle; a full refresh
        # zeroes the scope's counts in its first settle (``reconcile`` may set both).
        self.period_scope = scope
        self.period_reset: frozenset[str] = frozenset()
        self.period_reset_all = full_refresh
        # Set by a sender thread whose request failed for good (the run fails): the batches
        # queued behind it are dropped unsent, not tried one after another (``_send``).
        self.stopped = threading.Event()

    def batcher(self) -> Batcher:
        """A batcher by the destination's limits."""
        return Batcher(
            self.dest.limits.max_items, self.dest.limits.max_bytes, self.dest.request_overhead
        )

    # -- the run -----------------------------------------------------------------------
    def run(self, shell: RunShell) -> None:  # noqa: C901 — the run loop
        """Read after the checkpoint, send every batch and settle it in the ledger."""
        self.shell = shell
        res = self.result
        name, scope = self.sync.name, self.scope
        checkpoint = None if self.full_refresh else self.state.checkpoint(name, scope)
        res.hwm_before = list(checkpoint) if checkpoint else None
        window = None
        try:
            # The lookback window (``late``): read from its far edge, skip the rows handled.
            after, window = open_window(
                self.reader,
                self.state,
                scope,
                checkpoint,
                self.limit,
                full_refresh=self.full_refresh,
            )
        except BaseException:
            self.reader.close()
            raise
        self.ledger = Ledger(window=window)
        if not self.dry_run:
            stored = self.state.ledger(name, scope)
            self.ledger, clear = Ledger.start(stored, full_refresh=self.full_refresh, window=window)
            if clear:
                self.state.clear_ledger(name, scope)
            if self.full_refresh and window is not None:
                self.state.clear_window(name, scope)
            self.open_rejects = OpenRejects.load(self.state, name, scope)
        self.planner = ChunkPlanner(self.dest, self.dups, self.ledger)
        sender = None if self.dry_run else Sender(self.dest, self.pacer, self.rt, self.stats)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"send-{name}")
        inflight: dict[Future[BatchOutcome], Batch] = {}
        failure: BaseException | None = None
        pages: Generator[Chunk] | None = None
        try:
            if self.check_null_keys:
                self._null_keys()
            # Nothing to read (a no-op run): no duplicate-key query and no page, so no Arrow.
            empty = not self.reader.any_rows(after, self.window)
            dups = KnownDuplicates([] if empty else self.reader.duplicate_keys(after, self.window))
            self.dups = self.planner.dups = dups
            batcher = self.batcher()
            pages = None if empty else self.reader.pages(after, self.window, self.limit)
            for chunk in pages or ():
                events = self.mapper.map(chunk)
                res.rows_read += events.n
                batches = self._batches(events, batcher)
                # The page's encoding intermediates are gone: hand their memory back now, or
                # the Arrow pool keeps it and the process grows with the number of pages.
                pa.default_memory_pool().release_unused()
                for batch in batches:
                    self._submit(batch, pool, sender, inflight)
                    failure = self._drain(inflight, block=len(inflight) >= 2 * self.concurrency)
                    if failure:
                        break
                if failure:
                    break
                shell.tick()
            if not failure:
                last = batcher.flush()
                if last is not None:
                    self.rows.take(last)
                    self._submit(last, pool, sender, inflight)
            while inflight:
                failure = _cause(failure, self._drain(inflight, block=True))
            self.breaker.release(alike=failure is None)  # a failed run keeps its own error
        except BaseException as exc:
            for fut in inflight:
                fut.cancel()
            if isinstance(exc, LeaseLost):
                pool.shutdown(wait=True, cancel_futures=True)
                self._lost_inflight(inflight)
            raise
        finally:
            if pages is not None:
                # Closed explicitly on a failure: an embedded warehouse's open result (and
                # its file) is let go now, not when the traceback's frames are freed.
                pages.close()
            pool.shutdown(wait=True, cancel_futures=True)
            if sender:
                sender.close()
            self.reader.close()
            self._last_counts()
            account(res, window, name)
        if failure:
            raise failure

    def _last_counts(self) -> None:
        res = self.result
        res.possibly_duplicated += self.stats.possibly_duplicated
        if res.hwm_after is None:
            res.hwm_after = res.hwm_before

    def _null_keys(self) -> None:
        count, sample = self.reader.null_key_rows()
        self.result.null_key_rows = count
        # The sample (up to 1,000) is recorded; the rows past it are counted only. Those
        # recorded unchanged by an earlier run are known: counted, left as they are.
        new, known = split_known(
            self.state, self.sync.name, self.scope, [Reject(k, r) for k, r in sample]
        )
        self.shell.rejected(new)
        self.shell.rejected_known(known)
        self.result.rejected += count - len(sample)
        self.shell.flush_rejects()
        if count:
            log.warning(
                "%s: %d %s a NULL cursor or primary key and %s never sent",
                self.sync.name,
                count,
                "row has" if count == 1 else "rows have",
                "is" if count == 1 else "are",
            )

    def _batches(self, events: Events, batcher: Batcher) -> list[Batch]:
        window = self.ledger.window
        before = window.reread if window is not None else 0
        plan = self.planner.plan(events)
        # Rows read again inside the lookback window and handled before are its cost, not
        # rows of this run (``late``): neither read nor skipped.
        again = window.reread - before if window is not None else 0
        self.result.rows_read -= again
        self.result.skipped += len(plan.skip) - again
        for item in plan.items:
            if item.row in plan.copies:  # counted when its batch settles
                self.copies[id(item)] = plan.copies[item.row]
        self.rows.chunk(events, plan)
        batches = self.planner.batches(events, plan, batcher)
        for batch in batches:
            self.rows.take(batch)
        return batches

    def _submit(
        self,
        batch: Batch,
        pool: ThreadPoolExecutor,
        sender: Sender | None,
        inflight: dict[Future[BatchOutcome], Batch],
    ) -> None:
        self.result.batches += 1 if batch.items else 0
        self.shell.check_lease()
        if self.dry_run or sender is None or not batch.items:
            if self.dry_run:
                self.shell.delivered(KeyView(batch.items))  # "would deliver"
                self.shell.rejected(batch.rejects)
                self.result.requests += 1 if batch.items else 0
                return
            self._settle(batch, None)
            return
        # A copy of this thread's context: sender threads log with the run's sync and id, and
        # their requests stop retrying once the run failed on another one (``core.giveup``).
        self.shell.sending(len(batch.items))
        context = copy_context()
        context.run(giveup.watch, self.stopped)
        inflight[pool.submit(context.run, self._send, sender, batch)] = batch

    def _send(self, sender: Sender, batch: Batch) -> BatchOutcome:
        """Worker thread: record the batch as pending right before it goes on the wire, so
        after a crash only batches that were really in flight count as possibly sent. A run
        that lost its lease records and sends nothing more (``core.fence``)."""
        fence.check()
        if self.stopped.is_set():
            raise _Unsent
        batch.ledger_id = self.state.add_pending(
            self.sync.name,
            self.scope,
            self.result.run_id or "",
            batch.seq,
            batch.first,
            batch.last,
            len(batch.items),
        )
        try:
            return sender.send(batch.items)
        except DeliveryError as exc:
            # The run fails with this batch's error: a destination that is down is not tried
            # again batch after batch; the rows queued behind it stay after the checkpoint,
            # and the requests in flight stop at their next retry (``core.giveup``).
            if not self.stopped.is_set():
                self.stopped.set()
                log.warning(
                    "%s: a request failed for good (%s): the run stops; batches queued are not "
                    "sent and requests in flight are not retried",
                    self.sync.name,
                    type(exc).__name__,
                )
            raise

    def _drain(
        self, inflight: dict[Future[BatchOutcome], Batch], *, block: bool
    ) -> BaseException | None:
        if not inflight:
            return None
        done, _ = wait(list(inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        failure = None
        # In batch order, not the set's: two batches that finished before this look would
        # otherwise meet the circuit breaker in hash order, which decides where it trips.
        for fut in sorted(done, key=lambda f: inflight[f].seq):
            batch = inflight.pop(fut)
            exc = fut.exception()
            if isinstance(exc, _Unsent):  # never went out: no ledger entry, no longer pending
                self.shell.settled_sent(len(batch.items))
                continue
            if exc is not None:
                if failure is None or isinstance(failure, GaveUp):  # the first, a cause first
                    failure = exc
                if isinstance(exc, LeaseLost):
                    self._lost(batch, sent=exc.maybe_sent)
                if isinstance(exc, DeliveryError) and exc.stored_nothing:
                    self._forget(batch)
                continue
            failure = self._judge(batch, fut.result()) or failure
        return failure

    def _lost(self, batch: Batch, *, sent: bool) -> None:
        """The fence stopped ``batch``: if it may have reached the API its rows count as
        possibly duplicated (the run settles nothing more); else its pending entry goes."""
        if sent:
            self.result.possibly_duplicated += len(batch.items)
        else:
            self._forget(batch)

    def _lost_inflight(self, inflight: dict[Future[BatchOutcome], Batch]) -> None:
        """After ``LeaseLost``: batches that were answered or failed on the wire but not
        settled may have been taken by the API: counted as possibly duplicated."""
        for fut, batch in inflight.items():
            if fut.cancelled():
                continue
            exc = fut.exception()
            self._lost(batch, sent=not isinstance(exc, LeaseLost) or exc.maybe_sent)

    def _forget(self, batch: Batch) -> None:
        """The vendor refused the batch's request and kept nothing of it (``Ledger.forget``)."""
        self.shell.settled_sent(len(batch.items))
        if batch.ledger_id is not None:
            self._apply(Ledger.forget(batch.ledger_id), [])

    def _judge(self, batch: Batch, outcome: BatchOutcome) -> RequestError | None:
        """The circuit breaker: settle the batch, hold it while too few rows were answered to
        judge, or trip when the API-side rejects of the run pass the ratio."""
        rejected = len(outcome.rejected)
        if self.breaker.tripped is not None:
            if not rejected:
                self._settle(batch, outcome)
            return None  # a batch with rejects after the trip stays pending: re-sent next run
        return self.breaker.judge(
            len(outcome.delivered) + rejected,
            [why for _, why in outcome.rejected],
            (batch, outcome),
        )  # a trip leaves the held batches pending: their rows are sent again next run

    def _trip_message(self, trip: Trip, ratio: float) -> str:
        return (
            f"{self.dest.type}: the API rejected {trip.refused} of the {trip.answered} rows it "
            f"answered for, more than destination.options.max_reject_ratio "
            f"({ratio:g}); the run stopped. Most common reason: "
            f"{trip.common[:300]!r}. The rows of the last {trip.units} batch(es) were not "
            "recorded as rejects and the checkpoint stays before them: fix the mapping, the "
            "data or the destination options (or raise max_reject_ratio), then run again"
        )

    def _settle(self, batch: Batch, outcome: BatchOutcome | None) -> None:
        res = self.result
        try:
            fence.check()  # a run that lost its lease writes no settlement
        except LeaseLost:
            if outcome is not None:  # taken by the API, recorded nowhere
                res.possibly_duplicated += len(outcome.delivered)
            raise
        rejects = list(batch.rejects)
        closed: list[str] = []
        copies = 0
        if outcome is not None:
            self.shell.settled_sent(len(batch.items))
            self._delivered(outcome)
            copies = outcome.possibly_duplicated
            copies += sum(self.copies.pop(id(it), 0) for it in outcome.delivered)
            for item, _ in outcome.rejected:
                self.copies.pop(id(item), None)
            res.possibly_duplicated += copies
            for item, reason in outcome.rejected:
                rejects.append(Reject(item.key, reason, _item_payload(item)))
            if self.open_rejects:  # a fixed row read again (its cursor moved): close it
                closed = self.open_rejects.closed_by(it.key for it in outcome.delivered)
        self.shell.rejected(rejects, stored=True)  # in the settle transaction below
        rows = self.rows.positions(batch.seq)  # recorded in the lookback window
        settlement = self.ledger.settle(batch.seq, batch.ledger_id, batch.last, rows)
        if settlement.checkpoint is not None:
            res.hwm_after = list(settlement.checkpoint)
        learned = outcome.learned if outcome is not None else None
        self._apply(settlement, rejects, closed, learned, self._periods(batch, outcome))
        if learned:  # stored with the batch: the destination uses it from now on
            self.dest.learn(learned)
        if copies:
            self.shell.record_now()  # a run killed later still reports them

    def _apply(
        self,
        settlement: Settlement,
        rejects: list[Reject],
        closed: list[str] | None = None,
        learned: Learned | None = None,
        periods: PeriodCounts | None = None,
    ) -> None:
        """One transaction: the ledger's decision, the rejects, the closed rejects, what
        the responses taught about the account and the rows handled per period."""
        self.state.settle(
            self.sync.name,
            self.scope,
            self.result.run_id or "",
            settlement.delivered_ids,
            settlement.drop_ids,
            settlement.checkpoint,
            rejects,
            closed or [],
            (self.account, learned) if learned else None,
            settlement.window,
            periods,
            also=self.shell.audit_unit(),  # the unit's audit rows (connector.audit)
        )

    def _periods(self, batch: Batch, outcome: BatchOutcome | None) -> PeriodCounts:
        """The batch's delivered and rejected rows by period (``store.periods``)."""
        counts = PeriodCounts(self.period_scope, reset=self.period_reset)
        counts.reset_all = self.period_reset_all
        self.period_reset, self.period_reset_all = frozenset(), False  # once per run
        counts.add_rows(batch.reject_refs, rejected=True)
        if outcome is not None:
            counts.add_rows(((it.events, it.row) for it in outcome.delivered), rejected=False)
            counts.add_rows(((it.events, it.row) for it, _ in outcome.rejected), rejected=True)
        return counts

    def _delivered(self, outcome: BatchOutcome) -> None:
        """The delivered rows to the shell, those the vendor may hold twice apart (a re-sent
        batch of a crashed run, a retried request where the destination does not dedup)."""
        done = outcome.delivered
        if outcome.possibly_duplicated:
            self.shell.delivered(KeyView(done), duplicated=True)
        elif self.copies and any(id(it) in self.copies for it in done):
            again = [it for it in done if id(it) in self.copies]
            self.shell.delivered(KeyView([it for it in done if id(it) not in self.copies]))
            self.shell.delivered(KeyView(again), duplicated=True)
        else:
            self.shell.delivered(KeyView(done))


def _item_payload(item: Item) -> str | None:
    return _payload(item.events, item.row)


def _cause(earlier: BaseException | None, later: BaseException | None) -> BaseException | None:
    """The failure a run reports of two: the later one, unless it only gave up because of the
    earlier (``GaveUp``: requests stop retrying once the run failed)."""
    if later is None or (earlier is not None and isinstance(later, GaveUp)):
        return earlier
    return later
