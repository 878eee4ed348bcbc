"""What a run is about to do, before it sends anything (``run.run_plan``): rows pending,
requests and the least duration of the next run, after the checkpoint or for a full refresh,
requests filled by bytes as the run fills them; durations as a person writes them; for a
contact sync, the rows the run compares (what it then reads) and the contacts confirmed."""

from __future__ import annotations

import pytest

from connector.deliver.delivery import Runtime
from connector.run.contacts import run_contacts
from connector.run.run_plan import format_duration, plan_contacts, plan_run
from connector.run.sync import run_sync
from connector.sandbox import SandboxServer
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import Warehouse, make_sync
from tests.contacts_fakes import FakeKlaviyo
from tests.helpers import fill_events, sync_for
from tests.run.test_contacts import SYNC as CONTACT_SYNC
from tests.run.test_contacts import customers
from tests.run.test_contacts import sync_for as contact_sync


def test_a_million_rows_plan_as_a_thousand_klaviyo_requests_at_150_a_minute(
    duck: Warehouse, state: StateStore, sandbox: SandboxServer
) -> None:
    fill_events(duck, 1_000_000)
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
    fill_events(duck, 2_500)
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
    fill_events(duck, 600, title_chars=8_000)  # ~8 KB an event: 512 KiB holds ~60, not 200
    sync = sync_for("brevo_events_batch", duck, sandbox.url)
    plan = plan_run(sync, state)
    assert plan.event_bytes is not None and plan.event_bytes > 8_000
    assert plan.per_request < 200
    dry = run_sync(sync, state=state, dry_run=True)
    assert plan.requests == dry.requests == -(-600 // plan.per_request)


def test_no_rows_pending_is_nothing_to_send(
    duck: Warehouse, state: StateStore, sandbox: SandboxServer
) -> None:
    fill_events(duck, 0)
    plan = plan_run(sync_for("klaviyo_bulk_events", duck, sandbox.url), state)
    assert (plan.rows, plan.requests) == (0, 0)
    assert plan.line() == "0 events → nothing to send to klaviyo_bulk_events"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1.25, "1.2 s"), (45.2, "46 s"), (400, "6 min 40 s"), (3600 * 2 + 310, "2 h 5 min")],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_contact_plan_counts_the_rows_the_run_compares_and_the_confirmed_contacts(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    customers(duck, 30)
    duck.run("INSERT INTO customers (customer_id, email) VALUES (NULL, 'x@example.com')")
    sync, fake = contact_sync(duck), FakeKlaviyo()
    plan = plan_contacts(sync, state)
    assert (plan.rows, plan.confirmed, plan.checkpoint) == (30, 0, None)  # NULL key: not read
    assert plan.line() == (
        "30 rows to compare with 0 confirmed contacts → klaviyo_profiles jobs for the changed rows"
    )
    assert fake.sent() == 0  # a plan sends nothing
    first = run_contacts(sync, state, runtime=runtime, transport=fake.transport)
    assert first.rows_read == plan.rows and first.delivered == 30

    duck.run("UPDATE customers SET plan = 'vip' WHERE customer_id = 4")
    again = plan_contacts(sync, state)
    assert (again.rows, again.confirmed) == (30, 30)
    assert plan_contacts(sync, state, limit=10).rows_this_run == 10
    full = plan_contacts(sync, state, full_refresh=True)
    assert (full.rows, full.confirmed) == (30, 0)
    assert full.line() == "30 rows → klaviyo_profiles jobs for every row (full refresh)"


@pytest.mark.parametrize("lookback,rows", [("off", 6), ("1h", 35)])
def test_a_cursor_contact_plan_counts_what_the_run_reads_open_rejects_once(
    lookback: str, rows: int, duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    """After the checkpoint: 5 new rows and c3, refused, read again by key. With the lookback
    window the 30 rows behind the checkpoint are read again too, c3 among them: once."""
    customers(duck, 30)
    cursor = f", cursor: updated_at, lookback: {lookback}"
    sync = make_sync(CONTACT_SYNC.format(url=duck.url, cursor=cursor, options=""))
    fake = FakeKlaviyo()
    fake.refuse = {"c3@example.com"}
    run_contacts(sync, state, runtime=runtime, transport=fake.transport)
    later = [
        {"customer_id": i, "email": f"c{i}@example.com", "updated_at": "2026-11-02 00:00:00+00"}
        for i in range(31, 36)
    ]
    duck.insert("customers", later)

    plan = plan_contacts(sync, state)
    assert plan.checkpoint is not None and (plan.rows, plan.retried) == (rows, 1)
    assert plan.confirmed == 29
    # --limit caps the rows read after the checkpoint, not the rejects read again by key.
    assert plan_contacts(sync, state, limit=2).rows_this_run == 3
    fake.refuse = set()
    res = run_contacts(sync, state, runtime=runtime, transport=fake.transport)
    assert res.rows_read == plan.rows and (res.sent, res.delivered) == (6, 6)
