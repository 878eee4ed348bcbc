"""store/positions: cursor positions round-trip through the state store's text encoding."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from connector.store.positions import decode_position, encode_position


def test_positions_round_trip_through_the_state_store_encoding() -> None:
    pos = (datetime(2026, 1, 1, 1, tzinfo=UTC), date(2026, 1, 2), Decimal("1.5"), "k", 7)
    assert decode_position(encode_position(pos)) == pos
    naive = (datetime(2026, 1, 1, 1), 3)
    assert decode_position(encode_position(naive)) == naive
