"""The stored hashes of contact syncs (``schema.contact_hashes``): reading them for the diff,
storing what the vendor confirmed.

Two ways to diff a page against them:

- **merge** (a full scan whose key has an order-preserving encoding, ``keyorder``): the
  pages come in key order, so the stored rows of one page are one range of the ``(sync, ord,
  hash)`` index: ``(last ord of the previous page, last ord of this page]``. One query per
  page (``summary``) returns the range as one value, each row's ord and hash concatenated:
  equal to the page's means every row is unchanged, and nothing per row crosses the driver.
  The matching is ``merge``'s. Memory: the page and its range.
- **lookup** (a cursor run, or a key with no encoding): the page's keys are looked up by key,
  one ``IN``/``= ANY`` query per 5,000 keys.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import sqlalchemy as sa

from ..core.errors import StateError
from ..core.logcontext import get_logger
from ..destinations.contact_endpoint import identity
from ..store.schema import contact_hashes, contact_idents
from ..store.state import INCREMENTAL, StateStore, now
from .keyorder import KeyOrder

log = get_logger("connector.contacts")

_LOOKUP = 5_000  # keys per query (SQLite's default bound-variable limit is 32,766)
_TABLE = contact_hashes.name
_IDENTS = contact_idents.name
# Identifier rows written per statement with the hashes (a row carries one to five).
_IDENT_UPSERT = (
    f"INSERT INTO {_IDENTS} (sync, scope, kind, value, key) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (sync, scope, kind, value) DO UPDATE SET key = excluded.key"
)


class HashStore:
    """Reads and moves the stored hashes of contact syncs."""

    def __init__(self, state: StateStore) -> None:
        self.engine = state.engine
        self.pg = self.engine.dialect.name == "postgresql"
        self.order: KeyOrder | None = None  # set by ``prepare``: ords are written on confirm
        # Identifier names whose values ``confirm`` records as owned by the row's key
        # (``contacts.conflicts``); empty: none.
        self.ident_kinds: tuple[str, ...] = ()

    # -- raw driver cursors: SQLAlchemy's per-row objects cost more than these queries ------
    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self.engine.connect() as c:
            cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                yield cur
            finally:
                cur.close()

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self.pg:
            sql = sql.replace("%s", "?")
        with self._cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    # -- key order ----------------------------------------------------------------------
    def prepare(self, sync: str, order: KeyOrder | None) -> int:
        """Use ``order`` for ``sync``'s ords from now on; encode again the stored keys whose
        ord is missing (rows stored before ords existed) or of another scheme (the key's type
        changed). Returns the rows re-encoded; keys that cannot be of this kind keep no ord
        (the merge never sees them: they are not counted as removed)."""
        self.order = order
        if order is None or not self.needs_prepare(sync, order):
            return 0
        where = "sync = %s AND (ord IS NULL OR ord <= %s OR ord >= %s)"
        done = skipped = 0
        after: str | None = None
        while True:
            more, args = ("", []) if after is None else (" AND key > %s", [after])
            keys = [
                r[0]
                for r in self._query(
                    f"SELECT key FROM {_TABLE} WHERE {where}{more} ORDER BY key LIMIT %s",
                    [sync, order.prefix, order.upper, *args, _LOOKUP],
                )
            ]
            if not keys:
                break
            after = keys[-1]
            values = []
            for key in keys:
                o = order.from_key(key)
                if o is None:
                    skipped += 1
                else:
                    values.append((o, sync, key))
            if values:
                sql = f"UPDATE {_TABLE} SET ord = %s WHERE sync = %s AND key = %s"
                with self.engine.begin() as c:
                    cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
                    try:
                        cur.executemany(sql if self.pg else sql.replace("%s", "?"), values)
                    finally:
                        cur.close()
            done += len(values)
        if skipped:
            log.warning(
                "%s: %d stored keys cannot be keys of this source's primary key (its type "
                "changed?); they are kept, and never counted as removed",
                sync,
                skipped,
            )
        log.info("%s: stored the key order of %d confirmed contacts", sync, done)
        return done

    def needs_prepare(self, sync: str, order: KeyOrder) -> bool:
        """Whether some of ``sync``'s stored rows lack an ord of ``order``'s scheme (three
        index seeks: the scheme's ords are one block of the ``(sync, ord)`` order)."""
        probe: list[tuple[str, list[Any]]] = [
            ("sync = %s AND ord IS NULL", [sync]),
            ("sync = %s AND ord <= %s", [sync, order.prefix]),
            ("sync = %s AND ord >= %s", [sync, order.upper]),
        ]
        return any(self._query(f"SELECT 1 FROM {_TABLE} WHERE {w} LIMIT 1", p) for w, p in probe)

    # -- merge ----------------------------------------------------------------------------
    def summary(
        self, sync: str, lo: bytes, hi: bytes, limit: int, *, hashes: bool = True
    ) -> tuple[int, bytes]:
        """The first ``limit`` stored rows of ``sync`` with ``lo < ord <= hi``: their count,
        and each row's ord followed by its hash (its ord alone unless ``hashes``),
        concatenated, in one value.

        The order of an aggregate's input is not promised; the caller only relies on it for
        a page found equal, and ords are self-delimiting, so equal bytes are equal rows in
        the page's order.
        """
        if self.pg:
            row = "ord || convert_to(hash, 'UTF8')" if hashes else "ord"
            agg = f"count(*), string_agg({row}, ''::bytea)"
        else:
            row = "ord || hash" if hashes else "ord"
            agg = f"count(*), CAST(group_concat({row}, '') AS BLOB)"
        sql = (
            f"SELECT {agg} FROM (SELECT ord, hash FROM {_TABLE} WHERE sync = %s AND ord > %s "
            "AND ord <= %s ORDER BY ord LIMIT %s) r"
        )
        n, data = self._query(sql, [sync, lo, hi, limit])[0]
        return int(n), bytes(data) if data is not None else b""

    def range(
        self, sync: str, lo: bytes, hi: bytes, *, last: bool = False, limit: int = 20_000
    ) -> list[tuple[bytes, str]]:
        """(ord, hash) of the first ``limit`` stored rows with ``lo < ord <= hi`` (``< hi``
        when ``last``), in ord order."""
        op = "<" if last else "<="
        rows = self._query(
            f"SELECT ord, hash FROM {_TABLE} WHERE sync = %s AND ord > %s AND ord {op} %s "
            "ORDER BY ord LIMIT %s",
            [sync, lo, hi, limit],
        )
        return [(bytes(o), h) for o, h in rows]

    def gone(self, sync: str, ords: Sequence[bytes]) -> list[tuple[str, dict[str, str] | None]]:
        """(key, stored identifiers or None) of the rows with these ords, in ord order."""
        out: list[tuple[str, dict[str, str] | None]] = []
        for start in range(0, len(ords), _LOOKUP):
            part = list(ords[start : start + _LOOKUP])
            if self.pg:
                rows = self._query(
                    f"SELECT key, identifiers FROM {_TABLE} WHERE sync = %s AND ord = ANY(%s) "
                    "ORDER BY ord",
                    [sync, part],
                )
            else:
                marks = ",".join("?" * len(part))
                rows = self._query(
                    f"SELECT key, identifiers FROM {_TABLE} WHERE sync = ? AND ord IN ({marks}) "
                    "ORDER BY ord",
                    [sync, *part],
                )
            out += [(k, orjson.loads(i) if i else None) for k, i in rows]
        return out

    def identifiers_in_use(
        self, sync: str, wanted: set[tuple[str, str]], skip: set[bytes]
    ) -> set[tuple[str, str]]:
        """Which of ``wanted`` (identifier name, value; e-mails lower-cased) a stored row of
        ``sync`` carries, leaving out the rows whose ord is in ``skip`` (the vanished ones).
        One pass over the sync's rows in key order, ``_LOOKUP`` at a time: memory is the
        page and ``wanted``."""
        found: set[tuple[str, str]] = set()
        after: str | None = None
        while True:
            more, args = ("", []) if after is None else (" AND key > %s", [after])
            rows = self._query(
                f"SELECT key, ord, identifiers FROM {_TABLE} WHERE sync = %s{more} "
                "ORDER BY key LIMIT %s",
                [sync, *args, _LOOKUP],
            )
            if not rows:
                return found
            after = rows[-1][0]
            for _, o, text in rows:
                if not text or (o is not None and bytes(o) in skip):
                    continue
                found |= identity(orjson.loads(text)) & wanted
            if len(rows) < _LOOKUP:
                return found

    # -- lookup ---------------------------------------------------------------------------
    def lookup(self, sync: str, keys: Sequence[str]) -> dict[str, str]:
        """key → stored hash, for the given keys that have one."""
        out: dict[str, str] = {}
        with self._cursor() as cur:
            for start in range(0, len(keys), _LOOKUP):
                part = list(keys[start : start + _LOOKUP])
                if self.pg:
                    cur.execute(
                        f"SELECT key, hash FROM {_TABLE} WHERE sync = %s AND key = ANY(%s)",
                        (sync, part),
                    )
                else:
                    marks = ",".join("?" * len(part))
                    cur.execute(
                        f"SELECT key, hash FROM {_TABLE} WHERE sync = ? AND key IN ({marks})",
                        [sync, *part],
                    )
                out.update(cur.fetchall())
        return out

    # -- writes ---------------------------------------------------------------------------
    def confirm(
        self,
        sync: str,
        rows: Iterable[tuple[str, str, dict[str, str] | None]],
        *,
        fresh: Collection[str] = (),
    ) -> int:
        """Store the hashes of rows the vendor confirmed (insert or replace): (key, hash,
        identifiers) each; the key's ord comes from ``prepare``'s order. The driver's own
        ``executemany`` (SQLAlchemy's per-row parameter handling cost more than the insert).

        In the same transaction, the values of the ``ident_kinds`` identifiers each row
        carries become its key's (``connector_contact_idents``), replacing the ones the key
        held (``fresh``: keys known to hold none, no delete needed)."""
        dialect = self.engine.dialect
        if dialect.name not in ("postgresql", "sqlite"):  # pragma: no cover
            raise StateError(f"contact hashes need SQLite or PostgreSQL, not {dialect.name}")
        stamp: Any = now()
        to_db = contact_hashes.c.confirmed_at.type.bind_processor(dialect)
        if to_db is not None:
            stamp = to_db(stamp)  # SQLite: the text SQLAlchemy writes and reads
        order = self.order
        dumps = orjson.dumps
        rows = rows if isinstance(rows, list) else list(rows)
        values = [
            (
                sync,
                k,
                h,
                stamp,
                order.from_key(k) if order is not None else None,
                dumps(i).decode() if i is not None else None,
            )
            for k, h, i in rows
        ]
        if not values:
            return 0
        sql = (
            f"INSERT INTO {_TABLE} (sync, key, hash, confirmed_at, ord, identifiers) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sync, key) DO UPDATE SET "
            "hash = excluded.hash, confirmed_at = excluded.confirmed_at, ord = excluded.ord, "
            "identifiers = excluded.identifiers"
        )
        with self.engine.begin() as c:
            cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.executemany(sql if self.pg else sql.replace("%s", "?"), values)
                if self.ident_kinds:
                    self._own(cur, sync, rows, fresh)
            finally:
                cur.close()
        return len(values)

    def _own(
        self,
        cur: Any,
        sync: str,
        rows: list[tuple[str, str, dict[str, str] | None]],
        fresh: Collection[str],
    ) -> None:
        """Record the identifiers of confirmed rows as their keys' (see ``confirm``)."""
        kinds = self.ident_kinds
        stale = [k for k, _, _ in rows if k not in fresh]
        if stale:
            self._delete_idents(cur, sync, stale)
        owned = []
        for key, _, ids in rows:
            if not ids:
                continue
            for kind in kinds:
                value = ids.get(kind)
                if value:
                    owned.append(
                        (sync, INCREMENTAL, kind, value.lower() if kind == "email" else value, key)
                    )
        if owned:
            cur.executemany(_IDENT_UPSERT if self.pg else _IDENT_UPSERT.replace("%s", "?"), owned)

    def _delete_idents(self, cur: Any, sync: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _LOOKUP):
            part = list(keys[start : start + _LOOKUP])
            if self.pg:
                cur.execute(
                    f"DELETE FROM {_IDENTS} WHERE sync = %s AND scope = %s AND key = ANY(%s)",
                    (sync, INCREMENTAL, part),
                )
            else:
                marks = ",".join("?" * len(part))
                cur.execute(
                    f"DELETE FROM {_IDENTS} WHERE sync = ? AND scope = ? AND key IN ({marks})",
                    [sync, INCREMENTAL, *part],
                )

    # -- identifiers of confirmed rows (``contacts.conflicts``) ----------------------------
    def owners(self, sync: str, kind: str, values: Sequence[str]) -> dict[str, str]:
        """value → the key of the confirmed row that carries it, for the given values of one
        identifier (e-mails lower-cased) that one carries; ``_LOOKUP`` values a query."""
        out: dict[str, str] = {}
        with self._cursor() as cur:
            for start in range(0, len(values), _LOOKUP):
                part = list(values[start : start + _LOOKUP])
                if self.pg:
                    cur.execute(
                        f"SELECT value, key FROM {_IDENTS} WHERE sync = %s AND scope = %s "
                        "AND kind = %s AND value = ANY(%s)",
                        (sync, INCREMENTAL, kind, part),
                    )
                else:
                    marks = ",".join("?" * len(part))
                    cur.execute(
                        f"SELECT value, key FROM {_IDENTS} WHERE sync = ? AND scope = ? "
                        f"AND kind = ? AND value IN ({marks})",
                        [sync, INCREMENTAL, kind, *part],
                    )
                out.update(cur.fetchall())
        return out

    def owned_by(self, sync: str, kind: str, keys: Sequence[str]) -> dict[str, str]:
        """key → the value of identifier ``kind`` it owns, for the given keys that own one.

        Selected by key alone and the kind filtered here: with ``kind`` in the WHERE clause
        SQLite walked the primary key's whole ``kind`` range instead of the key index.
        """
        out: dict[str, str] = {}
        with self._cursor() as cur:
            for start in range(0, len(keys), _LOOKUP):
                part = list(keys[start : start + _LOOKUP])
                if self.pg:
                    cur.execute(
                        f"SELECT key, kind, value FROM {_IDENTS} WHERE sync = %s AND scope = %s "
                        "AND key = ANY(%s)",
                        (sync, INCREMENTAL, part),
                    )
                else:
                    marks = ",".join("?" * len(part))
                    cur.execute(
                        f"SELECT key, kind, value FROM {_IDENTS} WHERE sync = ? AND scope = ? "
                        f"AND key IN ({marks})",
                        [sync, INCREMENTAL, *part],
                    )
                out.update((k, v) for k, kd, v in cur.fetchall() if kd == kind)
        return out

    def free(self, sync: str, keys: Sequence[str]) -> None:
        """Let go of the identifiers these keys hold (their source rows are gone)."""
        if not keys:
            return
        with self.engine.begin() as c:
            cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                self._delete_idents(cur, sync, keys)
            finally:
                cur.close()

    def delete(self, sync: str, keys: Sequence[str]) -> None:
        """Delete the stored hashes of these keys (contacts removed from the list: a row
        that comes back is new again)."""
        if not keys:
            return
        with self.engine.begin() as c:
            for start in range(0, len(keys), _LOOKUP):
                part = list(keys[start : start + _LOOKUP])
                c.execute(
                    contact_hashes.delete().where(
                        contact_hashes.c.sync == sync, contact_hashes.c.key.in_(part)
                    )
                )
                c.execute(
                    contact_idents.delete().where(
                        contact_idents.c.sync == sync, contact_idents.c.key.in_(part)
                    )
                )

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
            c.execute(contact_idents.delete().where(contact_idents.c.sync == sync))
