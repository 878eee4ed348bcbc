"""``connector plan`` and ``connector preview`` (``cli.planning``): the plan of the next run
(rows pending, requests, the least duration), printed by plan, preview and sync alike, and
counted again after a full refresh."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.sandbox import SandboxServer
from tests.conftest import Warehouse
from tests.contact_fixtures import KlaviyoCli, make_customers
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


def test_cli_plan_and_sync_of_a_contact_sync_count_the_rows_it_compares(
    duck: Warehouse,
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 40)
    cli_ = KlaviyoCli(tmp_path, duck, sandbox)
    summary = "40 rows to compare with {} confirmed contacts → klaviyo_profiles jobs for the"

    code, out = cli_.run(monkeypatch, capsys, "plan", cli_.name)
    assert code == 0
    assert "rows to compare     40" in out["stdout"] and "confirmed contacts  0" in out["stdout"]
    assert summary.format(0) in out["stdout"]

    code, out = cli_.run(monkeypatch, capsys, "sync", cli_.name)
    assert code == 0
    assert f"plan: {summary.format(0)}" in out["stderr"]
    assert "40 / 40 rows (100.0%): 0 unchanged, 40 delivered, 0 rejected" in out["stderr"]

    duck.run("UPDATE customers SET plan = 'vip' WHERE customer_id = 7")
    code, out = cli_.run(monkeypatch, capsys, "plan", cli_.name, "--json")
    plan = json.loads(out["stdout"])
    assert (plan["kind"], plan["rows"], plan["confirmed"]) == ("contacts", 40, 40)
    code, out = cli_.run(monkeypatch, capsys, "sync", cli_.name)
    assert code == 0
    assert "40 / 40 rows (100.0%): 39 unchanged, 1 delivered, 0 rejected" in out["stderr"]
