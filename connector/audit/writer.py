"""The outbox into the warehouse's audit tables, in bulk (``flush``), then the retention.

Per chunk of outbox rows (at most ``CHUNK_ROWS`` changelog rows: memory is bounded by the
chunk), one warehouse transaction: the rows are staged with the engine's fast path
(``Warehouse.stage``: DuckDB reads the Arrow table, PostgreSQL takes a COPY, the others an
executemany), the changelog rows inserted from the stage, the contact snapshot rows of their
keys replaced by the latest (event rows have no stored snapshot: the ``snapshot`` view takes
each event key's latest changelog row), and the runs rows of their runs replaced. Only then
are the outbox rows deleted: a crash in between writes the same rows again, never twice — the
flush after it finds rows of its runs in the changelog (one query) and then deletes each
chunk's earlier rows (by run and outbox row) before inserting; a normal flush appends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from ..store.state import StateStore
from ..warehouses import warehouse_for
from ..warehouses.base import Warehouse
from . import outbox
from .outbox import Entry, utc
from .settings import AuditSettings
from .tables import (
    EVENT_SENT,
    SNAPSHOT,
    SNAPSHOT_COLUMNS,
    AuditTables,
    audit_tables,
    changelog_schema,
    unit_schema,
)
from .tables import indexes as audit_indexes

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import np, pa, pc


CHUNK_ROWS = 200_000
STAGE_CHANGELOG = "reverse_etl_audit_stage_changelog"
STAGE_SNAPSHOT = "reverse_etl_audit_stage_snapshot"


def flush(
    settings: AuditSettings, state: StateStore, sync: str, scope: str, *, defaults: dict[str, Any]
) -> int:
    """Write the outbox rows of ``(sync, scope)`` to the audit tables and delete them; then
    delete the sync's runs and changelog rows past the retention. Returns the changelog rows
    written. ``defaults``: ``kind`` and ``destination_type`` of runs whose start the outbox
    no longer holds. Raises on any failure (the outbox keeps what was not written)."""
    wh = warehouse_for(settings.url)
    engine = wh.audit_engine(settings.url)
    written = 0
    try:
        tables = audit_tables(settings.schema if wh.has_schemas else None)
        _ensure(engine, wh, tables, settings.schema)
        entries = outbox.pending(state, sync, scope)
        # A run's changelog rows are in the warehouse already only when an earlier flush
        # committed some and stopped before it forgot them: then each chunk first deletes
        # the rows of its outbox rows; otherwise (the normal case) a chunk is a pure append,
        # without a scan of the changelog per chunk.
        again = _written_before(engine, tables, sync, {e.run_id for e in entries if e.rows})
        for chunk in _chunks(entries):
            written += _write(engine, wh, tables, state, (sync, scope, again), chunk, defaults)
        cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
        with engine.begin() as c:
            c.execute(
                tables.changelog.delete().where(
                    tables.changelog.c.sync == sync, tables.changelog.c.settled_at < cutoff
                )
            )
            c.execute(
                tables.runs.delete().where(
                    tables.runs.c.sync == sync, tables.runs.c.started_at < cutoff
                )
            )
    finally:
        engine.dispose()
    return written


def _ensure(engine: sa.Engine, wh: Warehouse, tables: AuditTables, schema: str) -> None:
    with engine.begin() as c:
        if wh.has_schemas:
            c.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        for t in tables.stored:
            c.execute(sa.schema.CreateTable(t, if_not_exists=True))
    try:
        with engine.begin() as c:
            _snapshot_view(c, tables)
    except sa.exc.DBAPIError:
        with engine.connect() as c:  # another sync's flush made it at the same moment
            if not _is_view(c, tables):
                raise
    if wh.audit_indexes:
        with engine.begin() as c:
            for ix in audit_indexes(tables):
                c.execute(sa.schema.CreateIndex(ix, if_not_exists=True))


def _is_view(c: sa.Connection, tables: AuditTables) -> bool:
    return SNAPSHOT in sa.inspect(c).get_view_names(tables.snapshot.schema)


def _snapshot_view(c: sa.Connection, tables: AuditTables) -> None:
    """Make ``snapshot`` the view (``AuditTables.snapshot_query``), once. A ``snapshot`` table
    of an earlier version is migrated first: its contact rows move to ``contact_snapshot``
    (those of keys not there yet: a migration cut short runs again without doubling a row),
    then it is dropped (its event rows are in the changelog, as long as the retention keeps
    them)."""
    if _is_view(c, tables):
        return
    old, cs = tables.snapshot, tables.contact_snapshot
    name = c.dialect.identifier_preparer.format_table(old)
    if SNAPSHOT in sa.inspect(c).get_table_names(old.schema):
        cols = list(SNAPSHOT_COLUMNS)
        known = sa.exists().where(cs.c.sync == old.c.sync, cs.c.key == old.c.key)
        moved = sa.select(*[old.c[n] for n in cols]).where(old.c.operation != EVENT_SENT, ~known)
        c.execute(cs.insert().from_select(cols, moved))
        c.exec_driver_sql(f"DROP TABLE {name}")
    query = tables.snapshot_query().compile(
        dialect=c.dialect, compile_kwargs={"literal_binds": True}
    )
    c.exec_driver_sql(f"CREATE VIEW {name} AS {query}")


def _written_before(engine: sa.Engine, tables: AuditTables, sync: str, run_ids: set[str]) -> bool:
    """Whether the changelog holds rows of any of ``run_ids`` (one scan per flush)."""
    if not run_ids:
        return False
    ch = tables.changelog
    stmt = (
        sa.select(ch.c.run_id).where(ch.c.sync == sync, ch.c.run_id.in_(sorted(run_ids))).limit(1)
    )
    with engine.connect() as c:
        return c.execute(stmt).first() is not None


def _chunks(entries: Sequence[Entry]) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    rows = 0
    for e in entries:
        if chunk and rows + e.rows > CHUNK_ROWS:
            yield chunk
            chunk, rows = [], 0
        chunk.append(e)
        rows += e.rows
    if chunk:
        yield chunk


def _write(
    engine: sa.Engine,
    wh: Warehouse,
    tables: AuditTables,
    state: StateStore,
    where: tuple[str, str, bool],
    chunk: list[Entry],
    defaults: dict[str, Any],
) -> int:
    sync, again = where[0], where[2]
    bodies = outbox.bodies(state, [e.id for e in chunk])
    parts: list[tuple[pa.Table, Entry]] = []
    starts: dict[str, dict[str, Any]] = {}
    for e, body in zip(chunk, bodies, strict=True):
        if e.kind == outbox.RUN:
            starts[e.run_id] = orjson.loads(body)
        elif e.rows:
            parts.append((pa.ipc.open_stream(body, options=_ipc_read()).read_all(), e))
    records = outbox.run_records(state, {e.run_id for e in chunk})
    runs = [_run_row(rid, sync, records.get(rid), starts.get(rid, defaults)) for rid in records]
    changelog = _changelog(parts, where[:2]) if parts else None
    with engine.begin() as c:
        if changelog is not None:
            _changelog_rows(c, wh, tables, sync, changelog, again=again)
        if runs:
            c.execute(
                tables.runs.delete().where(tables.runs.c.run_id.in_([r["run_id"] for r in runs]))
            )
            c.execute(tables.runs.insert(), runs)
    # A run still running keeps its start in the outbox: its row is written again at its end
    # (or, killed, by the next run, which has marked it interrupted).
    running = {rid for rid, rec in records.items() if rec["status"] == "running"}
    outbox.delete(
        state, [e.id for e in chunk if not (e.kind == outbox.RUN and e.run_id in running)]
    )
    return changelog.num_rows if changelog is not None else 0


@cache
def _ipc_read() -> pa.ipc.IpcReadOptions:
    """Decompress on this thread (Arrow's thread pool costs 3x the CPU on a unit's few
    buffers, measured)."""
    return pa.ipc.IpcReadOptions(use_threads=False)


def _changelog(units: list[tuple[pa.Table, Entry]], where: tuple[str, str]) -> pa.Table:
    """The changelog rows of a chunk's units: what is one value per unit (run, batch, time)
    repeated to its rows by one ``take`` per column, the rest computed once over the chunk (no
    compute call per unit)."""
    unit = pa.concat_tables([u for u, _ in units])
    n = unit.num_rows
    # Row i belongs to unit which[i]: a unit's values repeated by one take per column.
    which = pa.array(np.repeat(np.arange(len(units)), [u.num_rows for u, _ in units]))

    def per_unit(value: Callable[[Entry], Any], kind: pa.DataType) -> pa.Array:
        return pa.array([value(e) for _, e in units], kind).take(which)

    at_type = changelog_schema().field("settled_at").type
    head = [
        _fill(where[0], n, pa.string()),
        _fill(where[1], n, pa.string()),
        per_unit(lambda e: e.run_id, pa.string()),
        per_unit(lambda e: e.id, pa.int64()),
    ]
    cols = [unit.column(f.name) for f in unit_schema()]
    # An event's dedup id is "<sync>:<key>" (the mapper's): derived here, not carried.
    sent = pc.equal(unit.column("operation"), EVENT_SENT)
    derived = pc.binary_join_element_wise(f"{where[0]}:", unit.column("key"), "")
    cols[unit_schema().get_field_index("dedup_id")] = pc.if_else(
        sent, derived, unit.column("dedup_id")
    )
    at = per_unit(lambda e: e.created_at, at_type)
    return pa.Table.from_arrays([*head, *cols, at], schema=changelog_schema())


def _fill(value: Any, n: int, kind: pa.DataType) -> pa.Array:
    """``n`` times ``value`` (vectorised: no list of ``n`` Python objects)."""
    return pc.fill_null(pa.nulls(n, kind), pa.scalar(value, kind))


def _changelog_rows(
    c: sa.Connection,
    wh: Warehouse,
    tables: AuditTables,
    sync: str,
    changelog: pa.Table,
    *,
    again: bool,
) -> None:
    ch, sn = tables.changelog, tables.contact_snapshot
    stage = wh.stage(c, STAGE_CHANGELOG, changelog)
    try:
        if again:  # a re-flush after a crash: the rows of these outbox rows, not twice
            batch_ids = pc.unique(changelog.column("batch_id")).to_pylist()
            run_ids = pc.unique(changelog.column("run_id")).to_pylist()
            c.execute(
                ch.delete().where(
                    ch.c.sync == sync, ch.c.run_id.in_(run_ids), ch.c.batch_id.in_(batch_ids)
                )
            )
        names = [f.name for f in changelog_schema()]
        c.execute(ch.insert().from_select(names, sa.select(*[stage.c[n] for n in names])))
    finally:
        wh.unstage(c, stage)
    # Event rows: the ``snapshot`` view reads them from the changelog; contact rows' latest
    # results are stored (they stay however old the changelog row).
    contact = pc.not_equal(changelog.column("operation"), EVENT_SENT)
    if not pc.any(contact).as_py():
        return
    # A sync is of one kind: no copy of the chunk unless it mixes them.
    latest = _latest(changelog if pc.all(contact).as_py() else changelog.filter(contact))
    stage = wh.stage(c, STAGE_SNAPSHOT, latest)
    try:
        c.execute(sn.delete().where(sn.c.sync == sync, sn.c.key.in_(sa.select(stage.c.key))))
        cols = list(SNAPSHOT_COLUMNS)
        c.execute(sn.insert().from_select(cols, sa.select(*[stage.c[n] for n in cols])))
    finally:
        wh.unstage(c, stage)


def _latest(changelog: pa.Table) -> pa.Table:
    """The last row of each key (rows are in the order they settled)."""
    n = changelog.num_rows
    if pc.count_distinct(changelog.column("key")).as_py() == n:  # each key once: no copy
        return changelog.select(list(SNAPSHOT_COLUMNS))
    indexed = changelog.select(["key"]).append_column("i", pa.array(range(n), pa.int64()))
    last = indexed.group_by("key", use_threads=False).aggregate([("i", "max")])
    return changelog.take(last.column("i_max")).select(list(SNAPSHOT_COLUMNS))


def _run_row(
    run_id: str, sync: str, rec: dict[str, Any] | None, start: dict[str, Any]
) -> dict[str, Any]:
    rec = rec or {}
    s = orjson.loads(rec["summary"]) if rec.get("summary") else {}
    return {
        "run_id": run_id,
        "sync": sync,
        "scope": rec.get("scope", ""),
        "kind": start.get("kind", ""),
        "destination_type": start.get("destination_type", ""),
        "dagster_run_id": start.get("dagster_run_id"),
        "started_at": utc(rec["started_at"]) if rec.get("started_at") else None,
        "finished_at": utc(rec["finished_at"]) if rec.get("finished_at") else None,
        "status": rec.get("status", "unknown"),
        "rows_read": s.get("rows_read"),
        "rows_delivered": s.get("delivered"),
        "rows_rejected": s.get("rejected"),
        "rows_possibly_duplicated": s.get("possibly_duplicated"),
        "rows_late": s.get("late_rows"),
        "rows_removed": s.get("removed"),
        "rows_skipped": s.get("skipped"),
        "checkpoint_before": _json(s.get("hwm_before")),
        "checkpoint_after": _json(s.get("hwm_after")),
        "error_message": rec.get("error"),
    }


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def table_counts(settings: AuditSettings, sync: str) -> dict[str, int]:
    """Rows of ``sync`` in each audit table users query (``runs``, ``changelog``, the
    ``snapshot`` view: Dagster's row counts); {} before the first write."""
    wh = warehouse_for(settings.url)
    engine = wh.audit_engine(settings.url)
    tables = audit_tables(settings.schema if wh.has_schemas else None)
    try:
        with engine.connect() as c:
            return {
                t.name: int(
                    c.execute(
                        sa.select(sa.func.count()).select_from(t).where(t.c.sync == sync)
                    ).scalar()
                    or 0
                )
                for t in tables.queried
            }
    finally:
        engine.dispose()
