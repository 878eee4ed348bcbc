"""``ReadShare`` (``verify.share``): verification reads take a small share of the account's
rate, each also a slot of the account's pacer, and a 429 on a read holds the whole account."""

from __future__ import annotations

import pytest

from connector.config.sync_file import RateLimit
from connector.deliver.ratelimit import Pacer
from connector.verify.share import ReadShare
from tests.conftest import FakeSleep


class _Counting(Pacer):
    taken = 0

    def acquire(self) -> float:
        self.taken += 1
        return super().acquire()


def test_reads_take_their_share_of_the_account_pacer(fake_time: FakeSleep) -> None:
    rate = RateLimit(per_second=10)
    account = _Counting(rate, fake_time.clock, fake_time.sleep)
    reads = ReadShare(account, rate, 0.1, fake_time.clock, fake_time.sleep)
    t0 = fake_time.clock()
    for _ in range(3):
        reads.acquire()
    # 10% of 10/s: one read a second (with the pacer's margin), each also a slot of the account
    assert fake_time.clock() - t0 == pytest.approx(2 * (1.0 * 1.02 + 0.02))
    assert account.taken == 3
    # Writes meanwhile keep the other 90%: nine more fit the account's window at once.
    start = fake_time.clock()
    for _ in range(9):
        account.acquire()
    assert fake_time.clock() == pytest.approx(start)
    reads.pause(5.0)  # a 429 on a read holds the whole account
    assert account.not_before == pytest.approx(start + 5.0)
