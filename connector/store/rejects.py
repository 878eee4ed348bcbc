"""Rejects: rows refused by the mapping, the destination's rules or the vendor
(``connector_rejects``), a working list.

A reject recorded again (the row read and refused again) is open with the new reason and time.
A run that delivers a key with an open reject in its scope closes it (``CLOSED_DELIVERED``);
a retry that finds the key's source row gone closes it as ``CLOSED_GONE``. Closed rows stay
for ``rejects --all``; a reject is open while ``closed_at`` is NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..core.errors import StateError
from .base import Tables, first_line, now
from .schema import rejects

# Why a reject was closed (``resolution``).
CLOSED_DELIVERED = "delivered"
CLOSED_GONE = "source row gone"


@dataclass
class Reject:
    """A row refused by the mapping, the destination's rules or the vendor: its primary-key text,
    the reason, and the event payload that was refused (never headers)."""

    key: str
    reason: str
    payload: str | None = None


def reject_filter(sync: str, scope: str | None, *, include_closed: bool) -> list[Any]:
    """The ``WHERE`` of a sync's rejects (one scope's, open ones only unless ``include_closed``)."""
    where: list[Any] = [rejects.c.sync == sync]
    if scope is not None:
        where.append(rejects.c.scope == scope)
    if not include_closed:
        where.append(rejects.c.closed_at.is_(None))
    return where


def insert_rejects(
    c: sa.Connection, sync: str, scope: str, run_id: str, new_rejects: Sequence[Reject]
) -> None:
    """Record ``new_rejects`` inside the caller's transaction: a key recorded before is open
    again with the new reason (the last of a key's rejects wins)."""
    if not new_rejects:
        return
    latest = {r.key: r for r in new_rejects}
    keys = list(latest)
    for i in range(0, len(keys), 500):
        c.execute(
            rejects.delete().where(
                rejects.c.sync == sync,
                rejects.c.scope == scope,
                rejects.c.key.in_(keys[i : i + 500]),
            )
        )
    ts = now()
    c.execute(
        rejects.insert(),
        [
            {
                "sync": sync,
                "scope": scope,
                "key": r.key[:1000],
                "reason": r.reason,
                "payload": r.payload,
                "run_id": run_id,
                "created_at": ts,
            }
            for r in latest.values()
        ],
    )


def close_open_rejects(
    c: sa.Connection,
    sync: str,
    scope: str,
    keys: Iterable[str],
    run_id: str,
    resolution: str,
) -> int:
    """Close the open rejects with these keys inside the caller's transaction; returns how
    many were open."""
    keys = list(dict.fromkeys(k[:1000] for k in keys))
    closed, ts = 0, now()
    for i in range(0, len(keys), 500):
        res = c.execute(
            rejects.update()
            .where(
                *reject_filter(sync, scope, include_closed=False),
                rejects.c.key.in_(keys[i : i + 500]),
            )
            .values(closed_at=ts, closed_by_run=run_id, resolution=resolution)
        )
        closed += res.rowcount
    return closed


class RejectStore(Tables):
    """Recording, listing and closing rejects."""

    def add_rejects(self, sync: str, scope: str, run_id: str, new: Sequence[Reject]) -> None:
        """Record rejects outside a settle (rows refused before any request); open again if already
        recorded."""
        with self._tx() as c:
            insert_rejects(c, sync, scope, run_id, new)

    def rejects(
        self,
        sync: str,
        limit: int | None = None,
        *,
        include_closed: bool = False,
        scope: str | None = None,
        payload: bool = False,
    ) -> list[dict[str, Any]]:
        """The sync's open rejects (all of them unless ``limit``), newest first."""
        return list(
            self.iter_rejects(
                sync, limit, include_closed=include_closed, scope=scope, payload=payload
            )
        )

    def iter_rejects(
        self,
        sync: str,
        limit: int | None = None,
        *,
        include_closed: bool = False,
        scope: str | None = None,
        payload: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Like ``rejects``, streamed in pages: an export of many rejects (each payload up to
        20,000 characters) never holds them all in memory."""
        cols = [
            rejects.c.key,
            rejects.c.reason,
            rejects.c.created_at,
            rejects.c.scope,
            rejects.c.run_id,
            rejects.c.closed_at,
            rejects.c.closed_by_run,
            rejects.c.resolution,
        ]
        if payload:
            cols.append(rejects.c.payload)
        stmt = (
            sa.select(*cols)
            .where(*reject_filter(sync, scope, include_closed=include_closed))
            .order_by(rejects.c.created_at.desc(), rejects.c.scope, rejects.c.key)
        )
        if limit:
            stmt = stmt.limit(limit)
        with self.engine.connect() as c:
            result = c.execution_options(yield_per=1000).execute(stmt)
            for r in result:
                yield dict(r._mapping)

    def count_rejects(
        self,
        sync: str,
        run_id: str | None = None,
        *,
        open_only: bool = False,
        scope: str | None = None,
    ) -> int:
        """Rejects recorded for the sync (by one run if ``run_id``); ``open_only`` leaves out
        the closed ones (delivered later, or whose source row is gone)."""
        where = reject_filter(sync, scope, include_closed=not open_only)
        stmt = sa.select(sa.func.count()).select_from(rejects).where(*where)
        if run_id:
            stmt = stmt.where(rejects.c.run_id == run_id)
        with self.engine.connect() as c:
            return int(c.execute(stmt).scalar() or 0)

    def open_reject_keys(self, sync: str, scope: str) -> list[str]:
        """Keys of the open rejects of one scope, in key order."""
        stmt = (
            sa.select(rejects.c.key)
            .where(*reject_filter(sync, scope, include_closed=False))
            .order_by(rejects.c.key)
        )
        with self.engine.connect() as c:
            return [k for (k,) in c.execute(stmt)]

    def open_reject_reasons(
        self, sync: str, scope: str, keys: Iterable[str]
    ) -> dict[str, tuple[str, str | None]]:
        """The open rejects of these keys in one scope: key → (reason, payload)."""
        wanted = list(dict.fromkeys(k[:1000] for k in keys))
        out: dict[str, tuple[str, str | None]] = {}
        with self.engine.connect() as c:
            for i in range(0, len(wanted), 500):
                stmt = sa.select(rejects.c.key, rejects.c.reason, rejects.c.payload).where(
                    *reject_filter(sync, scope, include_closed=False),
                    rejects.c.key.in_(wanted[i : i + 500]),
                )
                for key, reason, payload in c.execute(stmt):
                    out[key] = (reason, payload)
        return out

    def close_rejects(
        self, sync: str, scope: str, keys: Iterable[str], run_id: str, resolution: str
    ) -> int:
        """Close the open rejects with these keys (``CLOSED_DELIVERED`` or ``CLOSED_GONE``);
        returns how many were open. Closed rows stay for ``rejects --all``."""
        try:
            with self._tx() as c:
                return close_open_rejects(c, sync, scope, keys, run_id, resolution)
        except sa.exc.SQLAlchemyError as exc:
            raise StateError(f"could not close rejects of {sync}: {first_line(exc)}") from None
