"""The asset body: run the core engine for one sync and report what it did.

Scopes (see docs/dagster.md):

- an unpartitioned sync runs the ``incremental`` scope: the checkpoint the CLI uses;
- a partitioned sync runs each partition of the run (one key, or a range in a single-run
  backfill) as its own ``partition:<key>`` scope over that partition's time window, in order.
  A partition resumes after its own checkpoint, so re-running sends nothing new unless
  ``full_refresh`` is set; the incremental checkpoint is never touched.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from connector import INCREMENTAL, ConnectorError, Runtime, SyncConfig, SyncResult, Window, run_sync
from connector.report.health import totals
from connector.report.progress import ProgressLine
from connector.run.run_plan import plan_run
from connector.store.state import StateStore

from .checks import REJECT_RATIO, reject_ratio_result
from .logs import step_logs
from .resources import ConnectorResource
from .scopes import Scope

SAMPLE_REJECTS = 20


class SyncRunConfig(dg.Config):
    """Run config of a sync asset (launchpad or ``run_config``)."""

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
        raise dg.Failure(description="a sync's partitions must be time windows on its event time")
    out = []
    for key in context.partition_keys:
        tw = partitions.time_window_for_partition_key(key)
        out.append(Scope(f"partition:{key}", Window(tw.start, tw.end), key))
    return out


def build_sync_asset(
    sync: SyncConfig, spec: dg.AssetSpec, runtime: Runtime | None = None, *, pool: str | None = None
) -> dg.AssetsDefinition:
    """The materializable asset of one sync, with its reject-ratio check built in; ``pool`` is
    the concurrency pool its runs take (the translator's ``get_pool``)."""
    reject_check = dg.AssetCheckSpec(
        REJECT_RATIO,
        asset=spec.key,
        description=f"Rejected rows / rows read in a run: warn above "
        f"{sync.checks.reject_ratio_warn:.1%}, error above {sync.checks.reject_ratio_error:.1%}.",
    )
    partitioned = spec.partitions_def is not None

    @dg.multi_asset(
        name=f"reverse_etl_{sync.name}",
        specs=[spec],
        check_specs=[reject_check],
        pool=pool,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        description=spec.description,
    )
    def _sync_asset(
        context: dg.AssetExecutionContext, config: SyncRunConfig, connector: ConnectorResource
    ) -> dg.MaterializeResult:
        try:
            where = connector.describe(sync)
        except ConnectorError as exc:  # e.g. source.url names an unset ${VAR}
            raise dg.Failure(description=str(exc)) from None
        context.log.info(
            f"{sync.name}: warehouse {where['warehouse']}, state store {where['state_store']}"
        )
        if config.retry_rejects and config.full_refresh:
            raise dg.Failure(description="retry_rejects and full_refresh cannot be combined")
        with step_logs(context, sync.name):
            results = run_scopes(context, sync, spec, config, connector, runtime)
        check = reject_ratio_result(sync, totals(r for _, r in results), dry_run=config.dry_run)
        return dg.MaterializeResult(
            metadata=materialization_metadata(results, dry_run=config.dry_run),
            check_results=[check],
            tags={"reverse_etl/dry_run": "true"} if config.dry_run else None,
        )

    return _sync_asset


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
    remaining = config.limit
    done: list[tuple[Scope, SyncResult]] = []
    for scope in scopes_for(context, spec.partitions_def):
        if remaining is not None and remaining <= 0:
            break
        progress: ProgressLine | None = None
        context.log.info(
            f"{sync.name}: {scope.name}"
            + (
                f" [{scope.window.start.isoformat()}, {scope.window.end.isoformat()})"
                if scope.window
                else ""
            )
            + (" (full refresh)" if config.full_refresh else "")
            + (" (retry rejects)" if config.retry_rejects else "")
            + (" (dry run)" if config.dry_run else "")
        )
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
            partial = progress.latest if progress else None
            raise dg.Failure(
                description=f"{sync.name}: {scope.name} failed: {exc}. Delivered rows are "
                "checkpointed; run it again to resume from there.",
                metadata={
                    **(
                        materialization_metadata([*done, (scope, partial)], dry_run=config.dry_run)
                        if partial
                        else {}
                    ),
                    "failed_scope": scope.name,
                },
                allow_retries=True,
            ) from None
        context.log.info(
            f"{sync.name}: {scope.name}: read {result.rows_read}, delivered {result.delivered}, "
            f"rejected {result.rejected}, skipped {result.skipped}, "
            f"possibly duplicated {result.possibly_duplicated} in {result.duration_s}s"
        )
        done.append((scope, result))
        if remaining is not None:
            remaining -= result.rows_read
    return done


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
    if not config.retry_rejects and not sync.is_contact_sync:  # contacts: the diff decides
        try:
            plan = plan_run(
                sync,
                state,
                scope.name,
                full_refresh=config.full_refresh,
                window=scope.window,
                warehouse_url=connector.warehouse_for(sync),
            )
        except ConnectorError as exc:  # the run meets it too, and fails with it
            context.log.warning(f"{sync.name}: {scope.name}: no plan: {exc}")
        else:
            context.log.info(f"{sync.name}: {scope.name}: plan: {plan.line()}")
            total = plan.rows if limit is None else min(plan.rows, limit)
    return ProgressLine(total, write=context.log.info)


def _position(pos: Sequence[Any] | None) -> str:
    if not pos:
        return "(none)"
    return ", ".join(v.isoformat() if hasattr(v, "isoformat") else str(v) for v in pos)


def materialization_metadata(
    results: Sequence[tuple[Scope, SyncResult]], *, dry_run: bool
) -> dict[str, Any]:
    """What the asset catalog shows for a run: counts, high-water marks, sample rejects.
    Reject reasons come from the core, which never puts secrets or whole rows in them."""
    t = totals(r for _, r in results)
    md: dict[str, Any] = {
        "rows_read": t.rows_read,
        "delivered": t.delivered,
        "rejected": t.rejected,
        "possibly_duplicated": t.possibly_duplicated,
        "skipped_already_delivered": t.skipped,
        "batches": t.batches,
        "requests": t.requests,
        "retries": t.retries,
        "rate_limited_429": t.rate_limited,
        "duration_s": dg.MetadataValue.float(t.duration_s),
        "rows_per_s": dg.MetadataValue.float(t.rows_per_s),
        "dagster/row_count": t.delivered,
        "dry_run": dry_run,
        "scopes": ", ".join(s.name for s, _ in results),
    }
    if t.null_key_rows:
        md["null_cursor_or_key_rows"] = t.null_key_rows
    if t.rejects_retried:  # a retry_rejects run
        md["rejects_retried"] = t.rejects_retried
        md["rejects_closed_source_row_gone"] = t.rejects_gone
        md["rejects_left_to_next_run"] = t.rejects_deferred
    for name in ("added", "changed", "unchanged", "removed", "sent", "jobs", "polls"):
        if any(hasattr(r, name) for _, r in results):  # a contact sync (ContactResult)
            md[name] = sum(getattr(r, name, 0) for _, r in results)
    if len(results) == 1:
        _, r = results[0]
        md["hwm_before"] = _position(r.hwm_before)
        md["hwm_after"] = _position(r.hwm_after)
        if r.run_id:
            md["connector_run_id"] = r.run_id
    else:
        md["partitions"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "partition": s.partition or s.name,
                        "rows_read": r.rows_read,
                        "delivered": r.delivered,
                        "rejected": r.rejected,
                        "hwm_before": _position(r.hwm_before),
                        "hwm_after": _position(r.hwm_after),
                    }
                )
                for s, r in results
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("partition", "string"),
                    dg.TableColumn("rows_read", "int"),
                    dg.TableColumn("delivered", "int"),
                    dg.TableColumn("rejected", "int"),
                    dg.TableColumn("hwm_before", "string"),
                    dg.TableColumn("hwm_after", "string"),
                ]
            ),
        )
    samples = [pair for _, r in results for pair in r.sample_rejects][:SAMPLE_REJECTS]
    md["sample_rejects"] = dg.MetadataValue.table(
        records=[dg.TableRecord({"key": k[:200], "reason": why[:300]}) for k, why in samples],
        schema=dg.TableSchema(
            columns=[dg.TableColumn("key", "string"), dg.TableColumn("reason", "string")]
        ),
    )
    return md
