"""The lookback window's row numbers and hashes, a column at a time.

``read.lookback.cursor_number`` and ``read.lookback.row_hash`` take one row's Python values;
a run records every row it handles inside the window, so doing that row by row was most of
the window's cost on a backlog. ``RowColumns`` computes the same values over a batch's Arrow
columns: the cursor numbers with Arrow casts (timestamps, dates, integers), the hashed text
with Arrow string kernels where the text is provably what ``str()`` of the Python value gives
(integers, strings, dates, microsecond timestamps naive or in UTC), else ``str()`` value by
value — then one blake2b per row over the joined UTF-8 bytes. The values are the row-by-row
functions' exactly (``tests/read/test_rowhash.py``), so window rows stored by either agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .lookback import cursor_number, fits

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import np, pa, pc


_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
_TO_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UTC = frozenset({"UTC", "Etc/UTC"})


def cursor_numbers(cursor: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``cursor_number`` of each value (int64) and which values have one (not NULL, fits the
    window table's 64-bit column)."""
    t = cursor.type
    valid = np.asarray(cursor.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_timestamp(t) and t.unit in _TO_MICROS:
        raw = cursor.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return raw.astype(np.int64) * _TO_MICROS[t.unit], valid
    if pa.types.is_date32(t):
        raw = cursor.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        return raw.astype(np.int64) + _EPOCH_ORDINAL, valid
    if pa.types.is_integer(t) and not pa.types.is_uint64(t):
        return cursor.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), valid
    nums = [None if v is None else cursor_number(v) for v in cursor.to_pylist()]
    ok = np.array([n is not None and fits(n) for n in nums], dtype=bool)
    return np.array([n if k else 0 for n, k in zip(nums, ok, strict=True)], np.int64), ok


def _texts(col: pa.Array) -> pa.Array:
    """``str()`` of each value as ``row_hash`` writes it (NULL: a NUL), a string array."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out = col.cast(pa.string()) if pa.types.is_large_string(t) else col
    elif pa.types.is_integer(t) or pa.types.is_date32(t):
        out = col.cast(pa.string())
    elif pa.types.is_timestamp(t) and t.unit in _TO_MICROS and (t.tz is None or t.tz in _UTC):
        out = _timestamp_texts(col, utc=t.tz is not None)
    else:
        out = pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
    return out.fill_null("\x00")


def _timestamp_texts(col: pa.Array, *, utc: bool) -> pa.Array:
    """``str(datetime)``: ``YYYY-MM-DD HH:MM:SS``, ``.ffffff`` unless zero, ``+00:00`` in UTC
    (numpy's formatting: Arrow's ``strftime`` costs about 1 µs a value)."""
    micros = col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
    values = micros.fill_null(0).to_numpy(zero_copy_only=False)
    text = pa.array(np.datetime_as_string(values.astype("datetime64[us]"), unit="us"))
    text = pc.replace_substring(text, pattern="T", replacement=" ", max_replacements=1)
    whole = pa.array(values % 1_000_000 == 0)
    text = pc.if_else(whole, pc.utf8_slice_codeunits(text, 0, 19), text)
    if utc:
        text = pc.binary_join_element_wise(text, pa.scalar("+00:00"), "")
    return pc.if_else(micros.is_valid(), text, pa.scalar(None, pa.string()))


def joined_texts(cols: Sequence[pa.Array]) -> pa.Array:
    """The text ``row_hash`` hashes for each row of ``cols`` (the cursor, then the key)."""
    texts = [_texts(c) for c in cols]
    joined = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, "\x1f")
    return joined.cast(pa.large_string())


def hash_texts(joined: pa.Array, rows: np.ndarray) -> np.ndarray:
    """``row_hash`` of the rows ``rows`` of ``joined`` (``joined_texts``), as int64."""
    if not len(rows):
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(joined.buffers()[1], np.int64)[joined.offset :]
    starts, ends = offsets[rows].tolist(), offsets[rows + 1].tolist()
    data = memoryview(joined.buffers()[2] or b"")
    blake = hashlib.blake2b
    digests = b"".join(
        [blake(data[a:b], digest_size=8).digest() for a, b in zip(starts, ends, strict=True)]
    )
    return np.frombuffer(digests, ">i8").astype(np.int64)


def row_hashes(cols: Sequence[pa.Array]) -> np.ndarray:
    """``row_hash`` of each row of ``cols`` (the cursor, then the primary key), as int64."""
    return hash_texts(joined_texts(cols), np.arange(len(cols[0]), dtype=np.int64))


class ChunkRows:
    """One read chunk's cursor and key columns; their cursor numbers and hashed texts are
    computed once for the whole chunk, on the first batch that needs them (Arrow calls cost
    about the same for a batch as for a chunk)."""

    def __init__(self, cursor: pa.Array, pk: Sequence[pa.Array]) -> None:
        self.cursor, self.pk = cursor, list(pk)
        self._numbers: tuple[np.ndarray, np.ndarray] | None = None
        self._texts: pa.Array | None = None

    def numbers(self) -> tuple[np.ndarray, np.ndarray]:
        """``cursor_numbers`` of the chunk."""
        if self._numbers is None:
            self._numbers = cursor_numbers(self.cursor)
        return self._numbers

    def hashes(self, rows: np.ndarray) -> np.ndarray:
        """``row_hash`` of the chunk's rows ``rows``."""
        if self._texts is None:
            self._texts = joined_texts([self.cursor, *self.pk])
        return hash_texts(self._texts, rows)


@dataclass(frozen=True)
class RowColumns:
    """The rows one batch handled: per chunk the batch spans, in read order, the chunk and
    the numbers of its rows (None: all of them)."""

    parts: Sequence[tuple[ChunkRows, np.ndarray | None]]

    @classmethod
    def of(cls, cursor: pa.Array, pk: Sequence[pa.Array]) -> RowColumns:
        """Every row of one set of columns."""
        return cls([(ChunkRows(cursor, pk), None)])

    def pairs(self, floor: int | None) -> list[tuple[int, int]]:
        """``(cursor_number, row_hash)`` of the rows whose cursor number is at least
        ``floor`` (None: every row) and fits 64 bits — what the window table records."""
        nums, hashes = self.columns(floor)
        return list(zip(nums.tolist(), hashes.tolist(), strict=True))

    def columns(self, floor: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``pairs`` as two int64 columns: the cursor numbers and the row hashes."""
        nums_out: list[np.ndarray] = []
        hashes_out: list[np.ndarray] = []
        for chunk, rows in self.parts:
            nums, valid = chunk.numbers()
            if rows is None:
                rows = np.arange(len(nums), dtype=np.int64)
            keep = valid[rows]
            if floor is not None:
                keep &= nums[rows] >= floor
            rows = rows[keep]
            if len(rows):
                nums_out.append(np.asarray(nums[rows], dtype=np.int64))
                hashes_out.append(np.asarray(chunk.hashes(rows), dtype=np.int64))
        if not nums_out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(nums_out), np.concatenate(hashes_out)
