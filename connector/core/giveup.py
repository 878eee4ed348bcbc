"""The run's give-up signal: once one request of a run failed for good, the run fails, and the
requests of that run still retrying stop at their next wait instead of running their retries out
against a destination that is down.

The event run sets the signal (``watch``) in the context each sender thread runs in; the HTTP
loop asks ``given_up()`` before each wait between attempts and again before the attempt after
it. A request stopped this way ends as if its retries had run out (``RetriesExhausted``): its
batch stays pending when an attempt may have reached the API, and the next run resends it.
Outside such a context (contact jobs, polls, the CLI's lookups) nothing gives up early.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

_STOP: ContextVar[threading.Event | None] = ContextVar("connector_give_up", default=None)


def watch(event: threading.Event) -> None:
    """In the current context, requests give up their retries once ``event`` is set (call it
    inside the context copy a sender thread runs in)."""
    _STOP.set(event)


def given_up() -> bool:
    """Whether the run of the current context has failed on another request."""
    event = _STOP.get()
    return event is not None and event.is_set()
