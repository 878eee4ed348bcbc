"""The heartbeat of a run: a thread that reports the run's counts on a timer.

The strategy updates its counters as rows settle (the run shell's ``delivered``, ``rejected``
and ``pending``); the heartbeat reads them every ``poll_s`` and calls ``beat``, which decides on
the run's injected clock whether a report is due. So a run blocked on a slow destination (one
event per request at the account's pace, a retry's backoff) still reports every few seconds,
and a test drives the loop itself (``loop`` with its own ``wait``) instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import copy_context
from types import TracebackType

from ..core.logcontext import get_logger

log = get_logger("connector.run")

POLL_S = 1.0  # how often the thread wakes (a terminal's live line refreshes this often)


class Heartbeat:
    """Calls ``beat`` every ``poll_s`` seconds in a thread of its own until stopped; use it as
    a context manager around the run. ``wait(seconds)`` waits and returns True once stopped
    (default: the stop event's wait; tests pass one that moves a fake clock instead)."""

    def __init__(
        self,
        beat: Callable[[], None],
        *,
        poll_s: float = POLL_S,
        wait: Callable[[float], bool] | None = None,
        name: str = "heartbeat",
    ) -> None:
        self.beat = beat
        self.poll_s = poll_s
        self.stop = threading.Event()
        self.wait = wait or self.stop.wait
        self.name = name
        self.thread: threading.Thread | None = None
        self.failed = False

    def loop(self) -> None:
        """Beat after each wait until stopped. A failing beat is logged once and the loop
        goes on: a report is a courtesy, never a reason to stop the run."""
        while not self.wait(self.poll_s):
            try:
                self.beat()
            except Exception:  # progress must not fail the run it reports on
                if not self.failed:
                    log.warning("progress report failed", exc_info=True)
                self.failed = True

    def __enter__(self) -> Heartbeat:
        ctx = copy_context()  # its log records name the run as the run's own do
        self.thread = threading.Thread(
            target=ctx.run, args=(self.loop,), name=self.name, daemon=True
        )
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
