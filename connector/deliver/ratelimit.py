"""Per-account request pacing, so a run spends its requests on data, not on 429s.

A ``Pacer`` enforces the destination's documented windows (sliding, with a small safety margin
so a request delayed in transit cannot land in the vendor's next fixed window over the limit)
and pauses every thread of the account when the vendor says so: a 429's wait, or a response that
reports ``remaining == 0`` with a reset time. Clock and sleep are injected.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.sync_file import RateLimit

_MARGIN = 1.02  # stretch each window by 2% ...
_MARGIN_S = 0.02  # ... plus 20 ms


@dataclass
class _Window:
    capacity: int
    period: float
    sent: deque[float] = field(default_factory=deque)


class Pacer:
    """Sliding-window limiter shared by every request to one account."""

    def __init__(
        self, rate: RateLimit, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.windows: list[_Window] = []
        for per, period in (
            (rate.per_second, 1.0),
            (rate.per_minute, 60.0),
            (rate.per_hour, 3600.0),
        ):
            if per:
                capacity = max(1, math.floor(per))
                span = period * capacity / per
                self.windows.append(_Window(capacity, span * _MARGIN + _MARGIN_S))
        self.not_before = 0.0
        self.lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds waited."""
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                wait = max(0.0, self.not_before - now)
                for w in self.windows:
                    while w.sent and w.sent[0] <= now - w.period:
                        w.sent.popleft()
                    if len(w.sent) >= w.capacity:
                        wait = max(wait, w.sent[0] + w.period - now)
                if wait <= 0:
                    for w in self.windows:
                        w.sent.append(now)
                    self.waited_s += waited
                    return waited
            self.sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        """Hold every request of this account for ``seconds`` from now."""
        with self.lock:
            self.not_before = max(self.not_before, self.clock() + seconds)

    def observe(self, remaining: float | None, reset_s: float | None) -> None:
        """Vendor headers on a successful response: pause when the window is spent.

        Not when our own full windows already hold the next request until about then: vendors
        report the reset in whole seconds rounded up, so pausing again would idle up to a
        second per window (a 10 req/s account would sustain only ~8 req/s)."""
        if remaining is not None and reset_s is not None and remaining <= 0:
            own = self._own_wait()
            if own > 0 and own >= reset_s - 1.0:
                return
            self.pause(reset_s)

    def _own_wait(self) -> float:
        """Seconds until our own windows would let the next request go."""
        with self.lock:
            now = self.clock()
            wait = 0.0
            for w in self.windows:
                live = [t for t in w.sent if t > now - w.period]
                if len(live) >= w.capacity:
                    wait = max(wait, live[-w.capacity] + w.period - now)
            return wait


_PACERS: dict[str, Pacer] = {}
_PACERS_LOCK = threading.Lock()


def account_key(dest_type: str, base_url: str, api_key: str) -> str:
    """Identifies one vendor account without holding the key itself."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{dest_type}|{base_url}|{digest}"


def pacer_for(
    account: str, rate: RateLimit, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Pacer:
    """One pacer per account per process, shared by concurrent runs (e.g. Dagster threads)."""
    with _PACERS_LOCK:
        pacer = _PACERS.get(account)
        if pacer is None or pacer.clock is not clock:
            pacer = _PACERS[account] = Pacer(rate, clock, sleep)
        return pacer
