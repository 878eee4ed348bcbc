"""The open rejects a run meets (``run.openrejects``).

A known, unchanged reject counts once (issue 22, item 7): a row with a NULL cursor is refused
again on every run. The first run judges it; later runs find the same open reject (same key,
reason and payload), leave it open and listed as it was, count it in ``rejects_known`` and keep
it out of the reject ratio, so a small scheduled sync does not sit at WARN forever.

A delivered row closes its open reject, whether the open keys fit in memory or not (issue 11:
memory bounded by the page, not the table).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from connector.deliver.delivery import Runtime
from connector.run import openrejects
from connector.run.openrejects import split_known
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import CLOSED_DELIVERED, Reject, StateStore
from tests.conftest import Warehouse
from tests.dagster_fixtures import DAY0, PLAYS_KEY, Env, env, quiet_sandbox
from tests.helpers import (
    BASE,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    sync_for,
)

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name


SCHEDULED = """
name: {name}
description: Plays, every hour.
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{title: title}}
schedule: "0 * * * *"
checks:
  reject_ratio_warn: 0.05
  reject_ratio_error: 0.5
"""


def _rows(first: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": i,
            "occurred_at": DAY0 + timedelta(minutes=i),
            "email": f"user{i}@example.com",
            "title": f"Video {i}",
        }
        for i in range(first, first + n)
    ]


def _run(env: Env) -> tuple[dg.AssetCheckEvaluation, dict[str, Any]]:
    defs = env.defs()
    result = dg.materialize(
        [defs.resolve_assets_def(PLAYS_KEY)], instance=dg.DagsterInstance.ephemeral()
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    [mat] = [e for e in result.get_asset_materialization_events() if e.asset_key == PLAYS_KEY]
    return checks["reject_ratio"], {k: v.value for k, v in mat.materialization.metadata.items()}


def test_a_null_cursor_row_warns_once_then_stays_listed(env: Env) -> None:
    env.warehouse.run(
        "CREATE TABLE ev (event_id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, title VARCHAR)"
    )
    null_row = {"event_id": 999, "occurred_at": None, "email": "x@example.com", "title": "t"}
    env.warehouse.insert("ev", [*_rows(1, 10), null_row])
    env.write_sync("plays", SCHEDULED)

    first, md1 = _run(env)
    assert not first.passed  # 1 of 11 rows: 9% > 5%, judged once
    assert first.severity == dg.AssetCheckSeverity.WARN
    assert md1["rejected"] == 1 and "rejects_known" not in md1
    [listed] = env.state.rejects("plays")
    assert listed["key"] == "999"

    env.warehouse.insert("ev", _rows(11, 10))  # the next hour's rows; the bad row is unchanged
    second, md2 = _run(env)
    assert second.passed, second.description
    assert second.metadata["rejected"].value == 0
    assert second.metadata["rejects_known"].value == 1
    assert md2["rejected"] == 1 and md2["rejects_known"] == 1 and md2["delivered"] == 10
    assert "known" in (second.description or "")
    # Still open and listed, as the first run recorded it.
    [still] = env.state.rejects("plays")
    assert still["key"] == "999" and still["run_id"] == listed["run_id"]


def test_a_changed_reject_is_new(tmp_path: Path) -> None:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    state.add_rejects("s", "incremental", "run1", [Reject("1", "NULL cursor"), Reject("2", "x")])
    state.close_rejects("s", "incremental", ["2"], "run1", "delivered")
    found = [
        Reject("1", "NULL cursor"),  # same: known
        Reject("2", "x"),  # closed since: new again
        Reject("3", "NULL cursor"),  # never seen: new
    ]
    new, known = split_known(state, "s", "incremental", found)
    assert [r.key for r in known] == ["1"]
    assert [r.key for r in new] == ["2", "3"]
    other_reason = split_known(state, "s", "incremental", [Reject("1", "NULL primary key")])
    assert other_reason == ([Reject("1", "NULL primary key")], [])
    assert split_known(state, "s", "partition:2026-11-01", [Reject("1", "NULL cursor")])[1] == []


KIND = "klaviyo_bulk_events"


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
