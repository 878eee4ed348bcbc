"""Packing encoded items into requests by count AND encoded bytes.

Batches are contiguous runs of the read order, so the checkpoint can move to the end of the
longest delivered prefix of batches. Rows that are rejected locally or skipped travel with the
next batch ("covered" rows), so the checkpoint passes them only when that batch settles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..destinations.base import Item
from ..model.events import Events
from ..store.state import Reject


@dataclass
class Batch:
    """One request's worth of items plus the rejects of the rows it covers, in row order.

    ``seq`` orders batches within a run; ``covered`` is the number of source rows from the first to
    the last row (delivered, rejected or skipped); ``ledger_id`` is the pending ledger row written
    before the request goes on the wire (None in a dry run).
    """

    seq: int
    items: list[Item]
    rejects: list[Reject]
    last_ref: tuple[Events, int]  # the last row this batch covers
    first_ref: tuple[Events, int]
    covered: int
    ledger_id: int | None = None
    # The rows of ``rejects``, in order (their cursors go to the per-period counts).
    reject_refs: list[tuple[Events, int]] = field(default_factory=list)

    @property
    def last(self) -> tuple[Any, ...]:
        """Checkpoint position ``(cursor, *pk)`` of the last row the batch covers."""
        events, row = self.last_ref
        return events.position(row)

    @property
    def first(self) -> tuple[Any, ...]:
        """Checkpoint position ``(cursor, *pk)`` of the first row the batch covers."""
        events, row = self.first_ref
        return events.position(row)


class Batcher:
    """Accumulates items (and covered rejects) and emits batches within the limits."""

    def __init__(self, max_events: int, max_bytes: int, overhead: Callable[[int], int]) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.overhead = overhead
        self.seq = 0
        self._items: list[Item] = []
        self._rejects: list[Reject] = []
        self._reject_refs: list[tuple[Events, int]] = []
        self._bytes = 0
        self._covered = 0
        self._first: tuple[Events, int] | None = None
        self._last: tuple[Events, int] | None = None

    def cover(self, events: Events, row: int, reject: Reject | None = None) -> None:
        """A row that is not sent (rejected or skipped) but must be passed by the checkpoint."""
        if self._first is None:
            self._first = (events, row)
        self._last = (events, row)
        self._covered += 1
        if reject is not None:
            self._rejects.append(reject)
            self._reject_refs.append((events, row))

    def add(self, item: Item) -> Batch | None:
        """Add one item; returns the batch that had to be closed to make room, if any."""
        out = None
        if self._items and (
            len(self._items) >= self.max_events
            or self._bytes + item.size + self.overhead(len(self._items) + 1) > self.max_bytes
        ):
            out = self._emit()
        if self._first is None:
            self._first = (item.events, item.row)
        self._items.append(item)
        self._bytes += item.size
        self._covered += 1
        self._last = (item.events, item.row)
        return out

    def flush(self) -> Batch | None:
        """Close the open batch (also one holding only covered rows)."""
        if self._last is None:
            return None
        return self._emit()

    def _emit(self) -> Batch:
        assert self._first is not None and self._last is not None
        batch = Batch(self.seq, self._items, self._rejects, self._last, self._first, self._covered)
        batch.reject_refs, self._reject_refs = self._reject_refs, []
        self.seq += 1
        self._items, self._rejects, self._bytes, self._covered = [], [], 0, 0
        self._first = self._last = None
        return batch
