"""``brevo_contacts`` end to end: the CLI, a DuckDB warehouse, the sandbox's Brevo contact import
over real HTTP (jsonBody imports, processes, attribute check, CSV reports), a SQLite state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from connector.sandbox import JobFault, SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import ContactCli, make_customers

NAME = "customers_to_brevo"
SYNC = """
name: customers_to_brevo
source: {{table: customers, primary_key: [customer_id], url: "{url}", chunk_size: 500}}
destination:
  type: brevo_contacts
  api_key: ${{BREVO_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, list_ids: [7]}}
mapping:
  identifiers: {{email: email, ext_id: customer_id}}
  contact_properties: {{FIRSTNAME: first_name, PLAN: plan, LTV: ltv{extra}}}
"""
ACCOUNT = {"FIRSTNAME": "text", "LASTNAME": "text", "SMS": "text", "EXT_ID": "text"}


class Cli(ContactCli):
    name = NAME
    template = SYNC
    defaults: ClassVar[dict[str, str]] = {"extra": ""}

    def imports(self) -> list[dict[str, Any]]:
        """Every import request body the sandbox received, in order."""
        return [
            orjson.loads(body) for path, body in self.sandbox.bodies() if path.endswith("/import")
        ]


def _sandbox(**attributes: str) -> SandboxServer:
    return SandboxServer(
        SandboxOptions(brevo_attributes={**ACCOUNT, **attributes}, keep_bodies=True),
        host="127.0.0.1",
        port=0,
    )


@pytest.fixture
def brevo() -> Any:
    with _sandbox(PLAN="text", LTV="float") as sb:
        yield sb


def test_first_run_sends_all_unchanged_none_changed_one(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 1200)
    cli = Cli(tmp_path, duck, brevo)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0, first
    assert (first["added"], first["sent"], first["delivered"], first["jobs"]) == (
        1200,
        1200,
        1200,
        1,
    )
    (body,) = cli.imports()
    assert body["listIds"] == [7]
    assert body["updateExistingContacts"] is True
    assert body["emptyContactsAttributes"] is False
    assert body["jsonBody"][6] == {
        "email": "c7@example.com",
        "attributes": {"EXT_ID": "7", "FIRSTNAME": "Name7", "PLAN": "pro", "LTV": 7.10},
    }
    stored = brevo.contact("brevo_contacts", "c7@example.com")
    assert stored is not None
    assert stored["attributes"]["PLAN"] == "pro" and stored["listIds"] == [7]

    code, second = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (second["unchanged"], second["sent"], second["jobs"]) == (1200, 0, 0)
    assert len(cli.imports()) == 1

    duck.run("UPDATE customers SET plan = 'vip' WHERE customer_id = 7")
    code, third = cli.sync(monkeypatch, capsys)
    assert (third["changed"], third["sent"], third["delivered"]) == (1, 1, 1)
    assert [len(b["jsonBody"]) for b in cli.imports()] == [1200, 1]
    stored = brevo.contact("brevo_contacts", "c7@example.com")
    assert stored is not None and stored["attributes"]["PLAN"] == "vip"


def test_null_is_cleared_by_its_own_import_carrying_only_that_field(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 20)
    cli = Cli(tmp_path, duck, brevo)
    assert cli.sync(monkeypatch, capsys)[0] == 0
    duck.run("UPDATE customers SET plan = NULL, first_name = 'Renamed' WHERE customer_id = 5")
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["changed"], res["sent"], res["delivered"], res["jobs"]) == (1, 1, 1, 1)
    _, update, clear = cli.imports()
    assert update["emptyContactsAttributes"] is False
    assert update["jsonBody"] == [
        {
            "email": "c5@example.com",
            "attributes": {"EXT_ID": "5", "FIRSTNAME": "Renamed", "LTV": 5.10},
        }
    ]
    assert clear["emptyContactsAttributes"] is True and clear["updateExistingContacts"] is True
    assert clear["jsonBody"] == [
        {"email": "c5@example.com", "attributes": {"EXT_ID": "5", "PLAN": None}}
    ]
    stored = brevo.contact("brevo_contacts", "c5@example.com")
    assert stored is not None
    assert "PLAN" not in stored["attributes"]
    assert stored["attributes"]["FIRSTNAME"] == "Renamed" and stored["attributes"]["LTV"] == 5.1
    code, again = cli.sync(monkeypatch, capsys)
    assert (again["unchanged"], again["sent"]) == (20, 0)


def test_unknown_attribute_or_wrong_type_is_a_config_error_before_sending(
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 10)
    with _sandbox(LTV="float") as sb:  # no PLAN attribute in the account
        cli = Cli(tmp_path, duck, sb)
        code, out = cli.run(monkeypatch, capsys, "validate", NAME)
        assert code == 2
        assert "no attribute PLAN" in out["stderr"] and "FIRSTNAME" in out["stderr"]
        code, out = cli.sync(monkeypatch, capsys)
        assert code == 2
        assert "no attribute PLAN" in out["stderr"]
        assert cli.imports() == [] and cli.confirmed() == 0
    with _sandbox(PLAN="text", LTV="date") as sb:  # a decimal column for a date attribute
        cli.sandbox = sb
        cli.write()
        code, out = cli.run(monkeypatch, capsys, "validate", NAME)
        assert code == 2
        assert "column ltv is number but Brevo attribute LTV is date" in out["stderr"]
        code, out = cli.sync(monkeypatch, capsys)
        assert code == 2 and cli.imports() == []
    with _sandbox(PLAN="text", LTV="float") as sb:
        cli.sandbox = sb
        cli.write()
        assert cli.run(monkeypatch, capsys, "validate", NAME)[0] == 0


def test_failed_process_fails_the_run_confirms_nothing_and_is_resent(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 30)
    brevo.inject_job(JobFault("brevo_contacts", fail=True))
    cli = Cli(tmp_path, duck, brevo)
    code, failed = cli.sync(monkeypatch, capsys)
    assert code == 1
    assert "ended 'failed'" in failed["stderr"]
    assert cli.confirmed() == 0
    assert brevo.contacts("brevo_contacts") == []
    code, res = cli.sync(monkeypatch, capsys)
    assert (code, res["sent"], res["delivered"]) == (0, 30, 30)
    assert cli.confirmed() == 30


def test_failed_clearing_import_fails_the_run_and_resends_the_row(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 5)
    duck.run("UPDATE customers SET plan = NULL WHERE customer_id = 2")
    brevo.inject_job(JobFault("brevo_contacts", polls=1), JobFault("brevo_contacts", fail=True))
    cli = Cli(tmp_path, duck, brevo)
    code, failed = cli.sync(monkeypatch, capsys)
    assert code == 1 and cli.confirmed() == 0
    assert "ended 'failed'" in failed["stderr"]
    assert [b["emptyContactsAttributes"] for b in cli.imports()] == [False, True]
    code, res = cli.sync(monkeypatch, capsys)
    assert (code, res["sent"], res["delivered"]) == (0, 5, 5)


def test_bad_email_from_the_process_report_is_a_reject_and_resent(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 300)
    # Brevo refuses an email without a dot in its domain: listed in info.import invalid_emails.
    duck.run("UPDATE customers SET email = 'Broken@localhost' WHERE customer_id = 77")
    cli = Cli(tmp_path, duck, brevo)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (first["sent"], first["delivered"], first["rejected"]) == (300, 299, 1)
    assert first["sample_rejects"][0][0] == "77"
    assert "invalid_emails" in first["sample_rejects"][0][1]
    assert [r["key"] for r in StateStore(cli.state_url).rejects(NAME)] == ["77"]

    code, again = cli.sync(monkeypatch, capsys)
    assert (again["unchanged"], again["sent"], again["rejected"]) == (299, 1, 1)

    duck.run("UPDATE customers SET email = 'fixed@example.com' WHERE customer_id = 77")
    code, fixed = cli.sync(monkeypatch, capsys)
    assert (fixed["sent"], fixed["delivered"], fixed["rejected"]) == (1, 1, 0)
    assert StateStore(cli.state_url).rejects(NAME) == []
    assert brevo.contact("brevo_contacts", "fixed@example.com") is not None


def test_jobs_stay_under_8_mb(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 60)
    duck.run("UPDATE customers SET first_name = repeat('x', 300000)")
    cli = Cli(tmp_path, duck, brevo)
    (cli.config / "syncs" / "customers.yaml").write_text(
        SYNC.format(url=duck.url + "?memory_limit=1GB", sandbox=brevo.url, extra="")
    )
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0, res
    assert res["delivered"] == 60
    sizes = [len(body) for path, body in brevo.bodies() if path.endswith("/import")]
    assert len(sizes) == res["jobs"] == 3
    assert max(sizes) <= 8 * 1024 * 1024 and sum(sizes) > 16 * 1024 * 1024


def test_date_attribute_from_a_date_column_and_from_text_checked_per_row(
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 3)
    duck.run(
        "ALTER TABLE customers ADD COLUMN born DATE",
        "ALTER TABLE customers ADD COLUMN since VARCHAR(20)",
        "UPDATE customers SET born = DATE '1990-01-02', since = '2020-05-06'",
        "UPDATE customers SET since = 'last spring' WHERE customer_id = 2",
    )
    with _sandbox(PLAN="text", LTV="float", BIRTHDAY="date", SINCE="date") as sb:
        cli = Cli(tmp_path, duck, sb)
        cli.write(extra=", BIRTHDAY: born, SINCE: since")
        assert cli.run(monkeypatch, capsys, "validate", NAME)[0] == 0
        code, res = cli.sync(monkeypatch, capsys)
        assert code == 0, res
        assert (res["delivered"], res["rejected"]) == (2, 1)
        assert res["sample_rejects"][0][0] == "2" and "SINCE" in res["sample_rejects"][0][1]
        stored = sb.contact("brevo_contacts", "c1@example.com")
        assert stored is not None
        assert stored["attributes"]["BIRTHDAY"] == "1990-01-02"
        assert stored["attributes"]["SINCE"] == "2020-05-06"


def test_process_running_across_polls_and_preview_sends_nothing(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 10)
    cli = Cli(tmp_path, duck, brevo)
    code, out = cli.run(monkeypatch, capsys, "preview", NAME, "--limit", "2")
    assert code == 0
    assert "POST " + brevo.url + "/v3/contacts/import" in out["stdout"]
    assert "api-key: ***" in out["stdout"] and "sandbox-brevo-key" not in out["stdout"]
    assert '"email": "c2@example.com"' in out["stdout"] and "2 added" in out["stdout"]
    assert cli.imports() == []
    brevo.inject_job(JobFault("brevo_contacts", polls=4))
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["delivered"], res["jobs"], res["polls"]) == (10, 1, 5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", plan: city", "plan and PLAN are the same Brevo attribute"),
        (", prefs.color: city", "Brevo attributes are flat"),
        (", EXT_ID: city", "EXT_ID is an identifier: map it as mapping.identifiers.ext_id"),
    ],
)
def test_mapping_errors_need_no_network(
    tmp_path: Path,
    duck: Warehouse,
    brevo: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: str,
    message: str,
) -> None:
    make_customers(duck, 2)
    cli = Cli(tmp_path, duck, brevo)
    cli.write(extra=extra)
    code, out = cli.run(monkeypatch, capsys, "validate", NAME)
    assert code == 2 and message in out["stdout"] + out["stderr"]
    assert brevo.stats()["requests"] == 0
