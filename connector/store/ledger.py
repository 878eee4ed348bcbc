"""The batch ledger's rows (``connector_batches``): one row per batch of an event run, written
``pending`` right before its request goes out, marked ``delivered`` when it settles beyond the
checkpoint, deleted once the checkpoint passes it. What to do with them is decided by the pure
``plan.ledger.Ledger``; this module only stores its decisions.

``settle`` is the one transaction of a settled batch: its ledger rows, its rejects, the open
rejects its delivered rows close, what the responses taught about the account, its rows in the
lookback window (``window``) and the checkpoint — together, so a crash between any two of them
cannot happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from ..core.errors import StateError
from ..destinations.base import Learned
from .base import Tables, first_line, now
from .checkpoints import write_checkpoint
from .periods import PeriodCounts, apply_periods
from .positions import Position, decode_position, encode_position
from .rejects import CLOSED_DELIVERED, Reject, close_open_rejects, insert_rejects
from .schema import batches
from .settings import store_learned
from .window import WindowWrite, write_window


@dataclass
class LedgerEntry:
    """A ledger row: one batch of a run between its first and last position, ``pending`` (written
    before its request went out) or ``delivered`` / ``rejected`` (settled beyond the checkpoint)."""

    id: int
    run_id: str
    seq: int
    first: Position
    last: Position
    count: int
    status: str

    def contains(self, pos: Position) -> bool:
        """Whether ``pos`` lies in this batch's range (bounds included)."""
        return bool(self.first <= pos <= self.last)


class LedgerStore(Tables):
    """The ledger rows of event runs, and the settle transaction."""

    def ledger(self, sync: str, scope: str) -> list[LedgerEntry]:
        """The sync's ledger rows in ``scope``, in the order they were written."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(batches)
                .where(batches.c.sync == sync, batches.c.scope == scope)
                .order_by(batches.c.id)
            ).all()
        out = []
        for row in rows:
            r = row._mapping  # not attribute access: Row.count is tuple.count
            out.append(
                LedgerEntry(
                    r["id"],
                    r["run_id"],
                    r["seq"],
                    decode_position(r["first_pos"]),
                    decode_position(r["last_pos"]),
                    r["count"],
                    r["status"],
                )
            )
        return out

    def add_pending(
        self,
        sync: str,
        scope: str,
        run_id: str,
        seq: int,
        first: Position,
        last: Position,
        count: int,
    ) -> int:
        """Write a ``pending`` ledger row for a batch about to be sent; returns its id (the settle
        marks it)."""
        with self._tx() as c:
            res = c.execute(
                batches.insert().values(
                    sync=sync,
                    scope=scope,
                    run_id=run_id,
                    seq=seq,
                    first_pos=encode_position(first),
                    last_pos=encode_position(last),
                    count=count,
                    status="pending",
                    updated_at=now(),
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]  # never None here

    def settle(
        self,
        sync: str,
        scope: str,
        run_id: str,
        delivered_ids: Iterable[int],
        drop_ids: Iterable[int],
        checkpoint: Position | None,
        new_rejects: Sequence[Reject],
        closed: Sequence[str] = (),
        learned: tuple[str, Learned] | None = None,
        window: WindowWrite | None = None,
        periods: PeriodCounts | None = None,
        also: Callable[[sa.Connection], None] | None = None,
    ) -> None:
        """One transaction: mark batches delivered, drop ledger rows the checkpoint passed,
        record rejects, close the open rejects of ``closed`` (keys delivered now), keep what
        the responses taught about the destination account (``(account, learned)``), record
        the batch's rows in the lookback window and prune it (``window``), add them to the
        per-period counts (``periods``), write what ``also`` writes (the run's audit rows,
        ``connector.audit``) and move the checkpoint."""
        delivered_ids, drop_ids = list(delivered_ids), list(drop_ids)
        try:
            with self._tx() as c:
                if delivered_ids:
                    c.execute(
                        batches.update()
                        .where(batches.c.id.in_(delivered_ids))
                        .values(status="delivered", updated_at=now())
                    )
                if drop_ids:
                    c.execute(batches.delete().where(batches.c.id.in_(drop_ids)))
                insert_rejects(c, sync, scope, run_id, new_rejects)
                if closed:
                    close_open_rejects(c, sync, scope, closed, run_id, CLOSED_DELIVERED)
                if learned is not None:
                    store_learned(c, *learned)
                if window is not None:
                    write_window(c, sync, scope, window)
                if periods:
                    apply_periods(c, sync, periods)
                if also is not None:
                    also(c)
                if checkpoint is not None:
                    write_checkpoint(c, sync, scope, checkpoint, run_id)
        except sa.exc.SQLAlchemyError as exc:
            raise StateError(f"could not record progress of {sync}: {first_line(exc)}") from None

    def clear_ledger(self, sync: str, scope: str) -> None:
        """Delete the sync's ledger rows in ``scope`` (a full refresh starts without them)."""
        with self._tx() as c:
            c.execute(batches.delete().where(batches.c.sync == sync, batches.c.scope == scope))
