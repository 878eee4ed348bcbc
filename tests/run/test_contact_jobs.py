"""Memory of contact runs (issue 10: peak RSS <= 300 MiB at 1M contacts): what a run holds per
row of its unconfirmed jobs, and how many rows a job holds whatever the vendor's byte limit."""

from __future__ import annotations

import tracemalloc
from typing import Any

import httpx
import pytest

from connector.deliver.delivery import Runtime
from connector.run import contact_jobs as engine
from connector.run.contacts import run_contacts
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse, make_sync
from tests.contacts_fakes import FakeKlaviyo
from tests.destinations.brevo.test_contacts import SYNC as BREVO_SYNC
from tests.run.test_contacts import customers, sync_for

ROWS = 4_000


def _connector_bytes() -> int:
    """Bytes of live Python objects allocated by the connector package (not the test's fake
    vendor, not the sandbox)."""
    snap = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(True, "*/connector/*"),
            tracemalloc.Filter(False, "*/connector/sandbox/*"),
        ]
    )
    return sum(s.size for s in snap.statistics("filename"))


def test_a_job_waiting_for_the_vendor_holds_about_a_kilobyte_per_row(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    # One job of 4,000 profiles in flight: at its first status poll the run holds what
    # confirming needs (key, hash, identifiers, payload). orjson's bytes kept a 4 KiB buffer
    # each (16 MB here) and every row's Contact was kept besides: 4.8 KB a row, now ~0.9 KB.
    customers(duck, ROWS)
    fake = FakeKlaviyo()
    sync = sync_for(duck, options=", jobs_in_flight: 1")
    run_contacts(sync, state, runtime=runtime, transport=fake.transport)  # warm caches
    held: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and not held:
            held.append(_connector_bytes())
        return fake.handle(request)

    tracemalloc.start()
    try:
        before = _connector_bytes()
        res = run_contacts(
            sync,
            state,
            runtime=runtime,
            transport=httpx.MockTransport(handle),
            full_refresh=True,
        )
    finally:
        tracemalloc.stop()
    assert (res.jobs, res.delivered) == (1, ROWS)
    per_row = (held[0] - before) / ROWS
    assert per_row < 1_500, f"{per_row:.0f} bytes held per row of the job in flight"


def test_a_brevo_job_holds_at_most_rows_per_job_rows_though_its_bytes_allow_more(
    duck: Warehouse, state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Brevo limits a job by bytes only (8 MiB: ~40,000 such contacts); the run holds every row
    # of its unconfirmed jobs, so the engine caps the rows of a job (10,000; 10 here).
    monkeypatch.setenv("BREVO_API_KEY", "sandbox-brevo-key")
    monkeypatch.setattr(engine, "ROWS_PER_JOB", 10)
    customers(duck, 25)
    options = SandboxOptions(
        brevo_attributes={"FIRSTNAME": "text", "PLAN": "text", "LTV": "float", "EXT_ID": "text"}
    )
    with SandboxServer(options, host="127.0.0.1", port=0) as sb:
        sync = make_sync(BREVO_SYNC.format(url=duck.url, sandbox=sb.url, extra=""))
        res: Any = run_contacts(sync, state)
        stored = sb.contacts("brevo_contacts")
    assert (res.jobs, res.delivered, res.rejected) == (3, 25, 0)
    assert sorted(c["email"] for c in stored) == sorted(f"c{i}@example.com" for i in range(1, 26))
