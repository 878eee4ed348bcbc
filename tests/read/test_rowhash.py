"""The lookback window's column-at-a-time numbers and hashes (``read.rowhash``) are the
row-by-row ones (``read.lookback.cursor_number``, ``row_hash``) exactly: window rows stored by
either agree, so stores written before keep working."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from connector.read.lookback import cursor_number, row_hash
from connector.read.rowhash import ChunkRows, RowColumns
from connector.store.state import StateStore
from connector.store.window import NEVER, WindowWrite

T0 = datetime(2026, 1, 1, 0, 0, 1)
STAMPS = [T0, T0 + timedelta(microseconds=5), datetime(1969, 12, 31, 23, 59, 59, 999999), T0]

CURSORS: list[tuple[pa.DataType, list[Any]]] = [
    (pa.timestamp("us"), STAMPS),
    (pa.timestamp("ms"), [T0, T0 + timedelta(milliseconds=7), T0, T0]),
    (pa.timestamp("s"), [T0, T0 - timedelta(days=20000), T0, T0]),
    (pa.timestamp("us", tz="UTC"), [s.replace(tzinfo=UTC) for s in STAMPS]),
    (pa.timestamp("us", tz="America/New_York"), [s.replace(tzinfo=UTC) for s in STAMPS]),
    (pa.timestamp("ns"), [T0, T0 + timedelta(microseconds=3), T0, T0 - timedelta(days=1)]),
    (pa.date32(), [date(2026, 1, 1), date(1960, 5, 6), date(999, 1, 2), date(2026, 1, 2)]),
    (pa.int64(), [1, -5, 2**62, 0]),
    (pa.int32(), [7, 8, -9, 10]),
    (pa.decimal128(12, 2), [Decimal("1.50"), Decimal("-2.25"), Decimal("3"), Decimal("0.01")]),
]
KEYS: list[tuple[pa.DataType, list[Any]]] = [
    (pa.int64(), [1, 2, None, 4]),
    (pa.string(), ["a", "é\u00e9—x", None, ""]),
    (pa.large_string(), ["k1", "k2", "k3", "k4"]),
    (pa.float64(), [1.5, 2.0, None, -0.0]),
    (pa.date32(), [date(2026, 1, 1), None, date(2000, 2, 29), date(1970, 1, 1)]),
]


def _expected(cursor: list[Any], keys: list[list[Any]], floor: int | None) -> list[tuple[int, int]]:
    rows = [(as_py, *(k[i] for k in keys)) for i, as_py in enumerate(cursor)]
    out = []
    for pos in rows:
        n = cursor_number(pos[0])
        if floor is None or n >= floor:
            out.append((n, row_hash(pos)))
    return out


@pytest.mark.parametrize(("ctype", "cvalues"), CURSORS, ids=lambda v: str(v)[:30])
def test_columns_hash_and_number_rows_as_row_by_row(ctype: pa.DataType, cvalues: list[Any]) -> None:
    cursor = pa.array(cvalues, ctype)
    keys = [pa.array(v, t) for t, v in KEYS]
    as_py = cursor.to_pylist()
    for pk in ([keys[0]], [keys[1]], keys):
        got = RowColumns.of(cursor, pk).pairs(None)
        assert got == _expected(as_py, [k.to_pylist() for k in pk], None)
    floor = max(cursor_number(v) for v in as_py)  # rows below the window's floor: not recorded
    got = RowColumns.of(cursor, keys).pairs(floor)
    assert got == _expected(as_py, [k.to_pylist() for k in keys], floor)
    assert 0 < len(got) < len(as_py)


def test_slices_and_several_chunks_keep_read_order() -> None:
    cursor = pa.array(STAMPS * 3, pa.timestamp("us")).slice(2, 7)
    key = pa.array([str(i) for i in range(12)]).slice(2, 7)
    other = pa.array([5, 6], pa.int64())
    first = ChunkRows(cursor, [key])
    second = ChunkRows(pa.array(STAMPS[:2], pa.timestamp("us")), [other])
    got = RowColumns([(first, None), (second, None)])
    want = _expected(cursor.to_pylist(), [key.to_pylist()], None)
    want += _expected(STAMPS[:2], [[5, 6]], None)
    assert got.pairs(None) == want
    assert RowColumns([]).pairs(None) == []


def test_null_cursor_is_not_recorded() -> None:
    cursor = pa.array([T0, None], pa.timestamp("us"))
    got = RowColumns.of(cursor, [pa.array([1, 2])]).pairs(None)
    assert got == [(cursor_number(T0), row_hash((T0, 1)))]


def test_a_batch_takes_some_rows_of_a_chunk() -> None:
    cursor = pa.array(STAMPS * 3, pa.timestamp("us", tz="UTC"))
    key = pa.array(range(12), pa.int64())
    chunk = ChunkRows(cursor, [key])
    rows = np.array([1, 2, 5, 11])
    got = RowColumns([(chunk, rows)]).pairs(None)
    values = cursor.to_pylist()
    assert got == [(cursor_number(values[i]), row_hash((values[i], i))) for i in rows.tolist()]
    assert RowColumns([(chunk, np.array([0, 3]))]).pairs(None) == _expected(
        [values[0], values[3]], [[0, 3]], None
    )


def _window_round_trip(url: str) -> None:
    store = StateStore(url)
    add = [(10, -(2**63) + 1), (11, 2**63 - 2), (12, 5)]
    store.settle("s", "", "r1", [], [], None, [], window=WindowWrite(add, None, NEVER))
    store.settle("s", "", "r1", [], [], None, [], window=WindowWrite([(13, 6)], 11, None))
    assert store.window_hashes("s", "", NEVER) == {2**63 - 2, 5, 6}
    assert store.window_hashes("s", "", 12) == {5, 6}
    assert store.window_since("s", "") == NEVER
    assert store.window_size("s") == 3


def test_window_rows_round_trip_through_a_sqlite_store(tmp_path: Path) -> None:
    """The window rows go in by the driver's executemany (SQLite: ``?`` marks)."""
    _window_round_trip(f"sqlite:///{tmp_path / 'state.db'}")


def test_window_rows_round_trip_through_a_postgresql_store(pg_url: str) -> None:
    """The window rows go in by the driver's executemany (psycopg: ``%s`` marks)."""
    _window_round_trip(pg_url)
