"""One schedule per sync with a ``schedule:`` cron, stopped until a user turns it on.

A partitioned sync's scheduled run covers the partition in progress and the ``lookback``
partitions before it, as one ranged run: each partition resumes after its own checkpoint, so
the run delivers new rows of the current period and late rows that landed after the last row
delivered for a recent period (see docs/dagster.md, "Late rows").
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from connector import SyncConfig

# Documented run tags for a run over a range of partitions (what single-run backfills use).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def schedule_name(sync: SyncConfig, prefix: str = "reverse_etl") -> str:
    """The Dagster name of a sync's schedule: ``<prefix>_<sync>_schedule``
    (``reverse_etl_<sync>_schedule`` by default)."""
    return f"{prefix}_{sync.name}_schedule"


def lookback_range(
    sync: SyncConfig, partitions: dg.PartitionsDefinition | None, at: datetime | None = None
) -> tuple[str, str] | None:
    """First and last partition key a scheduled run at ``at`` covers: the partition in
    progress and the ``partitions.lookback`` partitions before it."""
    if partitions is None:
        return None
    lookback = sync.partitions.lookback if sync.partitions else 0
    keys = partitions.get_partition_keys(current_time=at)
    if not keys:
        return None
    recent = keys[-(lookback + 1) :]
    return recent[0], recent[-1]


def build_schedule(
    sync: SyncConfig, spec: dg.AssetSpec, prefix: str = "reverse_etl"
) -> dg.ScheduleDefinition | None:
    """The schedule of a sync with a ``schedule:`` block (None without one), created stopped.

    For a partitioned sync each tick runs the partition in progress and its ``lookback`` partitions
    before it, as one run.
    """
    key = spec.key
    cfg = sync.schedule
    if cfg is None:
        return None
    description = f"Runs {sync.name} on `{cfg.cron}` ({cfg.timezone}); stopped until turned on."
    if spec.partitions_def is None:
        return dg.ScheduleDefinition(
            name=schedule_name(sync, prefix),
            cron_schedule=cfg.cron,
            execution_timezone=cfg.timezone,
            target=dg.AssetSelection.assets(key),
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description=description,
            tags={"reverse_etl/trigger": "schedule"},
        )

    @dg.schedule(
        name=schedule_name(sync, prefix),
        cron_schedule=cfg.cron,
        execution_timezone=cfg.timezone,
        target=dg.AssetSelection.assets(key),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description + f" Covers the current partition and the "
        f"{sync.partitions.lookback if sync.partitions else 0} before it.",
    )
    def _partitioned(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        span = lookback_range(sync, spec.partitions_def, context.scheduled_execution_time)
        if span is None:
            return dg.SkipReason(f"no partition of {sync.name} has started yet")
        return dg.RunRequest(
            tags={
                RANGE_START_TAG: span[0],
                RANGE_END_TAG: span[1],
                "reverse_etl/trigger": "schedule",
            },
        )

    return _partitioned
