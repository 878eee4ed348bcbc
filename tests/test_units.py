"""Pure pieces: JSON fragments, time rules, pacing, retry classification, batching, outcomes."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import orjson
import pyarrow as pa
import pytest

from connector.config.sync_file import RateLimit, parse_sync
from connector.deliver.delivery import (
    Runtime,
    Sender,
    Stats,
    Verdict,
    announced_wait,
    classify,
    window_state,
)
from connector.deliver.factory import make_event_destination
from connector.deliver.ratelimit import Pacer
from connector.destinations.base import Item, Learned, Request, dumps
from connector.map.mapper import Chunk, Mapper, _rfc3339, _utc
from connector.model import jsonfrag
from connector.plan.batching import Batcher
from connector.store.state import decode_position, encode_position

from .conftest import FakeSleep

# --------------------------------------------------------------------------- JSON fragments


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


# --------------------------------------------------------------------------- time rules


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


def test_positions_round_trip_through_the_state_store_encoding() -> None:
    pos = (datetime(2026, 1, 1, 1, tzinfo=UTC), date(2026, 1, 2), Decimal("1.5"), "k", 7)
    assert decode_position(encode_position(pos)) == pos
    naive = (datetime(2026, 1, 1, 1), 3)
    assert decode_position(encode_position(naive)) == naive


# --------------------------------------------------------------------------- pacing, retries


def test_pacer_never_exceeds_either_window(fake_time: FakeSleep) -> None:
    pacer = Pacer(RateLimit(per_second=10, per_minute=150), fake_time.clock, fake_time.sleep)
    sent = []
    for _ in range(400):
        pacer.acquire()
        sent.append(fake_time.now)
    for i in range(len(sent) - 10):
        assert sent[i + 10] - sent[i] >= 1.0  # ≤ 10 in any second
    for i in range(len(sent) - 150):
        assert sent[i + 150] - sent[i] >= 60.0  # ≤ 150 in any minute
    assert sent[-1] - sent[0] < 200  # and not needlessly slow (400 at 150/min ≈ 160 s)


def test_pacer_pauses_the_whole_account_when_told(fake_time: FakeSleep) -> None:
    pacer = Pacer(RateLimit(per_second=100), fake_time.clock, fake_time.sleep)
    pacer.acquire()
    pacer.pause(7.5)
    start = fake_time.now
    pacer.acquire()
    assert fake_time.now - start == pytest.approx(7.5)


@pytest.mark.parametrize(
    "headers,body,expected",
    [
        ({"retry-after": "12"}, b"", 12.0),
        ({"ratelimit-reset": "30"}, b"", 30.0),
        ({"x-sib-ratelimit-reset": "4"}, b"", 4.0),
        ({"x-sib-ratelimit-reset": "4000"}, b"", 4.0),  # reported in ms by some accounts
        ({"x-rate-limit-reset": "9"}, b"", 9.0),
        (
            {},
            b'{"errors":[{"detail":"Request was throttled. Expected available in 3 seconds."}]}',
            3.0,
        ),
        ({}, b"", None),
    ],
)
def test_announced_wait_reads_every_vendor_style(
    headers: dict[str, str], body: bytes, expected: float | None
) -> None:
    assert announced_wait(httpx.Headers(headers), body, lambda: 0.0) == expected


def test_retry_after_as_http_date() -> None:
    headers = httpx.Headers({"retry-after": "Sun, 22 Nov 2026 10:00:30 GMT"})
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC).timestamp()
    assert announced_wait(headers, b"", lambda: now) == pytest.approx(30.0)


def test_classify_status_codes() -> None:
    h = httpx.Headers({})
    codes = (202, 207, 400, 401, 403, 404, 408, 413, 429, 500, 503)
    assert [classify(s, h).value for s in codes] == [
        "answered",
        "answered",
        "answered",
        "auth",
        "auth",
        "answered",
        "retry",
        "answered",
        "rate_limited",
        "retry",
        "retry",
    ]
    assert classify(403, httpx.Headers({"cf-mitigated": "challenge"})) is Verdict.RETRY
    assert window_state(httpx.Headers({"RateLimit-Remaining": "0", "RateLimit-Reset": "5"})) == (
        0.0,
        5.0,
    )


# --------------------------------------------------------------------------- batching


def _items(n: int, size: int) -> list[Item]:
    sync = parse_sync(
        """
