"""Change detection of contact syncs on DuckDB and PostgreSQL (engine level, fake vendor); a
batch whose items cannot be matched says why in the run's error."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from connector.contacts.hashes import HashStore
from connector.core.errors import RequestError
from connector.deliver.delivery import Runtime
from connector.run.contacts import run_contacts
from connector.store.state import StateStore
from tests.conftest import Warehouse, make_sync
from tests.contact_fixtures import make_customers
from tests.contacts_fakes import FakeKlaviyo

SYNC = """
name: customers_k
source: {{table: customers, primary_key: [customer_id], url: "{url}", chunk_size: 100{cursor}}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: http://klaviyo.test
  options: {{poll_interval_s: 1, list_id: L1{options}}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name, plan: plan, ltv: ltv, location.city: city}}
"""


def customers(wh: Warehouse, n: int) -> None:
    make_customers(wh, n, updated_at=True)


def sync_for(wh: Warehouse, cursor: bool = False, options: str = "", extra_props: str = "") -> Any:
    text = SYNC.format(url=wh.url, cursor=", cursor: updated_at" if cursor else "", options=options)
    if extra_props:
        text = text.replace("location.city: city}", f"location.city: city, {extra_props}}}")
    return make_sync(text)


@pytest.fixture
def fake_runtime(runtime: Runtime) -> Runtime:
    return runtime  # a fake clock the sleeps advance: no test waits


def run(wh: Warehouse, state: StateStore, fake: FakeKlaviyo, rt: Runtime, **kw: Any) -> Any:
    sync = kw.pop("sync", None) or sync_for(wh, **kw.pop("sync_kw", {}))
    return run_contacts(sync, state, runtime=rt, transport=fake.transport, **kw)


def test_second_run_sends_nothing_and_one_change_sends_one(
    warehouse: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(warehouse, 250)
    fake = FakeKlaviyo()
    first = run(warehouse, state, fake, fake_runtime)
    assert (first.added, first.changed, first.unchanged, first.delivered) == (250, 0, 0, 250)
    assert fake.sent() == 250 and first.jobs == 1 and first.polls == 2
    assert HashStore(state).count("customers_k") == 250
    body = fake.job_bodies[0]["data"]
    assert body["relationships"]["lists"]["data"] == [{"type": "list", "id": "L1"}]
    p = fake.profiles["c7@example.com"]
    assert p["external_id"] == "7" and p["location"] == {"city": "Paris"}
    assert p["properties"] == {"plan": "pro", "ltv": 7.10}

    second = run(warehouse, state, fake, fake_runtime)
    assert (second.unchanged, second.sent, second.jobs) == (250, 0, 0)
    assert fake.sent() == 250

    warehouse.run("UPDATE customers SET plan = 'vip' WHERE customer_id = 42")
    third = run(warehouse, state, fake, fake_runtime)
    assert (third.changed, third.added, third.sent, third.delivered) == (1, 0, 1, 1)
    assert fake.profiles["c42@example.com"]["properties"]["plan"] == "vip"


def test_refused_row_is_sent_again_until_it_succeeds(
    warehouse: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(warehouse, 30)
    fake = FakeKlaviyo()
    fake.refuse = {"c3@example.com", "c9@example.com"}
    first = run(warehouse, state, fake, fake_runtime)
    assert (first.sent, first.delivered, first.rejected) == (30, 28, 2)
    assert sorted(k for k, _ in first.sample_rejects) == ["3", "9"]
    assert {r["key"] for r in state.rejects("customers_k")} == {"3", "9"}

    again = run(warehouse, state, fake, fake_runtime)
    assert (again.unchanged, again.sent, again.rejected) == (28, 2, 2)

    fake.refuse = set()
    fixed = run(warehouse, state, fake, fake_runtime)
    assert (fixed.sent, fixed.delivered, fixed.rejected) == (2, 2, 0)
    assert state.rejects("customers_k") == []
    assert run(warehouse, state, fake, fake_runtime).sent == 0


def test_mapping_change_resends_every_row(
    warehouse: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(warehouse, 40)
    fake = FakeKlaviyo()
    run(warehouse, state, fake, fake_runtime)
    res = run(warehouse, state, fake, fake_runtime, sync_kw={"extra_props": "name2: first_name"})
    assert (res.changed, res.sent, res.unchanged) == (40, 40, 0)


def test_null_custom_property_is_unset(
    warehouse: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(warehouse, 5)
    fake = FakeKlaviyo()
    run(warehouse, state, fake, fake_runtime)
    warehouse.run("UPDATE customers SET plan = NULL, first_name = NULL WHERE customer_id = 2")
    res = run(warehouse, state, fake, fake_runtime)
    assert res.changed == 1
    profile = fake.job_bodies[-1]["data"]["attributes"]["profiles"]["data"][0]
    assert profile["meta"] == {"patch_properties": {"unset": ["plan"]}}
    assert "first_name" not in profile["attributes"]  # standard field: kept (default)
    assert "plan" not in fake.profiles["c2@example.com"]["properties"]


def test_cancelled_job_confirms_nothing(
    warehouse: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(warehouse, 10)
    fake = FakeKlaviyo()
    fake.cancel_next = True
    with pytest.raises(RequestError, match="cancelled"):
        run(warehouse, state, fake, fake_runtime)
    assert HashStore(state).count("customers_k") == 0
    fake.cancel_next = False
    assert run(warehouse, state, fake, fake_runtime).sent == 10


def _refuse_most_of_each_job(fake: FakeKlaviyo, rows: int) -> None:
    """Jobs of 10 rows (see ``small_jobs``): the vendor refuses 6 of each."""
    fake.refuse = {f"c{i}@example.com" for i in range(1, rows + 1) if (i - 1) % 10 < 6}


@pytest.fixture
def small_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector.destinations.klaviyo.profiles as k

    limits = dataclasses.replace(k.KlaviyoProfiles.limits, max_items=10)
    monkeypatch.setattr(k.KlaviyoProfiles, "limits", limits)


def test_breaker_stops_the_run_before_its_next_job_and_records_no_held_reject(
    duck: Warehouse, state: StateStore, fake_runtime: Runtime, small_jobs: None
) -> None:
    customers(duck, 50)
    fake = FakeKlaviyo()
    _refuse_most_of_each_job(fake, 50)
    # Jobs of 10 held until 25 rows were answered: the third job (18 of 30 refused) trips.
    opts = ", reject_ratio_min_rows: 25, jobs_in_flight: 1"
    with pytest.raises(RequestError, match=r"refused 18 of the 30 .*max_reject_ratio \(0\.5\)"):
        run(duck, state, fake, fake_runtime, sync_kw={"options": opts})
    assert len(fake.job_bodies) == 3  # the fourth job is never submitted
    assert state.rejects("customers_k") == []  # the held jobs' rejects are not recorded
    assert HashStore(state).count("customers_k") == 12  # what the vendor confirmed, only
    fake.refuse = set()
    again = run(duck, state, fake, fake_runtime, sync_kw={"options": opts})
    assert (again.unchanged, again.sent, again.delivered, again.rejected) == (12, 38, 38, 0)


def test_breaker_records_held_rejects_when_the_ratio_holds_and_ratio_1_turns_it_off(
    duck: Warehouse, state: StateStore, fake_runtime: Runtime, small_jobs: None
) -> None:
    customers(duck, 40)
    fake = FakeKlaviyo()
    fake.refuse = {f"c{i}@example.com" for i in range(1, 7)}  # 6 of the first job only
    held = {"options": ", reject_ratio_min_rows: 25"}
    res = run(duck, state, fake, fake_runtime, sync_kw=held)
    assert (res.status, res.delivered, res.rejected) == ("success", 34, 6)
    assert len(state.rejects("customers_k")) == 6
    _refuse_most_of_each_job(fake, 40)
    with pytest.raises(RequestError, match="max_reject_ratio"):
        run(duck, state, fake, fake_runtime, sync_kw=held, full_refresh=True)  # 18 of 30
    off = {"options": ", reject_ratio_min_rows: 25, max_reject_ratio: 1"}
    res = run(duck, state, fake, fake_runtime, sync_kw=off, full_refresh=True)
    assert (res.status, res.sent, res.rejected) == ("success", 40, 24)


def test_duplicate_email_in_one_job_is_a_reject(
    duck: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(duck, 5)
    duck.run("UPDATE customers SET email = 'c1@example.com' WHERE customer_id = 4")
    fake = FakeKlaviyo()
    res = run(duck, state, fake, fake_runtime)
    assert (res.sent, res.rejected) == (4, 1)
    assert res.sample_rejects[0][0] == "4" and "row 1" in res.sample_rejects[0][1]


def test_cursor_reads_after_checkpoint_and_rereads_rejects(
    duck: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    customers(duck, 20)
    fake = FakeKlaviyo()
    fake.refuse = {"c5@example.com"}
    first = run(duck, state, fake, fake_runtime, sync_kw={"cursor": True})
    assert (first.rows_read, first.delivered, first.rejected) == (20, 19, 1)
    fake.refuse = set()
    second = run(duck, state, fake, fake_runtime, sync_kw={"cursor": True})
    # The open reject is read again by key; the other 19 rows lie inside the lookback window
    # behind the checkpoint (source.lookback, 1 h): read again, unchanged, not sent.
    assert (second.rows_read, second.sent, second.delivered) == (20, 1, 1)
    assert second.unchanged == 19
    duck.run(
        "UPDATE customers SET plan = 'x', updated_at = '2026-11-02 00:00:00+00' "
        "WHERE customer_id IN (3, 4)"
    )
    third = run(duck, state, fake, fake_runtime, sync_kw={"cursor": True})
    assert (third.rows_read, third.changed, third.sent) == (20, 2, 2)


def test_many_jobs_by_count(duck: Warehouse, state: StateStore, fake_runtime: Runtime) -> None:
    customers(duck, 25)
    fake = FakeKlaviyo(polls_before_complete=3)
    import connector.destinations.klaviyo.profiles as k

    old = k.KlaviyoProfiles.limits
    k.KlaviyoProfiles.limits = dataclasses.replace(old, max_items=10)
    try:
        res = run(duck, state, fake, fake_runtime)
    finally:
        k.KlaviyoProfiles.limits = old
    assert (res.jobs, res.delivered, res.polls) == (3, 25, 12)


def test_progress_counts_the_rows_of_jobs_out_as_pending(
    duck: Warehouse, state: StateStore, fake_runtime: Runtime
) -> None:
    """A contact run's progress line shows the rows of submitted jobs not yet confirmed as
    pending (it read 0 pending while jobs were out), and none once every job is done."""
    customers(duck, 25)
    fake = FakeKlaviyo(polls_before_complete=3)
    import connector.destinations.klaviyo.profiles as k

    seen: list[tuple[int, int, int]] = []
    old = k.KlaviyoProfiles.limits
    k.KlaviyoProfiles.limits = dataclasses.replace(old, max_items=10)
    try:
        res = run(
            duck,
            state,
            fake,
            fake_runtime,
            sync_kw={"options": ", jobs_in_flight: 2"},
            progress=lambda r: seen.append((r.delivered, r.pending, r.sent)),
        )
    finally:
        k.KlaviyoProfiles.limits = old
    assert (res.jobs, res.delivered, res.pending) == (3, 25, 0)
    # Every report: the rows sent and not yet confirmed are pending (no rejects here).
    assert seen and all(pending == sent - delivered for delivered, pending, sent in seen), seen
    assert any(pending for _, pending, _ in seen), seen  # jobs were out at some report
    assert seen[-1][1] == 0


def test_an_unmatched_batch_says_why_in_the_run_error() -> None:
    """The run's error quotes the reason instead of pointing at nothing ("see above")."""
    from connector.run import contacts

    source = Path(contacts.__file__).read_text()
    assert "see above" not in source
