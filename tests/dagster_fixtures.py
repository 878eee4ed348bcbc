"""Shared parts of the Dagster tests: a config dir, a warehouse with dated rows, the sandbox
without server-side rate limits and a fake clock (so client pacing never waits), and a Dagster
instance that executes launched runs synchronously in this process."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from connector.cli.demo_run import DEMO_BREVO_ATTRIBUTES
from connector.deliver.delivery import Runtime
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from dagster_defs import ConnectorResource, build_defs

from .conftest import FakeSleep, Warehouse

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
# The asset of the "plays" sync (the PARTITIONED text, and the like, under ``reverse_etl``).
PLAYS_KEY = dg.AssetKey(["reverse_etl", "plays"])

PARTITIONED = """
name: {name}
description: Plays, partitioned by day.
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
partitions:
  start: 2026-11-01
  period: daily
  lookback: 2
checks:
  reject_ratio_warn: {warn}
  reject_ratio_error: {error}
"""


@dataclass
class Env:
    """Everything a Dagster test needs, pointing at throwaway storage."""

    config_dir: Path
    warehouse: Warehouse
    sandbox: SandboxServer
    state: StateStore
    runtime: Runtime

    def resource(self) -> ConnectorResource:
        # The test process keeps its own read-write DuckDB connection to fill tables; DuckDB
        # refuses a second configuration of the same file in one process.
        return ConnectorResource(
            warehouse_url=self.warehouse.url, state_url=self.state.url, duckdb_read_only=False
        )

    def defs(self) -> dg.Definitions:
        return build_defs(self.config_dir, resource=self.resource(), runtime=self.runtime)

    def write_sync(self, name: str, text: str, **fmt: Any) -> Path:
        path = self.config_dir / "syncs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).format(name=name, sandbox=self.sandbox.url, **fmt))
        return path


@pytest.fixture
def quiet_sandbox() -> Iterator[SandboxServer]:
    """The sandbox without its own rate limits: the fake clock makes client pacing instant,
    which a real-time server limit would answer with 429s."""
    opts = SandboxOptions(rate_limits_enabled=False, brevo_attributes=DEMO_BREVO_ATTRIBUTES)
    with SandboxServer(opts, port=0) as sb:
        yield sb


@pytest.fixture
def env(tmp_path: Path, duck: Warehouse, quiet_sandbox: SandboxServer, fake_time: FakeSleep) -> Env:
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    return Env(
        config_dir=tmp_path / "config",
        warehouse=duck,
        sandbox=quiet_sandbox,
        state=StateStore(f"sqlite:///{tmp_path / 'state.db'}"),
        runtime=Runtime(clock=fake_time.clock, sleep=fake_time.sleep, random=lambda: 0.5),
    )


def dated_rows(days: int, per_day: int, bad_every: int = 0) -> list[dict[str, Any]]:
    """``per_day`` rows on each of ``days`` days from 2026-11-01; event ids 1000*day + n.
    Every ``bad_every``-th row has no email (a reject)."""
    rows = []
    for d in range(days):
        for n in range(per_day):
            i = 1000 * d + n
            bad = bad_every and n % bad_every == bad_every - 1
            rows.append(
                {
                    "event_id": i,
                    "occurred_at": DAY0 + timedelta(days=d, minutes=n * (1440 // per_day)),
                    "email": None if bad else f"user{i}@example.com",
                    "title": f"Video {i}",
                }
            )
    return rows


def create_table(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    wh.run(
        "DROP TABLE IF EXISTS ev",
        "CREATE TABLE ev (event_id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, title VARCHAR)",
    )
    wh.insert("ev", rows)


def klaviyo_ids(sandbox: SandboxServer) -> list[int]:
    """Source event ids the sandbox accepted for Klaviyo, in arrival order."""
    return [
        int(ev["event"]["unique_id"].split(":", 1)[1])
        for ev in sandbox.events("klaviyo_bulk_events")
    ]


def partition_materializations(
    result: dg.ExecuteInProcessResult, key: dg.AssetKey
) -> dict[str | None, dict[str, Any]]:
    """Metadata values of each materialization of ``key`` in a run, by partition (None for an
    unpartitioned asset): a run over several partitions records one event per partition, each
    with that partition's own counts."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    assert events
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()} for e in events
    }


COUNTS = ("rows_read", "delivered", "rejected", "null_cursor_or_key_rows", "dagster/row_count")


def materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    """Metadata values of the materialization of ``key`` in a run: the one event's, or for a
    run over several partitions the counts summed over its partitions' events."""
    by_partition = partition_materializations(result, key)
    if len(by_partition) == 1:
        return next(iter(by_partition.values()))
    return {c: sum(md.get(c, 0) for md in by_partition.values()) for c in COUNTS}
