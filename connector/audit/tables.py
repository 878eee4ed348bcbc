"""The audit tables (``runs``, ``changelog``, ``contact_snapshot``), the ``snapshot`` view and
the Arrow form of changelog rows.

Column by column in docs/audit.md; the names are stable (dbt models read them). No primary
keys or unique constraints: the writer keeps rows unique (delete, then insert, in one
transaction), and DuckDB checks constraints of a delete-then-insert too eagerly.

``snapshot`` is a view: the stored ``contact_snapshot`` rows (contact syncs: each key's latest
result, upserted by the writer, kept however old) and, for event syncs, each key's latest
changelog row (an event key is sent once: its latest result is its latest changelog row, so it
is not stored twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import pyarrow as pa
else:
    from ..core.lazy import pa


RUNS, CHANGELOG, SNAPSHOT = "runs", "changelog", "snapshot"
CONTACT_SNAPSHOT = "contact_snapshot"  # the stored part of the ``snapshot`` view

# Operations (changelog.operation) and results (changelog.result).
EVENT_SENT = "event_sent"
CONTACT_ADDED = "contact_added"
CONTACT_CHANGED = "contact_changed"
CONTACT_REMOVED = "contact_removed"
CONTACT_UNLISTED = "contact_unlisted"
DELIVERED = "delivered"
REJECTED = "rejected"
POSSIBLY_DUPLICATED = "possibly_duplicated"
HELD = "held"


@cache
def unit_schema() -> pa.Schema:
    """One settled unit's changelog rows as the recorder keeps them (the outbox body)."""
    return pa.schema(
        [
            ("key", pa.string()),
            ("operation", pa.string()),
            ("result", pa.string()),
            ("reason", pa.string()),
            ("vendor_status", pa.int32()),
            ("dedup_id", pa.string()),
        ]
    )


@cache
def changelog_schema() -> pa.Schema:
    """The changelog rows as written (the unit's columns with where and when)."""
    return pa.schema(
        [
            ("sync", pa.string()),
            ("scope", pa.string()),
            ("run_id", pa.string()),
            ("batch_id", pa.int64()),
            *unit_schema(),
            ("settled_at", pa.timestamp("us", tz="UTC")),
        ]
    )


SNAPSHOT_COLUMNS = (
    "sync",
    "key",
    "operation",
    "result",
    "reason",
    "vendor_status",
    "dedup_id",
    "run_id",
    "settled_at",
)


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


# MySQL/MariaDB: keys compare by their bytes, and the staged rows (``Warehouse.stage``) carry
# the same collation, whatever the database's default (other dialects ignore these).
MYSQL_TEXT: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


@dataclass(frozen=True)
class AuditTables:
    """The tables and the view in one schema (None: the database's default, e.g. SQLite)."""

    runs: sa.Table
    changelog: sa.Table
    contact_snapshot: sa.Table
    #: The view users query (``snapshot_query``).
    snapshot: sa.TableClause

    @property
    def stored(self) -> tuple[sa.Table, sa.Table, sa.Table]:
        """The tables: runs, changelog, contact_snapshot."""
        return (self.runs, self.changelog, self.contact_snapshot)

    @property
    def queried(self) -> tuple[sa.TableClause, ...]:
        """What users query (Dagster's assets): runs, changelog, snapshot."""
        return (self.runs, self.changelog, self.snapshot)

    def snapshot_query(self) -> sa.CompoundSelect:
        """The ``snapshot`` view's query: the contact rows UNION ALL, per event key, its
        latest changelog row (``row_number()`` in a subquery, no ``QUALIFY``: DuckDB,
        PostgreSQL, MySQL 8/MariaDB 10.2+, Snowflake and SQLite read it alike)."""
        ch, cs = self.changelog, self.contact_snapshot
        latest = (
            sa.func.row_number()
            .over(
                partition_by=(ch.c.sync, ch.c.key),
                order_by=(ch.c.settled_at.desc(), ch.c.batch_id.desc()),
            )
            .label("latest")
        )
        events = (
            sa.select(*[ch.c[n] for n in SNAPSHOT_COLUMNS], latest)
            .where(ch.c.operation == EVENT_SENT)
            .subquery("events")
        )
        return sa.union_all(
            sa.select(*[cs.c[n] for n in SNAPSHOT_COLUMNS]),
            sa.select(*[events.c[n] for n in SNAPSHOT_COLUMNS]).where(events.c.latest == 1),
        )


def audit_tables(schema: str | None) -> AuditTables:
    """The tables' definitions in ``schema``."""
    md = sa.MetaData(schema=schema)
    runs = sa.Table(
        RUNS,
        md,
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("destination_type", sa.String(64), nullable=False),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("started_at", _tz()),
        sa.Column("finished_at", _tz()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_read", sa.BigInteger),
        sa.Column("rows_delivered", sa.BigInteger),
        sa.Column("rows_rejected", sa.BigInteger),
        sa.Column("rows_possibly_duplicated", sa.BigInteger),
        sa.Column("rows_late", sa.BigInteger),
        sa.Column("rows_removed", sa.BigInteger),
        sa.Column("rows_skipped", sa.BigInteger),
        sa.Column("checkpoint_before", sa.Text),
        sa.Column("checkpoint_after", sa.Text),
        sa.Column("error_message", sa.Text),
        **MYSQL_TEXT,
    )
    changelog = sa.Table(
        CHANGELOG,
        md,
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.BigInteger, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("vendor_status", sa.Integer),
        sa.Column("dedup_id", sa.Text),
        sa.Column("settled_at", _tz(), nullable=False),
        **MYSQL_TEXT,
    )
    contact_snapshot = sa.Table(
        CONTACT_SNAPSHOT,
        md,
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("vendor_status", sa.Integer),
        sa.Column("dedup_id", sa.Text),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("settled_at", _tz(), nullable=False),
        **MYSQL_TEXT,
    )
    snapshot = sa.table(SNAPSHOT, *(sa.column(n) for n in SNAPSHOT_COLUMNS), schema=schema)
    return AuditTables(runs, changelog, contact_snapshot, snapshot)


def indexes(tables: AuditTables) -> list[sa.Index]:
    """Indexes for servers with an index ("what happened to key X"; DuckDB scans instead)."""
    return [
        sa.Index("ix_reverse_etl_changelog_key", tables.changelog.c.sync, tables.changelog.c.key),
        sa.Index("ix_reverse_etl_changelog_run", tables.changelog.c.run_id),
        sa.Index(
            "ix_reverse_etl_contact_snapshot_key",
            tables.contact_snapshot.c.sync,
            tables.contact_snapshot.c.key,
        ),
    ]
