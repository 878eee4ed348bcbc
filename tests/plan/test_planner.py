"""The chunk planner (connector/plan/planner.py): ``preview`` shows exactly what a run sends, and
mapping problems are known as soon as a chunk is mapped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from connector.deliver.delivery import Runtime
from connector.deliver.factory import make_event_destination
from connector.map.mapper import Chunk, Mapper
from connector.plan.planner import DUPLICATE_KEY, ChunkPlanner
from connector.read.dupkeys import EveryKey
from connector.run.sync import preview, run_sync
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import create_events_table, event_rows, insert_events, sync_for


@pytest.fixture
def recording() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(keep_bodies=True), host="127.0.0.1", port=0) as sb:
        yield sb


@pytest.mark.parametrize("kind", ["brevo_events_batch", "klaviyo_bulk_events"])
def test_preview_shows_the_requests_a_run_sends_across_chunks_and_duplicate_keys(
    kind: str, tmp_path: Path, duck: Warehouse, recording: SandboxServer
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 250)
    again = {**event_rows(5, 1)[0], "occurred_at": rows[-1]["occurred_at"]}  # key 5, later
    insert_events(duck, [*rows, again])
    sync = sync_for(kind, duck, recording.url, chunk_size=100)  # three chunks

    shown = preview(sync, limit=1000)
    res = run_sync(
        sync,
        state=StateStore(f"sqlite:///{tmp_path / 's.db'}"),
        runtime=Runtime(sleep=lambda s: None),
    )

    sent = [body for _, body in recording.bodies()]
    assert sorted(r["body"] for r in shown["requests"]) == sorted(sent)  # in flight together
    assert len(sent) == res.requests == (2 if kind == "brevo_events_batch" else 1)
    assert shown["rejects"] == [("5", DUPLICATE_KEY)]
    assert res.rejected == 1 and res.delivered == 250


def test_invalid_json_is_a_reject_as_soon_as_the_chunk_is_mapped(duck: Warehouse) -> None:
    create_events_table(duck)
    sync = sync_for("brevo_events_batch", duck, "http://127.0.0.1:9")
    row = event_rows(0, 3)
    table = pa.table(
        {
            **{k: [r[k] for r in row] for k in row[0] if k != "payload"},
            "payload": ['{"ok": 1}', '{"broken": ', None],
        }
    )
    events = Mapper(sync).map(Chunk(table, frozenset({"payload"})))
    # Known before any property value is built: a caller reads the reasons once.
    assert events.reasons == {1: "event_properties.payload: column payload holds invalid JSON"}
    plan = ChunkPlanner(make_event_destination(sync, resolve_secret=False), EveryKey()).plan(events)
    assert plan.reasons == {1: "event_properties.payload: column payload holds invalid JSON"}
    assert [item.row for item in plan.items] == [0, 2]
