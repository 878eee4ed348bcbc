"""``ReadShare``: the pacer of verification reads, a small share of the account's rate.

A read takes a slot of its own window (``share`` of the account's rate, 10% by default:
``verify.read_share``) and then a slot of the account's pacer, the one every write of the
account takes (the process's, or the state store's when pacing is shared). Reads therefore
count against the vendor's limit like any request, and however many there are they take at
most ``share`` of it: a sync running at the same time keeps the rest. A 429 or a spent window
pauses the whole account, as for a write.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.options import RateLimit
from ..deliver.ratelimit import Pacer

DEFAULT_SHARE = 0.1


def scaled(rate: RateLimit, share: float) -> RateLimit:
    """``rate`` with every window's allowance multiplied by ``share``."""
    return RateLimit(
        per_second=rate.per_second * share if rate.per_second else None,
        per_minute=rate.per_minute * share if rate.per_minute else None,
        per_hour=rate.per_hour * share if rate.per_hour else None,
    )


class ReadShare(Pacer):
    """Reads at ``share`` of ``rate``, each also taking a slot of the account's pacer."""

    def __init__(
        self,
        account: Pacer,
        rate: RateLimit,
        share: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"read share {share} is not in (0, 1]")
        super().__init__(scaled(rate, share), clock, sleep)
        self.account = account
        self.share = share

    def acquire(self) -> float:
        """Wait for the reads' own window, then for the account's."""
        waited = super().acquire()
        return waited + self.account.acquire()

    def pause(self, seconds: float) -> None:
        """A 429 holds every request of the account, writes included."""
        self.account.pause(seconds)

    def observe(self, remaining: float | None, reset_s: float | None) -> None:
        """The vendor's window headers pace the account."""
        self.account.observe(remaining, reset_s)
