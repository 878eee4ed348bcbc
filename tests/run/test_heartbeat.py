"""Progress by settled rows, on a timer (issue 22, item 1).

The run shell's heartbeat reports the counts the delivery path updates — delivered, rejected,
pending (sent, not settled) — on the run's injected clock, so these tests drive it without
sleeping; a 401 run reports 0 delivered (not 100 %), and a real ``connector sync`` against the
sandbox prints progress lines with its delivered counts.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connector.config.sync_file import SyncConfig
from connector.core.errors import AuthError
from connector.deliver.delivery import Runtime
from connector.report.progress import ProgressLine
from connector.run.heartbeat import Heartbeat
from connector.run.result import SyncResult
from connector.run.run_plan import plan_run
from connector.run.shell import RunShell
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import FakeSleep, Warehouse
from tests.helpers import create_events_table, event_rows, insert_events, sync_for

REPO = Path(__file__).resolve().parents[2]


class Counters:
    requests = retries = rate_limited = 0


def test_the_heartbeat_reports_settled_rows_every_ten_seconds_of_the_injected_clock(
    tmp_path: Path, fake_time: FakeSleep
) -> None:
    out = io.StringIO()  # not a terminal: a plain line every 10 s
    line = ProgressLine(100, stream=out, every=10, clock=fake_time.clock)
    res = SyncResult("videos", INCREMENTAL, None)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    shell = RunShell(state, res, Counters(), dry_run=True, clock=fake_time.clock, progress=line)
    shell.started = fake_time.now

    # What the delivery path does each second: 5 rows go out, 4 come back delivered (the
    # 10th, 20th... second one is rejected instead), the rest stay pending.
    ticks = [0]

    def one_second(seconds: float) -> bool:
        if ticks[0] == 25:
            return True  # stop
        ticks[0] += 1
        fake_time.now += seconds
        shell.sending(4)
        shell.delivered(["k"] * 3)
        res.rejected += 1 if ticks[0] % 10 == 0 else 0
        res.delivered += 0 if ticks[0] % 10 == 0 else 1
        shell.settled_sent(4)
        return False

    Heartbeat(shell.beat, poll_s=1.0, wait=one_second).loop()  # no thread, no sleep
    assert out.getvalue().splitlines() == [
        "videos: 40 / 100 rows (40.0%): 39 delivered, 1 rejected, 0 pending, 4.0 rows/s, ETA 15 s",
        "videos: 80 / 100 rows (80.0%): 78 delivered, 2 rejected, 0 pending, 4.0 rows/s, ETA 5.0 s",
    ]


def test_pending_rows_are_sent_not_settled(tmp_path: Path, fake_time: FakeSleep) -> None:
    lines: list[str] = []
    line = ProgressLine(10, write=lines.append, every=10, clock=fake_time.clock)
    res = SyncResult("videos", INCREMENTAL, None)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    shell = RunShell(state, res, Counters(), dry_run=True, clock=fake_time.clock, progress=line)
    shell.sending(6)
    shell.delivered(["a", "b"])
    shell.settled_sent(2)
    fake_time.now += 12
    shell.beat()
    assert lines == [
        "videos: 2 / 10 rows (20.0%): 2 delivered, 0 rejected, 4 pending, 0.2 rows/s, ETA 48 s"
    ]


def _klaviyo(duck: Warehouse, sandbox: SandboxServer) -> SyncConfig:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 120))
    return sync_for("klaviyo_bulk_events", duck, sandbox.url)


def test_a_401_run_reports_nothing_delivered_not_100_percent(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    sync = _klaviyo(duck, sandbox)
    total = plan_run(sync, state).rows_this_run
    out = io.StringIO()
    sandbox.inject(Fault(path="*", status=401, times=100))
    try:
        run_sync(sync, state=state, runtime=runtime, progress=ProgressLine(total, stream=out))
    except AuthError:
        pass
    else:
        raise AssertionError("the run should fail")
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("videos: 0 / 120 rows (0.0%): 0 delivered, 0 rejected"), last
    assert last.endswith(", failed")
    assert "100.0%" not in out.getvalue()


@pytest.mark.slow
def test_connector_sync_prints_progress_lines_with_delivered_counts(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """A real CLI run of a single-event sync (paced at Omnisend's 7 requests/s) against the
    sandbox: not a terminal, so plain lines every CONNECTOR_PROGRESS_EVERY_S seconds."""
    from connector.cli.demo import build_demo_warehouse

    build_demo_warehouse(tmp_path / ".connector" / "demo.duckdb", events=200)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "WAREHOUSE"))},
        "CONNECTOR_CONFIG_DIR": str(REPO / "config"),
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONNECTOR_PROGRESS_EVERY_S": "1",
        "SANDBOX_URL": sandbox.url,
        "OMNISEND_API_KEY": "sandbox-omnisend-key",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", "sync", "order_placed_omnisend_events"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    progress = [
        line
        for line in proc.stderr.splitlines()
        if line.startswith("order_placed_omnisend_events: ")
    ]
    pattern = re.compile(
        r"(\d+) / 40 rows \([\d.]+%\): (\d+) delivered, (\d+) rejected, (\d+) pending, "
    )
    counts = [tuple(int(g) for g in m.groups()) for m in map(pattern.search, progress) if m]
    assert len(counts) == len(progress) >= 3, proc.stderr  # ≥ 5.7 s at 7/s, a line a second
    delivered = [c[1] for c in counts]
    assert delivered == sorted(delivered)  # never backwards
    assert any(0 < d < 40 for d in delivered[:-1])  # mid-run lines count what was delivered
    assert counts[-1] == (40, 40, 0, 0) and progress[-1].endswith(", success")
    assert "40 / 40 rows (100.0%)" in progress[-1]
