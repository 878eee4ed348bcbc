"""The run shell: what every run of a sync does, whatever it sends.

A run is a strategy inside the shell. The shell owns the run's lifecycle, once for both kinds
of sync:

- the **lease** of ``(sync, scope)``: taken before the run reads or writes anything (dry runs
  take none; a caller may hand in one it holds), checked before each unit goes out
  (``check_lease``), given back at the end;
- the **run record**: ``start_run`` (which marks earlier runs of the scope that were killed
  ``interrupted``), the counts so far at most once a second (``tick``) or at once
  (``record_now``), and ``finish_run`` with the status and the error of a failed run;
- **rows handled**: ``delivered`` and ``rejected`` count every row the strategy settles,
  keep a sample of rejects for the summary and buffer rejects for the store (one write per
  1,000, and at the end) unless the strategy stores them in its own settle transaction;
- the **progress** callback: at most once a second on the injected clock, from the strategy's
  ``tick`` and from the run's **heartbeat** thread (``heartbeat.Heartbeat``), which reports
  while the main thread waits on a slow destination; once at the end with the status. It
  counts rows settled (``delivered``, ``rejected``) and ``pending`` (sent, not yet settled:
  ``sending`` / ``settled_sent``), never rows merely read; and the **timing** (the injected
  clock).

A strategy (``Strategy``) is what is particular to a kind of sync: the event ledger strategy
(``events.EventRun``: read → plan → batches through the sender → settle in the ledger, and
``retry.RetryRun``) and the contact diff strategy (``contacts.ContactRun``: read → hash/diff →
jobs → confirm). It reports every row it settles through ``delivered``/``rejected`` and calls
``tick`` after each page and each settled unit: a feature about runs (progress, audit rows per
run or per row, checks at the end) belongs here, not in a strategy.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, overload

from ..audit import Recorder
from ..audit.tables import DELIVERED, POSSIBLY_DUPLICATED
from ..core.fence import fenced
from ..core.logcontext import get_logger, run_context
from ..store.lease import Lease
from ..store.state import Reject, StateStore
from .heartbeat import Heartbeat
from .result import SAMPLE_REJECTS, SyncResult, _describe

log = get_logger("connector.run")

Progress = Callable[[SyncResult], None]

REJECT_BUFFER = 1000  # rejects written to the store per statement batch
PROGRESS_EVERY_S = 1.0  # the run record and the progress callback, at most this often


class Counters(Protocol):
    """The request counters a strategy's HTTP client keeps (copied into the result)."""

    requests: int
    retries: int
    rate_limited: int


class Strategy(Protocol):
    """What a kind of sync does inside the shell: read, decide, send and settle, reporting
    each settled row to the shell."""

    def run(self, shell: RunShell) -> None:
        """The run's work, start to end; raises to fail the run. Lets go of what it opened."""


