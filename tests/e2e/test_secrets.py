"""Secrets (API keys, warehouse passwords) never reach output, logs, errors or the state store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from connector.sandbox import SandboxOptions, SandboxServer
from tests.conftest import Warehouse
from tests.helpers import create_events_table, event_rows, insert_events

API_KEY = "pk_live_S3CRET_do_not_print_0123456789"
WRONG_KEY = "pk_live_WR0NG_also_secret_9876543210"
DB_PASSWORD = "hunter2-db-secret"

SYNC = """
name: videos
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
  url: ${{WAREHOUSE_SECRET_URL}}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {{max_retries: 0}}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{title: title}}
"""


def _cli(config: Path, state: Path, key: str, wh_url: str, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "CONNECTOR_CONFIG_DIR": str(config),
        "CONNECTOR_STATE_URL": f"sqlite:///{state}",
        "KLAVIYO_API_KEY": key,
        "WAREHOUSE_SECRET_URL": wh_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-v", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_keys_and_passwords_never_appear_anywhere(tmp_path: Path, pg: Warehouse) -> None:
    create_events_table(pg)
    rows = event_rows(0, 20)
    rows[2]["email"] = None  # a reject: its payload is stored, the key must not be
    insert_events(pg, rows)
    # The test cluster trusts loopback, so any password is accepted: it must still stay hidden.
    wh_url = pg.url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    state = tmp_path / "state.db"
    outputs = []
    with SandboxServer(SandboxOptions(klaviyo_api_keys=(API_KEY,)), port=0) as sb:
        (config / "syncs" / "videos.yaml").write_text(SYNC.format(sandbox=sb.url))
        for args in (
            ["validate"],
            ["preview", "videos"],
            ["sync", "videos"],
            ["state", "show", "videos"],
            ["rejects", "videos"],
        ):
            code, out = _cli(config, state, API_KEY, wh_url, *args)
            assert code == 0, out
            outputs.append(out)
        # A refused key and an unreachable warehouse: the errors must not echo them either.
        code, out = _cli(config, state, WRONG_KEY, wh_url, "sync", "videos", "--full-refresh")
        assert code == 1 and "401" in out
        outputs.append(out)
        bad_wh = wh_url.replace("127.0.0.1:", "127.0.0.1:1") + "_missing"
        code, out = _cli(config, state, API_KEY, bad_wh, "sync", "videos")
        assert code == 1 and "***" in out
        outputs.append(out)
        requests = str(sb.requests)
    assert "delivered           19" in outputs[2]
    everything = "\n".join(outputs) + requests + state.read_bytes().decode("latin-1")
    wal = Path(str(state) + "-wal")
    if wal.exists():
        everything += wal.read_bytes().decode("latin-1")
    for secret in (API_KEY, WRONG_KEY, DB_PASSWORD):
        assert secret not in everything
