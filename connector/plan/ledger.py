"""The exactly-once ledger as pure logic: positions in, decisions out.

A run sends batches that are contiguous ranges of the read order (``(cursor, *primary key)``
positions). The state store keeps one ledger row per batch on the wire — *pending* before its
request goes out, *delivered* once it settled beyond the checkpoint — and the checkpoint. This
module decides, without any I/O:

- for each row a run reads, whether a crashed (or failed) earlier run left it *delivered*
  (skip it) or *pending* (send it again with the same dedup ids), and how many copies the
  destination may already hold (``Leftover``); a delivered entry always wins over a pending
  one for the same row, whatever their order;
- when a batch settles, which ledger rows to mark delivered, which to drop and where the
  checkpoint moves: to the end of the longest prefix of settled batches (``Settlement``);
- what to do with a batch the destination refused whole and stored nothing of (``forget``).

The caller (``sync._Run``) wires the I/O around it: it reads the ledger, writes each pending
row, and applies every ``Settlement`` in one transaction.

Copies, not rows: each pending entry that contains a row is one request that may have stored
it, whichever run (killed or failed) sent it. A row re-sent now may therefore be held
``len(pending)`` times more than once; the run counts those copies when the batch that re-sent
the row settles (a run killed before that leaves the batch pending, and the next run counts it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..store.state import LedgerEntry, Position

DELIVERED = "delivered"
PENDING = "pending"


@dataclass(frozen=True)
class Leftover:
    """What earlier runs left for one row: ``skip`` it (delivered), or send it knowing the
    destination may already hold ``copies`` copies of it."""

    skip: bool = False
    copies: int = 0


FRESH = Leftover()
SKIP = Leftover(skip=True)


@dataclass(frozen=True)
class Settlement:
    """One transaction for the state store: mark ``delivered_ids`` delivered, delete
    ``drop_ids``, and move the checkpoint to ``checkpoint`` (None: it stays)."""

    delivered_ids: list[int] = field(default_factory=list)
    drop_ids: list[int] = field(default_factory=list)
    checkpoint: Position | None = None


class Ledger:
    """The exactly-once bookkeeping of one run of one sync and scope.

    ``leftovers`` are the ledger rows found at the start of the run (left by runs that
    crashed or failed). A full refresh starts with no leftovers (the caller clears the stored
    ledger: ``Ledger.start``).
    """

    def __init__(self, leftovers: Iterable[LedgerEntry] = ()) -> None:
        self.leftovers: list[LedgerEntry] = sorted(leftovers, key=lambda e: e.id)
        self.checkpoint: Position | None = None
        self._settled: dict[int, tuple[int | None, Position]] = {}
        self._next_seq = 0

    @classmethod
    def start(cls, stored: Sequence[LedgerEntry], *, full_refresh: bool) -> tuple[Ledger, bool]:
        """The ledger of a new run and whether the stored ledger must be cleared first (a
        full refresh sends every row again, so what earlier runs left is moot)."""
        if full_refresh:
            return cls(), bool(stored)
        return cls(stored), False

    # -- what earlier runs left ----------------------------------------------------------
    def leftover(self, pos: Position) -> Leftover:
        """Skip or send the row at ``pos``, and the copies the destination may hold."""
        if not self.leftovers:
            return FRESH
        containing = [e for e in self.leftovers if e.contains(pos)]
        if any(e.status == DELIVERED for e in containing):
            return SKIP  # stored once for sure: an older or newer pending entry never wins
        if not containing:
            return FRESH
        return Leftover(skip=False, copies=len(containing))  # each may have stored a copy

    # -- settling this run's batches -----------------------------------------------------
    def settle(self, seq: int, ledger_id: int | None, last: Position) -> Settlement:
        """Batch ``seq`` (covering rows up to ``last``; ``ledger_id`` None when it sent
        nothing) is settled: delivered or rejected, every row of it."""
        if seq < self._next_seq or seq in self._settled:
            raise ValueError(f"batch {seq} is already settled")
        self._settled[seq] = (ledger_id, last)
        drop: list[int] = []
        checkpoint: Position | None = None
        while self._next_seq in self._settled:
            settled_id, checkpoint = self._settled.pop(self._next_seq)
            if settled_id is not None:
                drop.append(settled_id)
            self._next_seq += 1
        delivered = [ledger_id] if ledger_id is not None and ledger_id not in drop else []
        if checkpoint is not None:
            self.checkpoint = checkpoint
            drop += [e.id for e in self.leftovers if e.last <= checkpoint]
            self.leftovers = [e for e in self.leftovers if e.last > checkpoint]
        return Settlement(delivered, drop, checkpoint)

    @staticmethod
    def forget(ledger_id: int | None) -> Settlement:
        """The destination refused the batch's request and kept nothing of it: drop its
        pending row, so the next run sends its rows as new, not as possibly duplicated."""
        return Settlement(drop_ids=[] if ledger_id is None else [ledger_id])
