"""The audit outbox in the state store (``connector_audit_outbox``): the rows of every settled
unit until they are in the warehouse.

A unit's rows go in with the transaction that settles it (``unit_insert``, handed to
``StateStore.settle``) or in one of their own right before (contact jobs, unlisting): a row
the run settled is never missing from the outbox, and the writer deletes outbox rows only
after the warehouse committed them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ..store.base import now
from ..store.schema import audit_outbox, runs
from ..store.state import StateStore

ROWS, RUN = "rows", "run"
_INSERT = audit_outbox.insert()


@dataclass(frozen=True)
class Entry:
    """An outbox row without its body."""

    id: int
    run_id: str
    kind: str
    rows: int
    created_at: datetime


def insert(
    sync: str, scope: str, run_id: str, kind: str, body: bytes, rows: int
) -> Callable[[sa.Connection], None]:
    """The insert of one outbox row, to run inside a caller's transaction."""
    values = {
        "sync": sync,
        "scope": scope,
        "run_id": run_id,
        "kind": kind,
        "rows": rows,
        "body": body,
        "created_at": now(),
    }

    def write(c: sa.Connection) -> None:
        c.execute(_INSERT, values)  # one compiled statement for every unit

    return write


def add(state: StateStore, write: Callable[[sa.Connection], None]) -> None:
    """Run ``write`` (``insert``) in a transaction of its own."""
    with state.engine.begin() as c:
        write(c)


def pending(state: StateStore, sync: str, scope: str | None = None) -> list[Entry]:
    """The outbox rows of ``sync`` (in ``scope``), oldest first."""
    o = audit_outbox.c
    stmt = sa.select(o.id, o.run_id, o.kind, o.rows, o.created_at).where(o.sync == sync)
    if scope is not None:
        stmt = stmt.where(o.scope == scope)
    with state.engine.connect() as c:
        return [
            Entry(int(i), r, k, int(n), utc(t))
            for i, r, k, n, t in c.execute(stmt.order_by(o.id)).all()
        ]


def utc(t: datetime) -> datetime:
    """A time of the store as UTC (SQLite gives it back without its offset)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def bodies(state: StateStore, ids: Sequence[int]) -> list[bytes]:
    """The bodies of outbox rows, in the order of ``ids``."""
    out: dict[int, bytes] = {}
    with state.engine.connect() as c:
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            stmt = sa.select(audit_outbox.c.id, audit_outbox.c.body).where(
                audit_outbox.c.id.in_(part)
            )
            out.update((int(i), bytes(b)) for i, b in c.execute(stmt).all())
    return [out[i] for i in ids if i in out]


def delete(state: StateStore, ids: Iterable[int]) -> None:
    """Forget outbox rows the warehouse holds now."""
    ids = list(ids)
    with state.engine.begin() as c:
        for start in range(0, len(ids), 500):
            c.execute(audit_outbox.delete().where(audit_outbox.c.id.in_(ids[start : start + 500])))


def backlog(state: StateStore, sync: str) -> int:
    """Changelog rows of ``sync`` not yet written to the warehouse (the ``audit_written``
    check)."""
    o = audit_outbox.c
    stmt = sa.select(sa.func.coalesce(sa.func.sum(o.rows), 0)).where(o.sync == sync)
    with state.engine.connect() as c:
        return int(c.execute(stmt).scalar() or 0)


def run_records(state: StateStore, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The state store's records of runs (``connector_runs``), by run id."""
    ids = sorted(set(run_ids))
    out: dict[str, dict[str, Any]] = {}
    with state.engine.connect() as c:
        for start in range(0, len(ids), 500):
            stmt = sa.select(runs).where(runs.c.run_id.in_(ids[start : start + 500]))
            out.update((r.run_id, dict(r._mapping)) for r in c.execute(stmt).all())
    return out
