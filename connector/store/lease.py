"""One run per sync and scope at a time: a lease in the state store.

A run takes the lease of its ``(sync, scope)`` before it reads a row and gives it back when it
ends. While it runs, a heartbeat thread moves the lease's expiry ``ttl`` ahead every ``ttl/3``.
A second run finds the lease held and raises ``LeaseHeld`` ("already running since …, pid …
on host …"): it reads nothing and sends nothing.

A holder killed without a trace (``kill -9``, a lost machine) leaves its row behind:

- the row expires ``ttl`` after its last heartbeat; the next run after that takes it over;
- on the same machine (same kernel boot and PID namespace) the next run sees at once that the
  holder's process is gone (its PID no longer runs, or runs a process started later) and takes
  over without waiting.

Acquiring is one ``INSERT`` (the primary key decides between racing runs) or, for a dead
holder, one ``UPDATE … WHERE holder = <the dead holder's token>`` (a compare-and-swap: of two
runs taking over the same dead lease, one wins). Both work the same on SQLite and PostgreSQL.
A run that cannot renew its lease in time stops before its next batch (``check``).

The lease is also the run's write fence (``core.fence``): ``check`` runs before every request
and before every settlement, and raises ``LeaseLost`` once the run no longer holds an
unexpired lease with its token. It is cheap enough to run per request:

- every run keeps a local deadline on ``CLOCK_BOOTTIME`` (``ttl`` after the moment it last
  asked the store to renew; that clock goes on while the process is stopped or the machine
  suspended), so a process paused past its TTL sees its deadline passed on resume before
  it sends anything, without a store round trip;
- with a PostgreSQL store (shared by machines) ``check`` also reads the lease row: held by
  this run's token and unexpired by the store's clock (``clock_timestamp()``).

The TTL is ``CONNECTOR_LEASE_TTL_S`` (default 60 s). The lease's clock is the store's: the
database's ``clock_timestamp()`` for PostgreSQL, else ``StateStore.clock``; tests that inject
``StateStore.clock`` move time instead of waiting.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..core.errors import ConfigError, LeaseHeld, StateError
from ..core.fence import LeaseLost
from ..core.logcontext import get_logger
from .schema import leases
from .state import StateStore, now

log = get_logger("connector.lease")

LEASE_TTL_ENV = "CONNECTOR_LEASE_TTL_S"
DEFAULT_TTL_S = 60.0


def lease_ttl() -> float:
    """The lease TTL in seconds (``CONNECTOR_LEASE_TTL_S``, default 60)."""
    raw = os.environ.get(LEASE_TTL_ENV)
    if not raw:
        return DEFAULT_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        ttl = 0.0
    if not 1.0 <= ttl <= 86_400.0:
        raise ConfigError(
            f"{LEASE_TTL_ENV}={raw!r}: the lease TTL must be a number of seconds from 1 to 86400"
        )
    return ttl


class Lease:
    """The lease of one ``(sync, scope)``; a context manager that holds it and beats."""

    def __init__(
        self, store: StateStore, sync: str, scope: str, ttl_s: float | None = None
    ) -> None:
        self.store = store
        self.sync = sync
        self.scope = scope
        self.ttl = timedelta(seconds=ttl_s if ttl_s is not None else lease_ttl())
        self.token = uuid.uuid4().hex
        self.expires: datetime | None = None
        #: ``boottime()`` past which this run no longer counts on its lease.
        self.deadline: float | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """Seconds between heartbeats: a third of the TTL."""
        return self.ttl.total_seconds() / 3

    # -- taking and giving back ------------------------------------------------------
    def acquire(self) -> None:
        """Take the lease, or raise ``LeaseHeld`` naming the run that holds it."""
        for _ in range(5):  # each round either wins or sees a newer holder
            asked = boottime()
            t = store_now(self.store)
            values = self._values(t)
            try:
                with self.store.engine.begin() as c:
                    c.execute(leases.insert().values(sync=self.sync, scope=self.scope, **values))
                self._held_until(values["expires_at"], asked)
                return
            except sa.exc.IntegrityError:
                pass  # held, or left by a dead run
            row = self._holder()
            if row is None:
                continue  # given back meanwhile: try again
            why = _takeover_reason(row, t)
            if why is None:
                raise LeaseHeld(self._held_message(row))
            with self.store.engine.begin() as c:
                took = c.execute(
                    leases.update()
                    .where(*self._key(), leases.c.holder == row["holder"])
                    .values(**values)
                ).rowcount
            if took == 1:
                self._held_until(values["expires_at"], asked)
                log.warning(
                    "%s [%s]: took over the lease of pid %s on %s (%s)",
                    self.sync,
                    self.scope,
                    row["pid"],
                    row["host"],
                    why,
                )
                return
        raise LeaseHeld(f"{self.sync} [{self.scope}]: other runs keep taking its lease; try again")

    def renew(self) -> bool:
        """Move the expiry ``ttl`` ahead; False (and ``lost`` set) when the lease is no
        longer this run's."""
        asked = boottime()
        t = store_now(self.store)
        expires = t + self.ttl
        with self.store.engine.begin() as c:
            renewed = c.execute(
                leases.update()
                .where(*self._key(), leases.c.holder == self.token)
                .values(heartbeat_at=t, expires_at=expires)
            ).rowcount
        if renewed != 1:
            self.lost = "another run took it over after it expired"
            return False
        self._held_until(expires, asked)
        return True

    def _held_until(self, expires: datetime, asked: float) -> None:
        self.expires = expires
        self.deadline = asked + self.ttl.total_seconds()

    def check(self) -> None:
        """The write fence (``core.fence``): raise ``LeaseLost`` when this run may no longer
        send or settle: it lost its lease, or it could not renew it before it expired (the
        store unreachable, the process paused or stalled past the TTL)."""
        if self.lost is None and self.deadline is not None and boottime() >= self.deadline:
            self.lost = (
                f"it was not renewed within its TTL of {self.ttl.total_seconds():g} s (the "
                "process was paused or stalled, or the store unreachable); another run may "
                "have taken it over"
            )
        if self.lost is None and self.expires is not None:
            self._check_store()
        if self.lost is not None:
            raise LeaseLost(
                f"{self.sync} [{self.scope}]: this run's lease was lost ({self.lost}); it "
                "stops and sends nothing more; rows it sent but could not settle are counted "
                "as possibly duplicated. Delivered rows are recorded; the next run goes on "
                "from there"
            )

    def _check_store(self) -> None:
        """Against the store's clock: on PostgreSQL the lease row itself (this token,
        unexpired by ``clock_timestamp()``); elsewhere the expiry this run last wrote."""
        if not _db_clock(self.store):
            assert self.expires is not None
            if self.store.clock() >= self.expires:
                self.lost = "it could not be renewed before it expired"
            return
        with self.store.engine.connect() as c:
            row = c.execute(
                sa.select(leases.c.expires_at, sa.func.clock_timestamp()).where(
                    *self._key(), leases.c.holder == self.token
                )
            ).first()
        if row is None:
            self.lost = "another run took it over after it expired"
        elif _aware(row[0]) <= _aware(row[1]):
            self.lost = "it expired before it could be renewed"

    def release(self) -> None:
        """Give the lease back (only this run's: a lease taken over is not touched)."""
        with self.store.engine.begin() as c:
            c.execute(leases.delete().where(*self._key(), leases.c.holder == self.token))

    # -- the heartbeat ---------------------------------------------------------------
    def start_heartbeat(self, wait: Callable[[float], bool] | None = None) -> None:
        """Renew every ``interval`` seconds on a daemon thread until ``stop_heartbeat``.
        ``wait(seconds)`` returns True to stop (default: the stop event; tests inject one
        that moves a fake clock)."""
        waiter = wait or self._stop.wait
        self._thread = threading.Thread(
            target=self._beat, args=(waiter,), name=f"lease-{self.sync}", daemon=True
        )
        self._thread.start()

    def _beat(self, wait: Callable[[float], bool]) -> None:
        while not wait(self.interval) and not self._stop.is_set():
            try:
                if not self.renew():
                    log.error("%s [%s]: lease lost: %s", self.sync, self.scope, self.lost)
                    return
            except StateError as exc:  # try again next beat; ``check`` stops the run in time
                log.warning("%s [%s]: could not renew the lease: %s", self.sync, self.scope, exc)

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Lease:
        self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_heartbeat()
        try:
            self.release()
        except StateError as err:  # never mask the run's own error; the lease expires
            log.warning("%s [%s]: could not give the lease back: %s", self.sync, self.scope, err)

    # -- helpers ---------------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        return (leases.c.sync == self.sync, leases.c.scope == self.scope)

    def _values(self, t: datetime) -> dict[str, Any]:
        return {
            "holder": self.token,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "process": process_identity(os.getpid()),
            "acquired_at": t,
            "heartbeat_at": t,
            "expires_at": t + self.ttl,
        }

    def _holder(self) -> dict[str, Any] | None:
        with self.store.engine.connect() as c:
            row = c.execute(sa.select(leases).where(*self._key())).first()
        return dict(row._mapping) if row else None

    def _held_message(self, row: dict[str, Any]) -> str:
        since, expires = _aware(row["acquired_at"]), _aware(row["expires_at"])
        return (
            f"{self.sync} [{self.scope}] is already running since {since:%Y-%m-%d %H:%M:%S} "
            f"UTC, pid {row['pid']} on host {row['host']}: this run sends nothing. That run "
            f"renews its lease every {self.interval:.0f} s; if it is gone, the first run after "
            f"{expires:%Y-%m-%d %H:%M:%S} UTC takes over"
        )


