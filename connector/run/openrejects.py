"""Which delivered rows close an open reject, in memory bounded independently of the table.

A normal run closes the open reject of a row it delivers (the row was fixed and read again).
Up to ``MAX_IN_MEMORY`` open rejects their keys are held as a set and only matching keys go
to the state store; above that, every delivered key is handed to the store, whose
``UPDATE ... WHERE key IN (...)`` closes the ones that are open (a few statements per batch,
only on scopes with that many open rejects). Either way no per-row structure of the run's
size lives for the whole run.

A reject found again unchanged (``split_known``: the same key, reason and payload as an open
reject of the scope, e.g. a row with a NULL cursor, refused on every run) is *known*: it stays
open and listed as it was (not recorded again), and the run counts it in ``rejects_known``, which
the reject ratio leaves out — one bad row does not warn on every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..store.state import Reject

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


def split_known(
    state: Any, sync: str, scope: str, found: Sequence[Reject]
) -> tuple[list[Reject], list[Reject]]:
    """``found`` split into (new or changed, known): a known reject has an open reject of the
    same key in the scope with the same reason and payload."""
    if not found:
        return [], []
    stored = state.open_reject_reasons(sync, scope, (r.key for r in found))
    new: list[Reject] = []
    known: list[Reject] = []
    for r in found:
        same = stored.get(r.key[:1000]) == (r.reason, r.payload)
        (known if same else new).append(r)
    return new, known
