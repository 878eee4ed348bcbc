"""The chunk planner: what one mapped chunk becomes — items to send, rejects, rows to skip.

``sync`` and ``preview`` both plan with it, so a preview shows exactly the requests a run
would send: the destination's rules, the in-run duplicate-key check, the encoder's size rules
and (in a run) the rows an interrupted run already delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..core.options import DestinationSettings
from ..destinations.base import Item, dumps
from ..destinations.event_endpoint import EventDestination
from ..model.events import Events
from ..store.state import Reject
from .batching import Batch, Batcher
from .ledger import Ledger

DUPLICATE_KEY = "duplicate primary key: an earlier row with this key was already read in this run"


class DuplicateCheck(Protocol):
    """The in-run duplicate-key detector: rows of ``keys`` whose key was seen before (in this
    call or an earlier one of the same run)."""

    def duplicates(self, keys: Any) -> list[int]:
        """Indexes into ``keys`` (a list or ``Events.key_array``) of the keys seen before, in
        order."""


@dataclass
class Plan:
    """One chunk's fate: the encoded ``items``, row → reject reason, rows skipped (delivered
    by an interrupted run) and, per re-sent row, the copies the destination may already hold
    (pending ledger entries of earlier runs)."""

    items: list[Item]
    reasons: dict[int, str]
    skip: set[int]
    copies: dict[int, int]


class ChunkPlanner:
    """Plans chunks in read order for one run (or one preview)."""

    def __init__(
        self,
        dest: EventDestination[DestinationSettings],
        duplicates: DuplicateCheck,
        ledger: Ledger | None = None,
    ) -> None:
        self.dest = dest
        self.dups = duplicates
        self.ledger = ledger

    def plan(self, events: Events) -> Plan:
        """Validate, check keys, consult the ledger and encode one chunk."""
        reasons = dict(events.reasons)  # complete: the mapper computed them eagerly
        for i, why in self.dest.validate(events).items():
            reasons.setdefault(i, why)
        for i in self.dups.duplicates(events.key_array):
            reasons.setdefault(i, DUPLICATE_KEY)
        skip: set[int] = set()
        copies: dict[int, int] = {}
        if self.ledger is not None:
            skip, copies = self.ledger.check(events)
            for i in skip:  # handled by an earlier run: a reject stays the one recorded
                reasons.pop(i, None)
        valid = [i for i in range(events.n) if i not in reasons and i not in skip]
        items, more = self.dest.encode(events, valid)
        reasons.update(more)
        events.event_props.release()  # the items hold their encoded bytes now
        events.contact_props.release()
        return Plan(items, reasons, skip, {i: n for i, n in copies.items() if i not in reasons})

    @staticmethod
    def batches(events: Events, plan: Plan, batcher: Batcher) -> list[Batch]:
        """Feed the planned chunk to ``batcher`` in read order; returns the batches it
        closed. Rejected and skipped rows are covered by the next batch, so the checkpoint
        passes them only when that batch settles."""
        out: list[Batch] = []
        reasons = plan.reasons
        it = iter(plan.items)
        nxt = next(it, None)
        for i in range(events.n):
            if nxt is not None and nxt.row == i:
                batch = batcher.add(nxt)
                if batch is not None:
                    out.append(batch)
                nxt = next(it, None)
            elif i in reasons:
                batcher.cover(events, i, Reject(events.keys[i], reasons[i], payload(events, i)))
            else:
                batcher.cover(events, i)
        return out


def payload(events: Events, i: int) -> str | None:
    """The row as the canonical event (for a reject's payload), at most 20,000 characters."""
    try:
        return dumps(
            {
                "name": events.names[i].as_py(),
                "time": events.times[i].as_py(),
                "identifiers": {k: v[i].as_py() for k, v in events.identifiers.items()},
                "event_properties": events.event_properties[i],
                "contact_properties": events.contact_properties[i],
            }
        ).decode()[:20_000]
    except Exception:  # noqa: BLE001 — the stored payload is a courtesy; the reject is kept
        return None
