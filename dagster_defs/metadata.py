"""What a sync asset carries: definition metadata (code reference, mapping as column schema),
each materialization's counts (one per partition), and observations of its warehouse tables.

Reject reasons come from the core, which never puts secrets or whole rows in them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from connector import ConnectorError, Reader, SyncConfig, SyncResult
from connector.config.sections import ColumnRef
from connector.report.health import totals

from .scopes import Scope
from .translator import source_key, source_tables

SAMPLE_REJECTS = 20
_CONTACT_COUNTS = ("added", "changed", "unchanged", "removed", "sent", "jobs", "polls")


# -- definition metadata -------------------------------------------------------------------


def definition_metadata(sync: SyncConfig, config_dir: Path | None) -> dict[str, Any]:
    """``dagster/code_references`` (the sync file, which the UI opens or links once the code
    location maps paths to git with ``link_code_references_to_git``) and
    ``dagster/column_schema`` (the mapping: one column per destination field)."""
    md: dict[str, Any] = {"dagster/column_schema": column_schema(sync)}
    if sync.source_path and config_dir is not None:
        path = (config_dir / sync.source_path).resolve()
        with warnings.catch_warnings():  # beta in Dagster 1.13, and what peers use
            warnings.simplefilter("ignore", dg.BetaWarning)
            md["dagster/code_references"] = dg.CodeReferencesMetadataValue(
                code_references=[
                    dg.LocalFileCodeReference(file_path=str(path), line_number=1, label="sync file")
                ]
            )
    return md


def mapped_fields(sync: SyncConfig) -> list[tuple[str, str, str]]:
    """``(destination field, kind, source column)`` for every mapped column, in file order.

    Field names are the mapping's own (``identifiers.email``, ``event_properties.video.title``,
    ``contact_properties.plan``, ``event_time``, ...); literals (an event name, a currency)
    read no column and are left out."""
    m = sync.mapping
    out: list[tuple[str, str, str]] = []
    if isinstance(m.event_name, ColumnRef):
        out.append(("event_name", "event name", m.event_name.column))
    if m.event_time:
        out.append(("event_time", "event time", m.event_time))
    out += [(f"identifiers.{f}", "identifier", c) for f, c in m.identifiers.items()]
    out += [(f"event_properties.{f}", "event property", c) for f, c in m.event_properties.items()]
    out += [
        (f"contact_properties.{f}", "profile property", c) for f, c in m.contact_properties.items()
    ]
    if m.value:
        out.append(("value", "monetary value", m.value))
    if isinstance(m.value_currency, ColumnRef):
        out.append(("value_currency", "currency", m.value_currency.column))
    if m.object is not None:
        if isinstance(m.object.type, ColumnRef):
            out.append(("object.type", "object type", m.object.type.column))
        out += [
            (f"object.{name}", "object id", col)
            for name, col in (("id", m.object.id), ("ext_id", m.object.ext_id))
            if col
        ]
    return out


def column_schema(sync: SyncConfig) -> dg.TableSchema:
    """The mapping as Dagster's column schema: name = destination field, type = its role,
    description = the warehouse column it is read from."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=field, type=kind, description=f"← warehouse column `{col}`")
            for field, kind, col in mapped_fields(sync)
        ]
    )


def column_lineage(sync: SyncConfig) -> dg.TableColumnLineage | None:
    """Destination field → warehouse column of ``source.table`` (None for a query source:
    which of its tables a column comes from is the query's business)."""
    if not sync.source.table:
        return None
    dep = source_key(sync.source.table)
    return dg.TableColumnLineage(
        deps_by_column={
            field: [dg.TableColumnDep(asset_key=dep, column_name=col)]
            for field, _, col in mapped_fields(sync)
        }
    )


# -- materialization metadata --------------------------------------------------------------


def _position(pos: Sequence[Any] | None) -> str:
    if not pos:
        return "(none)"
    return ", ".join(v.isoformat() if hasattr(v, "isoformat") else str(v) for v in pos)


