"""Materializing demo syncs with Dagster's multiprocess executor: every step is its own
process, several read the demo DuckDB warehouse at the same time, and the accounts are paced
through the PostgreSQL state store.

Three syncs, not "Materialize all": the executor runs as many steps at a time as the machine has
cores, so three steps already run side by side here, and each step is a process that imports
Dagster and the connector (~3.5 s of CPU): all nine were ~15% of the suite's CPU. The three
cover both kinds (events, contacts), a partitioned and an unpartitioned sync, and all three
vendors; every shipped sync is materialized in-process by tests/dagster_defs/test_assets.py
and run through the CLI by tests/e2e/test_demo.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from connector import load_syncs
from connector.cli.demo import build_demo_warehouse
from connector.sandbox import SandboxServer
from connector.store.state import INCREMENTAL, StateStore

# A partitioned event sync, an unpartitioned one and a contact sync, of three vendors.
SELECTED = ("video_played", "order_placed_omnisend_events", "customers_to_brevo")
ONE_DAY = [
    "--select",
    ",".join(f"reverse_etl/{name}" for name in SELECTED),
    "--partition",
    "2026-11-01",  # video_played's; the unpartitioned syncs run as they would without it
]
SHIPPED = Path(__file__).resolve().parents[2] / "config"


@pytest.mark.slow
def test_materializing_demo_syncs_runs_steps_in_parallel_processes(
    sandbox: SandboxServer, pg_url: str, tmp_path: Path
) -> None:
    demo = build_demo_warehouse(tmp_path / "demo.duckdb", events=40, orders=25)
    # customers_to_brevo maps PLAN and LTV: the account needs them (checked before sending).
    for name, kind in (("PLAN", "text"), ("LTV", "float")):
        created = httpx.post(
            f"{sandbox.url}/v3/contacts/attributes/normal/{name}",
            json={"type": kind},
            headers={"api-key": "sandbox-brevo-key"},
        )
        assert created.status_code == 201, created.text
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "SANDBOX_URL": sandbox.url,
        "WAREHOUSE_URL": f"duckdb:///{demo}",
        "CONNECTOR_STATE_URL": pg_url,
        "CONNECTOR_CONFIG_DIR": str(SHIPPED),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    proc = subprocess.run(
        [dagster, "asset", "materialize", "-m", "dagster_defs", *ONE_DAY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "using multiprocess executor" in log
    assert "RUN_SUCCESS" in log and "STEP_FAILURE" not in log
    # At least two sync steps were running (reading the warehouse) at the same time.
    events = re.findall(r"- (reverse_etl_\w+) - (STEP_START|STEP_SUCCESS) -", log)
    running, most = set(), 0
    for step, kind in events:
        if kind == "STEP_START":
            running.add(step)
        else:
            running.discard(step)
        most = max(most, len(running))
    assert most >= 2, events
    assert {step for step, _ in events} == {f"reverse_etl_{name}" for name in SELECTED}
    syncs = load_syncs(SHIPPED, check_env=False).syncs
    state = StateStore(pg_url)
    for name in SELECTED:
        sync = syncs[name]
        if sync.is_contact_sync:  # no cursor, no checkpoint: its state is the stored hashes
            from connector.contacts.hashes import HashStore

            assert HashStore(state).count(name) > 0, name
            continue
        scope = "partition:2026-11-01" if sync.partitions else INCREMENTAL
        assert state.checkpoint(name, scope) is not None, name
        assert sandbox.events(sync.destination.type), name