name: s
source: {table: t, cursor: c, primary_key: k}
destination: {type: brevo_events_batch, api_key: "${BREVO_API_KEY}"}
mapping: {event_name: e, event_time: c, identifiers: {email_id: m}}
""",
        "syncs/s.yaml",
    )
    table = pa.table(
        {
            "k": list(range(n)),
            "m": ["a@b"] * n,
            "c": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * n),
        }
    )
    events = Mapper(sync).map(Chunk(table))
    payload = b'{"p":"' + b"x" * max(0, size - 9) + b'"}'
    return [Item(events, i, payload, len(payload) + 1) for i in range(n)]


def test_batches_respect_the_count_limit() -> None:
    batcher = Batcher(200, 512 * 1024, lambda n: 13 + n)
    out = [b for b in (batcher.add(it) for it in _items(450, 10)) if b]
    last = batcher.flush()
    assert last is not None
    assert [len(b.items) for b in [*out, last]] == [200, 200, 50]


def test_batches_respect_the_byte_limit() -> None:
    limit = 512 * 1024
    batcher = Batcher(200, limit, lambda n: 13 + n)
    items = _items(100, 20_000)
    out = [b for b in (batcher.add(it) for it in items) if b]
    last = batcher.flush()
    assert last is not None
    for b in [*out, last]:
        assert sum(i.size for i in b.items) + 13 + len(b.items) <= limit
    assert sum(len(b.items) for b in [*out, last]) == 100
    assert len(out[0].items) == 26  # 26 x 20,001 B + overhead <= 512 KiB < 27 x ...


# --------------------------------------------------------------------------- outcomes


def _brevo(n: int) -> tuple[object, Request]:
    sync = parse_sync(
        """
name: s
source: {table: t, cursor: c, primary_key: k}
destination: {type: brevo_events_batch, api_key: "${BREVO_API_KEY}"}
mapping: {event_name: e, event_time: c, identifiers: {email_id: m}}
""",
        "syncs/s.yaml",
    )
    dest = make_event_destination(sync)
    items = _items(n, 5)
    return dest, dest.build(items)


def test_brevo_207_maps_event_indices_to_rejects_and_never_resends_the_rest() -> None:
    dest, req = _brevo(5)
    body = orjson.dumps(
        {
            "status": "partial",
            "total_events": 5,
            "successful_events": 3,
            "failed_events": 2,
            "errors": [{"eventIndex": [1, 3], "message": "bad email"}],
        }
    )
    out = dest.interpret(req, 207, httpx.Headers({}), body)  # type: ignore[attr-defined]
    assert out.delivered == [0, 2, 4] and out.rejected == {
        1: "Brevo: bad email",
        3: "Brevo: bad email",
    }
    assert out.resend == []


def test_brevo_400_summary_resends_the_valid_rest_and_shape_errors_switch_once() -> None:
    dest, req = _brevo(3)
    body = orjson.dumps(
        {
            "status": "failure",
            "total_events": 3,
            "successful_events": 0,
            "failed_events": 1,
            "errors": [{"eventIndex": [0], "message": "x"}],
        }
    )
    out = dest.interpret(req, 400, httpx.Headers({}), body)  # type: ignore[attr-defined]
    assert out.rejected == {0: "Brevo: x"} and out.resend == [1, 2]
    unmarshal = orjson.dumps(
        {
            "code": "bad_request",
            "message": "json: cannot unmarshal object into Go value of type []main.x",
        }
    )
    assert req.body.startswith(b"[") and req.variant == "array"  # the seed's shape first
    out = dest.interpret(req, 400, httpx.Headers({}), unmarshal)  # type: ignore[attr-defined]
    assert out.switch_shape and out.resend_variant == "object" and out.resend == [0, 1, 2]
    # interpret is pure: the destination still builds the array until the run hands it what
    # Brevo accepted (``learn``); a request refused late (another thread) gets the same answer.
    assert dest.build(req.items).variant == "array"  # type: ignore[attr-defined]
    assert dest.interpret(req, 400, httpx.Headers({}), unmarshal) == out  # type: ignore[attr-defined]
    retry = dest.build(req.items, out.resend_variant)  # type: ignore[attr-defined]
    assert retry.body.startswith(b'{"events":[') and retry.variant == "object" and retry.forced
    accepted = dest.interpret(retry, 202, httpx.Headers({}), b"{}")  # type: ignore[attr-defined]
    assert accepted.delivered == [0, 1, 2]
    assert accepted.learned == Learned(settings={"brevo_batch_body_shape": "object"})
    assert dest.build(req.items).variant == "array"  # type: ignore[attr-defined]
    dest.learn(accepted.learned)  # type: ignore[attr-defined]
    assert dest.build(req.items).variant == "object"  # type: ignore[attr-defined]
    # Known now: the next accepted request teaches nothing new.
    later = dest.interpret(dest.build(req.items), 202, httpx.Headers({}), b"{}")  # type: ignore[attr-defined]
    assert later.learned is None
    # Both shapes refused: the request is at fault, not the rows: the run fails, no reject.
    again = dest.interpret(retry, 400, httpx.Headers({}), unmarshal)  # type: ignore[attr-defined]
    assert not again.switch_shape and not again.split and not again.rejected
    assert again.fatal and "both batch body shapes" in again.fatal


def test_sender_splits_a_batch_the_api_refuses_without_detail(
    monkeypatch: pytest.MonkeyPatch, fake_time: FakeSleep
) -> None:
    """A 413 (no per-item detail, nothing stored) → halves, until each part fits."""
    dest, _ = _brevo(1)
    items = _items(8, 5)
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(orjson.loads(request.content))
        sizes.append(n)
        return httpx.Response(413 if n > 2 else 202, json={"message": "ok", "count": n})

    runtime = Runtime(clock=fake_time.clock, sleep=fake_time.sleep, random=lambda: 0.5)
    pacer = Pacer(RateLimit(per_second=1000), fake_time.clock, fake_time.sleep)
    sender = Sender(dest, pacer, runtime, Stats(), transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    out = sender.send(items)
    assert len(out.delivered) == 8 and out.rejected == []
    assert sizes == [8, 4, 2, 2, 4, 2, 2]


# --------------------------------------------------------------------------- Brevo batch encoding

BREVO_SYNC = """
name: s
source: {table: t, cursor: c, primary_key: [k]}
destination: {type: brevo_events_batch, api_key: "${BREVO_API_KEY}"}
mapping:
  event_name: {column: e}
  event_time: c
  identifiers: {email_id: m, ext_id: x, contact_id: cid}
  event_properties: {title: title, amount: amount, score: score, day: day, ctx: ctx, v.deep: title}
  contact_properties: {FIRSTNAME: first, PROFILE: prof}
  object: {type: order, id: oid}
