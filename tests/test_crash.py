"""Crash safety: SIGKILL the CLI while a request is in flight, run again, nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connector.sandbox import Fault, SandboxServer
from connector.state import StateStore

from .conftest import Warehouse
from .helpers import create_events_table, delivered_ids, event_rows, insert_events

SYNC = """
name: videos
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
  chunk_size: 500
destination:
  type: {kind}
  api_key: ${{{key_env}}}
  base_url: {sandbox}
  options: {{concurrency: {concurrency}}}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {idents}
  event_properties: {{title: title}}
"""


def _cli(config_dir: Path, state_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CONNECTOR_CONFIG_DIR": str(config_dir), "CONNECTOR_STATE_URL": state_url}
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _setup(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, kind: str, rows: int, concurrency: int
) -> tuple[Path, str]:
    create_events_table(duck)
    insert_events(duck, event_rows(0, rows))
    duck.dispose()  # DuckDB lets one process at a time hold the file for writing
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    klaviyo = kind == "klaviyo_bulk_events"
    (config / "syncs" / "videos.yaml").write_text(
        SYNC.format(
            url=duck.url,
            kind=kind,
            sandbox=sandbox.url,
            concurrency=concurrency,
            key_env="KLAVIYO_API_KEY" if klaviyo else "BREVO_API_KEY",
            idents="{email: email, external_id: user_id}"
            if klaviyo
            else "{email_id: email, ext_id: user_id}",
        )
    )
    return config, f"sqlite:///{tmp_path / 'state.db'}"


@pytest.mark.parametrize("kind,batch", [("klaviyo_bulk_events", 1000), ("brevo_events_batch", 200)])
def test_kill_9_mid_run_then_rerun_delivers_every_row(
    kind: str,
    batch: int,
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
) -> None:
    rows = batch * 5
    config, state_url = _setup(tmp_path, duck, sandbox, kind, rows, concurrency=1)
    path = "/api/event-bulk-create-jobs" if kind == "klaviyo_bulk_events" else "/v3/events/batch"
    # Two batches are answered; the third is stored by the API, then the reply never comes.
    sandbox.inject(
        Fault(path=path, delay_s=0.001),
        Fault(path=path, delay_s=0.001),
        Fault(path=path, hang=True, after_process=True),
    )

    proc = _cli(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sandbox.release()

    store = StateStore(state_url)
    assert store.checkpoint("videos")[1] == 2 * batch - 1  # type: ignore[index]
    pending = [e for e in store.ledger("videos", "incremental") if e.status == "pending"]
    assert [e.count for e in pending] == [batch]

    rerun = _cli(config, state_url, "sync", "videos")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err

    ids = delivered_ids(sandbox, kind)
    assert set(ids) == set(range(rows))  # nothing lost
    assert f"possibly duplicated {batch:,}" in out
    if kind == "klaviyo_bulk_events":
        # Re-sent with the same unique_ids: Klaviyo keeps one copy of each.
        assert len(ids) == rows
        assert sandbox.stats()["deduplicated"][kind] == batch
    else:
        # Brevo has no dedup key: exactly the in-flight batch repeats, and the run says so.
        assert len(ids) == rows + batch
    assert store.ledger("videos", "incremental") == []
    assert store.checkpoint("videos")[1] == rows - 1  # type: ignore[index]
    # The killed run is not "running" forever: the rerun marked it, with how far it got.
    killed, rerun_row = sorted(store.runs("videos"), key=lambda r: r["started_at"])
    assert rerun_row["status"] == "success"
    assert killed["status"] == "interrupted" and killed["finished_at"] is not None
    assert killed["summary"]["hwm_after"][1] == 2 * batch - 1
    assert killed["summary"]["in_flight"] == batch
    assert f"{batch} events were in flight" in killed["error"]
    # Its counts as last recorded (once a second at most; the first page is always recorded).
    assert 500 <= killed["summary"]["rows_read"] <= rows
    assert (
        f"at its last progress record {killed['summary']['rows_read']} rows read"
        in (killed["error"])
    )
    show = _cli(config, state_url, "state", "show", "videos")
    shown, _ = show.communicate(timeout=120)
    assert f"{killed['run_id'][:8]} " in shown and "interrupted: the process ended" in shown


def test_kill_with_several_batches_in_flight_skips_what_was_delivered(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
) -> None:
    rows = 8000
    config, state_url = _setup(tmp_path, duck, sandbox, "klaviyo_bulk_events", rows, concurrency=4)
    path = "/api/event-bulk-create-jobs"
    sandbox.inject(Fault(path=path, hang=True, after_process=True))

    proc = _cli(config, state_url, "sync", "videos")
    assert sandbox.wait_for_hang(timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sandbox.release()

    rerun = _cli(config, state_url, "sync", "videos")
    _out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    ids = delivered_ids(sandbox, "klaviyo_bulk_events")
    assert sorted(ids) == list(range(rows))  # every row exactly once at the destination
    assert sandbox.stats()["deduplicated"]["klaviyo_bulk_events"] >= 1000
