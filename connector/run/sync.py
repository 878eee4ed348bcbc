"""One run of one sync: read → map → validate → batch → send → record.

This is the only module that wires the stages together. Delivery semantics (DESIGN.md):
- rows are read in ``(cursor, primary key)`` order after the checkpoint of the run's scope;
- each batch is written to the ledger as *pending* before it is sent; when it settles, the
  checkpoint moves to the end of the longest settled prefix, in the same transaction;
- after a crash, the next run skips rows of batches that were delivered beyond the prefix and
  re-sends the pending ones with the same dedup ids, reporting the copies as possibly
  duplicated (the decisions are the pure ``ledger.Ledger``; chunks are planned by
  ``plan.ChunkPlanner``, which ``preview`` uses too);
- rows that break a rule become rejects with a reason; the checkpoint passes them;
- an error about the request itself fails the run (``RequestError``): no reject, no checkpoint
  past it; so does a run whose API-side rejects pass ``max_reject_ratio`` (circuit breaker):
  batches with API-side rejects are held back until ``reject_ratio_min_rows`` rows were
  answered, so a breaker that trips on them records none of their rejects.
- a run that delivers a row with an open reject closes that reject; ``retry_rejects`` re-reads
  the open rejects by key and sends those that pass now (``_RetryRun``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextvars import copy_context
from typing import Any

import pyarrow as pa

from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError, DeliveryError, RequestError, SourceError
from ..core.logcontext import get_logger, run_context
from ..deliver.delivery import BatchOutcome, Runtime, Sender, Stats, post_preview
from ..deliver.factory import make_event_destination
from ..deliver.shared_pacer import account_of, destination_pacer
from ..destinations.base import Item, Learned
from ..map.mapper import Chunk, Events, Mapper, key_strings
from ..plan.batching import Batch, Batcher
from ..plan.ledger import Ledger, Settlement
from ..plan.planner import ChunkPlanner
from ..plan.planner import payload as _payload
from ..read.dupkeys import DuplicateKeys, EveryKey, KnownDuplicates
from ..read.source import Position, Reader, Window
from ..store.lease import Lease
from ..store.state import CLOSED_GONE, INCREMENTAL, Reject, StateStore
from .breaker import RejectRatio
from .openrejects import OpenRejects
from .result import SAMPLE_REJECTS, SyncResult, _describe

log = get_logger("connector.sync")

# SyncResult lives in .result (contacts.engine extends it without importing this module).


Progress = Callable[[SyncResult], None]


class _Run:
    def __init__(
        self,
        sync: SyncConfig,
        state: StateStore,
        scope: str,
        *,
        dry_run: bool,
        full_refresh: bool,
        window: Window | None,
        limit: int | None,
        runtime: Runtime,
        progress: Progress | None,
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
        self.progress = progress
        self.dest = make_event_destination(sync)
        self.reader = Reader(sync, warehouse_url)
        self.mapper = Mapper(sync)
        self.stats = Stats()
        self.account = account = account_of(self.dest)
        self.pacer = destination_pacer(self.dest, runtime, state.engine)
        self.dest.attach(state, account)
        self.concurrency = self.dest.options.concurrency or self.dest.limits.concurrency
        self.result = SyncResult(sync.name, scope, None, destination_dedups=self.dest.limits.dedup)
        self.dups: DuplicateKeys = EveryKey()  # a normal run asks the warehouse (execute)
        self.check_null_keys = check_null_keys
        # The exactly-once bookkeeping (main thread only); replaced in ``execute``.
        self.ledger = Ledger()
        self.planner = ChunkPlanner(self.dest, self.dups, self.ledger)
        # Copies the destination may already hold of items to send (id(item) → copies).
        self.copies: dict[int, int] = {}
        self.open_rejects = OpenRejects()  # keys whose reject a delivery here closes
        self.last_progress = 0.0
        self.last_recorded: float | None = None
        self.started = runtime.clock()
        # Circuit breaker (main thread only): batches with API-side rejects are held, not
        # settled, while too few rows were answered to judge (``connector.breaker``).
        self.reject_ratio: RejectRatio[tuple[Batch, BatchOutcome]] = RejectRatio(
            self.dest.options, lambda held: self._settle(*held)
        )
        self.breaker: RequestError | None = None
        self.lease: Lease | None = None  # held by run_sync around execute (not for dry runs)

    # -- the run -----------------------------------------------------------------------
    def execute(self) -> SyncResult:  # noqa: C901 — the run loop; the ledger split (issue 9.2) shortens it
        res = self.result
        started = self.started = self.rt.clock()
        name, scope = self.sync.name, self.scope
        checkpoint = None if self.full_refresh else self.state.checkpoint(name, scope)
        res.hwm_before = list(checkpoint) if checkpoint else None
        if not self.dry_run:
            res.run_id = self.state.start_run(name, scope)  # marks killed runs interrupted
            stored = self.state.ledger(name, scope)
            self.ledger, clear = Ledger.start(stored, full_refresh=self.full_refresh)
            if clear:
                self.state.clear_ledger(name, scope)
            self.planner = ChunkPlanner(self.dest, self.dups, self.ledger)
            self.open_rejects = OpenRejects.load(self.state, name, scope)
        sender = None if self.dry_run else Sender(self.dest, self.pacer, self.rt, self.stats)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"send-{name}")
        inflight: dict[Future[BatchOutcome], Batch] = {}
        failure: BaseException | None = None
        pages: Generator[Chunk] | None = None
        try:
            if self.check_null_keys:
                self._null_keys()
            dups = KnownDuplicates(self.reader.duplicate_keys(checkpoint, self.window))
            self.dups = self.planner.dups = dups
            batcher = Batcher(
                self.dest.limits.max_items, self.dest.limits.max_bytes, self.dest.request_overhead
            )
            pages = self.reader.pages(checkpoint, self.window, self.limit)
            for chunk in pages:
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
                self._report()
            if not failure:
                last = batcher.flush()
                if last is not None:
                    self._submit(last, pool, sender, inflight)
            while inflight:
                failure = self._drain(inflight, block=True) or failure
            if self.breaker is None:
                self.reject_ratio.release()
        except BaseException as exc:
            failure = exc
            for fut in inflight:
                fut.cancel()
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
            self._finish(started, failure)
        if failure:
            raise failure
        return res

    def _null_keys(self) -> None:
        count, sample = self.reader.null_key_rows()
        self.result.null_key_rows = count
        self.result.rejected += count
        for key, reason in sample[:SAMPLE_REJECTS]:
            self.result.sample_rejects.append((key, reason))
        if count and not self.dry_run and self.result.run_id:
            self.state.add_rejects(
                self.sync.name, self.scope, self.result.run_id, [Reject(k, r) for k, r in sample]
            )
        if count:
            log.warning(
                "%s: %d rows have a NULL cursor or primary key and are never sent",
                self.sync.name,
                count,
            )

    def _batches(self, events: Events, batcher: Batcher) -> list[Batch]:
        plan = self.planner.plan(events)
        self.result.skipped += len(plan.skip)
        for item in plan.items:
            if item.row in plan.copies:  # counted when its batch settles
                self.copies[id(item)] = plan.copies[item.row]
        return self.planner.batches(events, plan, batcher)

    def _submit(
        self,
        batch: Batch,
        pool: ThreadPoolExecutor,
        sender: Sender | None,
        inflight: dict[Future[BatchOutcome], Batch],
    ) -> None:
        self.result.batches += 1 if batch.items else 0
        if self.lease is not None:
            self.lease.check()  # a run that lost its lease sends nothing more
        if self.dry_run or sender is None or not batch.items:
            if self.dry_run:
                self.result.delivered += len(batch.items)  # "would deliver"
                self.result.rejected += len(batch.rejects)
                self._sample(batch.rejects)
                self.result.requests += 1 if batch.items else 0
                return
            self._settle(batch, None)
            return
        # A copy of this thread's context: sender threads log with the run's sync and id.
        inflight[pool.submit(copy_context().run, self._send, sender, batch)] = batch

    def _send(self, sender: Sender, batch: Batch) -> BatchOutcome:
        """Worker thread: record the batch as pending right before it goes on the wire, so
        after a crash only batches that were really in flight count as possibly sent."""
        batch.ledger_id = self.state.add_pending(
            self.sync.name,
            self.scope,
            self.result.run_id or "",
            batch.seq,
            batch.first,
            batch.last,
            len(batch.items),
        )
        return sender.send(batch.items)

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
            if exc is not None:
                failure = failure or exc
                if isinstance(exc, DeliveryError) and exc.stored_nothing:
                    self._forget(batch)
                continue
            failure = self._judge(batch, fut.result()) or failure
        return failure

    def _forget(self, batch: Batch) -> None:
        """The vendor refused the batch's request and kept nothing of it (``Ledger.forget``)."""
        if batch.ledger_id is not None:
            self._apply(Ledger.forget(batch.ledger_id), [])

    def _judge(self, batch: Batch, outcome: BatchOutcome) -> RequestError | None:
        """The circuit breaker: settle the batch, hold it while too few rows were answered to
        judge, or trip when the API-side rejects of the run pass the ratio."""
        rejected = len(outcome.rejected)
        if self.breaker is not None:
            if not rejected:
                self._settle(batch, outcome)
            return None  # a batch with rejects after the trip stays pending: re-sent next run
        trip = self.reject_ratio.judge(
            len(outcome.delivered) + rejected,
            [why for _, why in outcome.rejected],
            (batch, outcome),
        )
        if trip is None:
            return None
        self.breaker = RequestError(
            f"{self.dest.type}: the API rejected {trip.refused} of the {trip.answered} rows it "
            f"answered for, more than destination.options.max_reject_ratio "
            f"({self.reject_ratio.ratio:g}); the run stopped. Most common reason: "
            f"{trip.common[:300]!r}. The rows of the last {trip.units} batch(es) were not "
            "recorded as rejects and the checkpoint stays before them: fix the mapping, the "
            "data or the destination options (or raise max_reject_ratio), then run again",
            stored_nothing=False,
        )  # the held batches are left pending: their rows are sent again by the next run
        return self.breaker

    def _settle(self, batch: Batch, outcome: BatchOutcome | None) -> None:
        res = self.result
        rejects = list(batch.rejects)
        closed: list[str] = []
        copies = 0
        if outcome is not None:
            res.delivered += len(outcome.delivered)
            copies = outcome.possibly_duplicated
            copies += sum(self.copies.pop(id(it), 0) for it in outcome.delivered)
            for item, _ in outcome.rejected:
                self.copies.pop(id(item), None)
            res.possibly_duplicated += copies
            for item, reason in outcome.rejected:
                rejects.append(Reject(item.key, reason, _item_payload(item)))
            if self.open_rejects:  # a fixed row read again (its cursor moved): close it
                closed = self.open_rejects.closed_by(it.key for it in outcome.delivered)
        res.rejected += len(rejects)
        self._sample(rejects)
        settlement = self.ledger.settle(batch.seq, batch.ledger_id, batch.last)
        if settlement.checkpoint is not None:
            res.hwm_after = list(settlement.checkpoint)
        learned = outcome.learned if outcome is not None else None
        self._apply(settlement, rejects, closed, learned)
        if learned:  # stored with the batch: the destination uses it from now on
            self.dest.learn(learned)
        if copies:
            self._record_progress(force=True)  # a run killed later still reports them

    def _apply(
        self,
        settlement: Settlement,
        rejects: list[Reject],
        closed: list[str] | None = None,
        learned: Learned | None = None,
    ) -> None:
        """One transaction: the ledger's decision, the rejects, the closed rejects and what
        the responses taught about the account."""
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
        )

    def _sample(self, rejects: list[Reject]) -> None:
        room = SAMPLE_REJECTS - len(self.result.sample_rejects)
        for r in rejects[: max(0, room)]:
            self.result.sample_rejects.append((r.key, r.reason))

    def _report(self, *, force: bool = False) -> None:
        self._record_progress()
        if self.progress is None:
            return
        now = self.rt.clock()
        if force or now - self.last_progress >= 1.0:
            self.last_progress = now
            self._copy_stats()
            self.progress(self.result)

    def _record_progress(self, *, force: bool = False) -> None:
        """At most once a second (or now: ``force``), the counts so far in the run's row: a
        run killed without a trace is then reported by the next one with how far it got."""
        now = self.rt.clock()
        if self.dry_run or not self.result.run_id:
            return
        if not force and self.last_recorded is not None and now - self.last_recorded < 1.0:
            return
        self.last_recorded = now
        self._copy_stats()
        try:
            self.state.record_progress(self.result.run_id, _summary(self.result))
        except Exception:  # noqa: BLE001 — progress is a courtesy; the checkpoint is what matters
            log.warning("could not record the progress of run %s", self.result.run_id)

    def _copy_stats(self) -> None:
        res, st = self.result, self.stats
        if not self.dry_run:
            res.requests = st.requests
        res.retries = st.retries
        res.rate_limited = st.rate_limited
        res.duration_s = round(self.rt.clock() - self.started, 3)

    def _finish(self, started: float, failure: BaseException | None) -> None:
        res = self.result
        self._copy_stats()
        res.possibly_duplicated += self.stats.possibly_duplicated
        res.duration_s = round(self.rt.clock() - started, 3)
        res.rows_per_s = round(res.rows_read / res.duration_s, 1) if res.duration_s else 0.0
        if res.hwm_after is None:
            res.hwm_after = res.hwm_before
        if self.dry_run:
            res.status = "dry_run"
        elif failure is None:
            res.status = "success"
        else:
            res.status = "failed"
            res.error = _describe(failure)
        if res.run_id and not self.dry_run:
            try:
                self.state.finish_run(res.run_id, res.status, _summary(res), res.error)
            except Exception:  # never mask the run's own error
                log.exception("could not record the end of run %s", res.run_id)
        self._report(force=True)


