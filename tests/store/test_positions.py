"""store/positions: cursor positions round-trip through the state store's text encoding, every
digit of the cursor kept."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pytest

from connector.store.positions import decode_position, encode_position


def test_positions_round_trip_through_the_state_store_encoding() -> None:
    pos = (datetime(2026, 1, 1, 1, tzinfo=UTC), date(2026, 1, 2), Decimal("1.5"), "k", 7)
    assert decode_position(encode_position(pos)) == pos
    naive = (datetime(2026, 1, 1, 1), 3)
    assert decode_position(encode_position(naive)) == naive


@pytest.mark.parametrize(
    "value",
    [
        pd.Timestamp("2026-11-01 00:00:00.123456789"),
        pd.Timestamp("2026-11-01 00:00:00.000000001", tz="UTC"),
        datetime(2026, 11, 1, 0, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 1, 0, 0, 0, 123456),
        date(2026, 11, 1),
        Decimal("12345678901234567890123456.1234567890"),
        Decimal("5.00"),
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        170141183460469231731687303715884105727,
        "a,b",
    ],
    ids=str,
)
def test_a_position_keeps_every_digit_of_its_cursor(value: object) -> None:
    [back, key] = decode_position(encode_position((value, 7)))
    assert back == value and type(back) is type(value) and key == 7
    if isinstance(value, pd.Timestamp):
        assert isinstance(back, pd.Timestamp) and back.nanosecond == value.nanosecond
