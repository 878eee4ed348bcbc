"""What a run is about to do, before it sends anything: rows, requests, time.

``plan_run`` counts the rows after the scope's checkpoint (one ``COUNT`` on the warehouse,
the same predicate the run reads with), turns them into requests by the destination's limits
(events per request, and the byte limit with an average event size measured by encoding a
sample of the first rows) and into a duration at the account's documented rate (or
``destination.options.rate_limit``). It reads and encodes; it sends and writes nothing.

    1,000,000 events → 1,000 klaviyo_bulk_events requests → ≥ 6 min 40 s at 150/min

The duration is a lower bound: requests go no faster than the rate; latency, retries and 429s
only add to it.

A contact sync's work is its diff, which no count foretells: ``plan_contacts`` counts the rows
the run reads and compares (the whole table, or after the checkpoint) and the contacts the
vendor has confirmed, whose unchanged rows the run does not send.

    5,000 rows to compare with 4,800 confirmed contacts → brevo_contacts jobs for the changed rows
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..config.sync_file import RateLimit, SyncConfig
from ..deliver.factory import make_event_destination
from ..map.mapper import Mapper
from ..read.lookback import Lookback, cursor_number, row_hash
from ..read.source import Position, Reader, Window
from ..store.state import INCREMENTAL, StateStore

SAMPLE_ROWS = 200  # rows encoded to measure the average event size


@dataclass(frozen=True)
class RunPlan:
    """The figures of one scope's next run."""

    sync: str
    scope: str
    destination: str
    full_refresh: bool
    checkpoint: list[Any] | None
    rows: int  # rows after the checkpoint and late rows (NULL cursor/key rows: never sent)
    max_events: int  # the destination's events per request
    event_bytes: int | None  # average encoded event, from a sample (None: nothing to sample)
    per_request: int  # events per request, by count and bytes
    requests: int
    rate: str | None  # the pace the duration is computed at, e.g. "150/min"
    duration_s: float | None  # None: the destination documents no rate limit
    # Rows inside the lookback window behind the checkpoint that no run handled yet (late
    # commits the run would catch; also in ``rows``), and the window (None: off).
    late_rows: int = 0
    lookback: str | None = None
    max_rows_per_run: int | None = None  # destination.max_rows_per_run

    @property
    def rows_this_run(self) -> int:
        """The rows this run sends: ``rows``, or ``max_rows_per_run`` when fewer."""
        cap = self.max_rows_per_run
        return self.rows if cap is None else min(self.rows, cap)

    def line(self) -> str:
        """The plan in one line, e.g. ``1,000,000 events → 1,000 klaviyo_bulk_events requests →
        ≥ 6 min 40 s at 150/min``."""
        if not self.rows:
            return f"0 events → nothing to send to {self.destination}"
        events = f"{self.rows:,} events"
        if self.rows_this_run < self.rows:
            events += f", {self.rows_this_run:,} this run (destination.max_rows_per_run)"
        head = f"{events} → {self.requests:,} {self.destination} requests"
        if self.duration_s is None:
            return f"{head} (no documented rate limit)"
        return f"{head} → ≥ {format_duration(self.duration_s)} at {self.rate}"

    def to_dict(self) -> dict[str, Any]:
        """The plan as a JSON-ready dict, with its one-line summary as ``summary``."""
        return {**asdict(self), "rows_this_run": self.rows_this_run, "summary": self.line()}