class _RetryRun(_Run):
    """``retry_rejects``: send the open rejects of the scope that pass now.

    The rejected keys are re-read from the source by primary key and go through the normal
    map → validate → encode → batch → send path with the same dedup ids. Delivered rows close
    their rejects; rows rejected again stay open with the new reason and time; rejects whose
    row is gone are closed as ``CLOSED_GONE`` and counted. Only rows at or before the scope's
    checkpoint are sent: a row after it (its cursor moved when it was fixed) is the next
    incremental run's, which closes its reject on delivery. Neither the checkpoint nor the
    ledger is touched, and no row without an open reject is read. Batches go one at a time:
    a retry is a handful of rows, and a crash leaves the rejects open to retry again (same
    dedup ids).
    """

    def execute(self) -> SyncResult:
        res = self.result
        started = self.started = self.rt.clock()
        name, scope = self.sync.name, self.scope
        checkpoint = self.state.checkpoint(name, scope)
        res.hwm_before = res.hwm_after = list(checkpoint) if checkpoint else None
        keys = self.state.open_reject_keys(name, scope)
        if self.limit is not None:
            keys = keys[: self.limit]
        res.rejects_retried = len(keys)
        if not self.dry_run:
            res.run_id = self.state.start_run(name, scope)
        sender = None if self.dry_run else Sender(self.dest, self.pacer, self.rt, self.stats)
        failure: BaseException | None = None
        try:
            found: set[str] = set()
            batcher = Batcher(
                self.dest.limits.max_items, self.dest.limits.max_bytes, self.dest.request_overhead
            )
            for chunk in self.reader.rows_by_keys(keys):
                sendable, again = self._split(chunk, checkpoint, found)
                self._record(again)
                if not sendable.table.num_rows:
                    continue
                events = self.mapper.map(sendable)
                res.rows_read += events.n
                for batch in self._batches(events, batcher):
                    self._retry_send(batch, sender)
                self._report()
            last = batcher.flush()
            if last is not None:
                self._retry_send(last, sender)
            self._close_gone([k for k in keys if k not in found])
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if sender:
                sender.close()
            self.reader.close()
            self._finish(started, failure)
        return res

    def _split(
        self, chunk: Chunk, checkpoint: Position | None, found: set[str]
    ) -> tuple[Chunk, list[Reject]]:
        """The rows to send now; rows with a NULL cursor are rejected again; rows after the
        checkpoint are left to the incremental run (their rejects stay open)."""
        t = chunk.table
        pk = [t.column(c).combine_chunks() for c in self.sync.source.primary_key]
        keys = key_strings(pk).to_pylist()
        found.update(keys)
        cursor = t.column(self.sync.cursor).to_pylist()
        pk_values = [col.to_pylist() for col in pk]
        keep: list[bool] = []
        again: list[Reject] = []
        for i, cur in enumerate(cursor):
            if cur is None:
                again.append(Reject(keys[i], self.reader.null_cursor_reason()))
                keep.append(False)
            elif checkpoint is not None and (cur, *(v[i] for v in pk_values)) <= checkpoint:
                keep.append(True)
            else:
                self.result.rejects_deferred += 1
                keep.append(False)
        return Chunk(t.filter(pa.array(keep, pa.bool_())), chunk.json_columns), again

    def _retry_send(self, batch: Batch, sender: Sender | None) -> None:
        res = self.result
        res.batches += 1 if batch.items else 0
        if self.lease is not None:
            self.lease.check()
        if self.dry_run or sender is None:
            res.delivered += len(batch.items)  # "would deliver"
            res.requests += 1 if batch.items else 0
            self._record(batch.rejects)
            return
        rejects = list(batch.rejects)
        delivered: list[str] = []
        if batch.items:
            outcome = sender.send(batch.items)
            res.delivered += len(outcome.delivered)
            res.possibly_duplicated += outcome.possibly_duplicated
            delivered = [it.key for it in outcome.delivered]
            rejects += [Reject(it.key, why, _item_payload(it)) for it, why in outcome.rejected]
        res.rejected += len(rejects)
        self._sample(rejects)
        # One transaction; no checkpoint, no ledger rows.
        learned = outcome.learned if batch.items else None
        self.state.settle(
            self.sync.name,
            self.scope,
            res.run_id or "",
            [],
            [],
            None,
            rejects,
            delivered,
            (self.account, learned) if learned else None,
        )
        if learned:
            self.dest.learn(learned)

    def _record(self, rejects: list[Reject]) -> None:
        """Rows rejected again before any request: counted, and recorded unless dry run."""
        if not rejects:
            return
        self.result.rejected += len(rejects)
        self._sample(rejects)
        if not self.dry_run:
            self.state.add_rejects(self.sync.name, self.scope, self.result.run_id or "", rejects)

    def _close_gone(self, gone: list[str]) -> None:
        """Rejects whose key reads no row. A row whose primary key is NULL has no key to read
        it by: its reject stays open while the source still has that row."""
        if not gone:
            return
        if any("NULL" in k.split(",") for k in gone):
            _, sample = self.reader.null_key_rows()
            still = dict(sample)
            self._record([Reject(k, still[k]) for k in gone if k in still])
            gone = [k for k in gone if k not in still]
        self.result.rejects_gone += len(gone)
        if gone:
            log.warning(
                "%s: %d rejected rows are no longer in the source (e.g. key %s); their rejects "
                "are closed as %r",
                self.sync.name,
                len(gone),
                gone[0],
                CLOSED_GONE,
            )
        if gone and not self.dry_run:
            self.state.close_rejects(
                self.sync.name, self.scope, gone, self.result.run_id or "", CLOSED_GONE
            )


