"""The asset body: run the core engine for one sync and report what it did.

Scopes (see docs/dagster.md):

- an unpartitioned sync runs the ``incremental`` scope: the checkpoint the CLI uses;
- a partitioned sync runs each partition of the run (one key, or a range in a single-run
  backfill) as its own ``partition:<key>`` scope over that partition's time window, in order.
  A partition resumes after its own checkpoint, so re-running sends nothing new unless
  ``full_refresh`` is set; the incremental checkpoint is never touched.

Each partition's materialization carries that partition's own counts. The sync's checks
(``checks``) are evaluated in the same step, so a failed sync adds no second failed step; a
check can also be executed alone (the asset is subsettable).
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from pydantic import Field

from connector import INCREMENTAL, ConnectorError, Runtime, SyncConfig, SyncResult, Window, run_sync
from connector.audit import dagster_run_id
from connector.report.health import totals
from connector.report.progress import ProgressLine
from connector.run.result import ContactResult
from connector.run.run_plan import plan_sync, planned_rows
from connector.run.sync import capped
from connector.store.state import StateStore

from .audit import audit_results
from .checks import (
    CHECKPOINT_FRESHNESS,
    LANDED_AS_SENT,
    NOTHING_MISSING,
    freshness_result,
    landed_as_sent_result,
    nothing_missing_result,
    run_check_results,
)
from .failures import SyncFailed, SyncInterrupted
from .logs import step_logs
from .metadata import (
    definition_metadata,
    failure_counts,
    not_run_metadata,
    observe_sources,
    resume_hint,
    scope_metadata,
)
from .resources import ConnectorResource
from .scopes import Scope

RESOURCE_KEY = "connector"


class SyncRunConfig(dg.Config):
    """Run config of a sync asset (launchpad, or run_config in code)."""

    dry_run: bool = Field(
        False, description="Read and validate, count what would be sent; send and record nothing."
    )
    full_refresh: bool = Field(
        False,
        description="Ignore the scope's checkpoint and ledger: re-send every row of the scope "
        "(the whole table for incremental, the partition windows for a partitioned run).",
    )
    limit: int | None = Field(
        None, ge=1, description="Read at most this many rows in this run (testing)."
    )
    retry_rejects: bool = Field(
        False,
        description="Re-read the scope's open rejects from the source and send those that pass "
        "now (after a fix or a transient vendor error); nothing else is read and the "
        "checkpoint does not move. Not with full_refresh.",
    )


def scopes_for(
    context: dg.AssetExecutionContext, partitions: dg.PartitionsDefinition | None
) -> list[Scope]:
    """The scopes this run covers: ``incremental``, or one per partition key of the run."""
    if partitions is None:
        return [Scope(INCREMENTAL)]
    if not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        raise SyncFailed("a sync's partitions must be time windows on its event time")
    out = []
    for key in context.partition_keys:
        tw = partitions.time_window_for_partition_key(key)
        out.append(Scope(f"partition:{key}", Window(tw.start, tw.end), key))
    return out


def build_sync_asset(
    sync: SyncConfig,
    spec: dg.AssetSpec,
    runtime: Runtime | None = None,
    *,
    pool: str | None = None,
    check_specs: Sequence[dg.AssetCheckSpec] = (),
    resource_key: str = RESOURCE_KEY,
    op_name: str | None = None,
    config_dir: Path | None = None,
) -> dg.AssetsDefinition:
    """The materializable asset of one sync with its checks (``checks.check_specs``); ``pool``
    is the concurrency pool its runs take (the translator's ``get_pool``), ``resource_key`` the
    key of its :class:`ConnectorResource`."""
    partitioned = spec.partitions_def is not None
    spec = spec.merge_attributes(metadata=definition_metadata(sync, config_dir))

    @dg.multi_asset(
        name=op_name or f"reverse_etl_{sync.name}",
        specs=[spec],
        check_specs=list(check_specs),
        pool=pool,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        description=spec.description,
        can_subset=True,  # a check can be executed on its own
        required_resource_keys={resource_key},
    )
    def _sync_asset(
        context: dg.AssetExecutionContext, config: SyncRunConfig
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        connector: ConnectorResource = getattr(context.resources, resource_key)
        if spec.key in context.selected_asset_keys:
            yield _materialize(context, sync, spec, config, connector, runtime)
            return
        # Only checks were selected (Execute on a check): the ones a run judges need a run.
        for key in context.selected_asset_check_keys:
            if key.name == CHECKPOINT_FRESHNESS:
                yield _freshness(context, sync, connector)
            elif key.name == NOTHING_MISSING:
                yield nothing_missing_result(sync, connector)
            elif key.name == LANDED_AS_SENT:
                yield landed_as_sent_result(sync, connector, runtime)
            else:
                context.log.info(f"{key.name} is judged by a materialization of {sync.name}")

    return _sync_asset


def _materialize(
    context: dg.AssetExecutionContext,
    sync: SyncConfig,
    spec: dg.AssetSpec,
    config: SyncRunConfig,
    connector: ConnectorResource,
    runtime: Runtime | None,
) -> dg.MaterializeResult:
    try:
        where = connector.describe(sync)
    except ConnectorError as exc:  # e.g. source.url names an unset ${VAR}
        raise SyncFailed(str(exc)) from None
    context.log.info(
        f"{sync.name}: warehouse {where['warehouse']}, state store {where['state_store']}"
    )
    if config.retry_rejects and config.full_refresh:
        raise SyncFailed("retry_rejects and full_refresh cannot be combined")
    run_id = dagster_run_id.set(context.run.run_id)  # the audit's runs.dagster_run_id
    try:
        with step_logs(context, sync.name):
            done = run_scopes(context, sync, spec, config, connector, runtime)
    finally:
        dagster_run_id.reset(run_id)
    results = [r for _, r in done]
    metadata = {}
    if spec.partitions_def is None:
        metadata = scope_metadata(sync, results[0], dry_run=config.dry_run)
    else:
        # One materialization per partition, each with its own counts.
        reached = set()
        for scope, result in done:
            reached.add(scope.partition)
            context.add_asset_metadata(
                scope_metadata(sync, result, dry_run=config.dry_run, scope=scope),
                partition_key=scope.partition,
            )
        for key in context.partition_keys:
            if key not in reached:
                context.add_asset_metadata(
                    not_run_metadata(
                        f"the run's row limit ({_cap_text(sync, config)}) was used up by "
                        "earlier partitions; the next run continues"
                    ),
                    partition_key=key,
                )
    selected = {k.name for k in context.selected_asset_check_keys}
    checks = [
        c
        for c in run_check_results(sync, results, totals(results), dry_run=config.dry_run)
        if c.check_name in selected
    ]
    if CHECKPOINT_FRESHNESS in selected:
        checks.append(_freshness(context, sync, connector))
    elif not config.dry_run:
        _observe(context, sync, connector, newest=None)
    if NOTHING_MISSING in selected:  # the scopes of this run: one GROUP BY each
        checks.append(nothing_missing_result(sync, connector, [s.name for s, _ in done]))
    if LANDED_AS_SENT in selected and not config.dry_run:
        checks.append(landed_as_sent_result(sync, connector, runtime))
    if not config.dry_run:  # the audit tables' row counts and audit_written
        checks += audit_results(context, sync, connector, spec.key.path[0], selected)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=checks,
        tags={"reverse_etl/dry_run": "true"} if config.dry_run else None,
    )


def _freshness(
    context: dg.AssetExecutionContext, sync: SyncConfig, connector: ConnectorResource
) -> dg.AssetCheckResult:
    """The freshness check, and an observation of the source tables with the newest cursor it
    read."""
    check = freshness_result(sync, connector)
    newest = check.metadata.get("newest_source_cursor")
    _observe(context, sync, connector, newest=newest.value if newest is not None else None)
    return check


def _observe(
    context: dg.AssetExecutionContext,
    sync: SyncConfig,
    connector: ConnectorResource,
    *,
    newest: object,
) -> None:
    try:
        for observation in observe_sources(sync, connector.warehouse_for(sync), newest):
            context.log_event(observation)
    except ConnectorError as exc:  # an observation never fails a run
        context.log.warning(f"{sync.name}: the source tables were not observed: {exc}")


def run_scopes(
    context: dg.AssetExecutionContext,
    sync: SyncConfig,
    spec: dg.AssetSpec,
    config: SyncRunConfig,
    connector: ConnectorResource,
    runtime: Runtime | None,
) -> list[tuple[Scope, SyncResult]]:
    """Run every scope in order; stop at the first failure (it is usually account-wide: auth,
    rate limit, outage), reporting what the earlier scopes already delivered."""
    state = connector.state()
    # The sync file's cap is the whole run's, over all its partitions (as the CLI's run).
    cap = None if config.retry_rejects else sync.destination.max_rows_per_run
    remaining = capped(config.limit, cap)
    done: list[tuple[Scope, SyncResult]] = []
    for scope in scopes_for(context, spec.partitions_def):
        if remaining is not None and remaining <= 0:
            break
        progress: ProgressLine | None = None
        context.log.info(f"{sync.name}: {_scope_line(scope, config)}")
        try:
            progress = _planned_progress(context, sync, config, scope, state, connector, remaining)
            result = run_sync(
                sync,
                state=state,
                full_refresh=config.full_refresh,
                dry_run=config.dry_run,
                limit=remaining,
                window=scope.window,
                scope=scope.name,
                runtime=runtime,
                progress=progress,
                warehouse_url=connector.warehouse_for(sync),
                # NULL cursor/key rows belong to no window: count them once per run.
                check_null_keys=not done,
                retry_rejects=config.retry_rejects,
            )
        except ConnectorError as exc:
            _record_done_partitions(context, sync, spec, config, done)
            raise _failed(sync, scope, exc, done, progress) from None
        except (KeyboardInterrupt, DagsterExecutionInterruptedError):
            _record_done_partitions(context, sync, spec, config, done)
            raise _interrupted(sync, scope, done, progress) from None
        context.log.info(f"{sync.name}: {scope.name}: {_done_text(result)}")
        done.append((scope, result))
        if remaining is not None:
            remaining -= result.rows_read
    return done


def _done_text(result: SyncResult) -> str:
    """The counts of a finished scope for the run log, in the words of its kind of sync."""
    if isinstance(result, ContactResult):  # a diff: nothing skipped, no copies
        counts = (
            f"unchanged {result.unchanged:,}, delivered {result.delivered:,}, "
            f"rejected {result.rejected:,}"
        )
    else:
        counts = (
            f"delivered {result.delivered:,}, rejected {result.rejected:,}, skipped "
            f"{result.skipped:,}, possibly duplicated {result.possibly_duplicated:,}"
        )
    return f"read {result.rows_read:,}, {counts} in {result.duration_s:.2f}s"


def _cap_text(sync: SyncConfig, config: SyncRunConfig) -> str:
    parts = [f"limit {config.limit:,}"] if config.limit is not None else []
    cap = sync.destination.max_rows_per_run
    if cap is not None:
        parts.append(f"destination.max_rows_per_run {cap:,}")
    return ", ".join(parts)


def _scope_line(scope: Scope, config: SyncRunConfig) -> str:
    window = (
        f" [{scope.window.start.isoformat()}, {scope.window.end.isoformat()})"
        if scope.window
        else ""
    )
    return (
        scope.name
        + window
        + (" (full refresh)" if config.full_refresh else "")
        + (" (retry rejects)" if config.retry_rejects else "")
        + (" (dry run)" if config.dry_run else "")
    )


def _so_far(
    done: Sequence[tuple[Scope, SyncResult]], scope: Scope, progress: ProgressLine | None
) -> list[tuple[Scope, SyncResult]]:
    """The finished scopes and the counts the failed one last reported."""
    partial = progress.latest if progress else None
    return [*done, (scope, partial)] if partial else list(done)


def _failed(
    sync: SyncConfig,
    scope: Scope,
    exc: ConnectorError,
    done: Sequence[tuple[Scope, SyncResult]],
    progress: ProgressLine | None,
) -> SyncFailed:
    """The step's failure: the core's message, what the run did before it, where to resume."""
    so_far = _so_far(done, scope, progress)
    t = totals(r for _, r in so_far)
    return SyncFailed(
        f"{sync.name}: {scope.name} failed: {exc}\n\nBefore that this run {failure_counts(so_far)}"
        f". {resume_hint(sync, so_far)}",
        metadata={
            "failed_scope": scope.name,
            "rows_read": t.rows_read,
            "delivered": t.delivered,
            "rejected": t.rejected,
        },
    )


def _interrupted(
    sync: SyncConfig,
    scope: Scope,
    done: Sequence[tuple[Scope, SyncResult]],
    progress: ProgressLine | None,
) -> SyncInterrupted:
    so_far = _so_far(done, scope, progress)
    return SyncInterrupted(
        f"{sync.name}: {scope.name} was interrupted (the run was terminated). Before that this "
        f"run {failure_counts(so_far)}. {resume_hint(sync, so_far)}"
    )


def _record_done_partitions(
    context: dg.AssetExecutionContext,
    sync: SyncConfig,
    spec: dg.AssetSpec,
    config: SyncRunConfig,
    done: Sequence[tuple[Scope, SyncResult]],
) -> None:
    """Before a ranged run fails: the partitions it finished are materialized (their rows are
    delivered and checkpointed), each with its counts; only the rest show as failed."""
    if spec.partitions_def is None or config.dry_run:
        return
    for scope, result in done:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=spec.key,
                partition=scope.partition,
                metadata=scope_metadata(sync, result, dry_run=False, scope=scope),
            )
        )


def _planned_progress(
    context: dg.AssetExecutionContext,
    sync: SyncConfig,
    config: SyncRunConfig,
    scope: Scope,
    state: StateStore,
    connector: ConnectorResource,
    limit: int | None,
) -> ProgressLine:
    """Log the scope's plan before it sends (rows, requests, least duration), and return the
    progress lines for the run log (done / total and ETA every few seconds)."""
    total = None
    if not config.retry_rejects:
        try:
            plan = plan_sync(
                sync,
                state,
                scope.name,
                full_refresh=config.full_refresh,
                window=scope.window,
                limit=limit,
                warehouse_url=connector.warehouse_for(sync),
            )
        except ConnectorError as exc:  # the run meets it too, and fails with it
            context.log.warning(f"{sync.name}: {scope.name}: no plan: {exc}")
        else:
            context.log.info(f"{sync.name}: {scope.name}: plan: {plan.line()}")
            total = planned_rows(plan, limit)
    return ProgressLine(total, write=context.log.info)