def live_holders(store: StateStore, sync: str, scope: str | None = None) -> list[str]:
    """Who holds a live lease of ``sync`` (in ``scope``, or any scope): one line per run that
    may still be running ("incremental: pid 123 on host h since … UTC"), [] when none.
    A lease whose holder is gone or expired is not live."""
    t = store_now(store)
    stmt = sa.select(leases).where(leases.c.sync == sync)
    if scope is not None:
        stmt = stmt.where(leases.c.scope == scope)
    with store.engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(stmt)]
    return [
        f"{r['scope']}: pid {r['pid']} on host {r['host']} since "
        f"{_aware(r['acquired_at']):%Y-%m-%d %H:%M:%S} UTC"
        for r in rows
        if _takeover_reason(r, t) is None
    ]


def boottime() -> float:
    """Seconds on ``CLOCK_BOOTTIME``: monotonic, and still counting while the process is
    stopped or the machine suspended (``time.monotonic`` off Linux)."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()


def _db_clock(store: StateStore) -> bool:
    """True when the lease's clock is the database's: PostgreSQL, unless a test injected
    ``StateStore.clock``."""
    return store.clock is now and store.engine.dialect.name == "postgresql"


def store_now(store: StateStore) -> datetime:
    """The lease's clock: ``clock_timestamp()`` of a PostgreSQL store (machines sharing it
    need not agree on the time), else ``StateStore.clock``."""
    if not _db_clock(store):
        return store.clock()
    with store.engine.connect() as c:
        return _aware(c.execute(sa.select(sa.func.clock_timestamp())).scalar_one())


def _aware(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time here is UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _takeover_reason(row: dict[str, Any], t: datetime) -> str | None:
    """Why a held lease may be taken over now, or None while its holder may be alive."""
    expires = _aware(row["expires_at"])
    if expires <= t:
        return f"it expired at {expires:%Y-%m-%d %H:%M:%S} UTC"
    if process_gone(row["process"], int(row["pid"])):
        return "its process is gone"
    return None


# --------------------------------------------------------------------------- processes


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _namespace() -> str | None:
    """This kernel boot and PID namespace: PIDs compare only within it (None off Linux)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{boot}/{pidns}" if boot else None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def process_identity(pid: int) -> str:
    """``<boot id>/<pid namespace>/<start time>`` of a process, or "" where unknown."""
    ns, start = _namespace(), _start_time(pid)
    return f"{ns}/{start}" if ns and start else ""


def process_gone(identity: str, pid: int) -> bool:
    """True only when ``identity`` names a process of this machine's PID namespace that no
    longer runs (its PID is free, or reused by a later process)."""
    ns = _namespace()
    if not identity or ns is None or not identity.startswith(ns + "/"):
        return False  # another machine or namespace: only the expiry can tell
    return process_identity(pid) != identity
