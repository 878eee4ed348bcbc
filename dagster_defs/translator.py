"""One sync config → one Dagster ``AssetSpec`` (the dagster-sling / dagster-dlt translator model).

Subclass :class:`ReverseEtlTranslator` and override :meth:`get_asset_spec` (calling ``super()``
and ``.replace_attributes`` / ``.merge_attributes`` on the result) to change keys, groups, owners
or tags, or :meth:`get_pool` to change which syncs may run at the same time; pass the instance
to :func:`dagster_defs.build_defs`. Nothing here talks to the
warehouse or the vendor: names are derived from the config alone, so loading never needs a
network or a secret.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, time

import dagster as dg

from connector.config.env import resolve_env
from connector.config.sync_file import WAREHOUSE_URL_ENV, SyncConfig
from connector.core.errors import ConfigError
from connector.destinations import destination_class
from connector.warehouses import backend, warehouse_for

ASSET_PREFIX = "reverse_etl"
SOURCE_PREFIX = "warehouse"

# FROM/JOIN <schema.table> in a source query; good enough for lineage, never for execution.
_TABLE_REF = re.compile(
    r"(?is)\b(?:from|join)\s+((?:\"[^\"]+\"|[A-Za-z_][\w$]*)"
    r"(?:\.(?:\"[^\"]+\"|[A-Za-z_][\w$]*)){0,2})"
)


def vendor(sync: SyncConfig) -> str:
    """The destination's vendor (``brevo``, ``klaviyo``, ``omnisend``), as its destination
    module declares it in the registry (event and contact destinations alike)."""
    return destination_class(sync.destination.type).vendor.name


def api_key_env(sync: SyncConfig) -> str:
    """Name of the environment variable holding the API key (never its value)."""
    match = re.match(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)", sync.destination.api_key)
    return match.group(1) if match else "API_KEY"


def warehouse_dialect(sync: SyncConfig) -> str:
    """``duckdb``, ``postgresql``, … from the sync's URL, else ``$WAREHOUSE_URL``, else the demo
    DuckDB — the same precedence as the core reader, without opening a connection; ``sql``
    when the URL is unknown where the definitions load."""
    url = _url(sync)
    return (backend(url) if url else None) or "sql"


def _url(sync: SyncConfig) -> str | None:
    url = sync.source.url
    try:
        url = resolve_env(url, "source.url") if url else os.environ.get(WAREHOUSE_URL_ENV)
    except ConfigError:
        return None  # a ${VAR} not set where the definitions load; the run resolves it
    return url or "duckdb:///"


def source_tables(sync: SyncConfig) -> list[str]:
    """Tables the sync reads: ``source.table``, or the FROM/JOIN tables of ``source.query``."""
    if sync.source.table:
        return [sync.source.table]
    found = _TABLE_REF.findall(sync.source.query or "")
    return list(dict.fromkeys(t.replace('"', "") for t in found))


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a warehouse table: ``warehouse/<schema>/<table>``."""
    return dg.AssetKey([SOURCE_PREFIX, *table.split(".")])


def partitions_def(sync: SyncConfig) -> dg.TimeWindowPartitionsDefinition | None:
    """Daily or hourly partitions on the event-time column, from ``partitions.start``.

    ``end_offset=1`` makes the period in progress a partition too, so scheduled runs deliver
    today's rows as they arrive and a backfill may include the current period.
    """
    cfg = sync.partitions
    if cfg is None:
        return None
    start = datetime.combine(cfg.start, time())
    if cfg.period == "hourly":
        return dg.HourlyPartitionsDefinition(
            start_date=start.strftime("%Y-%m-%d-%H:%M"), timezone=cfg.timezone, end_offset=1
        )
    return dg.DailyPartitionsDefinition(
        start_date=start.strftime("%Y-%m-%d"), timezone=cfg.timezone, end_offset=1
    )


