"""The stored hashes of contact syncs: one table of the state store, made by a step of
``state.MIGRATIONS`` (this module imports nothing of the store, so ``state`` can import it).

``connector_contact_hashes(sync, key, hash, confirmed_at, ord, identifiers)``: one row per
source row the vendor confirmed. ``key`` is the row's primary key as text (``key_strings``),
``hash`` the hash of its mapped values (``diff``), ``ord`` the primary key encoded so that
byte order is the warehouse's key order (``keyorder``; the diff reads it in ranges through
the index on ``(sync, ord, hash)``), ``identifiers`` the contact's identifiers as JSON text (what
``on_removed: unlist`` needs once the source row is gone).

Stores made before this step had the table without ``ord`` and ``identifiers`` (it was
created on first use): the step adds both columns and the index, losing nothing. The first
run of each contact sync afterwards fills ``ord`` from ``key`` (``HashStore.prepare``) and
``identifiers`` from the source rows it finds unchanged.
"""

from __future__ import annotations

import sqlalchemy as sa

from .. import migrate

metadata = sa.MetaData()

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


def migration(c: sa.Connection) -> None:
    """The ``state.MIGRATIONS`` step: the table, or on a store that has the table of the
    connector that made it on first use, its two new columns; then the covering index."""
    contact_hashes.create(c, checkfirst=True)  # with the index when it is new
    migrate.add_columns(contact_hashes, "ord", "identifiers")(c)
    ord_index.create(c, checkfirst=True)
