"""map/mapper: time rules (naive times in DST gaps and folds included), keys, dedup ids and event
properties built column-wise."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from connector.config.sync_file import parse_sync
from connector.map.mapper import Chunk, Mapper, _rfc3339, _utc


def test_naive_timestamps_are_read_in_the_source_zone_and_truncated_to_ms() -> None:
    naive = pa.array([datetime(2026, 7, 1, 12, 0, 0, 123999), None])
    assert _rfc3339(_utc(naive, "Europe/Paris")).to_pylist() == [
        "2026-07-01T10:00:00.123+00:00",
        None,
    ]
    aware = pa.array([datetime(2026, 1, 1, 23, 30, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    assert _rfc3339(_utc(aware, "Asia/Tokyo")).to_pylist() == ["2026-01-01T23:30:00.000+00:00"]
    assert _rfc3339(_utc(pa.array([date(2026, 3, 1)]), "UTC")).to_pylist() == [
        "2026-03-01T00:00:00.000+00:00"
    ]


def test_mapper_builds_keys_dedup_ids_and_lazy_dicts() -> None:
    sync = parse_sync(
        """
name: s
source: {table: t, cursor: c, primary_key: [a, b]}
destination: {type: klaviyo_bulk_events, api_key: "${KLAVIYO_API_KEY}"}
mapping: {event_name: e, event_time: c, identifiers: {email: m},
          event_properties: {p.q: v, w: v}}
""",
        "syncs/s.yaml",
    )
    table = pa.table(
        {
            "a": ["x,y", "z"],
            "b": [1, 2],
            "m": ["a@b", None],
            "v": [None, 3],
            "c": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 2),
        }
    )
    events = Mapper(sync).map(Chunk(table))
    assert events.keys == ["x%2Cy,1", "z,2"]  # multi-column keys are escaped, unambiguous
    assert events.dedup_ids == ["s:x%2Cy,1", "s:z,2"]
    assert events.event_properties == [{}, {"p": {"q": 3}, "w": 3}]
    assert events.position(1) == (datetime(2026, 1, 1, tzinfo=UTC), "z", 2)


# Naive Paris wall time → the instant the rule gives (see connector.mapping.localize).
DST_CASES = {
    "2026-03-29 02:30:00": "2026-03-29T01:30:00",  # gap: moved forward by the gap, 03:30+02
    "2026-10-25 02:30:00": "2026-10-25T00:30:00",  # fold: first occurrence, 02:30+02
    "2026-03-29 01:59:59": "2026-03-29T00:59:59",  # just before the gap, +01
    "2026-10-25 03:00:00": "2026-10-25T02:00:00",  # just after the fold, +01
}


def test_naive_times_in_a_gap_move_forward_and_in_a_fold_take_the_first_occurrence() -> None:
    naive = pa.array([datetime.fromisoformat(k) for k in DST_CASES] + [None], pa.timestamp("us"))
    got = _rfc3339(_utc(naive, "Europe/Paris")).to_pylist()
    assert got == [f"{v}.000+00:00" for v in DST_CASES.values()] + [None]
