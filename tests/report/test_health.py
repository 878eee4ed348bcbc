"""connector.report.health: run totals, reject ratio and freshness, a contact run's shares of
changed and removed rows, as pure functions (no Dagster)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from connector.report.health import (
    FreshnessState,
    Level,
    Totals,
    as_utc,
    freshness,
    measure_freshness,
    reject_ratio,
    totals,
)
from connector.run.sync import SyncResult


def _result(**counts: Any) -> SyncResult:
    return SyncResult(sync="s", scope="incremental", run_id=None, **counts)


def test_totals_sum_every_count_and_the_duration() -> None:
    a = _result(
        rows_read=10, delivered=7, rejected=3, null_key_rows=2, skipped=1, batches=2,
        requests=3, retries=1, rate_limited=1, possibly_duplicated=4, duration_s=1.0004,
        rejects_retried=5, rejects_gone=1, rejects_deferred=2,
    )  # fmt: skip
    b = _result(rows_read=30, delivered=30, batches=1, requests=1, duration_s=0.9996)
    t = totals([a, b])
    assert t == Totals(
        rows_read=40, delivered=37, rejected=3, null_key_rows=2, skipped=1,
        possibly_duplicated=4, batches=3, requests=4, retries=1, rate_limited=1,
        rejects_retried=5, rejects_gone=1, rejects_deferred=2, duration_s=2.0,
    )  # fmt: skip
    assert t.rows_per_s == 20.0
    assert t.rows_seen == 42


def test_totals_of_nothing_are_zero_and_take_no_time() -> None:
    t = totals([])
    assert t == Totals()
    assert t.rows_per_s == 0.0


@pytest.mark.parametrize(
    ("read", "rejected", "null_keys", "level", "ratio", "text"),
    [
        (100, 0, 0, Level.OK, 0.0, "0 of 100 rows rejected (0.00%), within 1.00%"),
        (100, 1, 0, Level.OK, 0.01, "1 of 100 rows rejected (1.00%), within 1.00%"),
        (100, 2, 0, Level.WARN, 0.02, "2 of 100 rows rejected (2.00%), above 1.00%"),
        (100, 11, 0, Level.ERROR, 0.11, "11 of 100 rows rejected (11.00%), above 10.00%"),
        # NULL-key rows are seen (never read) and rejected: 10 of 100 + 10 seen.
        (90, 10, 10, Level.WARN, 0.10, "10 of 100 rows rejected (10.00%), above 1.00%"),
        # A run that read nothing passes: its NULL-key rows were judged with the rows.
        (0, 5, 5, Level.OK, 0.0, "5 of 5 rows rejected (0.00%), within 1.00%"),
    ],
)
def test_reject_ratio_levels(
    read: int, rejected: int, null_keys: int, level: Level, ratio: float, text: str
) -> None:
    t = Totals(rows_read=read, rejected=rejected, null_key_rows=null_keys)
    r = reject_ratio(t, warn_above=0.01, error_above=0.10)
    assert r.level is level
    assert r.passed is (level is Level.OK)
    assert r.ratio == pytest.approx(ratio)
    assert r.describe("plays") == f"{text}; see `connector rejects plays`."


T0 = datetime(2026, 11, 1, 18, 0)


@pytest.mark.parametrize(
    ("source", "checkpoints", "state", "passed", "lag", "text"),
    [
        (None, {}, FreshnessState.EMPTY_SOURCE, True, None, "the source has no rows yet"),
        (
            T0,
            {"incremental": None},
            FreshnessState.NOTHING_DELIVERED,
            False,
            None,
            "nothing delivered yet; materialize the sync",
        ),
        # The newest checkpoint of any scope counts (a partition ahead of incremental).
        (
            T0 + timedelta(hours=48),
            {"incremental": (T0, 1), "partition:2026-11-02": (T0 + timedelta(hours=30), 7)},
            FreshnessState.MEASURED,
            False,
            18.0,
            "high-water mark 18.0 h behind the newest source row (over 12 h)",
        ),
        (
            T0 + timedelta(hours=6),
            {"incremental": (T0, 1)},
            FreshnessState.MEASURED,
            True,
            6.0,
            "high-water mark 6.0 h behind the newest source row (within 12 h)",
        ),
        # A checkpoint past the newest row (rows deleted) is no lag, not a negative one.
        (
            T0,
            {"incremental": (T0 + timedelta(hours=1), 1)},
            FreshnessState.MEASURED,
            True,
            0.0,
            "high-water mark 0.0 h behind the newest source row (within 12 h)",
        ),
        (
            1_000,
            {"incremental": (400, 1)},
            FreshnessState.NOT_A_TIME,
            True,
            None,
            "cursor loaded_at is not a time; lag 600 units",
        ),
    ],
)
def test_freshness(
    source: Any,
    checkpoints: dict[str, Any],
    state: FreshnessState,
    passed: bool,
    lag: float | None,
    text: str,
) -> None:
    f = freshness(source, checkpoints, zone="UTC", max_lag_hours=12, cursor="loaded_at")
    assert f.state is state
    assert f.passed is passed
    assert f.lag_hours == (pytest.approx(lag) if lag is not None else None)
    assert f.describe() == text


def test_a_sync_without_a_cursor_has_no_freshness_to_measure() -> None:
    # A contact sync may read every row each run: no high-water mark, so nothing is read
    # (neither the state store nor the warehouse) and the check passes.
    sync = SimpleNamespace(
        name="profiles",
        source=SimpleNamespace(cursor=None, timezone="UTC"),
        checks=SimpleNamespace(max_lag_hours=12.0),
    )
    f = measure_freshness(cast(Any, sync), cast(Any, None), None)
    assert f.state is FreshnessState.NO_CURSOR
    assert f.passed
    assert f.newest_source is None and f.lag_hours is None
    assert f.describe() == (
        "the sync has no cursor (every run reads every row); freshness does not apply"
    )


def test_freshness_reads_naive_times_in_the_source_zone() -> None:
    # 20:00 in Paris (UTC+1 in November) is 19:00Z; the checkpoint is an aware 17:00Z.
    f = freshness(
        datetime(2026, 11, 1, 20, 0),
        {"incremental": (datetime(2026, 11, 1, 17, 0, tzinfo=UTC), 1)},
        zone="Europe/Paris",
        max_lag_hours=1,
    )
    assert f.lag_hours == pytest.approx(2.0)
    assert not f.passed


def test_as_utc() -> None:
    assert as_utc(date(2026, 11, 1), "Europe/Paris") == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert as_utc(datetime(2026, 11, 1, 1, tzinfo=UTC), "Europe/Paris") == datetime(
        2026, 11, 1, 1, tzinfo=UTC
    )
    assert as_utc(42, "UTC") is None


def test_report_does_not_import_dagster() -> None:
    code = "import sys, connector.report; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


SHIPPED = Path(__file__).resolve().parents[2] / "config"


def test_contact_shares_judge_changed_and_removed_rows() -> None:
    from connector.config.sync_file import parse_sync
    from connector.report.health import Level, contact_shares
    from connector.run.contacts import ContactResult

    sync = parse_sync((SHIPPED / "syncs" / "customers_to_brevo.yaml").read_text(), "c.yaml")
    half_gone = ContactResult("c", "incremental", None, changed=10, unchanged=230, removed=260)
    shares = contact_shares(sync, [half_gone])
    assert shares["removed_rows"].level is Level.ERROR  # 52% > 50%
    assert shares["removed_rows"].describe().startswith("260 of 500 confirmed contacts vanished")
    assert shares["changed_ratio"].level is Level.OK
    rebuilt = ContactResult("c", "incremental", None, changed=400, unchanged=100, sent=400)
    assert contact_shares(sync, [rebuilt])["changed_ratio"].level is Level.WARN
    refused = ContactResult("c", "incremental", None, added=10, rejected=6)
    assert contact_shares(sync, [refused])["reject_ratio"].level is Level.ERROR
