"""The stored hashes of a contact sync: ``connector_contact_hashes(sync, key, hash,
confirmed_at)``, one row per source row the vendor confirmed. Kept in this module's own
metadata (created on first use on the state store's engine) so the hub schema stays as is.

A page's keys are looked up with one indexed query per page: memory is bounded by the page.
(The warehouse orders keys by their type and collation, the store by text, so the page's own
key list drives the lookup instead of a merge of two ordered streams.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import StateError
from ..state import StateStore, now

metadata = sa.MetaData()

contact_hashes = sa.Table(
    "connector_contact_hashes",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(1000), primary_key=True),
    sa.Column("hash", sa.String(32), nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
)

_LOOKUP = 5_000  # keys per query (SQLite's default bound-variable limit is 32,766)
_created: set[int] = set()


class HashStore:
    """Reads and moves the stored hashes of contact syncs."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine
        if id(self.engine) not in _created:
            try:
                metadata.create_all(self.engine)
            except sa.exc.SQLAlchemyError as exc:
                raise StateError(f"cannot create {contact_hashes.name}: {exc}") from None
            _created.add(id(self.engine))

    def lookup(self, sync: str, keys: Sequence[str]) -> dict[str, str]:
        """key → stored hash, for the given keys that have one."""
        # The driver's own cursor: building an expanding IN of 5,000 binds and row objects in
        # SQLAlchemy cost more than the query (half of an unchanged run's time, measured).
        out: dict[str, str] = {}
        table = contact_hashes.name
        pg = self.engine.dialect.name == "postgresql"
        with self.engine.connect() as c:
            cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for start in range(0, len(keys), _LOOKUP):
                    part = list(keys[start : start + _LOOKUP])
                    if pg:
                        cur.execute(
                            f"SELECT key, hash FROM {table} WHERE sync = %s AND key = ANY(%s)",
                            (sync, part),
                        )
                    else:
                        marks = ",".join("?" * len(part))
                        cur.execute(
                            f"SELECT key, hash FROM {table} WHERE sync = ? AND key IN ({marks})",
                            [sync, *part],
                        )
                    out.update(cur.fetchall())
            finally:
                cur.close()
        return out

    def confirm(self, sync: str, rows: Iterable[tuple[str, str]]) -> int:
        """Store the hashes of rows the vendor confirmed (insert or replace)."""
        stamp = now()
        values = [{"sync": sync, "key": k, "hash": h, "confirmed_at": stamp} for k, h in rows]
        if not values:
            return 0
        dialect = self.engine.dialect.name
        ins: Any
        if dialect == "postgresql":
            ins = postgresql.insert(contact_hashes)
        elif dialect == "sqlite":
            ins = sqlite.insert(contact_hashes)
        else:  # pragma: no cover - the store runs on SQLite or PostgreSQL
            raise StateError(f"contact hashes need SQLite or PostgreSQL, not {dialect}")
        stmt = ins.on_conflict_do_update(
            index_elements=["sync", "key"],
            set_={"hash": ins.excluded.hash, "confirmed_at": ins.excluded.confirmed_at},
        )
        with self.engine.begin() as c:
            c.execute(stmt, values)
        return len(values)

    def count(self, sync: str) -> int:
        """The number of rows of ``sync`` whose hash is stored (confirmed by the vendor)."""
        with self.engine.connect() as c:
            return int(
                c.execute(
                    sa.select(sa.func.count())
                    .select_from(contact_hashes)
                    .where(contact_hashes.c.sync == sync)
                ).scalar()
                or 0
            )

    def forget(self, sync: str) -> None:
        """Delete every stored hash of ``sync``: its next run sends every row again."""
        with self.engine.begin() as c:
            c.execute(contact_hashes.delete().where(contact_hashes.c.sync == sync))
