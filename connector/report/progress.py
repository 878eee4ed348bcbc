"""The progress line of a long run: rows settled / total, what became of them, speed and ETA.

It counts rows *settled* — ``delivered`` and ``rejected`` — and shows the rows ``pending``
(sent, not settled yet), never rows merely read: a run refused with a 401 reads 0 delivered,
not 100 %, and a terminated run reports what it delivered. The run shell calls it from its
heartbeat thread (``connector.run.heartbeat``) at most once a second on the run's clock, so a
run waiting on a slow destination still reports.

On a terminal it is one line refreshed in place (live, every second); elsewhere (CI logs,
Dagster's run log, a file) a plain line every ``every_s`` seconds (``$CONNECTOR_PROGRESS_EVERY_S``,
default 10) and one at the end, so logs stay readable. The total is the rows the plan says this
run sends (``connector.run_plan``); rows that arrive during the run can push the count past it,
and the ETA then reads 0 s. A contact run's total is the rows it reads and compares
(``plan_contacts``): its unchanged rows are settled as they are compared, and the line counts
them too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

from ..run.result import ContactResult, SyncResult
from ..run.run_plan import format_duration

EVERY_ENV = "CONNECTOR_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 10.0


def every_s() -> float:
    """Seconds between plain progress lines: ``$CONNECTOR_PROGRESS_EVERY_S`` or 10."""
    try:
        value = float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S))
    except ValueError:
        return DEFAULT_EVERY_S
    return value if value > 0 else DEFAULT_EVERY_S


def settled(res: SyncResult) -> int:
    """Rows of the plan's total the run has settled: delivered, rejected (not the NULL
    cursor/key rows, which the plan does not count), skipped (an earlier run delivered
    them) and, in a contact run, unchanged (nothing to send)."""
    unchanged = res.unchanged if isinstance(res, ContactResult) else 0
    return max(0, res.delivered + res.rejected - res.null_key_rows + res.skipped + unchanged)


def progress_text(res: SyncResult, total: int | None) -> str:
    """One progress line, e.g. ``video_played: 12,000 / 1,000,000 rows (1.2%): 11,990
    delivered, 10 rejected, 200 pending, 2,500 rows/s, ETA 6 min 35 s`` (the total and the ETA
    only when ``total`` is known)."""
    done = settled(res)
    rate = done / res.duration_s if res.duration_s else 0.0
    speed = f"{rate:,.1f}" if rate < 10 else f"{rate:,.0f}"  # slow destinations: 0.4 rows/s
    rejected = f"{res.rejected:,} rejected"
    if res.null_key_rows:  # rejected, but not among the rows the plan counts
        rejected += f" ({res.null_key_rows:,} with a NULL cursor/key, not in the total)"
    counts = f"{res.delivered:,} delivered, {rejected}, {res.pending:,} pending"
    if isinstance(res, ContactResult):
        counts = f"{res.unchanged:,} unchanged, {counts}"
    if total is None:
        text = f"{res.sync}: {done:,} rows: {counts}, {speed} rows/s"
    else:
        pct = 100.0 * done / total if total else 100.0
        text = f"{res.sync}: {done:,} / {total:,} rows ({min(pct, 100.0):.1f}%): {counts}"
        text += f", {speed} rows/s"
    if res.status != "running":
        return f"{text}, {res.status}"
    if total is not None and rate > 0:
        text += f", ETA {format_duration(max(0, total - done) / rate)}"
    return text


class ProgressLine:
    """A ``progress`` callback for ``run_sync`` (it calls it at most once a second, from the
    run's heartbeat thread or its main thread, and once at the end with the final status)."""

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO | None = None,
        write: Callable[[str], None] | None = None,
        tty: bool | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (stream is None) == (write is None):
            raise ValueError("give a stream or a write function")
        self.total = total
        self.stream = stream
        self.write = write
        self.tty = tty if tty is not None else bool(stream is not None and stream.isatty())
        self.every = every if every is not None else every_s()
        self.clock = clock
        self.last = clock()
        self.latest: SyncResult | None = None  # the counts last reported (after a failure too)
        self.lock = threading.Lock()

    def __call__(self, res: SyncResult) -> None:
        """Report ``res``: rewritten in place on a terminal, else a line at most every
        ``every`` seconds; the final counts (status no longer running) always get a line."""
        with self.lock:
            self._report(res)

    def _report(self, res: SyncResult) -> None:
        self.latest = res
        final = res.status != "running"
        text = progress_text(res, self.total)
        if self.tty and self.stream is not None:
            # Refresh in place; the final state keeps its line.
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
            self.stream.flush()
            return
        now = self.clock()
        if not final and now - self.last < self.every:
            return
        self.last = now
        if self.write is not None:
            self.write(text)
        elif self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()
