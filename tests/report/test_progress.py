"""The progress line of a long run (``report.progress``): rows settled of the total, what
became of them, speed and ETA; a plain line every N seconds off a terminal, one refreshed line
on a terminal."""

from __future__ import annotations

import io

from connector.report.progress import ProgressLine
from connector.run.result import ContactResult
from connector.run.sync import SyncResult
from connector.store.state import INCREMENTAL
from tests.conftest import FakeSleep


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


def test_a_contact_runs_unchanged_rows_are_settled_as_it_compares_them(
    fake_time: FakeSleep,
) -> None:
    """A contact run's total is the rows it compares (``plan_contacts``): the unchanged ones
    need nothing sent and count as settled, so % and ETA follow the comparison."""
    out = io.StringIO()
    line = ProgressLine(10_000, stream=out, every=10, clock=fake_time.clock)
    fake_time.now += 10
    running = ContactResult("customers", INCREMENTAL, "r1", rows_read=5_000, unchanged=4_000,
                            delivered=600, rejected=2, pending=398, duration_s=10)  # fmt: skip
    line(running)
    done = ContactResult("customers", INCREMENTAL, "r1", status="success", rows_read=10_000,
                         unchanged=9_000, delivered=997, rejected=3, duration_s=20)  # fmt: skip
    line(done)
    assert out.getvalue().splitlines() == [
        "customers: 4,602 / 10,000 rows (46.0%): 4,000 unchanged, 600 delivered, 2 rejected, "
        "398 pending, 460 rows/s, ETA 12 s",
        "customers: 10,000 / 10,000 rows (100.0%): 9,000 unchanged, 997 delivered, 3 rejected, "
        "0 pending, 500 rows/s, success",
    ]


def test_null_cursor_rows_are_rejected_but_not_in_the_total() -> None:
    """The plan counts the rows a run reads (cursor and key not NULL); a row with a NULL cursor
    is found apart and rejected: the line says why the rejects exceed the total."""
    res = SyncResult("videos", INCREMENTAL, "r1", status="success", rows_read=40, delivered=40,
                     rejected=1, null_key_rows=1, duration_s=4)  # fmt: skip
    lines: list[str] = []
    ProgressLine(40, write=lines.append)(res)
    assert lines == [
        "videos: 40 / 40 rows (100.0%): 40 delivered, 1 rejected (1 with a NULL cursor/key, "
        "not in the total), 0 pending, 10 rows/s, success"
    ]
