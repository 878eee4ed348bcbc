"""The embedded DuckDB source (``warehouses.duckdb``; issue 11: memory bounded by the page,
not the table): the run read as one ordered query under a memory limit, keyset pages when a
sort runs out of memory, and a query over the limit naming the setting to raise."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest

from connector.deliver.delivery import Runtime
from connector.read.source import Reader, engine_for, release_engine
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse, _arrow_plain
from tests.helpers import BASE, create_events_table, event_rows, insert_events, sync_for

KIND = "klaviyo_bulk_events"


def test_duckdb_reads_the_run_as_one_ordered_query_with_the_same_rows_as_keyset_pages(
    duck: Warehouse, sandbox: SandboxServer
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 537, per_second=7))  # ties across page ends
    sync = sync_for(KIND, duck, sandbox.url)
    with Reader(sync) as reader:
        streamed = [c.table for c in reader.pages()]
        keyset = [c.table for c in reader._keyset_pages(None, None, None)]
        after = (BASE + timedelta(seconds=20), 145)
        tail = [c.table for c in reader.pages(after, None, 250)]  # over one page: streamed
    ids = [i for t in streamed for i in t.column("event_id").to_pylist()]
    assert [t.num_rows for t in streamed] == [100] * 5 + [37]
    assert ids == [i for t in keyset for i in t.column("event_id").to_pylist()]
    assert ids == list(range(537))  # (cursor, key) order
    assert [i for t in tail for i in t.column("event_id").to_pylist()] == list(range(146, 396))


def test_the_embedded_duckdb_source_runs_under_a_memory_limit_unless_the_url_sets_one(
    duck: Warehouse,
) -> None:
    create_events_table(duck)
    duck.dispose()

    def setting(url: str) -> str:
        try:
            with engine_for(url).connect() as c:
                return str(c.exec_driver_sql("SELECT current_setting('memory_limit')").all()[0][0])
        finally:
            release_engine(url)

    assert setting(duck.url) == "45.7 MiB"  # 48 MB
    assert setting(duck.url + "?memory_limit=200MB") == "190.7 MiB"


def test_a_duckdb_sort_that_runs_out_of_memory_continues_in_keyset_pages(
    duck: Warehouse, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    create_events_table(duck)
    insert_events(duck, event_rows(0, 350, per_second=7))
    sync = sync_for(KIND, duck, sandbox.url)
    from connector.warehouses import duckdb as duck_module

    real = duck_module._relation

    class OneBatchThenOutOfMemory:
        """DuckDB's own relation, whose batch reader fails after the first batch the way
        DuckDB does when a sort cannot spill."""

        def __init__(self, rel: object) -> None:
            self.rel = rel

        def __getattr__(self, name: str) -> object:
            return getattr(self.rel, name)

        def to_arrow_reader(self, size: int) -> object:
            batches = self.rel.to_arrow_reader(size)  # type: ignore[attr-defined]

            class Failing:
                calls = 0

                def read_next_batch(self) -> object:
                    Failing.calls += 1
                    if Failing.calls > 1:
                        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin")
                    return batches.read_next_batch()

                def close(self) -> None:  # as DuckDB's reader: the stream closes it
                    batches.close()

            return Failing()

    def relation(conn: Any, stmt: Any, bind: Any = None) -> object:
        rel = real(conn, stmt, bind)
        return OneBatchThenOutOfMemory(rel) if "LIMIT" not in str(stmt) else rel

    monkeypatch.setattr(duck_module, "_relation", relation)
    with Reader(sync) as reader:
        pages = [c.table for c in reader.pages()]
    ids = [i for t in pages for i in t.column("event_id").to_pylist()]
    assert ids == list(range(350))  # nothing lost or repeated after the switch
    assert [t.num_rows for t in pages] == [100, 100, 100, 50]


def test_a_source_query_over_duckdbs_memory_limit_fails_naming_the_setting_to_raise(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    from connector.core.errors import SourceError

    create_events_table(duck)
    insert_events(duck, event_rows(0, 10))
    duck.dispose()
    sync = sync_for(KIND, duck, sandbox.url)
    # A query whose aggregate cannot fit (nor spill: one 200 MB string) in the limit.
    heavy = (
        "SELECT e.* FROM ev e WHERE (SELECT length(string_agg(repeat('x', 100) || i, ''))"
        " FROM range(2000000) t(i)) > 0"
    )
    source = sync.source.model_copy(update={"table": None, "query": heavy})
    sync = sync.model_copy(update={"source": source})
    with pytest.raises(SourceError, match=r"memory_limit=48MB unless the source URL sets one"):
        run_sync(sync, state=state, runtime=runtime)


def test_the_tests_arrow_insert_lands_what_the_driver_binds(duck: Warehouse) -> None:
    """``Warehouse.insert`` takes DuckDB rows as one Arrow table, instants included when
    their column is TIMESTAMPTZ: the same values as the driver's row-by-row binding (another
    zone's offset, NULLs, decimals as text, JSON), and the driver's binding otherwise."""
    import sqlalchemy as sa

    rows = event_rows(0, 50)
    rows[3]["occurred_at"] = BASE.astimezone(timezone(timedelta(hours=5, minutes=30)))
    rows[4]["occurred_at"] = None
    for table in ("arrow", "bound"):
        create_events_table(duck, table)
    assert _arrow_plain(rows) == {"occurred_at"}
    assert duck._insert_arrow("arrow", list(rows[0]), rows, {"occurred_at"})
    cols = ", ".join(rows[0])
    values = ", ".join(f":{c}" for c in rows[0])
    with duck.engine.begin() as c:
        c.execute(sa.text(f"INSERT INTO bound ({cols}) VALUES ({values})"), rows)
    with duck.engine.connect() as c:
        arrow, bound = (
            c.exec_driver_sql(f"SELECT * FROM {t} ORDER BY event_id").all()
            for t in ("arrow", "bound")
        )
    assert arrow == bound and len(arrow) == 50
    assert arrow[3][1] == BASE and arrow[4][1] is None
    # An instant for a column without a zone: the driver's binding, not Arrow's.
    duck.run("CREATE TABLE naive (t TIMESTAMP)")
    assert not duck._insert_arrow("naive", ["t"], [{"t": rows[3]["occurred_at"]}], {"t"})
    duck.insert("naive", [{"t": rows[3]["occurred_at"]}])
    with duck.engine.begin() as c:
        c.execute(sa.text("INSERT INTO naive (t) VALUES (:t)"), [{"t": rows[3]["occurred_at"]}])
        first, second = c.exec_driver_sql("SELECT t FROM naive").scalars().all()
    assert first == second
