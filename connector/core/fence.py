"""The write fence: a run that lost its lease sends nothing more and writes no settlement.

The run shell installs the run's lease as the *fence* of the run's context (``fenced``); the
HTTP loop calls ``check()`` right before each request goes on the wire (every attempt, after
any pacing or retry wait), and the event run before it records a batch as pending and before
it settles one. ``check()`` raises ``LeaseLost`` once the run no longer holds an unexpired
lease, so a process paused past its lease TTL (SIGSTOP, a VM pause, a stalled network) and
then resumed stops at its next request instead of sending batches another run already took
over. Worker threads see the fence because they run in a copy of the run's context.

The fence itself lives in ``store.lease`` (``Lease.check``): this module only carries it, so
the delivery layers need not know about the state store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Protocol

from .errors import LeaseHeld


class LeaseLost(LeaseHeld):
    """This run's lease expired or was taken over by another run: it sends nothing more and
    settles nothing (CLI exit 1). Batches it had sent but not settled are counted as possibly
    duplicated."""

    #: Whether the request it stopped may have reached the API in an earlier attempt.
    maybe_sent: bool = False


class Fence(Protocol):
    """What the fence asks: may this run still send and settle?"""

    def check(self) -> None:
        """Return when the run holds an unexpired lease; raise ``LeaseLost`` otherwise."""


_FENCE: ContextVar[Fence | None] = ContextVar("connector_fence", default=None)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Within the block (and threads started with a copy of its context), ``check()``
    consults ``fence``; ``None`` (a dry run) fences nothing."""
    token = _FENCE.set(fence)
    try:
        yield
    finally:
        _FENCE.reset(token)


def check(*, maybe_sent: bool = False) -> None:
    """Raise ``LeaseLost`` when the current run lost its lease (no-op outside a run);
    ``maybe_sent``: an earlier attempt of the request may have reached the API."""
    fence = _FENCE.get()
    if fence is None:
        return
    try:
        fence.check()
    except LeaseLost as exc:
        exc.maybe_sent = maybe_sent
        raise
