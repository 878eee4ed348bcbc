"""destinations/brevo/batch: 207/400 answers, the body-shape switch, column-wise bodies."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import orjson
import pyarrow as pa
import pytest

from connector.config.sync_file import parse_sync
from connector.deliver.factory import make_event_destination
from connector.destinations.base import Learned, dumps
from connector.map.mapper import Chunk, Mapper
from tests.batch_items import brevo_destination


def test_brevo_207_maps_event_indices_to_rejects_and_never_resends_the_rest() -> None:
    dest, req = brevo_destination(5)
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
    dest, req = brevo_destination(3)
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
