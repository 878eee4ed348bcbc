"""deliver/ratelimit: the Pacer keeps both windows and pauses the account when told."""

from __future__ import annotations

import pytest

from connector.config.sync_file import RateLimit
from connector.deliver.ratelimit import Pacer
from tests.conftest import FakeSleep


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
