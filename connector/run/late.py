"""Late rows: the lookback window of an event run, seen from the run.

``open_window`` widens the reader and loads what the state store knows of the rows handled
inside the window behind the scope's checkpoint (``store.window``) into the run's
``plan.ledger.Lookbehind``;
``BatchRows`` remembers which source rows each batch covers, so the batch's settle records
them in the window table (in the transaction that moves the checkpoint); ``account`` puts the
late rows caught into the run's result and warns when one was caught near the window's far
edge (the window may be too short: a row a little later would have been missed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..core.logcontext import get_logger
from ..model.events import Events
from ..plan.batching import Batch
from ..plan.ledger import Lookbehind
from ..plan.planner import Plan
from ..read.lookback import EDGE_SHARE, Lookback, cursor_number, fits, row_hash
from ..read.rowhash import ChunkRows, RowColumns
from ..read.source import Reader
from ..store.state import Position, StateStore
from ..store.window import NEVER, WindowWrite
from .result import SyncResult

if TYPE_CHECKING:
    import numpy as np
else:
    from ..core.lazy import np


log = get_logger("connector.sync")


def open_window(
    reader: Reader,
    state: StateStore,
    scope: str,
    checkpoint: Position | None,
    limit: int | None,
    *,
    full_refresh: bool,
) -> tuple[Position | None, Lookbehind | None]:
    """Where an event run reads from (``after``) and its window: from the window's far edge
    behind ``checkpoint``, or after it when the window is off. ``--limit N`` reads N rows after
    the checkpoint without re-reading the window (a window holding more than N handled rows
    would hold the run in place); its rows are still recorded. A full refresh (``checkpoint``
    None) forgets what was recorded and records afresh."""
    start = checkpoint if limit is None else None
    after, lookback = reader.widen(start)
    if lookback is None:
        return (after if start is not None else checkpoint), None
    name = reader.sync.name
    since = None if full_refresh else state.window_since(name, scope)
    window = Lookbehind(lookback, start, marked=since is not None)
    if since is not None:
        window.since = since
    elif checkpoint is not None and fits(cursor_number(checkpoint[0])):
        # No run of this scope recorded its rows yet: those behind the checkpoint were
        # handled by runs that kept no window.
        window.since = cursor_number(checkpoint[0])
    if not full_refresh:
        floor = NEVER if start is None else cursor_number(lookback.floor(start[0]))
        window.known = state.window_hashes(name, scope, floor)
    return (after if start is not None else checkpoint), window


def retry_window(
    lookback: Lookback | None,
    checkpoint: Position | None,
    positions: RowColumns | Sequence[Position],
) -> WindowWrite | None:
    """The rows a ``--retry-rejects`` batch handled inside the window behind ``checkpoint``:
    recorded like an incremental run's, so the next run does not take them for late rows."""
    if lookback is None or checkpoint is None:
        return None
    floor = cursor_number(lookback.floor(checkpoint[0]))
    if not fits(floor):
        return None
    if isinstance(positions, RowColumns):
        add = positions.pairs(floor)
    else:
        numbers = [(cursor_number(p[0]), p) for p in positions]
        add = [(n, row_hash(p)) for n, p in numbers if fits(n) and n >= floor]
    return WindowWrite(add) if add else None


class BatchRows:
    """The rows each batch covers that this run handles (not skipped), in read order: each
    planned chunk is queued as an array of its row numbers (a skipped row as -1), and a batch
    takes as many as it covers (batches are contiguous runs of the read order) — a column at
    a time, never row by row. A chunk's columns live as long as a batch not settled needs
    them."""

    def __init__(self) -> None:
        self._queue: deque[tuple[ChunkRows, np.ndarray]] = deque()
        self._by_seq: dict[int, list[tuple[ChunkRows, np.ndarray | None]]] = {}

    def chunk(self, events: Events, plan: Plan) -> None:
        """Queue the rows of a planned chunk (a skipped row as a gap)."""
        rows = np.arange(events.n, dtype=np.int64)
        if plan.skip:
            rows[np.fromiter(plan.skip, np.int64, len(plan.skip))] = -1
        self._queue.append((ChunkRows(events.cursor, events.pk), rows))

    def take(self, batch: Batch) -> None:
        """The batch closed: its rows leave the queue."""
        need = batch.covered
        parts: list[tuple[ChunkRows, np.ndarray | None]] = []
        while need and self._queue:
            chunk, rows = self._queue[0]
            part = rows[:need]
            if len(rows) > need:
                self._queue[0] = (chunk, rows[need:])
            else:
                self._queue.popleft()
            need -= len(part)
            part = part[part >= 0]
            if len(part):
                parts.append((chunk, part))
        self._by_seq[batch.seq] = parts

    def positions(self, seq: int) -> Callable[[], RowColumns]:
        """The rows of batch ``seq``, for the ledger to record in the window."""
        rows = RowColumns(self._by_seq.pop(seq, []))
        return lambda: rows


def account(result: SyncResult, window: Lookbehind | None, sync: str) -> None:
    """The late rows caught into ``result``, and the warning when some were caught in the
    window's oldest tenth."""
    if window is None:
        return
    result.lookback = window.lookback.text
    result.late_rows = window.late
    result.late_rows_near_edge = window.near_edge
    result.window_reread = window.reread
    if window.late:
        log.info(
            "%s: %d late rows caught inside the lookback window (source.lookback %s)",
            sync,
            window.late,
            window.lookback.text,
        )
    if window.near_edge:
        log.warning(
            "%s: %d of the %d late rows caught lay in the oldest %d%% of the lookback window "
            "(source.lookback %s): rows that commit later still are never read; raise "
            "source.lookback",
            sync,
            window.near_edge,
            window.late,
            round(EDGE_SHARE * 100),
            window.lookback.text,
        )
