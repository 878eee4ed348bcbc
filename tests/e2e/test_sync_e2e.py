"""End to end: real warehouse (DuckDB file / PostgreSQL) → sync → sandbox over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.core.errors import AuthError, RetriesExhausted
from connector.deliver.delivery import Runtime
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import FakeSleep, Warehouse
from tests.helpers import (
    BASE,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    sync_for,
)

KINDS = ["klaviyo_bulk_events", "brevo_events_batch"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_is_delivered_once_and_mapped_field_by_field(
    kind: str,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(warehouse)
    rows = event_rows(0, 250)  # 3 rows per second: ties across the 100-row pages
    insert_events(warehouse, rows)
    sync = sync_for(kind, warehouse, sandbox.url)

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.status == "success"
    assert (res.rows_read, res.delivered, res.rejected) == (250, 250, 0)
    assert sorted(delivered_ids(sandbox, kind)) == list(range(250))
    got = sandbox.events(kind)
    by_id = dict(zip(delivered_ids(sandbox, kind), got, strict=True))
    for i in (0, 1, 124, 249):
        row, ev = rows[i], by_id[i]
        when = (BASE + timedelta(seconds=i // 3)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
        props = {
            "video": {"title": row["title"]},
            "duration": float(row["duration"]),
            "autoplayed": row["autoplayed"],
            "upload_date": row["upload_date"].isoformat(),
            "payload": {"device": "web", "n": i},
        }
        if kind == "klaviyo_bulk_events":
            attrs = ev["event"]
            assert attrs["metric"]["data"]["attributes"]["name"] == "video_played"
            assert attrs["time"] == when
            assert attrs["unique_id"] == f"videos:{i}"
            assert attrs["properties"] == props
            profile = ev["profile"]
            assert profile["email"] == row["email"]
            assert profile["external_id"] == row["user_id"]
            assert profile.get("first_name") == row["first_name"]  # NULL → omitted
        else:
            assert ev["event_name"] == "video_played"
            assert ev["event_date"] == when
            assert ev["identifiers"] == {"email_id": row["email"], "ext_id": row["user_id"]}
            assert ev["event_properties"] == props
            if row["first_name"] is None:
                assert "contact_properties" not in ev
            else:
                assert ev["contact_properties"] == {"FIRSTNAME": row["first_name"]}
    assert res.hwm_after is not None and res.hwm_after[1] == 249


@pytest.mark.parametrize("kind", KINDS)
def test_rerun_sends_nothing_and_new_rows_tied_at_the_mark_are_sent_exactly_once(
    kind: str,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(warehouse)
    insert_events(warehouse, event_rows(0, 10, per_second=5))  # last second holds 5..9
    sync = sync_for(kind, warehouse, sandbox.url)
    assert run_sync(sync, state=state, runtime=runtime).delivered == 10

    again = run_sync(sync, state=state, runtime=runtime)
    assert (again.rows_read, again.delivered) == (0, 0)

    # New rows: two share the cursor of the high-water mark (ties), one is later.
    tied = event_rows(10, 2, per_second=1)
    for row in tied:
        row["occurred_at"] = BASE + timedelta(seconds=1)
    later = event_rows(12, 1, per_second=1)
    insert_events(warehouse, tied + later)
    third = run_sync(sync, state=state, runtime=runtime)
    assert (third.rows_read, third.delivered) == (3, 3)
    assert sorted(delivered_ids(sandbox, kind)) == list(range(13))
    assert run_sync(sync, state=state, runtime=runtime).delivered == 0


@pytest.mark.parametrize("kind", KINDS)
def test_bad_rows_are_rejected_with_reasons_and_good_rows_still_go(
    kind: str,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(warehouse)
    rows = event_rows(0, 20)
    rows[3]["email"] = rows[3]["user_id"] = None  # no identifier at all
    rows[5]["kind"] = "bad name!" if kind == "brevo_events_batch" else "x" * 200
    rows[7]["title"] = "y" * 120_000  # over Klaviyo's 100 KB string / Brevo's 50 KB
    rows[9]["occurred_at"] = None  # NULL cursor: never readable
    insert_events(warehouse, rows)
    sync = sync_for(kind, warehouse, sandbox.url)

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.status == "success"
    assert res.delivered == 16
    assert res.rejected == 4
    assert res.null_key_rows == 1
    assert sorted(delivered_ids(sandbox, kind)) == [i for i in range(20) if i not in (3, 5, 7, 9)]
    reasons = {r["key"]: r["reason"] for r in state.rejects("videos")}
    assert set(reasons) == {"3", "5", "7", "9"}
    assert "identifier" in reasons["3"]
    assert "event name" in reasons["5"]
    assert "120000 bytes" in reasons["7"] or "50 KB" in reasons["7"]
    assert "NULL" in reasons["9"] and "occurred_at" in reasons["9"]
    # Rejected rows are passed by the checkpoint: the next run reads nothing.
    assert run_sync(sync, state=state, runtime=runtime).rows_read == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "fault,expected_wait",
    [
        (Fault(status=429, headers={"Retry-After": "7"}), 7.0),
        (Fault(status=429, headers={"RateLimit-Reset": "4"}), 4.0),
        (Fault(status=429, headers={"x-sib-ratelimit-reset": "3"}), 3.0),
        (Fault(status=429, headers={"X-Rate-Limit-Reset": "5"}), 5.0),
        (Fault(status=429), None),
        (Fault(status=503), None),
        (Fault(status=500, times=2), None),
        (Fault(reset=True), None),
        (Fault.html_403(), None),
    ],
    ids=[
        "retry-after",
        "ratelimit-reset",
        "sib-reset",
        "x-rate-limit-reset",
        "429-bare",
        "503",
        "500x2",
        "reset",
        "cloudflare-403",
    ],
)
def test_transient_failures_are_retried_until_every_row_is_delivered(
    kind: str,
    fault: Fault,
    expected_wait: float | None,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    fake_time: FakeSleep,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    sync = sync_for(kind, duck, sandbox.url, options="{concurrency: 1}")
    sandbox.inject(Fault(**{**fault.__dict__, "path": sync_path(kind)}))

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.delivered == 30
    assert sorted(delivered_ids(sandbox, kind)) == list(range(30))
    assert res.retries + res.rate_limited >= 1
    if expected_wait is not None:
        assert res.rate_limited == 1
        # Waited what the vendor asked (plus at most 10% jitter), not a tight loop.
        assert any(expected_wait <= w <= expected_wait * 1.1 + 1e-9 for w in fake_time.waits)


def sync_path(kind: str) -> str:
    return "/api/event-bulk-create-jobs" if kind == "klaviyo_bulk_events" else "/v3/events/batch"


def test_klaviyo_dedup_ids_are_stable_when_a_processed_request_is_retried(
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url, options="{concurrency: 1}")
    # The sandbox stores the request, then drops the connection: the client must re-send.
    sandbox.inject(Fault(path=sync_path("klaviyo_bulk_events"), reset=True, after_process=True))

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.delivered == 30 and res.retries == 1
    stats = sandbox.stats()
    assert stats["deduplicated"]["klaviyo_bulk_events"] == 30  # same unique_ids re-sent
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(30))


def test_brevo_retry_after_a_processed_request_reports_possible_duplicates(
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    sync = sync_for("brevo_events_batch", duck, sandbox.url, options="{concurrency: 1}")
    sandbox.inject(Fault(path=sync_path("brevo_events_batch"), reset=True, after_process=True))

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.delivered == 30
    assert res.possibly_duplicated == 30  # Brevo has no dedup key: said, not hidden
    assert len(sandbox.events("brevo_events_batch")) == 60


def test_timeouts_are_retried(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 10))
    sync = sync_for(
        "klaviyo_bulk_events", duck, sandbox.url, options="{concurrency: 1, timeout_s: 0.3}"
    )
    sandbox.inject(Fault(path=sync_path("klaviyo_bulk_events"), delay_s=5.0))

    res = run_sync(sync, state=state, runtime=runtime)

    assert res.delivered == 10 and res.retries == 1
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(10))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_credentials_fail_the_run_at_once_and_keep_the_checkpoint(
    kind: str,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 10))
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_wrong_secret_value")
    monkeypatch.setenv("BREVO_API_KEY", "xkeysib-wrong-secret-value")
    sync = sync_for(kind, duck, sandbox.url)

    with pytest.raises(AuthError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert "401" in str(err.value) and "api_key" in str(err.value)
    assert "wrong-secret" not in str(err.value) and "wrong_secret" not in str(err.value)
    assert state.checkpoint("videos") is None
    assert sandbox.stats()["requests"] <= 4  # no retry storm on 401


def test_a_run_that_exhausts_its_retries_fails_and_the_next_run_resumes(
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 250))
    sync = sync_for(
        "brevo_events_batch", duck, sandbox.url, options="{concurrency: 1, max_retries: 1}"
    )
    first = run_sync(sync, state=state, runtime=runtime, limit=200)
    assert first.delivered == 200
    sandbox.inject(Fault(path="/v3/events/batch", status=500, times=2))
    with pytest.raises(RetriesExhausted):
        run_sync(sync, state=state, runtime=runtime)
    assert state.checkpoint("videos")[1] == 199  # type: ignore[index]

    res = run_sync(sync, state=state, runtime=runtime)
    assert res.delivered == 50
    assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(250))


@pytest.mark.parametrize("kind", KINDS)
def test_full_refresh_resends_everything(
    kind: str, duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 12))
    sync = sync_for(kind, duck, sandbox.url)
    run_sync(sync, state=state, runtime=runtime)
    res = run_sync(sync, state=state, runtime=runtime, full_refresh=True)
    assert res.delivered == 12
    assert len(sandbox.events(kind)) == (12 if kind == "klaviyo_bulk_events" else 24)


def test_dry_run_sends_nothing_and_changes_no_state(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 12))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url)
    res = run_sync(sync, state=state, runtime=runtime, dry_run=True)
    assert (res.status, res.rows_read, res.delivered) == ("dry_run", 12, 12)
    assert sandbox.stats()["requests"] == 0
    assert state.checkpoint("videos") is None and state.runs("videos") == []


def test_state_store_on_postgresql(
    duck: Warehouse, pg_url: str, sandbox: SandboxServer, runtime: Runtime
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 40))
    store = StateStore(pg_url)
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url)
    assert run_sync(sync, state=store, runtime=runtime).delivered == 40
    assert store.checkpoint("videos")[1] == 39  # type: ignore[index]
    assert run_sync(sync, state=store, runtime=runtime).delivered == 0
    assert store.runs("videos")[0]["status"] == "success"
    store.engine.dispose()
