"""The state store: one object for every read and write of connector state (SQLAlchemy Core).

Default: a SQLite file under ``.connector/``; set ``CONNECTOR_STATE_URL`` to share one store
(PostgreSQL) between many Dagster runs and machines. Nothing secret is ever written here.

``StateStore`` is the parts of the store put together, one module per concern:
``checkpoints`` (per sync and scope; scopes: ``incremental``, ``partition:<key>``), ``ledger``
(the batch ledger's rows and the settle transaction that moves the checkpoint with them),
``rejects``, ``runs`` (run history, killed runs marked interrupted) and ``settings`` (what
runs learned about destination accounts). This module opens the store and turns every database
error into a ``StateError`` with a message naming the store (URL masked) and what to do
(``_state_error``). The tables and their migrations are in ``schema`` (versioned by
``migrate``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..core.errors import StateError, mask_url, scrub
from . import migrate
from .base import first_line, now
from .checkpoints import INCREMENTAL, CheckpointStore
from .ledger import LedgerEntry, LedgerStore
from .migrate import BrokenStoreError
from .periods import PeriodStore
from .positions import Position, decode_position, encode_position
from .rejects import CLOSED_DELIVERED, CLOSED_GONE, Reject, RejectStore
from .runs import RunStore
from .schema import (
    MIGRATIONS,
    batches,
    checkpoints,
    metadata,
    periods,
    rejects,
    window_keys,
    window_units,
)
from .settings import SettingsStore
from .window import WindowStore

__all__ = [
    "CLOSED_DELIVERED",
    "CLOSED_GONE",
    "DEFAULT_STATE_PATH",
    "INCREMENTAL",
    "STATE_URL_ENV",
    "LedgerEntry",
    "Position",
    "Reject",
    "StateStore",
    "decode_position",
    "default_state_url",
    "encode_position",
    "now",
    "reset_broken_store",
]

STATE_URL_ENV = "CONNECTOR_STATE_URL"
DEFAULT_STATE_PATH = Path(".connector") / "state.db"


# --------------------------------------------------------------------------- the store


def default_state_url() -> str:
    """``$CONNECTOR_STATE_URL`` if set, else the SQLite file ``.connector/state.db``."""
    url = os.environ.get(STATE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{DEFAULT_STATE_PATH}"


_STORES: dict[str, StateStore] = {}


class StateStore(
    CheckpointStore, LedgerStore, RejectStore, RunStore, SettingsStore, WindowStore, PeriodStore
):
    """All reads and writes of connector state (the methods of its parts). Safe to share
    between threads of one run."""

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
                f"state store {shown} is unavailable: {scrub(first_line(exc), self.url)}"
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

    # -- reset ---------------------------------------------------------------------------
    def reset(self, sync: str, scope: str | None = None) -> None:
        """Forget checkpoints, ledger, rejects, the lookback window's rows and per-period
        counts (all scopes unless one is named)."""
        with self._tx() as c:
            for table in (checkpoints, batches, rejects, window_keys, window_units, periods):
                stmt = table.delete().where(table.c.sync == sync)
                if scope is not None:
                    stmt = stmt.where(table.c.scope == scope)
                c.execute(stmt)


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
                f"state store {shown} is locked by another process or run: the SQLite file "
                f"stayed locked by another process for {SQLITE_BUSY_TIMEOUT_MS / 1000:g} s "
                f"({text}), while the "
                "connector's own transactions take milliseconds. Look for a process holding a "
                "write transaction open on it (a sqlite3 shell, a stuck run: `fuser` on the "
                "file names it), or share one PostgreSQL store between parallel runs "
                f"({STATE_URL_ENV})"
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


# How long a write waits for another process's write lock: the store's transactions last
# milliseconds, so a lock held for seconds is a stuck holder; say so soon instead of hanging.
SQLITE_BUSY_TIMEOUT_MS = 5_000


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
