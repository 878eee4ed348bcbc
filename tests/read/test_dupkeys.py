"""In-run duplicate primary keys (``read.dupkeys``; issue 11: memory bounded by the page,
not the table): only the keys the warehouse names as occurring twice are tracked, and the copies
after the first are rejected while the first is sent."""

from __future__ import annotations

from datetime import timedelta

from connector.deliver.delivery import Runtime
from connector.read.dupkeys import EveryKey, KnownDuplicates
from connector.read.source import Reader
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
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
