"""``omnisend_contacts`` end to end: the CLI, a DuckDB warehouse, the sandbox's Omnisend contacts
API (2026-03-15) over HTTP, a SQLite state store; and the two item arrays of a ``Batch``
(``responses[]``, ``errors[]``) read unit by unit."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from connector.cli.main import main
from connector.core.errors import RequestError
from connector.destinations.contact_endpoint import JobRow
from connector.destinations.omnisend.contacts import (
    OmnisendContacts,
    OmnisendContactsDestination,
    OmnisendContactsOptions,
    batch_items,
)
from connector.sandbox import JobFault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import ContactCli, connected, make_customers

SYNC = """
name: customers_to_omnisend
source: {{table: customers, primary_key: [customer_id], url: "{url}", chunk_size: 100}}
destination:
  type: omnisend_contacts
  api_key: ${{OMNISEND_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05{options}}}
mapping:
  identifiers: {{email: email, phone: phone}}
  contact_properties: {{{props}}}
"""
NAME = "customers_to_omnisend"
PROPS = "firstName: first_name, city: city, plan: plan, ltv: ltv"


class Cli(ContactCli):
    name = NAME
    template = SYNC
    defaults: ClassVar[dict[str, str]] = {"options": "", "props": PROPS}

    def received(self) -> int:
        return len(self.sandbox.events("omnisend_contacts"))

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self.sandbox.stats()["contacts"]["omnisend_contacts"]
        return out


def test_batches_send_all_then_nothing_then_the_one_changed_row(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 250, phone=True)
    cli = Cli(tmp_path, duck, sandbox)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0, first
    assert (first["added"], first["sent"], first["delivered"], first["jobs"]) == (250, 250, 250, 3)
    assert first["polls"] == 6  # each batch: "pending" once, then "finished"
    stats = cli.stats()
    assert stats["stored"] == 250
    assert stats["welcome_messages"] == 0  # sendWelcomeMessage: false on every identifier
    stored = sandbox.contact("omnisend_contacts", "c9@example.com")
    assert stored is not None
    assert stored["firstName"] == "Name9" and stored["city"] == "Paris"
    assert stored["customProperties"] == {"plan": "pro", "ltv": 9.10}
    assert stored["phone"] == ["+33610000009"]
    # The request as sent: the batch envelope and the explicit welcome flag.
    item = sandbox.events("omnisend_contacts")[8]
    assert item["identifiers"] == [
        {"type": "email", "id": "c9@example.com", "sendWelcomeMessage": False},
        {"type": "phone", "id": "+33610000009", "sendWelcomeMessage": False},
    ]

    code, second = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (second["unchanged"], second["sent"], second["jobs"], second["requests"]) == (
        250,
        0,
        0,
        0,
    )
    assert cli.received() == 250

    duck.run("UPDATE customers SET plan = 'vip' WHERE customer_id = 7")
    code, third = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (third["changed"], third["sent"], third["delivered"], third["jobs"]) == (1, 1, 1, 1)
    assert cli.received() == 251
    stored = sandbox.contact("omnisend_contacts", "c7@example.com")
    assert stored is not None and stored["customProperties"]["plan"] == "vip"
    assert cli.stats()["stored"] == 250


def test_batch_still_processing_across_polls(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 30, phone=True)
    sandbox.inject_job(JobFault("omnisend_contacts", polls=4))
    cli = Cli(tmp_path, duck, sandbox)
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["delivered"], res["jobs"], res["polls"]) == (30, 1, 5)
    assert cli.confirmed() == 30


def test_stopped_batch_fails_the_run_confirms_nothing_and_is_sent_again(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 150, phone=True)  # two batches: the first one is stopped
    sandbox.inject_job(JobFault("omnisend_contacts", fail=True))
    cli = Cli(tmp_path, duck, sandbox)
    code, failed = cli.run(monkeypatch, capsys, "sync", NAME)
    assert code == 1
    assert "ended 'stopped'" in failed["stdout"] + failed["stderr"]
    assert cli.confirmed() == 0
    code, res = cli.sync(monkeypatch, capsys)
    assert (code, res["added"], res["sent"], res["delivered"]) == (0, 150, 150, 150)
    assert cli.stats()["stored"] == 150


def test_null_keeps_omnisends_value_and_validate_says_so_until_acknowledged(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 5, phone=True)
    cli = Cli(tmp_path, duck, sandbox)
    assert cli.sync(monkeypatch, capsys)[0] == 0
    duck.run("UPDATE customers SET plan = NULL, first_name = NULL WHERE customer_id = 2")
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["changed"], res["sent"], res["delivered"]) == (1, 1, 1)
    sent = sandbox.events("omnisend_contacts")[-1]
    assert "firstName" not in sent and sent["customProperties"] == {"ltv": 2.10}
    stored = sandbox.contact("omnisend_contacts", "c2@example.com")
    assert stored is not None  # Omnisend has no way to clear them: the old values stay
    assert stored["firstName"] == "Name2" and stored["customProperties"]["plan"] == "free"

    code, out = cli.run(monkeypatch, capsys, "validate", NAME)
    assert code == 0
    assert (
        "warning: syncs/customers.yaml: a NULL in firstName, city, plan, ltv leaves the value "
        "Omnisend holds"
    ) in out["stdout"]
    assert "null_fields: keep" in out["stdout"]
    cli.write(options=", null_fields: keep")
    code, out = cli.run(monkeypatch, capsys, "validate", NAME)
    assert code == 0 and "warning" not in out["stdout"]


def test_item_the_batch_refuses_is_a_reject_sent_again_next_run(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 120, phone=True)
    # Passes the local shape check, but Omnisend wants a dot in the domain: item 400.
    duck.run("UPDATE customers SET email = 'broken@localhost' WHERE customer_id = 42")
    cli = Cli(tmp_path, duck, sandbox)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (first["sent"], first["delivered"], first["rejected"]) == (120, 119, 1)
    key, reason = first["sample_rejects"][0]
    assert key == "42"
    assert "400" in reason and "identifiers.0.id: Must be a valid email address" in reason
    assert [r["key"] for r in StateStore(cli.state_url).rejects("customers_to_omnisend")] == ["42"]

    code, again = cli.sync(monkeypatch, capsys)
    assert (again["unchanged"], again["sent"], again["rejected"]) == (119, 1, 1)

    duck.run("UPDATE customers SET email = 'fixed@example.com' WHERE customer_id = 42")
    code, fixed = cli.sync(monkeypatch, capsys)
    assert (fixed["sent"], fixed["delivered"], fixed["rejected"]) == (1, 1, 0)
    assert StateStore(cli.state_url).rejects("customers_to_omnisend") == []
    assert sandbox.contact("omnisend_contacts", "fixed@example.com") is not None


def test_single_mode_posts_one_contact_per_request(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 12, phone=True)
    duck.run("UPDATE customers SET email = 'broken@localhost' WHERE customer_id = 5")
    cli = Cli(tmp_path, duck, sandbox)
    cli.write(options=", mode: single")
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0, first
    assert (first["sent"], first["delivered"], first["rejected"], first["requests"]) == (
        12,
        11,
        1,
        12,
    )
    assert first["sample_rejects"][0][0] == "5"
    stats = cli.stats()
    assert (stats["jobs"], stats["stored"], stats["welcome_messages"]) == (0, 11, 0)

    duck.run("UPDATE customers SET city = 'Lyon' WHERE customer_id = 3")
    code, second = cli.sync(monkeypatch, capsys)
    assert (second["unchanged"], second["changed"], second["sent"], second["requests"]) == (
        10,
        1,
        2,  # the changed row and the rejected one
        2,
    )
    stored = sandbox.contact("omnisend_contacts", "c3@example.com")
    assert stored is not None and stored["city"] == "Lyon"
    assert cli.stats()["updated"] == 1


def test_welcome_message_option_and_preview(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 3, phone=True)
    cli = Cli(tmp_path, duck, sandbox)
    cli.write(options=", send_welcome_message: true")
    code, out = cli.run(monkeypatch, capsys, "preview", NAME)
    assert code == 0
    assert '"sendWelcomeMessage": true' in out["stdout"]
    assert f"POST {sandbox.url}/api/batches" in out["stdout"]
    assert '"endpoint": "contacts"' in out["stdout"]
    assert "3 added, 0 changed, 0 unchanged" in out["stdout"]
    assert "sandbox-omnisend-key" not in out["stdout"]
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0 and res["delivered"] == 3
    assert cli.stats()["welcome_messages"] == 4  # 3 emails + 1 phone


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ("first_name: first_name", "Omnisend's standard field is 'firstName'"),
        ("plan-name: plan", "not a valid Omnisend custom property name"),
        ("prefs.color: plan", "not a valid Omnisend custom property name"),
        ("email: email", "email is an identifier"),
    ],
)
def test_bad_property_names_are_config_errors(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    props: str,
    expected: str,
) -> None:
    make_customers(duck, 1, phone=True)
    cli = Cli(tmp_path, duck, sandbox)
    cli.write(props=props)
    code, _ = cli.run(monkeypatch, capsys, "sync", NAME)  # the sync does not load: nothing runs
    assert code == 2
    assert main(["validate"]) == 2
    out, err = capsys.readouterr()
    assert "customers.yaml" in out + err and expected in out + err
    assert cli.received() == 0


# --------------------------------------------------------------------------- unit: reading answers


def _unit(handler: Any, mode: str = "batch") -> tuple[OmnisendContacts, list[JobRow]]:
    cfg = OmnisendContactsDestination(
        type="omnisend_contacts",
        api_key="${OMNISEND_API_KEY}",
        base_url="http://omnisend.test",
        options=OmnisendContactsOptions(mode=mode),
    )
    dest = connected(OmnisendContacts(cfg, "k", "s"), httpx.MockTransport(handler))
    rows = [
        JobRow(str(i), "h", {"email": f"u{i}@example.com"}, b'{"identifiers":[]}') for i in range(3)
    ]
    return dest, rows


def test_item_errors_without_identifiers_match_by_position_and_a_short_list_confirms_nothing() -> (
    None
):
    answers: list[list[dict[str, Any]]] = [
        [
            {"responseCode": 201, "request": {}},
            {"responseCode": 400, "request": {}, "response": {"title": "Validation failed"}},
            {
                "responseCode": 409,
                "request": {"identifiers": [{"type": "email", "id": "U0@example.com"}]},
                "response": {"title": "Conflict", "detail": "taken"},
            },
        ],
        [{"responseCode": 201, "request": {}}],  # two of three items missing
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "finished", "responses": answers.pop(0)})

    dest, rows = _unit(handler)
    res = dest.result("b1", rows)
    assert res.unknown is None
    assert res.errors == {1: "400 Validation failed", 0: "409 Conflict: taken"}
    short = dest.result("b2", rows)
    assert short.unknown is not None and "lists 1 item results for 3 contacts" in short.unknown


def test_single_mode_refusal_about_the_request_fails_the_run() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Omnisend-Version"])
        if len(calls) == 1:
            return httpx.Response(409, json={"title": "Conflict", "detail": "identifiers taken"})
        return httpx.Response(400, json={"title": "Bad request", "detail": "Unsupported version"})

    dest, rows = _unit(handler, mode="single")
    with pytest.raises(RequestError, match="Unsupported version"):
        dest.submit(rows)
    assert calls == ["2026-03-15", "2026-03-15"]


def test_an_oauth_token_is_sent_as_bearer_with_auth_bearer(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """OpenAPI 2026-03-15: contacts and batches take ``Bearer`` or ``ApiKeyAuth``."""
    make_customers(duck, 3, phone=True)
    monkeypatch.setenv("OMNISEND_API_KEY", "sandbox-omnisend-token")  # an OAuth token
    cli = Cli(tmp_path, duck, sandbox)
    code, out = cli.sync(monkeypatch, capsys)
    assert code == 1 and "401" in out["stderr"], out  # the token as Omnisend-API-Key
    cli.write(options=", auth: bearer")
    code, out = cli.sync(monkeypatch, capsys)
    assert code == 0, out
    assert out["delivered"] == 3


# --------------------------------------------------------------------------- both arrays


def _item(n: int, code: int, email: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"itemID": f"b-{n}", "responseCode": code, "response": {}}
    if email:
        out["request"] = {"identifiers": [{"type": "email", "id": email}]}
    return out


def test_both_arrays_are_read_one_item_per_item_id() -> None:
    ok, bad = _item(0, 201), _item(1, 400)
    # Every item under responses[], the refused one again under errors[]: in order.
    assert batch_items({"responses": [ok, bad], "errors": [bad]}) == ([ok, bad], True)
    # The refused one only under errors[]: both read, their order is not the batch's.
    assert batch_items({"responses": [ok], "errors": [bad]}) == ([ok, bad], False)
    assert batch_items({"responses": [], "errors": []}) == ([], True)
    assert batch_items({}) == ([], True)
