"""``connector plan``: rows pending, requests and the least duration of the next run; and the
progress line of a long run (``connector/run_plan.py``, ``connector/progress.py``)."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from connector.cli import main as cli
from connector.report.progress import ProgressLine
from connector.run.run_plan import format_duration, plan_run
from connector.run.sync import SyncResult, run_sync
from connector.sandbox import SandboxServer
from connector.store.state import INCREMENTAL, StateStore
from dagster_defs import ConnectorResource, build_defs
from tests.conftest import FakeSleep, Warehouse
from tests.helpers import create_events_table, sync_for


def _fill(wh: Warehouse, rows: int, title_chars: int = 20) -> None:
    """``rows`` rows of one size each (every text padded), one second apart, made by DuckDB."""
    create_events_table(wh)
    wh.run(
        f"""INSERT INTO ev SELECT
            i, TIMESTAMPTZ '2026-11-01 00:00:00+00' + i * INTERVAL 1 SECOND, 'video_played',
            'user' || lpad(i::VARCHAR, 7, '0') || '@example.com', 'u-' || lpad(i::VARCHAR, 7, '0'),
            repeat('x', {title_chars}), 12.5, true, DATE '2026-11-01', '{{"device": "web"}}', 'Ada'
            FROM range({rows}) t(i)"""
    )


def test_a_million_rows_plan_as_a_thousand_klaviyo_requests_at_150_a_minute(
    duck: Warehouse, state: StateStore, sandbox: SandboxServer
) -> None:
    _fill(duck, 1_000_000)
    plan = plan_run(sync_for("klaviyo_bulk_events", duck, sandbox.url), state)
    assert (plan.rows, plan.per_request, plan.requests) == (1_000_000, 1_000, 1_000)
    assert plan.duration_s == 400.0
    assert plan.line() == (
        "1,000,000 events → 1,000 klaviyo_bulk_events requests → ≥ 6 min 40 s at 150/min"
    )
    assert sandbox.stats()["requests"] == 0  # a plan sends nothing


def test_plan_counts_after_the_checkpoint_and_a_full_refresh_counts_everything(
    duck: Warehouse, state: StateStore, sandbox: SandboxServer
) -> None:
    _fill(duck, 2_500)
    duck.run("INSERT INTO ev (event_id, occurred_at) VALUES (9999, NULL)")  # never sent
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url, options="{concurrency: 1}")
    run_sync(sync, state=state, limit=1_000)  # a first run moves the checkpoint by 1,000 rows
    assert state.checkpoint("videos", INCREMENTAL) is not None
    plan = plan_run(sync, state)
    assert (plan.rows, plan.requests) == (1_500, 2)
    full = plan_run(sync, state, full_refresh=True)
    assert (full.rows, full.requests) == (2_500, 3)
    assert full.line() == "2,500 events → 3 klaviyo_bulk_events requests → ≥ 1.2 s at 150/min"

    brevo = plan_run(sync_for("brevo_events_batch", duck, sandbox.url, name="other"), state)
    assert (brevo.rows, brevo.per_request, brevo.requests) == (2_500, 200, 13)
    assert brevo.line() == "2,500 events → 13 brevo_events_batch requests → ≥ 2.6 s at 5/s"


def test_large_events_fill_a_request_by_bytes_and_the_plan_matches_the_run(
    duck: Warehouse, state: StateStore, sandbox: SandboxServer
) -> None:
    _fill(duck, 600, title_chars=8_000)  # ~8 KB an event: 512 KiB holds ~60, not 200
    sync = sync_for("brevo_events_batch", duck, sandbox.url)
    plan = plan_run(sync, state)
    assert plan.event_bytes is not None and plan.event_bytes > 8_000
    assert plan.per_request < 200
    dry = run_sync(sync, state=state, dry_run=True)
    assert plan.requests == dry.requests == -(-600 // plan.per_request)


def test_no_rows_pending_is_nothing_to_send(
    duck: Warehouse, state: StateStore, sandbox: SandboxServer
) -> None:
    _fill(duck, 0)
    plan = plan_run(sync_for("klaviyo_bulk_events", duck, sandbox.url), state)
    assert (plan.rows, plan.requests) == (0, 0)
    assert plan.line() == "0 events → nothing to send to klaviyo_bulk_events"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1.25, "1.2 s"), (45.2, "46 s"), (400, "6 min 40 s"), (3600 * 2 + 310, "2 h 5 min")],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _result(delivered: int, duration_s: float, status: str = "running") -> SyncResult:
    return SyncResult("videos", INCREMENTAL, "r1", status=status, rows_read=delivered,
                      delivered=delivered, duration_s=duration_s)  # fmt: skip


def test_progress_off_a_terminal_is_a_plain_line_every_n_seconds(fake_time: FakeSleep) -> None:
    out = io.StringIO()  # CI, a log file: not a TTY
    line = ProgressLine(1_000, stream=out, every=10, clock=fake_time.clock)
    for second in range(1, 21):  # the run reports once a second
        fake_time.now += 1
        line(_result(25 * second, second))
    line(_result(1_000, 40, status="success"))
    assert out.getvalue().splitlines() == [
        "videos: 250 / 1,000 rows (25.0%): 250 delivered, 0 rejected, 0 pending, 25 rows/s, "
        "ETA 30 s",
        "videos: 500 / 1,000 rows (50.0%): 500 delivered, 0 rejected, 0 pending, 25 rows/s, "
        "ETA 20 s",
        "videos: 1,000 / 1,000 rows (100.0%): 1,000 delivered, 0 rejected, 0 pending, "
        "25 rows/s, success",
    ]
    assert "\r" not in out.getvalue()


def test_progress_on_a_terminal_refreshes_one_line(fake_time: FakeSleep) -> None:
    out = io.StringIO()
    line = ProgressLine(100, stream=out, tty=True, every=10, clock=fake_time.clock)
    line(_result(10, 1))
    line(_result(20, 2))
    line(_result(100, 10, status="success"))
    counts = "delivered, 0 rejected, 0 pending"
    assert out.getvalue() == (
        f"\rvideos: 10 / 100 rows (10.0%): 10 {counts}, 10 rows/s, ETA 9.0 s\x1b[K"
        f"\rvideos: 20 / 100 rows (20.0%): 20 {counts}, 10 rows/s, ETA 8.0 s\x1b[K"
        f"\rvideos: 100 / 100 rows (100.0%): 100 {counts}, 10 rows/s, success\x1b[K\n"
    )


GOOD = """
name: videos
source: {{table: ev, cursor: occurred_at, primary_key: [event_id], url: "{url}"}}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
"""


def test_cli_plan_preview_and_sync_print_the_plan(
    duck: Warehouse, sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(duck, 1_234)
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "videos.yaml").write_text(
        textwrap.dedent(GOOD).format(url=duck.url, sandbox=sandbox.url)
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


def test_the_dagster_run_log_has_the_plan_before_sending(
    duck: Warehouse, sandbox: SandboxServer, tmp_path: Path
) -> None:
    _fill(duck, 1_234)
    (tmp_path / "syncs").mkdir()
    (tmp_path / "syncs" / "videos.yaml").write_text(
        textwrap.dedent(GOOD).format(url=duck.url, sandbox=sandbox.url)
    )
    resource = ConnectorResource(state_url=f"sqlite:///{tmp_path / 'state.db'}")
    defs = build_defs(tmp_path, resource=resource)
    asset = defs.resolve_assets_def(dg.AssetKey(["reverse_etl", "videos"]))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset], instance=instance)
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    plan = next(i for i, m in enumerate(messages) if "plan: 1,234 events → 2 klaviyo" in m)
    done = next(i for i, m in enumerate(messages) if "1,234 / 1,234 rows (100.0%)" in m)
    assert plan < done
    assert sandbox.stats()["requests"] == 2
