"""The state store: checkpoints, the batch ledger, rejects, run history (SQLAlchemy Core).

Default: a SQLite file under ``.connector/``; set ``CONNECTOR_STATE_URL`` to share one store
(PostgreSQL) between many Dagster runs and machines. Every write that moves a checkpoint is one
transaction together with the ledger rows it settles. Nothing secret is ever written here.

Scopes: ``incremental`` is the scheduled/CLI checkpoint; ``partition:<key>`` is the progress of
one backfill partition, kept apart so backfills never move the incremental checkpoint.

The tables and their migrations are in ``schema`` (versioned by ``migrate``). Every database
error of the store reaches callers as ``StateError`` with a message naming the store (URL
masked) and what to do (``_state_error``).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from ..core.errors import StateError, mask_url, scrub
from ..destinations.base import Learned
from . import migrate
from .migrate import BrokenStoreError
from .schema import (
    MIGRATIONS,
    account_settings,
    batches,
    checkpoints,
    metadata,
    property_types,
    rejects,
    runs,
)

STATE_URL_ENV = "CONNECTOR_STATE_URL"
DEFAULT_STATE_PATH = Path(".connector") / "state.db"
INCREMENTAL = "incremental"

Position = tuple[Any, ...]

# Why a reject was closed (``resolution``).
CLOSED_DELIVERED = "delivered"
CLOSED_GONE = "source row gone"


# --------------------------------------------------------------------------- positions


# Positions keep every digit of the cursor: a nanosecond timestamp (a ``pandas.Timestamp``, as
# Arrow hands out ``timestamp[ns]``) keeps its nanoseconds, a decimal its text, an integer past
# 64 bits its digits. A checkpoint that lost a digit would re-read its last tie group forever.
_FRACTION = re.compile(r"\.(\d{7,})")


def _tag(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"dt": v.isoformat()}  # pandas.Timestamp writes its nanoseconds here
    if isinstance(v, date):
        return {"d": v.isoformat()}
    if isinstance(v, Decimal):
        return {"dec": str(v)}
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        return {"int": str(v)}  # JSON numbers past 64 bits are not portable
    return v


def _untag(v: Any) -> Any:
    if isinstance(v, dict):
        if "dt" in v:
            return _parse_datetime(v["dt"])
        if "d" in v:
            return date.fromisoformat(v["d"])
        if "dec" in v:
            return Decimal(v["dec"])
        if "int" in v:
            return int(v["int"])
    return v


def _parse_datetime(text: str) -> datetime:
    """ISO text back to a datetime; more than 6 fractional digits need a ``pandas.Timestamp``
    (``datetime.fromisoformat`` would drop them)."""
    if _FRACTION.search(text):
        import pandas as pd

        ts: datetime = pd.Timestamp(text)
        return ts
    return datetime.fromisoformat(text)


def encode_position(pos: Sequence[Any]) -> str:
    """A position as JSON text, every value tagged with its type and full precision."""
    return orjson.dumps([_tag(v) for v in pos]).decode()


def decode_position(text: str) -> Position:
    """The position ``encode_position`` wrote, with the same types and digits."""
    return tuple(_untag(v) for v in orjson.loads(text))


def now() -> datetime:
    """The current time, timezone-aware UTC (what the store writes in its time columns)."""
    return datetime.now(UTC)


@dataclass
class LedgerEntry:
    """A ledger row: one batch of a run between its first and last position, ``pending`` (written
    before its request went out) or ``delivered`` / ``rejected`` (settled beyond the checkpoint)."""

    id: int
    run_id: str
    seq: int
    first: Position
    last: Position
    count: int
    status: str

    def contains(self, pos: Position) -> bool:
        """Whether ``pos`` lies in this batch's range (bounds included)."""
        return bool(self.first <= pos <= self.last)


@dataclass
class Reject:
    """A row refused by the mapping, the destination's rules or the vendor: its primary-key text,
    the reason, and the event payload that was refused (never headers)."""

    key: str
    reason: str
    payload: str | None = None


# --------------------------------------------------------------------------- the store