"""


def _brevo_chunk(cid: pa.Array) -> tuple[Chunk, int]:
    n = 9
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "k": list(range(n)),
            "c": pa.array([ts] * n),
            "e": ["played"] * n,
            "m": ["a@b.c", "", None, 'q"uote@x.y', "tab\there@x.y", "e@x.y", "f@x.y", "g@x", "h@x"],
            "x": ["u1", None, "u3", "", "u5", "u6", "u7", "u8", "u9"],
            "cid": cid,
            "title": ['He said "hi" \\ bye', None, "ctrl\x01char", "é ü", "", "t", "t", "t", "t"],
            "amount": pa.array(
                [
                    Decimal("12.50"),
                    None,
                    Decimal("0.1"),
                    Decimal("-3"),
                    None,
                    None,
                    None,
                    None,
                    Decimal("1e3"),
                ],
                pa.decimal128(10, 2),
            ),
            "score": [float("nan"), 1.5, None, 2.0, float("inf"), 0.1 + 0.2, 3.0, 4.0, 5.0],
            "day": pa.array([date(2026, 2, 3)] * n),
            "ctx": [
                '{"device": "web", "n": 1}',
                None,
                '{"bad key": 1}',  # breaks the key rule inside a JSON column
                '{"nested": {"deep_er": [1, {"x-y": true}]}}',
                '{"a": "v: x"}',
                "[1, 2, 3]",
                '{"nested": {"no good": 1}}',
                "{}",
                '{"k": null}',
            ],
            "first": ["Ada", None, "Émile", "", "x", "y", "z", "w", "v"],
            "prof": [None, None, None, '{"tier": "gold"}', "7", None, None, None, None],
            "oid": ["o-1", None, "o-3", "o-4", "o-5", "o-6", "o-7", "o-8", "o-9"],
        }
    )
    return Chunk(table, json_columns=frozenset({"ctx", "prof"})), n


@pytest.mark.parametrize(
    "cid",
    [
        pa.array([1, None, 3, 4, 5, 6, 7, 8, 9], pa.int64()),
        pa.array(["1", None, "003", "", "5", "6", "7", "8", "9"]),
    ],
    ids=["integer", "text"],
)
def test_brevo_batch_column_wise_bodies_equal_the_exact_encoder(
    cid: pa.Array, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.destinations.brevo.vendor import encode_brevo_event

    monkeypatch.setenv("BREVO_API_KEY", "k")
    sync = parse_sync(BREVO_SYNC, "syncs/s.yaml")
    chunk, n = _brevo_chunk(cid)
    events = Mapper(sync).map(chunk)
    dest = make_event_destination(sync)
    rows = [i for i in range(n) if i not in events.reasons]
    fast = dest._fast_payloads(events)  # type: ignore[attr-defined]
    assert fast is not None
    took_fast = [i for i in rows if fast[i] is not None]
    # The column-wise path is the common one (rows 3, 5, 8 hold an array or a null: rejected).
    assert len(took_fast) >= 4

    idents = {k: v.to_pylist() for k, v in events.identifiers.items()}
    names, times = events.names.to_pylist(), events.times.to_pylist()
    items, reasons = dest.encode(events, rows)
    sent = {item.row: orjson.loads(item.payload) for item in items}
    for i in rows:
        exact, why = encode_brevo_event(
            events, i, idents, names, times, events.contact_props.row(i), events.event_props.row(i)
        )
        if exact is None:
            assert reasons[i] == why
            assert i not in took_fast  # a row breaking a rule never takes the fast path
        else:
            assert sent[i] == orjson.loads(dumps(exact)), f"row {i}"
    # The rules only parsed JSON can show are still enforced.
    assert "'ctx.bad key'" in reasons[2]
    assert "'ctx.nested.no good'" in reasons[6]
    assert "contact property PROFILE is an object/array" in reasons[3]


# --------------------------------------------------------------------------- process settings


def test_the_connector_process_uses_jemalloc_unless_the_arrow_variable_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.core.process import use_lean_memory_pool

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        assert use_lean_memory_pool() == before.backend_name  # the user's choice stands
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        assert use_lean_memory_pool() == "jemalloc"
    finally:
        pa.set_memory_pool(before)
