"""The diff of a full scan as an ordered merge of the source pages with the stored hashes.

The source pages come in key order and each row carries its ``ord`` (``keyorder``), whose
byte order is that key order. Page k's stored rows are the index range
``(last ord of page k-1, last ord of page k]``; after the last page the range runs to the
end of the sync's ords. Per page:

1. check that the page's ords ascend and start after the previous page's (the source's
   order really is byte order; if not, ``Unordered`` and the run falls back to lookups);
2. one aggregate query: the range's row count and its ords and hashes concatenated in ord
   order. Equal to the page's: every row is unchanged, done;
3. otherwise read the range's (ord, hash) rows, in slices of ``_SLICE``: a page row whose
   ord is among them is unchanged (same hash) or changed; one that is not is added; a stored
   row whose ord is not in the page vanished from the source (``gone``).

Memory: the page, and one slice of the range at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .hashes import HashStore
from .keyorder import KeyOrder, Unordered

_SLICE = 20_000


@dataclass
class PageDiff:
    """How one page compares: ``todo`` the rows to send (row indexes, in order) with
    ``added[j]`` true for a row without a stored hash; ``vanished`` stored rows in the page's
    range that the page lacks, and their ords in ``gone`` when the merge collects them."""

    unchanged: int = 0
    vanished: int = 0
    todo: list[int] = field(default_factory=list)
    added: list[bool] = field(default_factory=list)
    gone: list[bytes] = field(default_factory=list)


class Merge:
    """Walks one sync's stored hashes in ord order alongside the source pages."""

    def __init__(self, store: HashStore, sync: str, order: KeyOrder, *, collect: bool) -> None:
        self.store = store
        self.collect = collect  # keep the ords of vanished rows (to unlist them)
        self.sync = sync
        self.order = order
        self.lo = order.prefix  # every ord of the scheme is above this
        self.pages = 0
        self.fast = 0  # pages found unchanged by the aggregate query alone

    def page(self, ords: pa.Array, hashes: list[str] | None) -> PageDiff:
        """Compare one page (its ords, and its hashes unless only keys are compared)."""
        n = len(ords)
        out = PageDiff()
        if n == 0:
            return out
        first, last = ords[0].as_py(), ords[n - 1].as_py()
        if first <= self.lo or (
            n > 1 and not pc.all(pc.less(ords.slice(0, n - 1), ords.slice(1))).as_py()
        ):
            raise Unordered("the source's key order is not the byte order of its keys")
        lo, self.lo = self.lo, last
        self.pages += 1
        count, ords_text, hashes_text = self.store.summary(self.sync, lo, last)
        if count == n:
            buf = ords.buffers()
            offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, buf[1]], offset=ords.offset)
            start, end = offsets[0].as_py(), offsets[n].as_py()
            page_ords = buf[2].to_pybytes()[start:end].hex()
            if self.store.digest(page_ords) == ords_text and (
                hashes is None or self.store.digest("".join(hashes)) == hashes_text
            ):
                self.fast += 1
                out.unchanged = n
                return out
        matched = pa.nulls(n, pa.string())
        for stored_ords, stored_hashes in self._slices(lo, last, last=False):
            idx = pc.index_in(ords, value_set=stored_ords)
            if hashes is not None:
                found = stored_hashes.take(idx)
                matched = pc.coalesce(matched, found)
            else:
                matched = pc.coalesce(matched, pc.if_else(pc.is_valid(idx), "", None))
            vanished = stored_ords.filter(pc.invert(pc.is_in(stored_ords, value_set=ords)))
            out.vanished += len(vanished)
            if self.collect:
                out.gone += vanished.to_pylist()
        if hashes is None:
            out.unchanged = n - matched.null_count
            out.todo = pc.indices_nonzero(pc.is_null(matched)).to_pylist()
            out.added = [True] * len(out.todo)
            return out
        same = pc.fill_null(pc.equal(matched, pa.array(hashes, pa.string())), False)
        todo = pc.indices_nonzero(pc.invert(same))
        out.unchanged = n - len(todo)
        out.todo = todo.to_pylist()
        out.added = pc.is_null(matched.take(todo)).to_pylist()
        return out

    def rest(self) -> list[bytes]:
        """Ords of stored rows after the last page (they vanished), one slice: call until
        empty."""
        for stored_ords, _ in self._slices(self.lo, self.order.upper, last=True, once=True):
            got: list[bytes] = stored_ords.to_pylist()
            if got:
                self.lo = got[-1]
            return got
        return []

    def _slices(
        self, lo: bytes, hi: bytes, *, last: bool, once: bool = False
    ) -> Iterator[tuple[pa.Array, pa.Array]]:
        while True:
            rows = self.store.range(self.sync, lo, hi, last=last, limit=_SLICE)
            if not rows:
                return
            o, h = zip(*rows, strict=True)
            yield pa.array(o, pa.binary()), pa.array(h, pa.string())
            lo = rows[-1][0]
            if once or len(rows) < _SLICE:
                return
