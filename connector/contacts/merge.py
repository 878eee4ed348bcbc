"""The diff of a full scan as an ordered merge of the source pages with the stored hashes.

The source pages come in key order and each row carries its ``ord`` (``keyorder``), whose
byte order is that key order. Page k's stored rows are the index range
``(last ord of page k-1, last ord of page k]``; after the last page the range runs to the
end of the sync's ords. Per page:

1. check that the page's ords ascend and start after the previous page's (the source's
   order really is byte order; if not, ``Unordered`` and the run falls back to lookups);
2. one aggregate query (its first ``2 * rows + _SPARE`` rows): the range's row count and each
   row's ord followed by its hash, concatenated in one value. Equal to the page's own bytes:
   every row is unchanged, done;
3. otherwise match the range's (ord, hash) rows with the page by ord (Arrow ``index_in``): an
   all-integer key's value splits into rows as it is (fixed width); a text key's range, or
   one larger than the aggregate's limit, is read in slices of ``_SLICE``. A page row whose
   ord is among them is unchanged (same hash) or changed; one that is not is added; a stored
   row whose ord is not in the page vanished from the source (``gone``).

Memory: the page, and the aggregate or one slice of the range at a time.

The aggregate of step 2 is read ahead (``Ahead``): the read-ahead thread that fetches page
k+1 from the warehouse also encodes its ords and queries its range, while page k is hashed.
The range of a page depends only on its own ords and the previous page's last ord, and the
run only writes the hashes of rows the merge has passed, so the early answer is the one the
query would give later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .hashes import HashStore
from .keyorder import INTEGER, KeyOrder, Unordered

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import np, pa, pc


_SLICE = 20_000
_SPARE = 1_000  # a page's range with more than 2 * rows + this is read in slices


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


@dataclass(frozen=True)
class Ahead:
    """A page's ords and its range's aggregate (``HashStore.summary``), read ahead."""

    ords: pa.Array
    lo: bytes  # the range is (lo, hi]
    hi: bytes
    limit: int
    count: int
    data: bytes


class Prefetch:
    """The read-ahead side of a ``Merge``: ``ahead(ords)`` reads each page's range as
    ``Merge.page`` would, one page ahead (pages in order, one thread)."""

    def __init__(self, store: HashStore, sync: str, order: KeyOrder) -> None:
        self.store = store
        self.sync = sync
        self.lo = order.prefix

    def ahead(self, ords: pa.Array) -> Ahead | None:
        """The page's range's aggregate; None for an empty page or one that does not start
        after the previous one (``Merge.page`` finds it out of order)."""
        n = len(ords)
        if n == 0:
            return None
        last = ords[n - 1].as_py()
        lo, self.lo = self.lo, last
        if last <= lo:
            return None
        limit = 2 * n + _SPARE
        count, data = self.store.summary(self.sync, lo, last, limit, hashes=True)
        return Ahead(ords, lo, last, limit, count, data)


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
        self.try_summary = True
        # An all-integer key's ords have one width: a range's aggregate splits into rows.
        self.width = (
            len(order.prefix) + 8 * len(order.kinds) if set(order.kinds) == {INTEGER} else None
        )

    def prefetch(self) -> Prefetch:
        """The read-ahead side of this merge. With it, a text key's aggregate is read for
        every page (in the read-ahead thread); without it, only after a page found unchanged
        and every fourth page (see ``page``)."""
        return Prefetch(self.store, self.sync, self.order)

    def page(
        self, ords: pa.Array, hashes: list[str] | None, ahead: Ahead | None = None
    ) -> PageDiff:
        """Compare one page (its ords, and its hashes unless only keys are compared), with
        its range's aggregate if ``ahead`` has read it."""
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
        limit = 2 * n + _SPARE
        slices: Iterable[tuple[pa.Array, pa.Array | None]] | None = None
        same = ahead is not None and (ahead.lo, ahead.hi, ahead.limit) == (lo, last, limit)
        if self.try_summary or self.width is not None or same:
            if ahead is not None and same and hashes is not None:
                count, data = ahead.count, ahead.data
            else:
                count, data = self.store.summary(
                    self.sync, lo, last, limit, hashes=hashes is not None
                )
            if count == n and data == _concat(ords, hashes):
                self.fast += 1
                self.try_summary = True
                out.unchanged = n
                return out
            split = None
            if count < limit and self.width is not None:
                split = self._split(data, count, hashes=hashes is not None)
            slices = [split] if split is not None else None
        # A text key's range is read row by row after a page that differs: with changes
        # spread over the table most pages do (the aggregate is tried again every 4th page).
        self.try_summary = self.pages % 4 == 0
        if slices is None:
            slices = self._slices(lo, last, last=False)
        matched = pa.nulls(n, pa.string())
        for stored_ords, stored_hashes in slices:
            idx = pc.index_in(ords, value_set=stored_ords)
            if stored_hashes is not None:
                matched = pc.coalesce(matched, stored_hashes.take(idx))
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

    def _split(
        self, data: bytes, count: int, *, hashes: bool
    ) -> tuple[pa.Array, pa.Array | None] | None:
        """The rows of ``summary``'s value of fixed-width ords: (ords, hashes or None)."""
        assert self.width is not None
        w = self.width
        size = w + (32 if hashes else 0)
        if len(data) != count * size:
            return None  # a hash of another length: read the rows one by one
        rows = np.frombuffer(data, dtype=np.uint8).reshape(count, size)
        ords = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(w), count, [None, pa.py_buffer(np.ascontiguousarray(rows[:, :w]).tobytes())]
        ).cast(pa.binary())
        if not hashes:
            return ords, None
        hex_ = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(32), count, [None, pa.py_buffer(np.ascontiguousarray(rows[:, w:]).tobytes())]
        )
        return ords, hex_.cast(pa.binary()).cast(pa.string())

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


def _concat(ords: pa.Array, hashes: list[str] | None) -> bytes:
    """Each row's ord followed by its hash (or the ord alone), concatenated: the page side
    of ``HashStore.summary``."""
    arr = ords
    if hashes is not None:
        text = "".join(hashes).encode()
        fixed = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(32), len(hashes), [None, pa.py_buffer(text)]
        )
        arr = pc.binary_join_element_wise(ords, fixed.cast(pa.binary()), b"")
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    return data.to_pybytes()[offsets[0] : offsets[n]] if data is not None else b""
