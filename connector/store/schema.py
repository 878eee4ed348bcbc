"""Every table of the state store and the migrations that make them (SQLAlchemy Core).

``connector_checkpoints``, ``connector_batches`` (the ledger), ``connector_rejects``,
``connector_runs``, ``connector_property_types`` and ``connector_account_settings`` (what a run
learned about an account), ``connector_leases`` (``lease``), ``connector_pacer`` (the shared
pacer's slots, ``deliver.shared_pacer``), ``connector_contact_hashes`` and
``connector_contact_idents`` (contact syncs: the identifiers confirmed rows own,
``contacts.conflicts``) and ``connector_window_keys`` and
``connector_window_units`` (the lookback window, ``window``).

The schema is versioned (``migrate``): a new table or column is one more entry at the end of
``MIGRATIONS``; never edit a shipped step.

``connector_contact_hashes(sync, key, hash, confirmed_at, ord, identifiers)``: one row per
source row the vendor confirmed. ``key`` is the row's primary key as text (``key_strings``),
``hash`` the hash of its mapped values (``contacts.diff``), ``ord`` the primary key encoded so
that byte order is the warehouse's key order (``contacts.keyorder``; the diff reads it in ranges
through the index on ``(sync, ord, hash)``), ``identifiers`` the contact's identifiers as JSON
text (what ``on_removed: unlist`` needs once the source row is gone). Stores made before step 5
had the table without ``ord`` and ``identifiers`` (it was created on first use): the step adds
both columns and the index, losing nothing. The first run of each contact sync afterwards fills
``ord`` from ``key`` (``HashStore.prepare``) and ``identifiers`` from the source rows it finds
unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from .migrate import Migration, add_columns, create

metadata = sa.MetaData()

checkpoints = sa.Table(
    "connector_checkpoints",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("position", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

batches = sa.Table(
    "connector_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("first_pos", sa.Text, nullable=False),
    sa.Column("last_pos", sa.Text, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_connector_batches_sync_scope", "sync", "scope"),
)

rejects = sa.Table(
    "connector_rejects",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(1000), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Open while closed_at is NULL; a store made before these columns gets them from
    # migration 2, its existing rejects reading as open.
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_by_run", sa.String(64), nullable=True),
    sa.Column("resolution", sa.String(32), nullable=True),  # see CLOSED_*
)

runs = sa.Table(
    "connector_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("sync", sa.String(128), nullable=False, index=True),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # running|success|failed|interrupted
    sa.Column("summary", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

property_types = sa.Table(
    "connector_property_types",
    metadata,
    sa.Column("account", sa.String(200), primary_key=True),
    sa.Column("event_name", sa.String(500), primary_key=True),
    sa.Column("property", sa.String(200), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
)

# What a run learned about a destination account (e.g. the Brevo batch body shape it accepts).
account_settings = sa.Table(
    "connector_account_settings",
    metadata,
    sa.Column("account", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One run per (sync, scope) at a time (``connector.lease``): the holder renews ``expires_at``
# while it runs; a dead holder's lease is taken over once it expired (or at once when the
# holder was a process of this machine that is gone).
leases = sa.Table(
    "connector_leases",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),  # a token per acquisition
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process", sa.String(200), nullable=False),  # machine, pid namespace, start time
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# Created with the store, by migration 4 in ``MIGRATIONS`` (below).
pacer_slots = sa.Table(
    "connector_pacer",
    metadata,
    # ratelimit.account_key: destination type, base URL and a hash of the key, never the key.
    sa.Column("account", sa.String(500), primary_key=True),
    sa.Column("next_at", sa.Float, nullable=False),  # seconds since the epoch, database clock
    sa.Column("paused_until", sa.Float, nullable=False),
)

contact_hashes = sa.Table(
    "connector_contact_hashes",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(1000), primary_key=True),
    sa.Column("hash", sa.String(32), nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ord", sa.LargeBinary, nullable=True),
    sa.Column("identifiers", sa.Text, nullable=True),
)
# Covering: the diff's range queries read (ord, hash) from the index alone, in order.
ord_index = sa.Index(
    "ix_connector_contact_hashes_ord",
    contact_hashes.c.sync,
    contact_hashes.c.ord,
    contact_hashes.c.hash,
)

# The lookback window's rows handled (``store.window``): one per row delivered or rejected whose
# cursor lies inside the window behind its scope's checkpoint, pruned as the checkpoint moves.
window_keys = sa.Table(
    "connector_window_keys",
    metadata,
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("cursor_num", sa.BigInteger, nullable=False),  # ``read.lookback.cursor_number``
    sa.Column("row_hash", sa.BigInteger, nullable=False),  # ``read.lookback.row_hash``
    sa.Index("ix_connector_window_keys", "sync", "scope", "cursor_num"),
)

# The lookback window's rows handled, packed (``store.window``): one row per settle that
# recorded any, its rows' ``(cursor_num, row_hash)`` pairs as two little-endian int64 arrays
# (``cursor_nums``, ``row_hashes``) and their cursor range; pruned whole once the window has
# passed its newest row. ``connector_window_keys`` keeps the marks and the rows of older stores.
window_units = sa.Table(
    "connector_window_units",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("min_cursor", sa.BigInteger, nullable=False),
    sa.Column("max_cursor", sa.BigInteger, nullable=False),
    sa.Column("cursor_nums", sa.LargeBinary, nullable=False),
    sa.Column("row_hashes", sa.LargeBinary, nullable=False),
    sa.Index("ix_connector_window_units", "sync", "scope", "max_cursor"),
)


# Identifier conflicts across runs (``contacts.conflicts``): each identifier value (e-mails
# lower-cased) a confirmed row of a contact sync carries, and that row's key. Written in the
# transaction that stores the row's hash; a row about to be sent whose identifier belongs to
# another key here is a reject.
contact_idents = sa.Table(
    "connector_contact_idents",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(1000), primary_key=True),
    sa.Column("key", sa.String(1000), nullable=False),
    sa.Index("ix_connector_contact_idents_key", "sync", "scope", "key"),
)


def contact_idents_migration(c: sa.Connection) -> None:
    """The ``MIGRATIONS`` step: the table, filled from the identifiers the hashes table keeps
    for confirmed rows (so a store upgraded with duplicates in it does not let one more row
    overwrite a profile): every identifier, e-mails lower-cased, the first key in key order
    owning a value two stored rows share. 5,000 rows a statement."""
    import json  # (orjson is not a dependency of the store layer)

    contact_idents.create(c, checkfirst=True)
    h = contact_hashes.c
    after: tuple[str, str] | None = None
    while True:
        q = sa.select(h.sync, h.key, h.identifiers).where(h.identifiers.is_not(None))
        if after is not None:
            q = q.where(sa.tuple_(h.sync, h.key) > sa.tuple_(*after))
        rows = c.execute(q.order_by(h.sync, h.key).limit(5_000)).all()
        if not rows:
            return
        after = (rows[-1][0], rows[-1][1])
        owned: dict[tuple[str, str, str], str] = {}
        for sync, key, text in rows:
            try:
                idents = json.loads(text)
            except ValueError:
                continue
            if not isinstance(idents, dict):
                continue
            for kind, value in idents.items():
                if isinstance(value, str) and value and len(value) <= 1000:
                    norm = value.lower() if kind == "email" else value
                    owned.setdefault((sync, kind, norm), key)
        if owned:
            taken = {
                (r[0], r[1], r[2])
                for r in c.execute(
                    sa.select(
                        contact_idents.c.sync, contact_idents.c.kind, contact_idents.c.value
                    ).where(contact_idents.c.value.in_([v for _, _, v in owned]))
                )
            }
            fresh = [
                {"sync": s_, "scope": "incremental", "kind": k, "value": v, "key": key}
                for (s_, k, v), key in owned.items()
                if (s_, k, v) not in taken
            ]
            if fresh:
                c.execute(contact_idents.insert(), fresh)


def contact_hashes_migration(c: sa.Connection) -> None:
    """The ``MIGRATIONS`` step: the table, or on a store that has the table of the
    connector that made it on first use, its two new columns; then the covering index."""
    contact_hashes.create(c, checkfirst=True)  # with the index when it is new
    add_columns(contact_hashes, "ord", "identifiers")(c)
    ord_index.create(c, checkfirst=True)


# Rows handled per period of the cursor (``periods``): one row per (sync, scope, period). The
# row ``BASELINE`` of a scope holds the checkpoint it had when the store got this table: its rows
# up to there were handled before anything counted them, so reconcile compares the rows after.
periods = sa.Table(
    "connector_periods",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("period", sa.String(32), primary_key=True),
    sa.Column("delivered", sa.BigInteger, nullable=False),
    sa.Column("rejected", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("position", sa.Text, nullable=True),  # the BASELINE row's checkpoint
)
BASELINE = "~counted-after"


def periods_migration(c: sa.Connection) -> None:
    """The ``MIGRATIONS`` step: the table, and a ``BASELINE`` row per existing checkpoint."""
    periods.create(c, checkfirst=True)
    stamp = datetime.now(UTC)
    for sync, scope, position in c.execute(
        sa.select(checkpoints.c.sync, checkpoints.c.scope, checkpoints.c.position)
    ).all():
        c.execute(
            periods.insert().values(
                sync=sync,
                scope=scope,
                period=BASELINE,
                delivered=0,
                rejected=0,
                updated_at=stamp,
                position=position,
            )
        )


# Audit rows settled by runs and not yet written to the warehouse's audit tables (connector.audit):
# ``kind`` "rows" (``body``: the changelog rows of one settled unit as an Arrow IPC stream,
# ``rows`` of them) or "run" (a run to write to the runs table; ``body``: JSON).
audit_outbox = sa.Table(
    "connector_audit_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_connector_audit_outbox_sync_scope", "sync", "scope", "id"),
    sqlite_autoincrement=True,  # ids never come back: they name the changelog rows' unit
)

# The schema, step by step: append, never edit a shipped step (see ``connector.migrate``).
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "checkpoints, ledger, rejects, runs, property types, account settings",
        create(checkpoints, batches, rejects, runs, property_types, account_settings),
    ),
    Migration(
        2,
        "reject status (closed_at, closed_by_run, resolution)",
        add_columns(rejects, "closed_at", "closed_by_run", "resolution"),
    ),
    Migration(3, "run leases", create(leases)),
    Migration(4, "shared pacer slots", create(pacer_slots)),
    Migration(5, "contact hashes (key order, identifiers)", contact_hashes_migration),
    Migration(6, "lookback window keys", create(window_keys)),
    Migration(7, "rows handled per period (reconcile)", periods_migration),
    Migration(8, "audit outbox", create(audit_outbox)),
    Migration(9, "contact identifiers of confirmed rows (conflicts)", contact_idents_migration),
    Migration(10, "lookback window units (a settle's rows packed)", create(window_units)),
]
SCHEMA_VERSION = len(MIGRATIONS)
