"""Rows handled per period (``store.periods``): the period keys of each cursor type."""

from __future__ import annotations

from connector.store.periods import period_keys


def test_period_keys_of_each_cursor_type() -> None:
    import datetime as dt

    import pyarrow as pa

    utc = pa.array(
        [dt.datetime(2026, 11, 1, 23, 59, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="+02:00")
    )
    assert period_keys(utc) == {"2026-11-01T23": 2}  # an instant is bucketed in UTC
    assert period_keys(pa.array([dt.date(2026, 11, 1), None])) == {"2026-11-01": 1}
    assert period_keys(pa.array([1, 99_999, 100_000, 250_001])) == {
        "0": 2,
        "100000": 1,
        "200000": 1,
    }
