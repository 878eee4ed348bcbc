"""Fixed-window rate limiting with an injected clock, so tests never sleep.

A limiter holds one or more windows (e.g. Brevo's 10/s *and* 36,000/h); a request is allowed
only when every window has room, and only allowed requests are counted. A window opens at the
first request after the previous one expired. Vendor modules turn a :class:`Decision` into
their own header names.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` requests per ``period_s`` seconds."""

    limit: int
    period_s: float


@dataclass(frozen=True)
class WindowStatus:
    """One window's state as a response reports it: its limit, requests left, and whole seconds
    until it reopens."""

    limit: int
    remaining: int
    reset_s: int  # whole seconds until this window reopens, at least 1
    period_s: float


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed, the state of every window, and the window that refused it."""

    allowed: bool
    windows: tuple[WindowStatus, ...]
    blocking: WindowStatus | None = None

    @property
    def tightest(self) -> WindowStatus:
        """The window with the fewest requests left (ties: the shorter window)."""
        if self.blocking is not None:
            return self.blocking
        return min(self.windows, key=lambda w: (w.remaining, w.period_s))

    @property
    def longest(self) -> WindowStatus:
        """The steady (longest) window, which Klaviyo reports in its ``RateLimit-*`` headers."""
        return max(self.windows, key=lambda w: w.period_s)


class FixedWindowLimiter:
    """Thread-safe fixed windows."""

    def __init__(
        self,
        windows: Sequence[RateWindow],
        clock: Callable[[], float],
    ) -> None:
        if not windows:
            raise ValueError("a limiter needs at least one window")
        self._windows = tuple(windows)
        self._clock = clock
        self._lock = threading.Lock()
        self._starts: list[float | None] = [None] * len(self._windows)
        self._counts = [0] * len(self._windows)

    def acquire(self) -> Decision:
        """Count one request if every window has room."""
        with self._lock:
            now = self._roll()
            blocked = [i for i, w in enumerate(self._windows) if self._counts[i] >= w.limit]
            if blocked:
                statuses = self._statuses(now)
                # Report the window that stays closed longest, so its reset is long enough.
                worst = max((statuses[i] for i in blocked), key=lambda s: s.reset_s)
                return Decision(allowed=False, windows=statuses, blocking=worst)
            for i in range(len(self._windows)):
                self._counts[i] += 1
            return Decision(allowed=True, windows=self._statuses(now))

    def peek(self) -> Decision:
        """The current state without counting (for unauthenticated requests)."""
        with self._lock:
            now = self._roll()
            return Decision(allowed=True, windows=self._statuses(now))

    def reset(self) -> None:
        """Reopen every window with its full allowance."""
        with self._lock:
            self._starts = [None] * len(self._windows)
            self._counts = [0] * len(self._windows)

    def _roll(self) -> float:
        now = self._clock()
        for i, w in enumerate(self._windows):
            start = self._starts[i]
            if start is None or now >= start + w.period_s:
                self._starts[i] = now
                self._counts[i] = 0
        return now

    def _statuses(self, now: float) -> tuple[WindowStatus, ...]:
        out = []
        for i, w in enumerate(self._windows):
            start = self._starts[i]
            left = w.period_s if start is None else start + w.period_s - now
            out.append(
                WindowStatus(
                    limit=w.limit,
                    remaining=max(0, w.limit - self._counts[i]),
                    reset_s=max(1, math.ceil(left)),
                    period_s=w.period_s,
                )
            )
        return tuple(out)
