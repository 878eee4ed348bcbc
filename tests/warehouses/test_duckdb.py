"""Memory bounded by the page, not the table (issue 11): no per-row structure lives for the
whole run (duplicate keys come from the warehouse, open rejects are bounded), DuckDB reads the
run as one ordered query under a memory limit, and the connector's own processes keep pandas
out."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.deliver.delivery import Runtime
from connector.read.dupkeys import EveryKey, KnownDuplicates
from connector.read.source import Reader, engine_for, release_engine
from connector.run import openrejects
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import CLOSED_DELIVERED, StateStore
from tests.conftest import Warehouse
from tests.helpers import (
    BASE,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    sync_for,
)

KIND = "klaviyo_bulk_events"
DUP_REASON = "duplicate primary key"


def test_known_duplicates_track_only_the_reported_keys() -> None:
    dups = KnownDuplicates(["a", "x"])
    assert dups.duplicates(["a", "b", "a", "c", "b", "a"]) == [2, 5]  # "b" was not reported
    assert dups.duplicates(["x", "c", "a", "x"]) == [2, 3]
    assert dups.seen == {"a", "x"}  # never more than the reported keys
    assert KnownDuplicates([]).duplicates(["a", "a"]) == []


def test_every_key_finds_duplicates_within_and_across_chunks() -> None:
    dups = EveryKey()
    assert dups.duplicates(["a", "b", "a", "c", "b", "a"]) == [2, 4, 5]
    assert dups.duplicates(["x", "c", "y", "x"]) == [1, 3]


def test_the_warehouse_names_the_keys_that_occur_twice_in_the_pending_range(
    warehouse: Warehouse, sandbox: SandboxServer
) -> None:
    create_events_table(warehouse)
    rows = event_rows(0, 30)
    copies = [dict(rows[2]), dict(rows[20]), dict(rows[20])]
    for row in copies:
        row["occurred_at"] = BASE + timedelta(hours=1)  # read after the originals
    insert_events(warehouse, rows + copies)
    with Reader(sync_for(KIND, warehouse, sandbox.url)) as reader:
        assert sorted(reader.duplicate_keys(None, None)) == ["2", "20"]
        # After a checkpoint past row 2's original, only 20 occurs twice in what is left.
        after = (rows[10]["occurred_at"], 10)
        assert reader.duplicate_keys(after, None) == ["20"]


def test_duplicate_keys_across_pages_are_rejected_and_the_first_copy_is_sent(
    warehouse: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(warehouse)
    rows = event_rows(0, 250)
    copy = dict(rows[5])
    copy["occurred_at"] = BASE + timedelta(hours=1)  # two pages of 100 later
    insert_events(warehouse, [*rows, copy])

    res = run_sync(sync_for(KIND, warehouse, sandbox.url), state=state, runtime=runtime)

    assert (res.rows_read, res.delivered, res.rejected) == (251, 250, 1)
    [reject] = state.rejects("videos")
    assert reject["key"] == "5" and DUP_REASON in reject["reason"]
    assert sorted(delivered_ids(sandbox, KIND)) == list(range(250))


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


@pytest.mark.parametrize("in_memory", [True, False], ids=["set", "over-the-limit"])
def test_a_delivered_row_closes_its_open_reject_with_or_without_the_keys_in_memory(
    in_memory: bool,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not in_memory:
        monkeypatch.setattr(openrejects, "MAX_IN_MEMORY", 1)
    create_events_table(duck)
    rows = event_rows(0, 8)
    rows[1]["kind"] = rows[4]["kind"] = "x" * 200  # Klaviyo metric names must be < 128
    insert_events(duck, rows)
    sync = sync_for(KIND, duck, sandbox.url)
    assert run_sync(sync, state=state, runtime=runtime).rejected == 2
    later = BASE + timedelta(hours=1)
    with duck.engine.begin() as c:  # fixed, and read again (their cursor moved)
        c.execute(
            sa.text("UPDATE ev SET kind = 'video_played', occurred_at = :t WHERE event_id = 1"),
            {"t": later},
        )
    loaded = openrejects.OpenRejects.load(state, "videos", "incremental")
    assert (loaded.check_all, loaded.keys) == ((False, {"1", "4"}) if in_memory else (True, set()))

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.delivered == 1
    assert [r["key"] for r in state.rejects("videos")] == ["4"]  # still open
    closed = [r for r in state.rejects("videos", include_closed=True) if r["closed_at"]]
    assert [(r["key"], r["resolution"]) for r in closed] == [("1", CLOSED_DELIVERED)]
    assert sorted(delivered_ids(sandbox, KIND)) == [0, 1, 2, 3, 5, 6, 7]


def test_the_connector_command_keeps_pandas_out_of_its_process(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from connector.cli.main import entry\n"
        "sys.argv = ['connector', 'schema']\n"
        "assert entry() == 0\n"
        "import pyarrow as pa\n"
        "pa.array([1, 2]); pa.scalar('x')\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"title"' in proc.stdout  # the schema was printed


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
