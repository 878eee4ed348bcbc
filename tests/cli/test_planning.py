"""``connector plan`` and ``connector preview`` (``cli.planning``): the plan of the next run
(rows pending, requests, the least duration), printed by plan, preview and sync alike, and
counted again after a full refresh."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.sandbox import SandboxServer
from tests.conftest import Warehouse
from tests.helpers import PLAIN_SYNC, fill_events


def test_cli_plan_preview_and_sync_print_the_plan(
    duck: Warehouse, sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_events(duck, 1_234)
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "videos.yaml").write_text(
        textwrap.dedent(PLAIN_SYNC).format(name="videos", url=duck.url, sandbox=sandbox.url)
    )
    base = ["--config-dir", str(tmp_path / "config"), "--state-url"]
    base.append(f"sqlite:///{tmp_path / 'state.db'}")
    summary = "1,234 events → 2 klaviyo_bulk_events requests → ≥ 0.8 s at 150/min"

    assert cli.main([*base, "plan", "videos"]) == 0
    out = capsys.readouterr().out
    assert "rows pending        1,234" in out and "requests            2" in out
    assert out.rstrip().endswith(summary)

    assert cli.main([*base, "preview", "videos", "--limit", "1"]) == 0
    assert summary in capsys.readouterr().out

    assert cli.main([*base, "sync", "videos"]) == 0
    err = capsys.readouterr().err  # piped in tests: plain lines
    assert f"plan: {summary}" in err
    assert "videos: 1,234 / 1,234 rows (100.0%)" in err and "success" in err

    assert cli.main([*base, "plan", "videos"]) == 0
    assert "0 events → nothing to send" in capsys.readouterr().out
    assert cli.main([*base, "plan", "videos", "--full-refresh"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(summary)
    assert sandbox.stats()["requests"] == 2
