"""deliver/delivery: the Sender splits a batch the API refuses without per-item detail."""

from __future__ import annotations

import httpx
import orjson
import pytest

from connector.config.sync_file import RateLimit
from connector.deliver.delivery import (
    Runtime,
    Sender,
    Stats,
)
from connector.deliver.ratelimit import Pacer
from tests.batch_items import brevo_destination, brevo_items
from tests.conftest import FakeSleep


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
