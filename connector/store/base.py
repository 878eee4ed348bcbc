"""What every part of the state store stands on: its engine, a transaction, and the time it
writes in its time columns. The parts (``checkpoints``, ``ledger``, ``rejects``, ``runs``,
``settings``) are mixins of ``state.StateStore``; each also has functions that work inside a
caller's transaction, so one transaction can span them (``LedgerStore.settle``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime

import sqlalchemy as sa


def now() -> datetime:
    """The current time, timezone-aware UTC (what the store writes in its time columns)."""
    return datetime.now(UTC)


class Tables:
    """A part of the store: its engine (set by ``StateStore``) and its transactions."""

    engine: sa.Engine

    def _tx(self) -> AbstractContextManager[sa.Connection]:
        return self.engine.begin()


def first_line(exc: BaseException) -> str:
    """The first line of a database error (its driver's message when it has one)."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
