"""What a sync asset carries (``dagster_defs.metadata``): the sync file as code reference, the
mapping as column schema, its owners; a run's metadata counts the lookback window's late rows."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_defs import build_defs
from tests.read.test_lookback import _sync

SHIPPED = Path(__file__).resolve().parents[2] / "config"
EVENTS = dg.AssetKey(["reverse_etl", "video_played"])


def test_an_asset_carries_its_sync_file_mapping_and_owners() -> None:
    defs = build_defs(SHIPPED)
    node = defs.resolve_asset_graph().get(EVENTS)
    [ref] = node.metadata["dagster/code_references"].code_references
    assert isinstance(ref, dg.LocalFileCodeReference)
    assert ref.file_path == str((SHIPPED / "syncs" / "video_played.yaml").resolve())
    schema = node.metadata["dagster/column_schema"]
    columns = {c.name: (c.type, c.description) for c in schema.columns}
    assert columns["identifiers.email"] == ("identifier", "← warehouse column `email`")
    assert columns["event_properties.video.title"] == (
        "event property",
        "← warehouse column `title`",
    )
    assert columns["event_time"][0] == "event time"
    assert node.owners == ["team:growth"]


def test_the_dagster_metadata_counts_late_rows() -> None:
    from connector.run.result import SyncResult
    from dagster_defs.metadata import scope_metadata

    res = SyncResult("w", "incremental", "r1", status="success", lookback="1h")
    res.late_rows, res.late_rows_near_edge, res.window_reread = 2, 1, 5
    md = scope_metadata(_sync(None), res, dry_run=False)
    assert (md["late_rows"], md["late_rows_near_window_edge"], md["lookback_rows_reread"]) == (
        2,
        1,
        5,
    )
    off = scope_metadata(_sync("off"), SyncResult("w", "incremental", "r2"), dry_run=False)
    assert "late_rows" not in off
