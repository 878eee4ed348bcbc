"""Contact runs pace like event syncs (``options.pacing``): through the state store's
``connector_pacer`` table when it is shared, and on one budget with the account's event syncs
where the vendor documents one limit (Omnisend); the CLI, a DuckDB warehouse, the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.config.sync_file import RateLimit
from connector.deliver.http_loop import Runtime
from connector.deliver.ratelimit import Pacer
from connector.destinations.omnisend.contacts import (
    OmnisendContacts,
    OmnisendContactsDestination,
)
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import ContactCli, KlaviyoCli, connected, make_customers
from tests.helpers import create_events_table, event_rows, insert_events

OMNISEND = """
name: customers_to_omnisend
source: {{table: customers, primary_key: [customer_id], url: "{url}"}}
destination:
  type: omnisend_contacts
  api_key: ${{OMNISEND_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05}}
mapping:
  identifiers: {{email: email}}
  contact_properties: {{firstName: first_name, plan: plan}}
"""

OMNISEND_EVENTS = """
name: plays_to_omnisend
source: {{table: ev, cursor: occurred_at, primary_key: [event_id], url: "{url}"}}
destination: {{type: omnisend_events, api_key: "${{OMNISEND_API_KEY}}", base_url: {sandbox}}}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{title: title}}
"""


class OmnisendCli(ContactCli):
    name = "customers_to_omnisend"
    template = OMNISEND


def pacer_rows(state_url: str) -> list[tuple[str, float]]:
    store = StateStore(state_url)
    with store.engine.connect() as c:
        rows = c.exec_driver_sql("SELECT account, next_at FROM connector_pacer").all()
    store.engine.dispose()
    return [(str(a), float(n)) for a, n in rows]


@pytest.mark.parametrize(
    ("store", "options", "shared"),
    [
        ("postgresql", "", True),  # auto: shared on PostgreSQL
        ("postgresql", ", pacing: process", False),
        ("sqlite", "", False),  # auto: per process on SQLite
        ("sqlite", ", pacing: shared", True),
    ],
)
def test_contact_runs_take_their_slots_from_the_shared_pacer_as_options_pacing_says(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    store: str,
    options: str,
    shared: bool,
) -> None:
    make_customers(duck, 30)
    url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    cli = KlaviyoCli(tmp_path, duck, sandbox, state_url=url)
    cli.write(options=options)
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0, res
    assert res["delivered"] == 30
    rows = pacer_rows(cli.state_url)
    if not shared:
        assert rows == []
        return
    ((account, next_at),) = rows
    assert account.startswith(f"klaviyo_profiles|{sandbox.url}|")
    assert "pk_sandbox" not in account  # a hash of the key, never the key
    assert next_at > 0  # the run's requests took slots from it


def test_omnisend_contacts_and_events_of_one_store_spend_one_budget(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Omnisend: 400 requests/min per store for every endpoint; Klaviyo and Brevo keep
    separate buckets for profiles/contacts (connector/contacts/pacing.py)."""
    make_customers(duck, 30)
    create_events_table(duck)
    insert_events(duck, event_rows(0, 20))
    cli = OmnisendCli(tmp_path, duck, sandbox, state_url=pg_url)
    (cli.config / "syncs" / "plays.yaml").write_text(
        OMNISEND_EVENTS.format(url=duck.url, sandbox=sandbox.url)
    )
    code, out = cli.run(monkeypatch, capsys, "sync", "plays_to_omnisend", "--json")
    assert code == 0, out
    ((account, after_events),) = pacer_rows(pg_url)
    assert account.startswith(f"omnisend_events|{sandbox.url}|")

    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0, res
    assert res["delivered"] == 30 and res["requests"] >= 3  # the batch, its polls, its items
    rows: list[Any] = pacer_rows(pg_url)
    assert [a for a, _ in rows] == [account]  # the same account row: one schedule
    assert rows[0][1] > after_events


def test_a_429_pauses_the_accounts_pacer_instead_of_sleeping_alone() -> None:
    """With a shared pacer the pause reaches every process of the account (its row's
    ``paused_until``); the client itself does not sleep on top of it."""
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json={"ok": True}),
    ]
    paused: list[float] = []
    slept: list[float] = []

    class AccountPacer(Pacer):  # the account's pacer, its pauses noted
        def pause(self, seconds: float) -> None:
            paused.append(seconds)
            super().pause(seconds)

    clock = [0.0]
    runtime = Runtime(clock=lambda: clock[0], sleep=slept.append, random=lambda: 0.0)
    pacer = AccountPacer(RateLimit(), runtime.clock, lambda s: clock.__setitem__(0, clock[0] + s))
    cfg = OmnisendContactsDestination(
        type="omnisend_contacts", api_key="${K}", base_url="http://vendor.test"
    )
    dest = connected(
        OmnisendContacts(cfg, "k", "s"),
        httpx.MockTransport(lambda request: answers.pop(0)),
        runtime,
        pacer,
    )
    assert dest.call("GET", "/api/batches/b1").status_code == 200
    assert (paused, slept) == ([7.0], [])
