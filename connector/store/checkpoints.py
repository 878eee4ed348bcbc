"""Checkpoints: per sync and scope, the position a run delivered up to (``connector_checkpoints``).

Scopes: ``incremental`` is the scheduled/CLI checkpoint; ``partition:<key>`` is the progress of
one backfill partition, kept apart so backfills never move the incremental checkpoint. An event
run moves its checkpoint in the transaction that settles its ledger rows (``LedgerStore.settle``);
a contact run with a cursor moves it once, when it succeeded (``set_checkpoint``).
"""

from __future__ import annotations

import sqlalchemy as sa

from ..core.errors import StateError
from .base import Tables, now
from .positions import Position, decode_position, encode_position
from .schema import checkpoints

INCREMENTAL = "incremental"


def write_checkpoint(c: sa.Connection, sync: str, scope: str, pos: Position, run_id: str) -> None:
    """Move the checkpoint of ``(sync, scope)`` to ``pos`` inside the caller's transaction."""
    values = {"position": encode_position(pos), "run_id": run_id, "updated_at": now()}
    updated = c.execute(
        checkpoints.update()
        .where(checkpoints.c.sync == sync, checkpoints.c.scope == scope)
        .values(**values)
    )
    if updated.rowcount == 0:
        c.execute(checkpoints.insert().values(sync=sync, scope=scope, **values))


def _decode(sync: str, scope: str, text: str) -> Position:
    """A stored checkpoint, or a ``StateError`` naming the sync and the way out when the
    stored text cannot be read (the store was edited or damaged)."""
    try:
        return decode_position(text)
    except (ValueError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
        scoped = "" if scope == INCREMENTAL else f" --scope {scope}"
        raise StateError(
            f"{sync} [{scope}]: the stored checkpoint cannot be read ({type(exc).__name__}: "
            f"{str(exc)[:120]}); the state store was edited or damaged. Restore a backup of "
            f"the store, or reset the sync's state with `connector state reset {sync}{scoped}` "
            "(the next run reads, and sends, every row again)"
        ) from None


class CheckpointStore(Tables):
    """Reading and moving checkpoints."""

    def checkpoint(self, sync: str, scope: str = INCREMENTAL) -> Position | None:
        """The sync's checkpoint position in ``scope``, or None before its first delivery."""
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(checkpoints.c.position).where(
                    checkpoints.c.sync == sync, checkpoints.c.scope == scope
                )
            ).first()
        return _decode(sync, scope, row[0]) if row else None

    def checkpoints_for(self, sync: str) -> dict[str, Position]:
        """Every scope's checkpoint position of the sync, by scope name."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(checkpoints.c.scope, checkpoints.c.position).where(
                    checkpoints.c.sync == sync
                )
            ).all()
        return {scope: _decode(sync, scope, pos) for scope, pos in rows}

    def set_checkpoint(self, sync: str, scope: str, pos: Position, run_id: str) -> None:
        """Move the checkpoint of ``(sync, scope)`` to ``pos``, recorded as ``run_id``'s, in a
        transaction of its own (a run whose rows settle in a ledger moves it with them:
        ``settle``)."""
        with self._tx() as c:
            write_checkpoint(c, sync, scope, pos, run_id)
