"""One account's pacing shared by every process that uses the same state store.

The process pacer (``ratelimit.Pacer``) keeps its windows in memory, so two processes on one
account each spend the whole limit. ``SharedPacer`` keeps the account's schedule in one row of
the state store instead (``connector_pacer``: the next free send slot and a pause-until time)
and hands out slots with one atomic ``UPDATE … RETURNING``:

    next_at = max(next_at, now, paused_until) + interval   →   my slot = next_at - interval

PostgreSQL serializes the statement with its row lock; SQLite with its write lock (processes
on one machine). ``now`` is the database's clock, so processes on machines whose clocks differ
still agree on the schedule. ``interval`` is the tightest window's period (with the process
pacer's margin) divided by its capacity: requests are spaced evenly at the account's steady
rate, which keeps every window of the vendor's (fixed or sliding) under its limit without a
list of send times per account. The price is no burst: a run of a few requests on Klaviyo
(10/s burst, 150/min steady) is spaced 0.41 s apart even when the burst window would allow
ten at once.

A 429's wait (``pause``) is stored in the row, so one process's 429 pauses every process of
the account; so does a response that says the window is spent when our own schedule would
send sooner (``observe``, same rule as the process pacer).

When it is used: ``destination.options.pacing`` — ``auto`` (default: shared when the state
store is PostgreSQL, the store several machines or Dagster run processes share), ``shared``
(also on SQLite, for processes on one machine) or ``process``. ``destination_pacer`` makes
that choice for a run of either kind of destination: the event runs' batches and the contact
runs' jobs, polls, lookups and list removals of one account take turns at one pace, where the
vendor documents one limit for them (``Destination.rate_account``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..config.sync_file import RateLimit
from ..core.errors import StateError, mask_url, scrub
from ..core.options import DestinationSettings
from ..destinations.base import Destination
from ..store.schema import pacer_slots
from .http_loop import Runtime
from .ratelimit import Pacer, account_key, pacer_for

_EXTRA_S = 0.03  # per window, on top of the process pacer's margin (see SharedPacer)
_SLACK = 1e-6  # float noise when comparing a slot with the pause time


def _epoch_now(dialect: str) -> sa.ColumnElement[float]:
    """The database's clock in seconds since the epoch."""
    if dialect == "postgresql":
        # clock_timestamp(), not now(): now() is the transaction's start, before the wait for
        # the row lock, and a slot measured from it would leave early by that wait.
        return sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    # SQLite: 'now' is millisecond-precise and the same for the whole statement.
    return sa.cast((sa.func.julianday("now") - 2440587.5) * 86400.0, sa.Float)


