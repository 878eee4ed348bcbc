"""In-run duplicate primary keys, in memory bounded by the duplicates, not by the table.

A run must not send two rows with one primary key (Klaviyo fails a whole request that holds
one ``unique_id`` twice, and the ledger tracks rows by key). Holding every key of the run
grows with the table (8+ bytes a row), so the warehouse is asked once, before the first page:
which keys occur more than once in the range this run reads (one ``GROUP BY key HAVING
count(*) > 1`` over the pending range). Only those keys are tracked while reading; a table
without duplicates (the normal case) tracks nothing.

The interface is one call per page: ``duplicates(keys)`` → rows of the page whose key was
already seen earlier in this run (the first occurrence is sent, later ones become rejects).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import pa, pc


# A page's row keys: a list, or the Arrow string array ``Events.key_array``.
Keys: TypeAlias = Sequence[str] | Any


class DuplicateKeys(Protocol):
    """The in-run duplicate-key check the chunk planner asks (one of the classes below)."""

    def duplicates(self, keys: Keys) -> list[int]:
        """Rows (indices into ``keys``) whose key was already seen in this run."""
        ...


class KnownDuplicates:
    """Tracks only the keys the warehouse reported as occurring more than once."""

    def __init__(self, candidates: Iterable[str]) -> None:
        self.candidates = frozenset(candidates)
        self.seen: set[str] = set()

    @cached_property
    def _lookup(self) -> pa.Array:
        return pa.array(sorted(self.candidates), pa.string())

    def duplicates(self, keys: Keys) -> list[int]:
        """Rows of ``keys`` that repeat a candidate key seen before (only candidates are kept)."""
        if not self.candidates:  # the usual answer: no key occurs twice
            return []
        if isinstance(keys, (pa.Array, pa.ChunkedArray)):
            # Only the rows holding a reported key become Python values.
            hits = pc.indices_nonzero(pc.is_in(keys, value_set=self._lookup)).to_pylist()
            found: list[str] = keys.take(pa.array(hits, pa.int64())).to_pylist()
            pairs: Iterator[tuple[int, str]] = zip(hits, found, strict=True)
        else:
            pairs = ((i, k) for i, k in enumerate(keys) if k in self.candidates)
        out: list[int] = []
        seen = self.seen
        for i, k in pairs:
            if k in seen:
                out.append(i)
            else:
                seen.add(k)
        return out


class NoDuplicates:
    """The warehouse found no key twice in the range: nothing to track."""

    def duplicates(self, keys: Keys) -> list[int]:
        """None: no key occurs twice."""
        return []


class EveryKey:
    """Tracks every key: for runs whose size is already bounded (``--retry-rejects`` reads
    only the open rejects' rows)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def duplicates(self, keys: Keys) -> list[int]:
        """Rows of ``keys`` whose key was seen before in this run (every key is kept)."""
        if isinstance(keys, (pa.Array, pa.ChunkedArray)):
            keys = keys.to_pylist()
        out: list[int] = []
        seen = self.seen
        for i, k in enumerate(keys):
            if k in seen:
                out.append(i)
            else:
                seen.add(k)
        return out
