"""Running a sync: ``run_sync`` (event and contact syncs alike) and ``preview``.

A run is a strategy inside the run shell (``shell.RunShell``: lease, run record, rows handled,
progress, timing): the event ledger strategy (``events.EventRun``: read → map → validate →
batch → send → settle in the ledger), ``retry.RetryRun`` (``retry_rejects``) and the contact
diff strategy (``contacts.ContactRun``). ``run_sync`` picks the strategy, builds the
destination, and runs it in the shell.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..audit import recorder_for
from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError, SourceError
from ..deliver.delivery import Runtime, post_preview
from ..deliver.factory import make_event_destination
from ..map.mapper import Mapper
from ..plan.batching import Batch, Batcher
from ..plan.planner import ChunkPlanner
from ..read.dupkeys import EveryKey
from ..read.source import Reader, Window
from ..store.state import INCREMENTAL, StateStore
from .events import EventRun
from .result import SyncResult
from .retry import RetryRun
from .shell import Progress, RunShell

__all__ = ["Progress", "SyncResult", "preview", "run_sync"]


def run_sync(
    sync: SyncConfig,
    *,
    state: StateStore | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    limit: int | None = None,
    window: Window | None = None,
    scope: str = INCREMENTAL,
    runtime: Runtime | None = None,
    progress: Progress | None = None,
    warehouse_url: str | None = None,
    check_null_keys: bool = True,
    retry_rejects: bool = False,
) -> SyncResult:
    """Run one sync to completion. Raises ``DeliveryError`` (and subclasses) when the run
    fails; the state store then holds the checkpoint at the last delivered row.

    ``check_null_keys=False`` skips counting the rows with a NULL cursor or key (a scan of the
    whole source): a caller running several windows of one sync in a row checks once.

    ``retry_rejects=True`` sends only the scope's open rejects that pass now (``RetryRun``);
    ``limit`` then caps the number of rejects retried.

    A run that sends holds the lease of its sync and scope (``connector.lease``): while another
    run holds it, this one raises ``LeaseHeld`` before reading a row."""
    if retry_rejects and full_refresh:
        raise ConfigError("retry_rejects and full_refresh cannot be combined: pick one")
    if sync.is_contact_sync:  # a state, not a time series: connector.contacts
        from .contacts import run_contacts

        if window is not None or retry_rejects:
            raise ConfigError(
                f"{sync.name} is a contact sync: every run re-sends its failed rows; "
                "partitions, backfills and --retry-rejects do not apply"
            )
        return run_contacts(
            sync,
            state or StateStore.open(),
            full_refresh=full_refresh,
            dry_run=dry_run,
            limit=limit,
            runtime=runtime,
            progress=progress,
            warehouse_url=warehouse_url,
        )
    state = state or StateStore.open()
    runtime = runtime or Runtime()
    if not retry_rejects:  # the sync file's cap: every caller's run stops there
        limit = capped(limit, sync.destination.max_rows_per_run)
    run = (RetryRun if retry_rejects else EventRun)(
        sync,
        make_event_destination(sync),
        state,
        scope,
        dry_run=dry_run,
        full_refresh=full_refresh,
        window=window,
        limit=limit,
        runtime=runtime,
        warehouse_url=warehouse_url,
        check_null_keys=check_null_keys,
    )
    try:
        # Missing columns and the cursor/event-time type rules (the ones ``validate`` applies)
        # are config errors before the run writes anything or takes its lease.
        with contextlib.suppress(SourceError):  # unreachable: the run records that failure
            run.reader.check_columns()
        shell = RunShell(
            state,
            run.result,
            run.stats,
            dry_run=dry_run,
            clock=runtime.clock,
            progress=progress,
            audit=recorder_for(sync, state, scope, warehouse_url, dry_run=dry_run),
        )
        res = shell.execute(run)  # a dry run sends nothing, writes nothing, takes no lease
        if not dry_run:
            res.possibly_duplicated_total = state.copies(sync.name, scope).total
        return res
    except BaseException:
        run.reader.close()  # give an embedded warehouse file back (the run may not have run)
        raise


def capped(limit: int | None, cap: int | None) -> int | None:
    """The smaller of a caller's ``limit`` and the sync file's ``max_rows_per_run``."""
    if cap is None:
        return limit
    return cap if limit is None else min(limit, cap)


def preview(sync: SyncConfig, limit: int = 5, warehouse_url: str | None = None) -> dict[str, Any]:
    """The exact requests the first ``limit`` rows would become; sends nothing, writes
    nothing."""
    if sync.is_contact_sync:
        from .contacts import preview_contacts

        return preview_contacts(sync, limit, warehouse_url)
    dest = make_event_destination(sync, resolve_secret=False)
    mapper = Mapper(sync)
    planner = ChunkPlanner(dest, EveryKey())  # a preview reads a few rows
    batcher = Batcher(dest.limits.max_items, dest.limits.max_bytes, dest.request_overhead)
    batches: list[Batch] = []
    rejects: list[tuple[str, str]] = []
    with Reader(sync, warehouse_url) as reader:
        chunks = list(reader.pages(None, None, limit))
    for chunk in chunks:
        events = mapper.map(chunk)
        plan = planner.plan(events)
        rejects += [(events.keys[i], r) for i, r in sorted(plan.reasons.items())]
        batches += planner.batches(events, plan, batcher)
    last = batcher.flush()
    if last is not None:
        batches.append(last)
    return {
        "requests": [post_preview(dest, b.items) for b in batches if b.items],
        "rejects": rejects,
    }
