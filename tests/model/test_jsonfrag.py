"""model/jsonfrag: values become JSON fragments exactly as a JSON encoder writes them; JSON
numbers parse exactly where a float would change them, and numbers leave column-wise as their
exact digits."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pyarrow as pa

from connector.map.mapper import _rfc3339, _utc
from connector.model import jsonfrag


def test_strings_are_escaped_exactly_like_a_json_encoder() -> None:
    values = ["plain", 'quote " and \\ backslash', "tab\tnew\nline\x01", "é 日本", "", None]
    frags = jsonfrag.strings(pa.array(values)).to_pylist()
    for value, frag in zip(values, frags, strict=True):
        assert (frag is None) if value is None else json.loads(frag) == value


def test_values_follow_the_property_rules() -> None:
    def zone(a: pa.Array) -> pa.Array:
        return _rfc3339(_utc(a, "UTC"))

    cases = [
        (pa.array([1.5, float("nan"), float("inf"), None]), ["1.5", None, None, None]),
        (pa.array([Decimal("12.30"), None], pa.decimal128(10, 2)), ["12.30", None]),  # scale kept
        (pa.array([True, False]), ["true", "false"]),
        (pa.array([date(2026, 1, 2)]), ['"2026-01-02"']),
        (
            pa.array([datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)]),
            ['"2026-01-02T03:04:05.678+00:00"'],
        ),
        (pa.array([{"a": 1, "b": [1, 2]}]), ['{"a":1,"b":[1,2]}']),
    ]
    for arr, expected in cases:
        assert jsonfrag.values(arr, zone, is_json=False).to_pylist() == expected
    assert jsonfrag.values(pa.array(['{"k": [1]}']), zone, is_json=True).to_pylist() == [
        '{"k": [1]}'
    ]


def test_objects_omit_nulls_and_nest_dotted_names() -> None:
    a = pa.array(['"x"', None, None])
    b = pa.array(["1", "2", None])
    out = jsonfrag.obj([("video.title", a), ("video.n", b), ("top", b)], 3).to_pylist()
    assert [json.loads(o) for o in out] == [
        {"video": {"title": "x", "n": 1}, "top": 1},
        {"video": {"n": 2}, "top": 2},
        {},  # every value NULL: an empty object, no empty "video"
    ]


def test_json_numbers_parse_exactly_when_a_float_would_change_them() -> None:
    value = jsonfrag.loads_exact('{"a": 12345678901234567.89, "b": 5.00, "c": 7, "d": 2e3}')
    assert value == {
        "a": Decimal("12345678901234567.89"),
        "b": Decimal("5.00"),
        "c": 7,
        "d": Decimal("2E+3"),
    }
    dumped = orjson.dumps(value, default=jsonfrag.json_default)
    assert dumped == b'{"a":12345678901234567.89,"b":5.00,"c":7,"d":2e3}'  # spelling kept
    assert jsonfrag.loads_exact("[1, 2]") == [1, 2]


def test_column_wise_numbers_are_the_exact_digits() -> None:
    arr = pa.array([Decimal("18.99"), Decimal("5.00"), None], pa.decimal128(10, 2))
    assert jsonfrag.numbers(arr).to_pylist() == ["18.99", "5.00", None]
    big = pa.array([2**63 - 1, -(2**63)], pa.int64())
    assert jsonfrag.numbers(big).to_pylist() == ["9223372036854775807", "-9223372036854775808"]