class SharedPacer(Pacer):
    """A ``Pacer`` whose schedule lives in the state store (see the module docstring).

    ``clock`` replaces the database clock (unit tests); ``sleep`` is the run's."""

    def __init__(
        self,
        engine: sa.Engine,
        account: str,
        rate: RateLimit,
        sleep: Callable[[float], None],
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(rate, clock or (lambda: 0.0), sleep)
        if engine.dialect.name not in ("postgresql", "sqlite"):
            raise StateError(
                f"pacing: shared needs a PostgreSQL or SQLite state store, not "
                f"{engine.dialect.name}; set destination.options.pacing: process"
            )
        self.engine = engine
        self.account = account
        self.db_clock = clock is None
        # The steady spacing that keeps every window under its limit. Windows carry the
        # process pacer's margin (2% + 20 ms); a shared slot gets 30 ms more, as its request
        # leaves another process after a database round trip and a sleep, and lands later or
        # earlier than its slot by more than one process's own requests do.
        self.interval = max(((w.period + _EXTRA_S) / w.capacity for w in self.windows), default=0.0)
        self._ready = False  # the table and the account's row exist (made on first use)

    # -- SQL -----------------------------------------------------------------------------
    def _now(self) -> sa.ColumnElement[float]:
        if self.db_clock:
            return _epoch_now(self.engine.dialect.name)
        return sa.literal(self.clock(), sa.Float)

    def _greatest(self, *args: Any) -> sa.ColumnElement[float]:
        fn = sa.func.greatest if self.engine.dialect.name == "postgresql" else sa.func.max
        return sa.cast(fn(*args), sa.Float)

    def _ensure_row(self) -> None:
        """The account's row (the table comes with the store: ``state.MIGRATIONS``)."""
        # Imported here: the PostgreSQL dialect (and asyncio, through asyncpg's) costs a run
        # that shares no pacer ~0.1 s of start-up.
        from sqlalchemy.dialects import postgresql, sqlite

        ins: Any = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert(
            pacer_slots
        )
        with self.engine.begin() as c:
            c.execute(
                ins.values(
                    account=self.account, next_at=0.0, paused_until=0.0
                ).on_conflict_do_nothing(index_elements=["account"])
            )

    def _reserve(self) -> tuple[float, float]:
        """Take the account's next slot: (slot, now), both on the database clock."""
        t = pacer_slots.c
        now = self._now()
        start = self._greatest(t.next_at, now, t.paused_until)
        stmt = (
            pacer_slots.update()
            .where(t.account == self.account)
            .values(next_at=start + self.interval)
            .returning(t.next_at, now)
        )
        with self.engine.begin() as c:
            row = c.execute(stmt).one()
        return float(row[0]) - self.interval, float(row[1])

    def _read(self) -> tuple[float, float, float]:
        """(next_at, paused_until, now)."""
        t = pacer_slots.c
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(t.next_at, t.paused_until, self._now()).where(t.account == self.account)
            ).one()
        return float(row[0]), float(row[1]), float(row[2])

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            if not self._ready:
                self._ensure_row()
                self._ready = True
            return fn()
        except sa.exc.SQLAlchemyError as exc:
            url = self.engine.url.render_as_string(hide_password=False)
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
            raise StateError(
                f"shared pacing: state store {mask_url(url)} is unavailable: {scrub(why, url)}; "
                "no request is sent unpaced (set destination.options.pacing: process to pace "
                "per process)"
            ) from None

    # -- the Pacer interface ---------------------------------------------------------------
    def acquire(self) -> float:
        """Block until this process's slot; re-take one if a pause came in meanwhile."""
        waited = 0.0
        while True:
            slot, now = self._guard(self._reserve)
            wait = slot - now
            if wait <= 0:
                break
            self.sleep(wait)
            waited += wait
            _, paused_until, _ = self._guard(self._read)
            if paused_until <= slot + _SLACK:
                break
        with self.lock:
            self.waited_s += waited
        return waited

    def pause(self, seconds: float) -> None:
        """Hold every request of the account, in every process, for ``seconds`` from now."""
        t = pacer_slots.c
        stmt = (
            pacer_slots.update()
            .where(t.account == self.account)
            .values(paused_until=self._greatest(t.paused_until, self._now() + seconds))
        )

        def run() -> None:
            with self.engine.begin() as c:
                c.execute(stmt)

        self._guard(run)

    def _own_wait(self) -> float:
        next_at, paused_until, now = self._guard(self._read)
        return max(0.0, max(next_at, paused_until) - now)


_SHARED: dict[tuple[str, str, str], SharedPacer] = {}
_SHARED_LOCK = threading.Lock()


def uses_shared(pacing: str, state_dialect: str) -> bool:
    """``auto`` shares on PostgreSQL only: a SQLite store is one machine's, usually one run's."""
    if pacing == "auto":
        return state_dialect == "postgresql"
    return pacing == "shared"


def pacer_for_run(
    pacing: str,
    engine: sa.Engine,
    account: str,
    rate: RateLimit,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Pacer:
    """The pacer of one run: shared through the state store, or the process's own."""
    if not uses_shared(pacing, engine.dialect.name):
        return pacer_for(account, rate, clock, sleep)
    key = (engine.url.render_as_string(hide_password=False), account, rate.model_dump_json())
    with _SHARED_LOCK:
        pacer = _SHARED.get(key)
        if pacer is None or pacer.sleep is not sleep or pacer.engine is not engine:
            pacer = _SHARED[key] = SharedPacer(engine, account, rate, sleep)
        return pacer


def account_of(dest: Destination[DestinationSettings]) -> str:
    """The account whose rate budget ``dest`` spends: its own type's at its base URL and key
    (hashed), or the type its vendor documents one limit with (``rate_account``: Omnisend's
    contacts spend the 400/min of ``omnisend_events``)."""
    return account_key(dest.rate_account or dest.type, dest.base_url, dest.api_key)


def destination_pacer(
    dest: Destination[DestinationSettings], runtime: Runtime, engine: sa.Engine | None
) -> Pacer:
    """The pacer of one run of ``dest`` (either kind) at ``dest.rate()``: shared through the
    state store ``engine`` as ``options.pacing`` says, else the process's own (also without
    an ``engine``: ``validate``)."""
    account, rate = account_of(dest), dest.rate()
    if engine is None:
        return pacer_for(account, rate, runtime.clock, runtime.sleep)
    return pacer_for_run(dest.options.pacing, engine, account, rate, runtime.clock, runtime.sleep)