@dataclass(frozen=True)
class ContactPlan:
    """The figures of a contact sync's next run: what it reads and compares, not what it
    sends (the diff decides)."""

    sync: str
    scope: str
    destination: str
    full_refresh: bool
    checkpoint: list[Any] | None  # cursor syncs: the rows read are after it
    rows: int  # rows the run reads and compares (NULL key rows: never read)
    confirmed: int  # contacts the vendor confirmed (their stored hashes)
    retried: int = 0  # rows of open rejects, read again by key (in ``rows``)
    limit: int | None = None  # --limit: the rows the run reads after the checkpoint, at most

    @property
    def rows_this_run(self) -> int:
        """The rows this run reads: ``rows``, or fewer with ``limit``, which caps the rows read
        after the checkpoint, not the open rejects read again by key."""
        return self.rows if self.limit is None else min(self.rows, self.retried + self.limit)

    def line(self) -> str:
        """The plan in one line, e.g. ``5,000 rows to compare with 4,800 confirmed contacts →
        brevo_contacts jobs for the changed rows``."""
        if not self.rows_this_run:
            return "0 rows → nothing to compare"
        rows = f"{self.rows:,} rows"
        if self.rows_this_run < self.rows:
            rows += f", {self.rows_this_run:,} this run (--limit)"
        if self.full_refresh:
            return f"{rows} → {self.destination} jobs for every row (full refresh)"
        return (
            f"{rows} to compare with {self.confirmed:,} confirmed contacts → "
            f"{self.destination} jobs for the changed rows"
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as a JSON-ready dict, with its one-line summary as ``summary``."""
        return {
            **asdict(self),
            "kind": "contacts",
            "rows_this_run": self.rows_this_run,
            "summary": self.line(),
        }


def steady_rate(rate: RateLimit) -> tuple[float, str] | None:
    """The tightest window as requests per second and as written ("150/min")."""
    windows = [
        (per / period, f"{_num(per)}/{unit}")
        for per, period, unit in (
            (rate.per_second, 1.0, "s"),
            (rate.per_minute, 60.0, "min"),
            (rate.per_hour, 3600.0, "h"),
        )
        if per
    ]
    return min(windows, key=lambda w: w[0]) if windows else None


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,g}"


def format_duration(seconds: float) -> str:
    """``6 min 40 s``, ``2 h 5 min``, ``1.2 s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = math.ceil(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, s = divmod(s, 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, rest = divmod(s, 3600)
    m = rest // 60
    return f"{h} h {m} min" if m else f"{h} h"


def per_request(max_events: int, max_bytes: int, overhead: Any, event_bytes: int | None) -> int:
    """Events one request takes: the count limit, or fewer when the bytes fill it first."""
    if not event_bytes:
        return max_events
    n = max_events
    while n > 1 and n * event_bytes + overhead(n) > max_bytes:
        # Jump close to the answer, then step: overhead grows at most linearly.
        n = min(n - 1, max(1, (max_bytes - overhead(n)) // event_bytes))
    return max(1, n)


def count_pending(reader: Reader, after: Position | None, window: Window | None) -> int:
    """Rows the run would read: after the checkpoint, in the window, cursor and key not NULL."""
    return reader.count(after, window)


def _event_bytes(
    sync: SyncConfig, reader: Reader, dest: Any, after: Position | None, window: Window | None
) -> int | None:
    """Average encoded size of the first rows to send (valid rows only)."""
    mapper = Mapper(sync)
    sizes: list[int] = []
    for chunk in reader.pages(after, window, SAMPLE_ROWS):
        events = mapper.map(chunk)
        bad = dict(events.reasons)
        bad.update(dest.validate(events))
        items, _ = dest.encode(events, [i for i in range(events.n) if i not in bad])
        sizes += [it.size for it in items]
    return math.ceil(sum(sizes) / len(sizes)) if sizes else None


def plan_run(
    sync: SyncConfig,
    state: StateStore,
    scope: str = INCREMENTAL,
    *,
    full_refresh: bool = False,
    window: Window | None = None,
    warehouse_url: str | None = None,
    release: bool = True,
) -> RunPlan:
    """The figures of the next run of ``sync`` in ``scope``; reads, sends and writes nothing.

    ``release=False`` keeps an embedded warehouse's engine open for the run that follows in
    the same process (the CLI's ``sync``), which releases it when it ends."""
    dest = make_event_destination(sync, resolve_secret=False)
    checkpoint = None if full_refresh else state.checkpoint(sync.name, scope)
    reader = Reader(sync, warehouse_url)
    try:
        rows = count_pending(reader, checkpoint, window)
        late, lookback = late_pending(reader, state, scope, checkpoint, window)
        rows += late
        size = _event_bytes(sync, reader, dest, checkpoint, window) if rows else None
    except BaseException:
        reader.close()
        raise
    if release:
        reader.close()
    limits = dest.limits
    n = per_request(limits.max_items, limits.max_bytes, dest.request_overhead, size)
    cap = sync.destination.max_rows_per_run
    requests = math.ceil((rows if cap is None else min(rows, cap)) / n)
    steady = steady_rate(dest.rate())
    return RunPlan(
        sync=sync.name,
        scope=scope,
        destination=dest.type,
        full_refresh=full_refresh,
        checkpoint=list(checkpoint) if checkpoint else None,
        rows=rows,
        max_events=limits.max_items,
        event_bytes=size,
        per_request=n,
        requests=requests,
        rate=steady[1] if steady else None,
        duration_s=requests / steady[0] if steady else None,
        late_rows=late,
        lookback=lookback.text if lookback is not None else None,
        max_rows_per_run=cap,
    )


def late_pending(
    reader: Reader,
    state: StateStore,
    scope: str,
    checkpoint: Position | None,
    window: Window | None,
) -> tuple[int, Lookback | None]:
    """Rows inside the lookback window behind ``checkpoint`` that the window table does not
    know (late commits the next run sends), and the window. Reads the window's keys only."""
    _, lookback = reader.widen(checkpoint)
    if lookback is None or checkpoint is None:
        return 0, lookback
    floor = cursor_number(lookback.floor(checkpoint[0]))
    known = state.window_hashes(reader.sync.name, scope, floor)
    since = state.window_since(reader.sync.name, scope)
    if since is None:  # nothing recorded yet: the rows behind the checkpoint count as handled
        since = cursor_number(checkpoint[0])
    stmt = reader.window_statement(checkpoint, window)
    table = reader._read(stmt, [reader.cursor, *reader.pk]).table
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    late = sum(
        1
        for pos in zip(*cols, strict=True)
        if row_hash(pos) not in known and cursor_number(pos[0]) > since
    )
    reader.floor = None
    return late, lookback


def plan_contacts(
    sync: SyncConfig,
    state: StateStore,
    *,
    full_refresh: bool = False,
    limit: int | None = None,
    warehouse_url: str | None = None,
    release: bool = True,
) -> ContactPlan:
    """The figures of a contact sync's next run: the rows it reads (a ``COUNT`` with the
    predicate the run reads with: the whole table, or after the checkpoint and inside the
    lookback window; a cursor sync also reads its open rejects again by key, once) and the
    contacts the vendor confirmed. Reads no row; sends and writes nothing. ``release`` as in
    ``plan_run``."""
    from ..contacts.hashes import HashStore

    checkpoint = None
    retried = 0
    reader = Reader(sync, warehouse_url)
    try:
        if sync.source.cursor is None:
            rows = reader.count(None, None)
        else:
            checkpoint = None if full_refresh else state.checkpoint(sync.name)
            start = reader.widen(checkpoint)[0] if limit is None else checkpoint
            rows = reader.count(start, None)
            if checkpoint is not None:
                # Read again by key first, then left out of the pages (``run.contacts``).
                keys = state.open_reject_keys(sync.name, INCREMENTAL)
                retried, paged = reader.count_keys(keys, start) if keys else (0, 0)
                rows += retried - paged
            reader.floor = None
    except BaseException:
        reader.close()
        raise
    if release:
        reader.close()
    return ContactPlan(
        sync=sync.name,
        scope=INCREMENTAL,
        destination=sync.destination.type,
        full_refresh=full_refresh,
        checkpoint=list(checkpoint) if checkpoint else None,
        rows=rows,
        confirmed=0 if full_refresh else HashStore(state).count(sync.name),
        retried=retried,
        limit=limit,
    )


def plan_sync(
    sync: SyncConfig,
    state: StateStore,
    scope: str = INCREMENTAL,
    *,
    full_refresh: bool = False,
    window: Window | None = None,
    limit: int | None = None,
    warehouse_url: str | None = None,
    release: bool = True,
) -> RunPlan | ContactPlan:
    """The plan of the next run of either kind of sync: ``plan_contacts`` for a contact sync
    (no scope or window: it is never partitioned), else ``plan_run``."""
    if sync.is_contact_sync:
        return plan_contacts(
            sync,
            state,
            full_refresh=full_refresh,
            limit=limit,
            warehouse_url=warehouse_url,
            release=release,
        )
    return plan_run(
        sync,
        state,
        scope,
        full_refresh=full_refresh,
        window=window,
        warehouse_url=warehouse_url,
        release=release,
    )


def planned_rows(plan: RunPlan | ContactPlan, limit: int | None) -> int:
    """The total a run's progress line counts to: the rows this run sends (an event run) or
    compares (a contact run, whose plan already knows ``limit``), at most ``limit``."""
    rows = plan.rows_this_run
    return rows if limit is None or isinstance(plan, ContactPlan) else min(rows, limit)
