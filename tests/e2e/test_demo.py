"""``connector demo`` end to end: the demo warehouse, the sandbox and every shipped sync."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.cli.demo_run import run_demo

REPO = Path(__file__).resolve().parents[2]


def _summaries(out: str) -> dict[str, dict[str, int]]:
    """``{sync: {"read": n, "delivered": n}}`` from the printed run summaries."""
    found: dict[str, dict[str, int]] = {}
    for name, body in re.findall(r"^(\w+): success\n((?:  .*\n)+)", out, flags=re.M):
        read = re.search(r"rows read\s+([\d,]+)", body)
        delivered = re.search(r"delivered\s+([\d,]+)", body)
        assert read and delivered, body
        found[name] = {
            "read": int(read.group(1).replace(",", "")),
            "delivered": int(delivered.group(1).replace(",", "")),
        }
    return found


@pytest.mark.slow
def test_demo_runs_every_shipped_sync_then_continues_from_the_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    # The shipped syncs, with the single-event ones' destination.max_rows_per_run at 3 (40 as
    # shipped): the demo sends what the sync file allows, no slice of its own.
    config = shutil.copytree(REPO / "config", tmp_path / "config")
    capped = [
        p for p in (config / "syncs").glob("*.yaml") if "max_rows_per_run: 40" in p.read_text()
    ]
    assert len(capped) == 4
    for p in capped:
        p.write_text(p.read_text().replace("max_rows_per_run: 40", "max_rows_per_run: 3"))
    monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(config))
    state = f"sqlite:///{tmp_path / 'state.db'}"
    shipped = {p.stem for p in (REPO / "config" / "syncs").glob("*.yaml")}

    assert run_demo(events=300, state_url=state) == 0
    first = _summaries(capsys.readouterr().out)
    assert set(first) == shipped
    # Batch syncs send the whole table; single-event syncs a slice each.
    assert first["video_played"]["read"] == 299  # one row has a NULL cursor
    assert first["order_placed"]["delivered"] == 1_000
    assert first["order_placed_brevo_tracker"] == {"read": 3, "delivered": 3}
    assert first["order_placed_omnisend_events"] == {"read": 3, "delivered": 3}

    # Between runs the warehouse file is not held open: another process (the loader) can write.
    write = (
        "import duckdb; duckdb.connect('.connector/demo.duckdb').execute('CREATE TABLE t(a INT)')"
    )
    subprocess.run([sys.executable, "-c", write], check=True, timeout=60)

    assert run_demo(events=300, state_url=state) == 0
    out = capsys.readouterr().out
    second = _summaries(out)
    assert second["video_played"]["read"] == 0
    assert second["order_placed"]["read"] == 0
    assert second["order_placed_omnisend_events"] == {"read": 3, "delivered": 3}
    # The contact sync: all 500 customers first, nothing the second time...
    assert first["customers_to_klaviyo"] == {"read": 500, "delivered": 500}
    assert second["customers_to_klaviyo"] == {"read": 500, "delivered": 0}
    assert first["customers_to_brevo"] == {"read": 500, "delivered": 500}
    assert second["customers_to_brevo"] == {"read": 500, "delivered": 0}
    assert first["customers_to_omnisend"] == {"read": 500, "delivered": 500}
    assert second["customers_to_omnisend"] == {"read": 500, "delivered": 0}
    # ...and exactly the 3 rows changed by the documented one-line command (docs/contacts.md).
    change = (
        "import duckdb; duckdb.connect('.connector/demo.duckdb').execute(\"UPDATE "
        "analytics.customers SET plan = 'vip' WHERE customer_id IN (1, 2, 3)\")"
    )
    subprocess.run([sys.executable, "-c", change], check=True, timeout=60)
    assert run_demo(events=300, state_url=state) == 0
    third = _summaries(capsys.readouterr().out)
    assert third["customers_to_klaviyo"] == {"read": 500, "delivered": 3}
    assert third["customers_to_brevo"] == {"read": 500, "delivered": 3}
    assert third["customers_to_omnisend"] == {"read": 500, "delivered": 3}
    # The next slice, not the same one again.
    assert "key ord-000002 -> " in out.split("order_placed_omnisend_events: success")[1]