class ReverseEtlTranslator:
    """Turns one :class:`~connector.SyncConfig` into the ``AssetSpec`` Dagster shows.

    ``asset_key_prefix`` is the first part of every sync's asset key (``reverse_etl``): a
    second set of syncs in the same code location (another team's config dir, a second
    ``ReverseEtlComponent``) takes its own.
    """

    asset_key_prefix: str = ASSET_PREFIX

    def __init__(self, asset_key_prefix: str | None = None) -> None:
        if asset_key_prefix is not None:
            self.asset_key_prefix = asset_key_prefix

    def get_asset_spec(self, sync: SyncConfig) -> dg.AssetSpec:
        """The sync's asset: key ``reverse_etl/<name>``, its source tables as deps, its vendor as
        group and kind, owners, tags, config metadata and time partitions."""
        dest = sync.destination
        kind = destination_class(dest.type).kind
        description = sync.description or f"Rows of {', '.join(source_tables(sync)) or 'a query'}"
        description += f" → {dest.type}.\n\nConfig: `{sync.source_path or sync.name}`."
        if kind == "contacts":
            description += (
                "\n\nA contact sync mirrors a state, not a time series: each run sends the "
                "rows whose mapped values changed since the vendor last confirmed them (and "
                "the ones it refused). Partitions and backfills do not apply; a full refresh "
                "re-sends every row."
            )
        metadata: dict[str, object] = {
            "config_file": sync.source_path or "",
            "destination_type": dest.type,
            "cursor": sync.source.cursor,
            "primary_key": ", ".join(sync.source.primary_key),
            "event_time": sync.mapping.event_time,
            "api_key_env": api_key_env(sync),
            "sync_kind": kind,
        }
        if sync.source.table:
            metadata["source_table"] = sync.source.table
        else:
            metadata["source_query"] = dg.MetadataValue.md(f"```sql\n{sync.source.query}\n```")
        if sync.schedule:
            metadata["schedule"] = f"{sync.schedule.cron} ({sync.schedule.timezone})"
        if dest.max_rows_per_run is not None:  # the per-run cap the asset applies
            metadata["max_rows_per_run"] = dest.max_rows_per_run
        # Only what applies: a contact sync has no cursor or event time.
        metadata = {k: v for k, v in metadata.items() if v is not None}
        tags = {"reverse_etl/destination": dest.type}
        return dg.AssetSpec(
            key=dg.AssetKey([self.asset_key_prefix, sync.name]),
            deps=[source_key(t) for t in source_tables(sync)],
            description=description,
            group_name=vendor(sync),
            kinds={warehouse_kind(sync), vendor(sync)},
            owners=list(sync.owners),
            tags=tags,
            metadata=metadata,
            partitions_def=partitions_def(sync),
        )

    def get_pool(self, sync: SyncConfig) -> str:
        """The concurrency pool of the sync's runs: one per destination account, named after
        the vendor and the API-key variable (``reverse_etl/brevo/BREVO_API_KEY``).

        Syncs sharing a key (``brevo_events_batch`` and ``brevo_event`` on ``BREVO_API_KEY``)
        share the account's limits and therefore the pool; the legacy Brevo tracker key
        (``ma-key``) is a different quota and gets its own. The name holds the variable's
        name, never its value.
        """
        return f"{ASSET_PREFIX}/{vendor(sync)}/{api_key_env(sync)}"

    def get_source_asset_spec(self, sync: SyncConfig, table: str) -> dg.AssetSpec:
        """The warehouse table as an external asset, so lineage reads table → sync."""
        return dg.AssetSpec(
            key=source_key(table),
            description=f"Warehouse table `{table}` (external: read by reverse-ETL syncs, "
            "not materialized by Dagster).",
            group_name=SOURCE_PREFIX,
            kinds={warehouse_kind(sync)},
        )


def warehouse_kind(sync: SyncConfig) -> str:
    """The kind tag Dagster draws for the sync's warehouse (``duckdb``, ``postgres``, ...), as
    its warehouse module declares it (another database: its SQLAlchemy backend name)."""
    url = _url(sync)
    if url is None:
        return "sql"
    return warehouse_for(url).dagster_kind or warehouse_dialect(sync)