def default_state_url() -> str:
    """``$CONNECTOR_STATE_URL`` if set, else the SQLite file ``.connector/state.db``."""
    url = os.environ.get(STATE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{DEFAULT_STATE_PATH}"


_STORES: dict[str, StateStore] = {}


class StateStore:
    """All reads and writes of connector state. Safe to share between threads of one run."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_state_url()
        #: Wall clock of leases (tests inject a later time to see a lease expire).
        self.clock: Callable[[], datetime] = now
        shown = _redact(self.url)
        try:
            u = sa.engine.make_url(self.url)
            path = migrate.sqlite_file(u)
            if path is not None:
                _make_state_dir(path.parent, self.url)
                if not path.exists():
                    migrate.create_sqlite(path, MIGRATIONS, _sqlite_pragmas)
                elif path.is_file() and path.stat().st_size == 0:
                    raise BrokenStoreError(
                        f"state store {shown} is an empty file (truncated?); it is not read as "
                        "a new store, since every sync would then send all its rows again: "
                        f"{migrate.recovery_hint(shown, is_sqlite=True)}"
                    )
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "handle_error", self._on_error)
            migrate.prepare(self.engine, MIGRATIONS, shown, new_ok=path is None)
        except sa.exc.DBAPIError as exc:  # making a new SQLite file
            backend = self.url.partition(":")[0].partition("+")[0]
            raise _state_error(exc.orig, self.url, backend) from None
        except sa.exc.SQLAlchemyError as exc:  # a bad URL, a missing driver
            raise StateError(
                f"state store {shown} is unavailable: {scrub(_first_line(exc), self.url)}"
            ) from None
        except OSError as exc:  # making a new SQLite file
            raise StateError(
                f"state store {shown}: cannot create it: {exc.strerror or exc}; point "
                f"--state-url (or {STATE_URL_ENV}) at a writable place"
            ) from None

    def _on_error(self, ctx: sa.engine.ExceptionContext) -> None:
        """Every database error of this store becomes a ``StateError`` (SQLAlchemy's
        ``handle_error`` hook). A unique-key conflict stays as it is: callers that race for
        a row (the lease) handle it."""
        if isinstance(ctx.sqlalchemy_exception, sa.exc.IntegrityError):
            return
        raise _state_error(ctx.original_exception, self.url, self.engine.dialect.name) from None

    @classmethod
    def open(cls, url: str | None = None) -> StateStore:
        """A process-wide store per URL (engines and pools are reused)."""
        key = url or default_state_url()
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = cls(key)
        return store

    def _tx(self) -> Any:
        return self.engine.begin()

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint(self, sync: str, scope: str = INCREMENTAL) -> Position | None:
        """The sync's checkpoint position in ``scope``, or None before its first delivery."""
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(checkpoints.c.position).where(
                    checkpoints.c.sync == sync, checkpoints.c.scope == scope
                )
            ).first()
        return decode_position(row[0]) if row else None

    def checkpoints_for(self, sync: str) -> dict[str, Position]:
        """Every scope's checkpoint position of the sync, by scope name."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(checkpoints.c.scope, checkpoints.c.position).where(
                    checkpoints.c.sync == sync
                )
            ).all()
        return {scope: decode_position(pos) for scope, pos in rows}

    def _set_checkpoint(
        self, c: sa.Connection, sync: str, scope: str, pos: Position, run_id: str
    ) -> None:
        values = {"position": encode_position(pos), "run_id": run_id, "updated_at": now()}
        updated = c.execute(
            checkpoints.update()
            .where(checkpoints.c.sync == sync, checkpoints.c.scope == scope)
            .values(**values)
        )
        if updated.rowcount == 0:
            c.execute(checkpoints.insert().values(sync=sync, scope=scope, **values))

    # -- ledger --------------------------------------------------------------------------
    def ledger(self, sync: str, scope: str) -> list[LedgerEntry]:
        """The sync's ledger rows in ``scope``, in the order they were written."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(batches)
                .where(batches.c.sync == sync, batches.c.scope == scope)
                .order_by(batches.c.id)
            ).all()
        out = []
        for row in rows:
            r = row._mapping  # not attribute access: Row.count is tuple.count
            out.append(
                LedgerEntry(
                    r["id"],
                    r["run_id"],
                    r["seq"],
                    decode_position(r["first_pos"]),
                    decode_position(r["last_pos"]),
                    r["count"],
                    r["status"],
                )
            )
        return out

    def add_pending(
        self,
        sync: str,
        scope: str,
        run_id: str,
        seq: int,
        first: Position,
        last: Position,
        count: int,
    ) -> int:
        """Write a ``pending`` ledger row for a batch about to be sent; returns its id (the settle
        marks it)."""
        with self._tx() as c:
            res = c.execute(
                batches.insert().values(
                    sync=sync,
                    scope=scope,
                    run_id=run_id,
                    seq=seq,
                    first_pos=encode_position(first),
                    last_pos=encode_position(last),
                    count=count,
                    status="pending",
                    updated_at=now(),
                )
            )
            return int(res.inserted_primary_key[0])

    def settle(
        self,
        sync: str,
        scope: str,
        run_id: str,
        delivered_ids: Iterable[int],
        drop_ids: Iterable[int],
        checkpoint: Position | None,
        new_rejects: Sequence[Reject],
        closed: Sequence[str] = (),
        learned: tuple[str, Learned] | None = None,
    ) -> None:
        """One transaction: mark batches delivered, drop ledger rows the checkpoint passed,
        record rejects, close the open rejects of ``closed`` (keys delivered now), keep what
        the responses taught about the destination account (``(account, learned)``) and
        move the checkpoint."""
        delivered_ids, drop_ids = list(delivered_ids), list(drop_ids)
        try:
            with self._tx() as c:
                if delivered_ids:
                    c.execute(
                        batches.update()
                        .where(batches.c.id.in_(delivered_ids))
                        .values(status="delivered", updated_at=now())
                    )
                if drop_ids:
                    c.execute(batches.delete().where(batches.c.id.in_(drop_ids)))
                self._add_rejects(c, sync, scope, run_id, new_rejects)
                if closed:
                    self._close_rejects(c, sync, scope, closed, run_id, CLOSED_DELIVERED)
                if learned is not None:
                    self._learn(c, *learned)
                if checkpoint is not None:
                    self._set_checkpoint(c, sync, scope, checkpoint, run_id)
        except sa.exc.SQLAlchemyError as exc:
            raise StateError(f"could not record progress of {sync}: {_first_line(exc)}") from None

    def _add_rejects(
        self, c: sa.Connection, sync: str, scope: str, run_id: str, new_rejects: Sequence[Reject]
    ) -> None:
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

    def add_rejects(self, sync: str, scope: str, run_id: str, new: Sequence[Reject]) -> None:
        """Record rejects outside a settle (rows refused before any request); open again if already
        recorded."""
        with self._tx() as c:
            self._add_rejects(c, sync, scope, run_id, new)

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
            .where(*self._reject_filter(sync, scope, include_closed=include_closed))
            .order_by(rejects.c.created_at.desc(), rejects.c.scope, rejects.c.key)
        )
        if limit:
            stmt = stmt.limit(limit)
        with self.engine.connect() as c:
            result = c.execution_options(yield_per=1000).execute(stmt)
            for r in result:
                yield dict(r._mapping)

    @staticmethod
    def _reject_filter(sync: str, scope: str | None, *, include_closed: bool) -> list[Any]:
        where: list[Any] = [rejects.c.sync == sync]
        if scope is not None:
            where.append(rejects.c.scope == scope)
        if not include_closed:
            where.append(rejects.c.closed_at.is_(None))
        return where

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
        where = self._reject_filter(sync, scope, include_closed=not open_only)
        stmt = sa.select(sa.func.count()).select_from(rejects).where(*where)
        if run_id:
            stmt = stmt.where(rejects.c.run_id == run_id)
        with self.engine.connect() as c:
            return int(c.execute(stmt).scalar() or 0)

    def open_reject_keys(self, sync: str, scope: str) -> list[str]:
        """Keys of the open rejects of one scope, in key order."""
        stmt = (
            sa.select(rejects.c.key)
            .where(*self._reject_filter(sync, scope, include_closed=False))
            .order_by(rejects.c.key)
        )
        with self.engine.connect() as c:
            return [k for (k,) in c.execute(stmt)]

    def close_rejects(
        self, sync: str, scope: str, keys: Iterable[str], run_id: str, resolution: str
    ) -> int:
        """Close the open rejects with these keys (``CLOSED_DELIVERED`` or ``CLOSED_GONE``);
        returns how many were open. Closed rows stay for ``rejects --all``."""
        try:
            with self._tx() as c:
                return self._close_rejects(c, sync, scope, keys, run_id, resolution)
        except sa.exc.SQLAlchemyError as exc:
            raise StateError(f"could not close rejects of {sync}: {_first_line(exc)}") from None

    def _close_rejects(
        self,
        c: sa.Connection,
        sync: str,
        scope: str,
        keys: Iterable[str],
        run_id: str,
        resolution: str,
    ) -> int:
        keys = list(dict.fromkeys(k[:1000] for k in keys))
        closed, ts = 0, now()
        for i in range(0, len(keys), 500):
            res = c.execute(
                rejects.update()
                .where(
                    *self._reject_filter(sync, scope, include_closed=False),
                    rejects.c.key.in_(keys[i : i + 500]),
                )
                .values(closed_at=ts, closed_by_run=run_id, resolution=resolution)
            )
            closed += res.rowcount
        return closed

    # -- runs ----------------------------------------------------------------------------
    def start_run(self, sync: str, scope: str) -> str:
        """Record a new run; earlier runs of this sync and scope still marked running (their
        process was killed) are marked interrupted first, with how far they got."""
        run_id = uuid.uuid4().hex
        with self._tx() as c:
            self._mark_interrupted(c, sync, scope)
            c.execute(
                runs.insert().values(
                    run_id=run_id, sync=sync, scope=scope, started_at=now(), status="running"
                )
            )
        return run_id

    def record_progress(self, run_id: str, summary: dict[str, Any]) -> None:
        """The counts so far of a running run (what ``_mark_interrupted`` reports if it is
        killed)."""
        with self._tx() as c:
            c.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.status == "running")
                .values(summary=orjson.dumps(summary, default=str).decode())
            )

    def _mark_interrupted(self, c: sa.Connection, sync: str, scope: str) -> None:
        stale = c.execute(
            sa.select(runs.c.run_id, runs.c.summary).where(
                runs.c.sync == sync, runs.c.scope == scope, runs.c.status == "running"
            )
        ).all()
        noticed = now()
        for run_id, recorded in stale:
            last = orjson.loads(recorded) if recorded else {}
            pos = c.execute(
                sa.select(checkpoints.c.position).where(
                    checkpoints.c.sync == sync,
                    checkpoints.c.scope == scope,
                    checkpoints.c.run_id == run_id,
                )
            ).scalar()
            ledger = {
                status: int(n or 0)
                for status, n in c.execute(
                    sa.select(batches.c.status, sa.func.sum(batches.c.count))
                    .where(batches.c.run_id == run_id)
                    .group_by(batches.c.status)
                ).all()
            }
            rejected = c.execute(
                sa.select(sa.func.count()).select_from(rejects).where(rejects.c.run_id == run_id)
            ).scalar()
            hwm = decode_position(pos) if pos else None
            summary = {
                **last,  # counts at its last progress record (at most a second old)
                "status": "interrupted",
                "hwm_after": list(hwm) if hwm else None,
                "rejected": max(int(rejected or 0), int(last.get("rejected") or 0)),
                "in_flight": ledger.get("pending", 0),
                "interrupted_noticed_at": noticed.isoformat(),
            }
            reached = (
                "it had moved the checkpoint to " + ", ".join(str(v) for v in hwm)
                if hwm
                else "it had not moved the checkpoint"
            )
            counts = (
                f"at its last progress record {last.get('rows_read', 0)} rows read, "
                f"{last.get('delivered', 0)} delivered, {last.get('rejected', 0)} rejected; "
                if last
                else ""
            )
            error = (
                f"interrupted: the process ended without recording the end of the run "
                f"(killed?); noticed at {noticed:%Y-%m-%d %H:%M:%S} UTC by the next run; "
                f"{reached}; {counts}{summary['in_flight']} events were in flight (sent "
                f"again with the same dedup ids by the next run)"
            )
            c.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.status == "running")
                .values(
                    status="interrupted",
                    finished_at=noticed,
                    summary=orjson.dumps(summary).decode(),
                    error=error,
                )
            )

    def finish_run(
        self, run_id: str, status: str, summary: dict[str, Any], error: str | None = None
    ) -> None:
        """Mark the run finished: its final ``status``, its counts (``summary``) and the error
        message of a failed run."""
        with self._tx() as c:
            c.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(
                    finished_at=now(),
                    status=status,
                    summary=orjson.dumps(summary, default=str).decode(),
                    error=error,
                )
            )

    def runs(self, sync: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sync's latest ``limit`` runs, newest first, each with its summary decoded."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(runs)
                .where(runs.c.sync == sync)
                .order_by(runs.c.started_at.desc())
                .limit(limit)
            ).all()
        out = []
        for r in rows:
            d = dict(r._mapping)
            d["summary"] = orjson.loads(d["summary"]) if d["summary"] else None
            out.append(d)
        return out

    # -- reset ---------------------------------------------------------------------------
    def reset(self, sync: str, scope: str | None = None) -> None:
        """Forget checkpoints, ledger and rejects (all scopes unless one is named)."""
        with self._tx() as c:
            for table in (checkpoints, batches, rejects):
                stmt = table.delete().where(table.c.sync == sync)
                if scope is not None:
                    stmt = stmt.where(table.c.scope == scope)
                c.execute(stmt)

    def clear_ledger(self, sync: str, scope: str) -> None:
        """Delete the sync's ledger rows in ``scope`` (a full refresh starts without them)."""
        with self._tx() as c:
            c.execute(batches.delete().where(batches.c.sync == sync, batches.c.scope == scope))

    # -- learned property types (Omnisend type freezing) --------------------------------
    def property_types(self, account: str, event_name: str) -> dict[str, str]:
        """Property name → type frozen for ``event_name`` on ``account`` (Omnisend v4), empty if
        none."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(property_types.c.property, property_types.c.type).where(
                    property_types.c.account == account, property_types.c.event_name == event_name
                )
            ).all()
        return {p: t for p, t in rows}

    def learn_property_types(self, account: str, event_name: str, types: dict[str, str]) -> None:
        """Record the types of properties not yet known for ``event_name`` (the first type stored
        wins)."""
        with self._tx() as c:
            self._learn(c, account, Learned(property_types={event_name: types}))

    def _learn(self, c: sa.Connection, account: str, learned: Learned) -> None:
        """Record account settings and the property types not yet known (first one wins:
        Omnisend v4 freezes a type on first send)."""
        for name, value in learned.settings.items():
            self._set_account_setting(c, account, name, value)
        for event_name, types in learned.property_types.items():
            known = {
                p
                for (p,) in c.execute(
                    sa.select(property_types.c.property).where(
                        property_types.c.account == account,
                        property_types.c.event_name == event_name,
                    )
                )
            }
            new = [
                {"account": account, "event_name": event_name, "property": p, "type": t}
                for p, t in types.items()
                if p not in known
            ]
            if new:
                c.execute(property_types.insert(), new)

    # -- learned account settings -------------------------------------------------------
    def account_setting(self, account: str, name: str) -> str | None:
        """A setting a run confirmed for a destination account (no secret in ``account``)."""
        with self.engine.connect() as c:
            return c.execute(
                sa.select(account_settings.c.value).where(
                    account_settings.c.account == account, account_settings.c.name == name
                )
            ).scalar_one_or_none()

    def set_account_setting(self, account: str, name: str, value: str) -> None:
        """Store what a run confirmed about the account (e.g. the Brevo batch body shape)."""
        with self._tx() as c:
            self._set_account_setting(c, account, name, value)

    def _set_account_setting(self, c: sa.Connection, account: str, name: str, value: str) -> None:
        where = (account_settings.c.account == account, account_settings.c.name == name)
        updated = c.execute(
            account_settings.update().where(*where).values(value=value, updated_at=now())
        ).rowcount
        if not updated:
            c.execute(
                account_settings.insert().values(
                    account=account, name=name, value=value, updated_at=now()
                )
            )


def _state_error(exc: BaseException | None, url: str, dialect: str) -> StateError:
    """A database error of the store as a message that says what to do."""
    shown = _redact(url)
    text = scrub(str(exc or "unknown error").strip().splitlines()[0][:300], url)
    low = text.lower()
    if dialect == "sqlite":
        if "not a database" in low or "malformed" in low:
            return BrokenStoreError(
                f"state store {shown} cannot be read ({text}): "
                f"{migrate.recovery_hint(shown, is_sqlite=True)}"
            )
        if "locked" in low or "busy" in low:
            return StateError(
                f"state store {shown}: the SQLite file stayed locked by another process for "
                f"{SQLITE_BUSY_TIMEOUT_MS / 1000:g} s ({text}); look for a process holding "
                f"it open, or share one PostgreSQL store between parallel runs ({STATE_URL_ENV})"
            )
        if "unable to open" in low or "readonly" in low or "read-only" in low:
            return StateError(
                f"state store {shown} cannot be opened for writing ({text}); make the file and "
                f"its directory writable, or point --state-url (or {STATE_URL_ENV}) at a "
                "writable place"
            )
    if isinstance(exc, Exception) and _is_unreachable(low):
        return StateError(
            f"state store {shown} is unavailable ({text}); check that the server runs and "
            "accepts connections. Nothing past the last recorded checkpoint counts as sent: "
            "run again once it is back"
        )
    return StateError(f"state store {shown}: {text}")


def _is_unreachable(low: str) -> bool:
    return any(
        s in low
        for s in (
            "connection refused",
            "connection failed",
            "could not connect",
            "server closed the connection",
            "terminating connection",
            "timeout expired",
            "no route to host",
            "name or service not known",
            "connection is closed",
            "the database system is",
        )
    )


SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another process's write lock


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cur.close()


def _make_state_dir(directory: Path, url: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"state store {_redact(url)}: cannot create its directory {directory}: "
            f"{exc.strerror or exc}; point --state-url (or {STATE_URL_ENV}) at a writable place"
        ) from None


def _redact(url: str) -> str:
    """The URL without its password or credential query parameters (``?password=``...)."""
    return mask_url(url)


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]


def reset_broken_store(url: str | None = None) -> str:
    """Start an empty store where a broken one is (``connector state reset --broken-store``):
    a SQLite file is moved aside, a PostgreSQL store's connector tables are dropped. Returns
    what was done. Every sync then sends all its rows again."""
    url = url or default_state_url()
    _STORES.pop(url, None)
    shown = _redact(url)
    try:
        StateStore(url).engine.dispose()
    except BrokenStoreError:
        pass  # the case this is for
    else:
        raise StateError(
            f"state store {shown} opens fine: nothing was reset. To start a sync over, use "
            "`connector state reset <sync>`"
        )
    try:
        u = sa.engine.make_url(url)
        path = migrate.sqlite_file(u)
        if path is not None:
            aside = migrate.set_aside(path)
            StateStore(url)
            return f"{shown}: the old file is now {aside}; made an empty store"
        engine = sa.create_engine(url)
        try:
            with engine.begin() as c:
                migrate.version_table.drop(c, checkfirst=True)
                metadata.drop_all(c, checkfirst=True)
        finally:
            engine.dispose()
        StateStore(url)
        return f"{shown}: dropped the connector tables; made an empty store"
    except sa.exc.SQLAlchemyError as exc:
        raise _state_error(exc, url, "") from None
    except OSError as exc:
        raise StateError(f"state store {shown}: {exc.strerror or exc}") from None
