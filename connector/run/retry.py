"""``retry_rejects``: a run that sends the open rejects of a scope that pass now, through the
event strategy's map → validate → encode → batch → send path, inside the run shell.

The rejected keys are re-read from the source by primary key and sent with the same dedup ids.
Delivered rows close their rejects; rows rejected again stay open with the new reason and time;
rejects whose row is gone are closed as ``CLOSED_GONE`` and counted. Only rows at or before the
scope's checkpoint are sent: a row after it (its cursor moved when it was fixed) is the next
incremental run's, which closes its reject on delivery. Neither the checkpoint nor the ledger
is touched, and no row without an open reject is read. Batches go one at a time: a retry is a
handful of rows, and a crash leaves the rejects open to retry again (same dedup ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.logcontext import get_logger
from ..deliver.delivery import Sender
from ..map.mapper import Chunk, key_strings
from ..plan.batching import Batch
from ..read.lookback import Lookback
from ..read.source import Position
from ..store.state import CLOSED_GONE, Reject
from .events import EventRun, _item_payload
from .late import retry_window
from .shell import KeyView, RunShell

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


log = get_logger("connector.sync")


class RetryRun(EventRun):
    """``retry_rejects`` (see the module docstring); ``limit`` caps the rejects retried."""

    lookback: Lookback | None = None  # the sync's window: the rows sent are recorded in it

    def run(self, shell: RunShell) -> None:
        """Re-read the open rejects by key and send those at or before the checkpoint."""
        self.shell = shell
        res = self.result
        name, scope = self.sync.name, self.scope
        checkpoint = self.state.checkpoint(name, scope)
        res.hwm_before = res.hwm_after = list(checkpoint) if checkpoint else None
        _, self.lookback = self.reader.widen(None)
        keys = self.state.open_reject_keys(name, scope)
        if self.limit is not None:
            keys = keys[: self.limit]
        res.rejects_retried = len(keys)
        sender = None if self.dry_run else Sender(self.dest, self.pacer, self.rt, self.stats)
        try:
            found: set[str] = set()
            batcher = self.batcher()
            for chunk in self.reader.rows_by_keys(keys):
                sendable, again = self._split(chunk, checkpoint, found)
                self._record(again)
                if not sendable.table.num_rows:
                    continue
                events = self.mapper.map(sendable)
                res.rows_read += events.n
                for batch in self._batches(events, batcher):
                    self._retry_send(batch, sender)
                shell.tick()
            last = batcher.flush()
            if last is not None:
                self.rows.take(last)
                self._retry_send(last, sender)
            self._close_gone([k for k in keys if k not in found])
        finally:
            if sender:
                sender.close()
            self.reader.close()
            self._last_counts()

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
        self.shell.check_lease()
        if self.dry_run or sender is None:
            self.shell.delivered(KeyView(batch.items))  # "would deliver"
            res.requests += 1 if batch.items else 0
            self._record(batch.rejects)
            return
        rejects = list(batch.rejects)
        delivered: list[str] = []
        if batch.items:
            outcome = sender.send(batch.items)
            delivered = [it.key for it in outcome.delivered]
            self.shell.delivered(delivered)
            res.possibly_duplicated += outcome.possibly_duplicated
            rejects += [Reject(it.key, why, _item_payload(it)) for it, why in outcome.rejected]
        self.shell.rejected(rejects, stored=True)  # in the settle transaction below
        # One transaction; no checkpoint, no ledger rows.
        learned = outcome.learned if batch.items else None
        checkpoint = self.state.checkpoint(self.sync.name, self.scope)
        positions = self.rows.positions(batch.seq)()
        window = retry_window(self.lookback, checkpoint, positions)
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
            window,
        )
        if learned:
            self.dest.learn(learned)

    def _record(self, rejects: list[Reject]) -> None:
        """Rows rejected again before any request: counted, and recorded now unless dry run."""
        if not rejects:
            return
        self.shell.rejected(rejects)
        self.shell.flush_rejects()

    def _close_gone(self, gone: list[str]) -> None:
        """Rejects whose key reads no row. A row whose primary key is NULL has no key to read
        it by: its reject stays open while the source still has that row."""
        if not gone:
            return
        if any("NULL" in k.partition("#")[0].split(",") for k in gone):  # "NULL#2" too
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
