"""Which delivered rows close an open reject, in memory bounded independently of the table.

A normal run closes the open reject of a row it delivers (the row was fixed and read again).
Up to ``MAX_IN_MEMORY`` open rejects their keys are held as a set and only matching keys go
to the state store; above that, every delivered key is handed to the store, whose
``UPDATE ... WHERE key IN (...)`` closes the ones that are open (a few statements per batch,
only on scopes with that many open rejects). Either way no per-row structure of the run's
size lives for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_IN_MEMORY = 50_000


class OpenRejects:
    """The open reject keys of a scope (``keys``), or ``check_all`` when there are too many to
    hold and every delivered key goes to the store."""

    def __init__(self, keys: set[str] | None = None, *, check_all: bool = False) -> None:
        self.keys = keys or set()
        self.check_all = check_all

    @classmethod
    def load(cls, state: Any, sync: str, scope: str, limit: int | None = None) -> OpenRejects:
        """The scope's open reject keys from the state store, or ``check_all`` above ``limit``
        (default ``MAX_IN_MEMORY``)."""
        limit = MAX_IN_MEMORY if limit is None else limit
        count = state.count_rejects(sync, open_only=True, scope=scope)
        if count == 0:
            return cls()
        if count > limit:
            return cls(check_all=True)
        return cls(set(state.open_reject_keys(sync, scope)))

    def __bool__(self) -> bool:
        return self.check_all or bool(self.keys)

    def closed_by(self, delivered: Iterable[str]) -> list[str]:
        """The delivered keys to close (a superset when there are too many to hold)."""
        if self.check_all:
            return list(delivered)
        if not self.keys:
            return []
        return [k for k in delivered if k in self.keys]
