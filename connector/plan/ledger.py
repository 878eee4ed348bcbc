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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..model.events import Events
from ..read.lookback import Lookback, cursor_number, fits, row_hash
from ..read.rowhash import RowColumns
from ..store.state import LedgerEntry, Position
from ..store.window import NEVER, Pairs, WindowWrite

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
    ``drop_ids``, record the batch's rows in the lookback window and prune it (``window``),
    and move the checkpoint to ``checkpoint`` (None: it stays)."""

    delivered_ids: list[int] = field(default_factory=list)
    drop_ids: list[int] = field(default_factory=list)
    checkpoint: Position | None = None
    window: WindowWrite | None = None


@dataclass
class Lookbehind:
    """The lookback window of one run (``read.lookback``): the checkpoint it started from
    (``start``; None: a first run or a full refresh, which reads no window but records one), the
    hashes of the rows handled inside the window (``store.window``), and the late rows it
    caught: read inside the window, never handled before (``near_edge``: of those, in the
    window's oldest tenth), and the rows it read again there that were handled (``reread``:
    the window's cost, skipped)."""

    lookback: Lookback
    start: Position | None = None
    known: set[int] = field(default_factory=set)
    # Rows with a cursor number up to ``since`` were handled by runs that recorded nothing
    # (``store.window``'s mark); ``marked``: the mark is stored already.
    since: int = NEVER
    marked: bool = False
    late: int = 0
    near_edge: int = 0
    reread: int = 0  # rows inside the window read again that an earlier run handled

    def within(self, pos: Position) -> bool:
        """Whether ``pos`` lies in the window re-read (at or before the start checkpoint)."""
        return self.start is not None and pos <= self.start

    def floor_number(self, checkpoint: Position) -> int:
        """The window's far edge behind ``checkpoint`` as a cursor number."""
        return cursor_number(self.lookback.floor(checkpoint[0]))

    def caught(self, pos: Position) -> None:
        """Count a late row at ``pos``."""
        assert self.start is not None
        self.late += 1
        if self.lookback.near_edge(pos[0], self.start[0]):
            self.near_edge += 1


class Ledger:
    """The exactly-once bookkeeping of one run of one sync and scope.

    ``leftovers`` are the ledger rows found at the start of the run (left by runs that
    crashed or failed). A full refresh starts with no leftovers (the caller clears the stored
    ledger: ``Ledger.start``).
    """

    def __init__(
        self, leftovers: Iterable[LedgerEntry] = (), window: Lookbehind | None = None
    ) -> None:
        self.leftovers: list[LedgerEntry] = sorted(leftovers, key=lambda e: e.id)
        self.checkpoint: Position | None = None
        self.window = window
        self._settled: dict[int, tuple[int | None, Position]] = {}
        self._next_seq = 0

    @classmethod
    def start(
        cls,
        stored: Sequence[LedgerEntry],
        *,
        full_refresh: bool,
        window: Lookbehind | None = None,
    ) -> tuple[Ledger, bool]:
        """The ledger of a new run and whether the stored ledger must be cleared first (a
        full refresh sends every row again, so what earlier runs left is moot)."""
        if full_refresh:
            return cls((), window), bool(stored)
        return cls(stored, window), False

    def check(self, events: Events) -> tuple[set[int], dict[int, int]]:
        """The rows of a chunk to skip (delivered or, inside the lookback window, handled by
        an earlier run) and, per row to re-send, the copies the destination may hold. Rows
        inside the window come first in the read order: only they are looked at one by one
        when no leftovers are pending."""
        skip: set[int] = set()
        copies: dict[int, int] = {}
        window = self.window
        if not self.leftovers and (window is None or window.start is None):
            return skip, copies
        for i in range(events.n):
            pos = events.position(i)
            if not self.leftovers and not (window and window.within(pos)):
                break  # past the window, and nothing left by earlier runs
            left = self.leftover(pos)
            if left.skip:
                skip.add(i)
            elif left.copies:
                copies[i] = left.copies
        return skip, copies

    # -- what earlier runs left ----------------------------------------------------------
    def leftover(self, pos: Position) -> Leftover:
        """Skip or send the row at ``pos``, and the copies the destination may hold.

        With the lookback window on, the rows handled by earlier runs are known one by one
        (``window.known``, recorded as their batches settled): a row is skipped when it is
        known, not because a delivered batch's range covers it — a row that committed late
        can lie inside that range and was never sent. A row inside the re-read window that
        no run handled is a late row (counted in ``window``)."""
        window = self.window
        if window is None:
            return self._left_by_runs(pos, delivered_skips=True)
        within = window.within(pos)
        if row_hash(pos) in window.known or (within and cursor_number(pos[0]) <= window.since):
            window.reread += within
            return SKIP
        if within:
            window.caught(pos)
        return self._left_by_runs(pos, delivered_skips=False)

    def _left_by_runs(self, pos: Position, *, delivered_skips: bool) -> Leftover:
        if not self.leftovers:
            return FRESH
        containing = [e for e in self.leftovers if e.contains(pos)]
        if delivered_skips and any(e.status == DELIVERED for e in containing):
            return SKIP  # stored once for sure: an older or newer pending entry never wins
        containing = [e for e in containing if e.status != DELIVERED]
        if not containing:
            return FRESH
        return Leftover(skip=False, copies=len(containing))  # each may have stored a copy

    # -- settling this run's batches -----------------------------------------------------
    def settle(
        self,
        seq: int,
        ledger_id: int | None,
        last: Position,
        rows: Callable[[], RowColumns | Sequence[Position]] | None = None,
    ) -> Settlement:
        """Batch ``seq`` (covering rows up to ``last``; ``ledger_id`` None when it sent
        nothing) is settled: delivered or rejected, every row of it. ``rows``: the positions
        of its rows handled now (not skipped), recorded in the lookback window.

        Reading the window again, the longest settled prefix may lie behind the checkpoint
        the run started from: the checkpoint never moves back (ledger rows the prefix passed
        are dropped all the same)."""
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
            drop += [e.id for e in self.leftovers if e.last <= checkpoint]
            self.leftovers = [e for e in self.leftovers if e.last > checkpoint]
            start = self.window.start if self.window is not None else None
            if start is not None and checkpoint <= start:
                checkpoint = None  # still inside the window re-read
            else:
                self.checkpoint = checkpoint
        return Settlement(delivered, drop, checkpoint, self._window_write(checkpoint, last, rows))

    def _window_write(
        self,
        moved: Position | None,
        last: Position,
        rows: Callable[[], RowColumns | Sequence[Position]] | None,
    ) -> WindowWrite | None:
        """The batch's rows inside the window behind the checkpoint (its rows are pruned
        later, as the checkpoint moves on), and the prune when the checkpoint moved."""
        window = self.window
        if window is None:
            return None
        head = self.checkpoint or window.start
        floor = window.floor_number(head) if head is not None else None
        if floor is not None and not fits(floor):
            return None  # a cursor beyond 64 bits has no window (``read.lookback.fits``)
        add: list[tuple[int, int]] | Pairs
        if rows is None or (floor is not None and cursor_number(last[0]) < floor):
            rows = None  # the whole batch lies behind the window already
        handled = rows() if rows is not None else ()
        if isinstance(handled, RowColumns):  # a run's batch: a column at a time
            add = Pairs(*handled.columns(floor))
        else:
            add = []
            for pos in handled:
                n = cursor_number(pos[0])
                if fits(n) and (floor is None or n >= floor):
                    add.append((n, row_hash(pos)))
        prune = floor if moved is not None else None
        mark = None if window.marked else window.since
        window.marked = True
        return WindowWrite(add, prune, mark)

    @staticmethod
    def forget(ledger_id: int | None) -> Settlement:
        """The destination refused the batch's request and kept nothing of it: drop its
        pending row, so the next run sends its rows as new, not as possibly duplicated."""
        return Settlement(drop_ids=[] if ledger_id is None else [ledger_id])
