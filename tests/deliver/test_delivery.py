"""deliver/delivery: the Sender splits a batch the API refuses without per-item detail, counts
the events delivered after a lost answer as possibly duplicated, and gives up when the retries
run out (its transport scripted as in the HTTP loop's tests)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from connector.config.sync_file import RateLimit
from connector.core.errors import RetriesExhausted
from connector.deliver.delivery import Runtime, Sender, Stats
from connector.deliver.ratelimit import Pacer
from tests.batch_items import brevo_destination, brevo_items
from tests.conftest import FakeSleep
from tests.deliver.test_http_loop import _script


def test_sender_splits_a_batch_the_api_refuses_without_detail(
    monkeypatch: pytest.MonkeyPatch, fake_time: FakeSleep
) -> None:
    """A 413 (no per-item detail, nothing stored) → halves, until each part fits."""
    dest, _ = brevo_destination(1)
    items = brevo_items(8, 5)
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


def test_sender_counts_events_delivered_after_a_lost_answer_as_possibly_duplicated(
    fake_time: FakeSleep,
) -> None:
    """End to end through ``Sender``: Brevo batch has no dedup key, so events stored by a
    request whose answer was lost and then re-sent may be in the account twice."""
    dest, _ = brevo_destination(1)
    transport, seen = _script(
        [httpx.RemoteProtocolError("server disconnected"), httpx.Response(202, json={})]
    )
    runtime = Runtime(fake_time.clock, fake_time.sleep, lambda: 0.5)
    stats = Stats()
    pacer = Pacer(RateLimit(per_second=1000), fake_time.clock, fake_time.sleep)
    sender = Sender(dest, pacer, runtime, stats, transport=transport)  # type: ignore[arg-type]

    out = sender.send(brevo_items(3, 5))

    assert len(out.delivered) == 3 and out.possibly_duplicated == 3
    # A settled batch's copies travel in its outcome; the stats hold failed batches' only.
    assert stats.possibly_duplicated == 0 and len(seen) == 2


def test_sender_gives_up_when_retries_run_out(fake_time: FakeSleep) -> None:
    dest, _ = brevo_destination(1)
    assert dest.options.max_retries == 8  # type: ignore[attr-defined]  # the default
    transport, seen = _script([httpx.ReadTimeout("slow")] * 9)
    runtime = Runtime(fake_time.clock, fake_time.sleep, lambda: 0.5)
    pacer = Pacer(RateLimit(per_second=1000), fake_time.clock, fake_time.sleep)
    sender = Sender(dest, pacer, runtime, Stats(), transport=transport)  # type: ignore[arg-type]

    with pytest.raises(RetriesExhausted, match="ReadTimeout: slow persisted after 8 retries"):
        sender.send(brevo_items(2, 5))

    assert len(seen) == 9