def _summary(res: SyncResult) -> dict[str, Any]:
    d = res.to_dict()
    d.pop("sample_rejects", None)
    return d


def _item_payload(item: Item) -> str | None:
    return _payload(item.events, item.row)


def run_sync(
    sync: SyncConfig,
    *,
    state: StateStore | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    limit: int | None = None,
    window: Window | None = None,
    scope: str = INCREMENTAL,
    runtime: Runtime | None = None,
    progress: Progress | None = None,
    warehouse_url: str | None = None,
    check_null_keys: bool = True,
    retry_rejects: bool = False,
) -> SyncResult:
    """Run one sync to completion. Raises ``DeliveryError`` (and subclasses) when the run
    fails; the state store then holds the checkpoint at the last delivered row.

    ``check_null_keys=False`` skips counting the rows with a NULL cursor or key (a scan of the
    whole source): a caller running several windows of one sync in a row checks once.

    ``retry_rejects=True`` sends only the scope's open rejects that pass now (``_RetryRun``);
    ``limit`` then caps the number of rejects retried.

    A run that sends holds the lease of its sync and scope (``connector.lease``): while another
    run holds it, this one raises ``LeaseHeld`` before reading a row."""
    if retry_rejects and full_refresh:
        raise ConfigError("retry_rejects and full_refresh cannot be combined: pick one")
    if sync.is_contact_sync:  # a state, not a time series: connector.contacts
        from .contacts import run_contacts

        if window is not None or retry_rejects:
            raise ConfigError(
                f"{sync.name} is a contact sync: every run re-sends its failed rows; "
                "partitions, backfills and --retry-rejects do not apply"
            )
        state = state or StateStore.open()
        with contextlib.ExitStack() as held:
            lease = None
            if not dry_run:  # the same lease as an event run: one run of a sync at a time
                lease = held.enter_context(Lease(state, sync.name, INCREMENTAL))
            return run_contacts(
                sync,
                state,
                full_refresh=full_refresh,
                dry_run=dry_run,
                limit=limit,
                runtime=runtime,
                progress=progress,
                warehouse_url=warehouse_url,
                lease=lease,
            )
    state = state or StateStore.open()
    run = (_RetryRun if retry_rejects else _Run)(
        sync,
        state,
        scope,
        dry_run=dry_run,
        full_refresh=full_refresh,
        window=window,
        limit=limit,
        runtime=runtime or Runtime(),
        progress=progress,
        warehouse_url=warehouse_url,
        check_null_keys=check_null_keys,
    )
    try:
        # Missing columns and the cursor/event-time type rules (the ones ``validate`` applies)
        # are config errors before the run writes anything or takes its lease.
        with contextlib.suppress(SourceError):  # unreachable: the run records that failure
            run.reader.check_columns()
        with run_context(sync.name, lambda: run.result.run_id):
            if dry_run:  # sends nothing and writes nothing: runs beside a real run
                return run.execute()
            with Lease(state, sync.name, scope) as lease:
                run.lease = lease
                return run.execute()
    except BaseException:
        run.reader.close()  # give an embedded warehouse file back (execute may not have run)
        raise


def preview(sync: SyncConfig, limit: int = 5, warehouse_url: str | None = None) -> dict[str, Any]:
    """The exact requests the first ``limit`` rows would become; sends nothing, writes
    nothing."""
    if sync.is_contact_sync:
        from .contacts import preview_contacts

        return preview_contacts(sync, limit, warehouse_url)
    dest = make_event_destination(sync, resolve_secret=False)
    mapper = Mapper(sync)
    planner = ChunkPlanner(dest, EveryKey())  # a preview reads a few rows
    batcher = Batcher(dest.limits.max_items, dest.limits.max_bytes, dest.request_overhead)
    batches: list[Batch] = []
    rejects: list[tuple[str, str]] = []
    with Reader(sync, warehouse_url) as reader:
        chunks = list(reader.pages(None, None, limit))
    for chunk in chunks:
        events = mapper.map(chunk)
        plan = planner.plan(events)
        rejects += [(events.keys[i], r) for i, r in sorted(plan.reasons.items())]
        batches += planner.batches(events, plan, batcher)
    last = batcher.flush()
    if last is not None:
        batches.append(last)
    return {
        "requests": [post_preview(dest, b.items) for b in batches if b.items],
        "rejects": rejects,
    }