class KeyView(Sequence[str]):
    """The row keys of items (anything with a ``key``), read only when asked: settling a
    batch costs no list of its keys unless something reads them."""

    __slots__ = ("items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [it.key for it in self.items[i]]
        return str(self.items[i].key)


class RunShell:
    """One run's lifecycle around a strategy (see the module docstring).

    ``result`` is the run's result (its ``sync`` and ``scope`` name the lease and the run
    record), ``stats`` the counters of its HTTP client. ``lease``: one the caller holds
    already (else ``execute`` takes it, unless ``dry_run``). ``audit``: the run's audit
    recorder when the sync writes audit tables (``connector.audit``): every row settled here
    is recorded in it, and its rows go to the warehouse at the end.
    """

    def __init__(
        self,
        state: StateStore,
        result: SyncResult,
        stats: Counters,
        *,
        dry_run: bool,
        clock: Callable[[], float],
        progress: Progress | None = None,
        lease: Lease | None = None,
        audit: Recorder | None = None,
    ) -> None:
        self.state = state
        self.audit = audit
        self.result = result
        self.stats = stats
        self.dry_run = dry_run
        self.clock = clock
        self.progress = progress
        self.lease = lease
        self.started = clock()
        self.last_progress = 0.0
        self.last_recorded: float | None = None
        self.buffer: list[Reject] = []
        self.emitting = threading.Lock()  # the main thread's tick and the heartbeat's beat

    @property
    def run_id(self) -> str:
        """The run's id in the state store ("" in a dry run, which records nothing)."""
        return self.result.run_id or ""

    # -- the lifecycle ---------------------------------------------------------------------
    def execute(self, strategy: Strategy) -> SyncResult:
        """Run ``strategy`` inside the lease and the run record; returns the result.

        Raises ``LeaseHeld`` before anything is read or recorded when another run holds the
        lease, and whatever failed the run after recording it as failed."""
        res = self.result
        # Log records of the run (any thread it starts with a copy of this context) name the
        # sync and the run id.
        with run_context(res.sync, lambda: res.run_id), contextlib.ExitStack() as held:
            if self.lease is None and not self.dry_run:
                self.lease = held.enter_context(Lease(self.state, res.sync, res.scope))
            held.enter_context(fenced(self.lease))  # the write fence of every request
            failure: BaseException | None = None
            try:
                self._start()
                with self._heartbeat():
                    strategy.run(self)
                self.flush_rejects()
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self._finish(failure)
        return res

    def _heartbeat(self) -> contextlib.AbstractContextManager[Any]:
        """The thread that reports progress on a timer (none without a progress callback)."""
        if self.progress is None:
            return contextlib.nullcontext()
        return Heartbeat(self.beat, name=f"progress-{self.result.sync}")

    def _start(self) -> None:
        self.started = self.clock()
        if not self.dry_run:
            self.result.run_id = self.state.start_run(self.result.sync, self.result.scope)
            if self.audit is not None:
                self.audit.start(self.result.run_id)

    def _finish(self, failure: BaseException | None) -> None:
        res = self.result
        if failure is not None and self.buffer:
            try:  # the rejects a failed run found are recorded too
                self.flush_rejects()
            except Exception:
                log.exception("could not record the rejects of run %s", self.run_id)
        self._copy_stats()
        res.rows_per_s = round(res.rows_read / res.duration_s, 1) if res.duration_s else 0.0
        if failure is not None:
            res.status = "failed"
            res.error = _describe(failure)
        else:
            res.status = "dry_run" if self.dry_run else "success"
        if res.run_id and not self.dry_run:
            try:
                self.state.finish_run(res.run_id, res.status, summary(res), res.error)
            except Exception:
                if failure is None:
                    raise  # a run whose end cannot be recorded did not succeed
                log.exception("could not record the end of run %s", res.run_id)
        if self.audit is not None and res.run_id:
            try:
                self.audit.finish(res.error)
            except Exception:  # noqa: BLE001 — an audit failure never fails a delivery
                log.warning("could not record the audit rows of run %s", res.run_id)
        self.tick(force=True)

    def check_lease(self) -> None:
        """Before a unit goes out (a batch, an import job, a list removal): a run that lost
        its lease (another run took the sync over, or it could not renew it in time) sends
        nothing more; ``LeaseLost`` fails it. The HTTP loop checks the same fence before each
        request (``core.fence``)."""
        if self.lease is not None:
            self.lease.check()

    # -- rows handled ------------------------------------------------------------------------
    def delivered(self, keys: Sequence[str], *, duplicated: bool = False) -> None:
        """Rows the destination took (a contact run: confirmed), by key; in a dry run the rows
        that would go. ``duplicated``: the destination may hold them twice (audit rows)."""
        self.result.delivered += len(keys)
        if self.audit is not None:
            self.audit.delivered(keys, POSSIBLY_DUPLICATED if duplicated else DELIVERED)

    def rejected(
        self, rejects: Sequence[Reject], *, stored: bool = False, operation: str | None = None
    ) -> None:
        """Rows refused, by the run's rules or the destination: counted, sampled for the
        summary, and buffered for the store, unless the strategy writes them itself in the
        transaction that settles their unit (``stored``). A dry run records nothing.
        ``operation``: what the rows were for (audit rows; default the run's own)."""
        res = self.result
        if self.audit is not None:
            self.audit.rejected(rejects, operation)
        res.rejected += len(rejects)
        room = SAMPLE_REJECTS - len(res.sample_rejects)
        for r in rejects[: max(0, room)]:
            res.sample_rejects.append((r.key, r.reason))
        if stored or self.dry_run:
            return
        self.buffer.extend(rejects)
        if len(self.buffer) >= REJECT_BUFFER:
            self.flush_rejects()

    def rejected_known(self, rejects: Sequence[Reject]) -> None:
        """Rows refused again unchanged (an open reject of the same key, reason and payload):
        counted as rejected and as known, in the audit rows as this run's result, left open
        in the store as first recorded."""
        if self.audit is not None and not self.dry_run:
            self.audit.rejected(rejects)
        self.result.rejected += len(rejects)
        self.result.rejects_known += len(rejects)

    def flush_rejects(self) -> None:
        """Write the buffered rejects now (an open reject of the same key opens again)."""
        self.audit_commit()
        if self.buffer and not self.dry_run and self.result.run_id:
            self.state.add_rejects(self.result.sync, self.result.scope, self.run_id, self.buffer)
        self.buffer = []

    # -- audit rows (``connector.audit``) -------------------------------------------------
    def note(self, key: str, operation: str) -> None:
        """A row about to be sent is ``operation`` (a contact added or changed)."""
        if self.audit is not None:
            self.audit.note(key, operation)

    def handled(self, keys: Sequence[str], operation: str) -> None:
        """Rows handled that the counts keep elsewhere (a contact unlisted or forgotten)."""
        if self.audit is not None:
            self.audit.handled(keys, operation)

    def audit_unit(self) -> Callable[[Any], None] | None:
        """The audit rows settled since the last unit, as a write for the settle
        transaction (``StateStore.settle(also=...)``); None without audit."""
        return self.audit.take() if self.audit is not None else None

    def audit_commit(self) -> None:
        """The audit rows settled so far into the state store now: before a unit whose
        settle has no transaction to share (confirmed contacts, unlisted rows) is stored."""
        if self.audit is not None:
            self.audit.commit()

    def sending(self, rows: int) -> None:
        """Rows handed to the sender: pending until their unit settles (``settled_sent``)."""
        self.result.pending += rows

    def settled_sent(self, rows: int) -> None:
        """Rows of a sent unit settled (delivered, rejected, or forgotten when the vendor kept
        nothing): no longer pending."""
        self.result.pending = max(0, self.result.pending - rows)

    # -- progress ----------------------------------------------------------------------------
    def tick(self, *, force: bool = False) -> None:
        """After a page or a settled unit: the counts so far go to the run record and to the
        progress callback, each at most once a second (``force``: the callback now)."""
        if self.audit is not None:
            self.audit.commit(full=True)  # bounded by the page, whatever the run holds back
        self._record()
        self.beat(force=force)

    def beat(self, *, force: bool = False) -> None:
        """The progress callback with the counts so far, at most once a second on the run's
        clock (``force``: now). Called by ``tick`` and by the heartbeat thread."""
        if self.progress is None:
            return
        with self.emitting:
            now = self.clock()
            if not force and now - self.last_progress < PROGRESS_EVERY_S:
                return
            self.last_progress = now
            self._copy_stats()
            self.progress(self.result)

    def record_now(self) -> None:
        """Record the counts so far now: counts a run killed later must still report."""
        self._record(force=True)

    def _record(self, *, force: bool = False) -> None:
        """The counts so far in the run's row: a run killed without a trace is then reported
        by the next one with how far it got (``runs.mark_interrupted``)."""
        now = self.clock()
        if self.dry_run or not self.result.run_id:
            return
        recent = self.last_recorded is not None and now - self.last_recorded < PROGRESS_EVERY_S
        if recent and not force:
            return
        self.last_recorded = now
        self._copy_stats()
        try:
            self.state.record_progress(self.result.run_id, summary(self.result))
        except Exception:  # noqa: BLE001 — progress is a courtesy; the checkpoint is what matters
            log.warning("could not record the progress of run %s", self.result.run_id)

    def _copy_stats(self) -> None:
        res, st = self.result, self.stats
        if not self.dry_run:  # a dry run counts the requests it would send
            res.requests = st.requests
        res.retries = st.retries
        res.rate_limited = st.rate_limited
        res.duration_s = round(self.clock() - self.started, 3)


def summary(res: SyncResult) -> dict[str, Any]:
    """A result as the run record keeps it: its counts (the sample of rejects is in the
    rejects table)."""
    d = res.to_dict()
    d.pop("sample_rejects", None)
    return d
