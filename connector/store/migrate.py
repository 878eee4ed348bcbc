"""The state store's schema version and its migrations.

A store holds one row in ``connector_schema_version``: the number of migrations applied. On
open, under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory transaction lock on PostgreSQL),
the migrations after that number run in order and the row moves to the last one, in one
transaction. Later versions add to the one list of migrations in ``connector.state``
(``MIGRATIONS``); a migration never changes after it shipped.

What a store may be when it is opened:

- new (no SQLite file / no ``connector_*`` table in the PostgreSQL schema): initialised silently;
- made before versioning (the connector tables, no version table): migrated from 0 — so every
  migration must be safe on a store that already has part of it (``checkfirst``, columns added
  only when missing);
- anything else without a readable version (an empty or truncated file, a version table with
  no row, some connector tables only, a file SQLite cannot read): ``BrokenStoreError``, never a
  fresh start, since a fresh start re-sends every row of every sync;
- made by a newer connector (a version above the last migration known here): an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from ..core.errors import StateError

VERSION_TABLE = "connector_schema_version"
# Tables every store made before versioning has (the ones added later are created by the
# migrations with ``checkfirst``).
LEGACY_TABLES = frozenset(
    {"connector_checkpoints", "connector_batches", "connector_rejects", "connector_runs"}
)
_PG_LOCK_KEY = 0x636F6E6E  # "conn": serialises migrations of one PostgreSQL database

version_table = sa.Table(
    VERSION_TABLE,
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one row
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One step of the schema: ``version`` is its position in the list (1, 2, ...)."""

    version: int
    what: str
    apply: Callable[[sa.Connection], None]


class BrokenStoreError(StateError):
    """The store exists but cannot be read as a connector state store."""


def recovery_hint(url_shown: str, *, is_sqlite: bool) -> str:
    """How to get out of a broken store: restore it, or start an empty one knowingly."""
    keeps = (
        "keeps the old file beside it as <name>.broken-<time>"
        if is_sqlite
        else "drops the connector_* tables"
    )
    return (
        f"restore it from a backup, or start an empty store with `connector state reset "
        f"--broken-store --state-url {url_shown}` ({keeps}; every sync then sends all its rows "
        "again)"
    )


def create(*tables: sa.Table) -> Callable[[sa.Connection], None]:
    """A migration that creates tables (those already there are left alone)."""

    def apply(c: sa.Connection) -> None:
        for table in tables:
            table.create(c, checkfirst=True)

    return apply


def add_columns(table: sa.Table, *names: str) -> Callable[[sa.Connection], None]:
    """A migration that adds nullable columns of ``table`` a store lacks."""

    def apply(c: sa.Connection) -> None:
        have = {col["name"] for col in sa.inspect(c).get_columns(table.name)}
        prep = c.dialect.identifier_preparer
        for name in names:
            col = table.c[name]
            if name in have:
                continue
            assert col.nullable, f"{table.name}.{name}: only nullable columns can be added"
            c.exec_driver_sql(
                f"ALTER TABLE {prep.format_table(table)} ADD COLUMN "
                f"{prep.format_column(col)} {col.type.compile(dialect=c.dialect)}"
            )

    return apply


def check_list(migrations: Sequence[Migration]) -> None:
    """The list is 1, 2, 3, ... with no gap (a test holds every version to this)."""
    for i, m in enumerate(migrations, start=1):
        if m.version != i:
            raise AssertionError(f"migration {m.what!r} is number {i} but says {m.version}")


def prepare(
    engine: sa.Engine, migrations: Sequence[Migration], shown: str, *, new_ok: bool = True
) -> int:
    """Bring the store at ``engine`` to the last migration; returns the version it had.

    ``new_ok=False``: a store without any connector table is broken, not new (an existing
    SQLite file: new ones are made by ``create_sqlite``)."""
    check_list(migrations)
    latest = len(migrations)
    sqlite = engine.dialect.name == "sqlite"
    with _locked(engine) as c:
        names = set(sa.inspect(c).get_table_names())
        ours = {n for n in names if n.startswith("connector_")}
        if VERSION_TABLE in names:
            found = c.execute(
                sa.select(version_table.c.version).where(version_table.c.id == 1)
            ).scalar()
            if found is None:
                raise BrokenStoreError(
                    f"state store {shown} has a schema-version table without its row, so its "
                    f"contents cannot be trusted: {recovery_hint(shown, is_sqlite=sqlite)}"
                )
            version = int(found)
        elif not ours and not new_ok:
            raise BrokenStoreError(
                f"state store {shown} exists but holds no connector tables (an empty or "
                f"truncated file?): {recovery_hint(shown, is_sqlite=sqlite)}"
            )
        elif not ours or ours >= LEGACY_TABLES:
            version = 0  # new, or made before versioning: every migration is idempotent
        else:
            raise BrokenStoreError(
                f"state store {shown} has only some of the connector tables "
                f"({', '.join(sorted(ours))}) and no schema version: "
                f"{recovery_hint(shown, is_sqlite=sqlite)}"
            )
        if version > latest:
            raise StateError(
                f"state store {shown} has schema version {version}, made by a newer connector "
                f"(this one knows versions up to {latest}): upgrade the connector"
            )
        if version == latest:
            return version
        version_table.create(c, checkfirst=True)
        for m in migrations[version:]:
            m.apply(c)
        values = {"version": latest, "updated_at": datetime.now(UTC)}
        if c.execute(version_table.update().values(**values)).rowcount == 0:
            c.execute(version_table.insert().values(id=1, **values))
        return version


@contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One transaction holding the store's migration lock."""
    with engine.connect() as c:
        if engine.dialect.name != "sqlite":
            with c.begin():
                if engine.dialect.name == "postgresql":
                    c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                yield c
            return
        # pysqlite runs DDL outside transactions unless told otherwise: take the write lock
        # ourselves so tables, columns and the version row land together or not at all.
        raw = c.connection.driver_connection
        assert raw is not None
        level = raw.isolation_level
        raw.isolation_level = None
        try:
            c.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.exec_driver_sql("ROLLBACK")
                raise
            c.exec_driver_sql("COMMIT")
        finally:
            raw.isolation_level = level


def sqlite_file(url: sa.engine.URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory)."""
    db = url.database or ""
    if not url.drivername.startswith("sqlite") or db in ("", ":memory:") or db.startswith("file:"):
        return None
    return Path(db)


def create_sqlite(
    path: Path, migrations: Sequence[Migration], pragmas: Callable[..., None]
) -> None:
    """A new SQLite store, made aside and linked into place: the path never holds an empty
    file that another process could mistake for a truncated store."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.init")
    engine = sa.create_engine(f"sqlite:///{tmp}", poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "connect", pragmas)
    try:
        prepare(engine, migrations, str(tmp))
        with engine.connect() as c:  # fold the WAL into the file before it is linked
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        engine.dispose()
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def set_aside(path: Path) -> Path:
    """Move a broken SQLite store (and its WAL files) out of the way; returns where."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
    return target