def scope_metadata(
    sync: SyncConfig, result: SyncResult, *, dry_run: bool, scope: Scope | None = None
) -> dict[str, Any]:
    """One scope's (one partition's) counts, checkpoints and sample rejects: what its
    materialization event shows. ``dagster/row_count`` is the rows delivered, so the catalog's
    row-count plot and sums over partitions add up."""
    t = totals([result])
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
        "duration_s": dg.MetadataValue.float(round(t.duration_s, 3)),
        "rows_per_s": dg.MetadataValue.float(t.rows_per_s),
        "dagster/row_count": t.delivered,
        "dry_run": dry_run,
    }
    if scope is not None:
        md["scope"] = scope.name
    if t.null_key_rows:
        md["null_cursor_or_key_rows"] = t.null_key_rows
    if getattr(result, "lookback", None) is not None:  # the lookback window (event syncs)
        md["late_rows"] = result.late_rows
        md["late_rows_near_window_edge"] = result.late_rows_near_edge
        md["lookback_rows_reread"] = result.window_reread
    if t.rejects_known:
        md["rejects_known"] = t.rejects_known
    if t.rejects_retried:  # a retry_rejects run
        md["rejects_retried"] = t.rejects_retried
        md["rejects_closed_source_row_gone"] = t.rejects_gone
        md["rejects_left_to_next_run"] = t.rejects_deferred
    if sync.is_contact_sync:
        for name in _CONTACT_COUNTS:
            md[name] = int(getattr(result, name, 0))
    elif not dry_run or result.hwm_before:  # a contact sync has no checkpoint position
        md["hwm_before"] = _position(result.hwm_before)
        md["hwm_after"] = _position(result.hwm_after)
    if result.run_id:
        md["connector_run_id"] = result.run_id
    if result.sample_rejects:
        samples = result.sample_rejects[:SAMPLE_REJECTS]
        md["sample_rejects"] = dg.MetadataValue.table(
            records=[dg.TableRecord({"key": k[:200], "reason": why[:300]}) for k, why in samples],
            schema=dg.TableSchema(
                columns=[dg.TableColumn("key", "string"), dg.TableColumn("reason", "string")]
            ),
        )
    lineage = column_lineage(sync)
    if lineage is not None:
        md["dagster/column_lineage"] = lineage
    return md


def not_run_metadata(reason: str) -> dict[str, Any]:
    """A partition of the run's range that this run did not reach (``limit`` used up): zero
    counts, so sums over partitions stay right, and why."""
    return {"rows_read": 0, "delivered": 0, "dagster/row_count": 0, "not_run": reason}


def failure_counts(done: Sequence[tuple[Scope, SyncResult]]) -> str:
    """``delivered 1,200, rejected 3 of 1,203 rows read`` (``had read and delivered nothing``):
    what a failed or interrupted run had done, for its message."""
    t = totals(r for _, r in done)
    if not (t.rows_read or t.delivered or t.rejected):
        return "had read and delivered nothing"
    return f"delivered {t.delivered:,}, rejected {t.rejected:,} of {t.rows_read:,} rows read"


def resume_hint(sync: SyncConfig, done: Sequence[tuple[Scope, SyncResult]]) -> str:
    """What a re-execution of a failed or interrupted run does, for its message: an event sync
    resumes after the rows it delivered (or from the same checkpoint when it delivered none);
    a contact sync sends again only what the vendor has not confirmed."""
    if sync.is_contact_sync:
        return (
            "Confirmed contacts are recorded: Re-execute sends only the rows not yet confirmed "
            "or changed since."
        )
    if totals(r for _, r in done).delivered:
        return "Delivered rows are checkpointed: Re-execute resumes after them."
    return "The checkpoint did not move: Re-execute starts again from it."


# -- observations of the warehouse tables ----------------------------------------------------


def observe_sources(
    sync: SyncConfig, warehouse_url: str, newest: Any = None
) -> Iterator[dg.AssetObservation]:
    """An observation of each warehouse table the sync reads: ``dagster/row_count`` (one
    ``count(*)``) and, for ``source.table`` with a cursor, the newest cursor value (``newest``,
    already read by the freshness check). A table that cannot be counted is left out: an
    observation never fails a run."""
    with Reader(sync, warehouse_url) as reader:
        for table in source_tables(sync):
            schema, _, name = table.rpartition(".")
            stmt = sa.select(sa.func.count()).select_from(sa.table(name, schema=schema or None))
            try:
                with reader.engine.connect() as conn:
                    rows = int(conn.execute(stmt).all()[0][0])
            except (sa.exc.SQLAlchemyError, ConnectorError):
                continue
            md: dict[str, Any] = {"dagster/row_count": rows, "observed_by": sync.name}
            if newest is not None and table == sync.source.table and sync.source.cursor:
                md[f"newest_{sync.source.cursor}"] = (
                    newest.isoformat() if hasattr(newest, "isoformat") else str(newest)
                )
            yield dg.AssetObservation(asset_key=source_key(table), metadata=md)
