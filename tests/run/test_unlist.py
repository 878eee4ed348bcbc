"""``on_removed: unlist`` in a run (``run.unlist``), through the CLI against the sandbox: a full
scan unlists exactly the deleted row (``keep`` does nothing), and a failed Brevo lookup puts no
e-mail address in logs, run errors or the state store. The vendor side is
destinations/test_contact_endpoint.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.cli.main import main
from connector.sandbox import Fault, SandboxServer
from tests.conftest import Warehouse
from tests.destinations.test_contact_endpoint import only_list_calls, sb, vendor_paths

__all__ = ["sb"]  # fixtures used by name


POLLING = "poll_interval_s: 0.01, poll_max_interval_s: 0.05"
E2E = {
    "klaviyo": (
        "klaviyo_profiles",
        "LIST1",
        "{type: klaviyo_profiles, api_key: '${KLAVIYO_API_KEY}', base_url: 'URL', "
        "options: {POLLING, list_id: LIST1, on_removed: MODE}}",
        "{identifiers: {email: email, external_id: customer_id}, "
        "contact_properties: {first_name: first_name}}",
    ),
    "brevo": (
        "brevo_contacts",
        "8",
        "{type: brevo_contacts, api_key: '${BREVO_API_KEY}', base_url: 'URL', "
        "options: {POLLING, list_ids: [7, 8], on_removed: MODE}}",
        "{identifiers: {email: email, ext_id: customer_id}, "
        "contact_properties: {FIRSTNAME: first_name}}",
    ),
}


def five_customers(duck: Warehouse) -> None:
    """``customers``: ids 0-4, e-mails ``c{i}@example.com``."""
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR(200), first_name VARCHAR(50))",
    )
    duck.insert(
        "customers",
        [{"customer_id": i, "email": f"c{i}@example.com", "first_name": f"N{i}"} for i in range(5)],
    )


@pytest.mark.parametrize("mode", ["unlist", "keep"])
@pytest.mark.parametrize("vendor", ["klaviyo", "brevo"])
def test_cli_full_scan_unlists_exactly_the_deleted_row_and_keep_does_nothing(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    vendor: str,
    mode: str,
) -> None:
    kind, list_id, destination, mapping = E2E[vendor]
    five_customers(duck)
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    (config / "syncs" / "c.yaml").write_text(
        "name: customers\n"
        f"source: {{table: customers, primary_key: [customer_id], url: '{duck.url}'}}\n"
        "destination: "
        + destination.replace("URL", sb.url).replace("MODE", mode).replace("POLLING", POLLING)
        + "\n"
        f"mapping: {mapping}\n"
    )
    monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(config))
    monkeypatch.setenv("CONNECTOR_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_sandbox")
    monkeypatch.setenv("BREVO_API_KEY", "sandbox-brevo-key")

    def sync() -> dict[str, Any]:
        duck.dispose()  # DuckDB: the connector opens the file read-only
        code = main(["sync", "customers", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        result: dict[str, Any] = json.loads(out)
        return result

    def members() -> list[str]:
        return sorted(p["email"] for p in sb.list_members(kind, list_id))

    first = sync()
    assert (first["added"], first["delivered"]) == (5, 5)
    everyone = [f"c{i}@example.com" for i in range(5)]
    assert members() == everyone
    duck.run("DELETE FROM customers WHERE customer_id = 3")
    mark = len(sb.requests)
    second = sync()
    calls = vendor_paths(sb, mark)
    assert second["removed"] == 1 and second["sent"] == 0
    assert len(sb.contacts(kind)) == 5  # nobody deleted
    gone = sb.contact(kind, "c3@example.com")
    assert gone is not None
    if vendor == "brevo":
        assert gone["emailBlacklisted"] is False and gone["smsBlacklisted"] is False
    if mode == "keep":
        assert members() == everyone
        # nothing but Brevo's attribute check at run start went to the vendor
        assert [c for c in calls if c != ("GET", "/v3/contacts/attributes")] == []
        return
    assert second["unlisted"] == 1
    assert members() == [e for e in everyone if e != "c3@example.com"]
    if vendor == "brevo":
        assert len(sb.list_members(kind, 7)) == 4
    assert only_list_calls(calls), calls
    third = sync()  # its hash is gone: nothing more to remove
    assert (third["removed"], third["unlisted"], third["sent"]) == (0, 0, 0)


LOOKUP = "/v3/contacts/c3%40example.com"  # get-contact-info: the path holds the address
EMAIL_FORMS = ("c3@example.com", "c3%40example.com", "C3@EXAMPLE.COM", "c3%40EXAMPLE.COM")


@pytest.mark.parametrize(
    "fault",
    [
        Fault(LOOKUP, status=500, times=2),  # retried, then the retries run out
        Fault(LOOKUP, reset=True, times=2),  # the connection drops, twice
        Fault(LOOKUP, status=401),  # the key refused: at once
        # Brevo's words quoting the address asked for
        Fault(LOOKUP, status=400, body={"code": "bad", "message": "c3@example.com is invalid"}),
    ],
    ids=["5xx", "reset", "401", "400-quoting-it"],
)
def test_a_failed_brevo_lookup_puts_no_email_in_logs_run_errors_or_the_state_store(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
) -> None:
    """Brevo's contact lookup (``GET /v3/contacts/{identifier}``, made when a list removal
    does not confirm a contact) carries the e-mail address in its path: however it fails,
    the address reaches no log line, no printed or stored run error and no table of the state
    store but the two that keep confirmed contacts' identifiers (which is what lets the run
    find them to unlist)."""
    five_customers(duck)
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "c.yaml").write_text(
        "name: customers\n"
        f"source: {{table: customers, primary_key: [customer_id], url: '{duck.url}'}}\n"
        f"destination: {{type: brevo_contacts, api_key: '${{BREVO_API_KEY}}', base_url: "
        f"'{sb.url}', options: {{{POLLING}, list_ids: [7], on_removed: unlist, max_retries: 1}}}}\n"
        "mapping: {identifiers: {email: email}, contact_properties: {FIRSTNAME: first_name}}\n"
    )
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CONNECTOR_STATE_URL", state_url)
    monkeypatch.setenv("BREVO_API_KEY", "sandbox-brevo-key")
    caplog.set_level(logging.DEBUG, logger="connector")

    def sync() -> tuple[int, str]:
        duck.dispose()  # DuckDB: the connector opens the file read-only
        code = main(["sync", "customers", "--json"])
        out, err = capsys.readouterr()
        return code, out + err

    assert sync()[0] == 0
    duck.run("DELETE FROM customers WHERE customer_id = 3")
    # The removal confirms nothing, so the run looks c3 up; the lookup fails.
    refused = {"contacts": {"success": [], "failure": ["c3@example.com"]}}
    sb.inject(Fault("/v3/contacts/lists/7/contacts/remove", status=201, body=refused), fault)
    caplog.clear()
    code, printed = sync()

    assert code != 0 and (LOOKUP in [r.path for r in sb.requests])  # it failed at the lookup
    logged = "\n".join(r.getMessage() for r in caplog.records)
    engine = sa.create_engine(state_url)
    with engine.connect() as c:
        (run_error,) = c.execute(
            sa.text("SELECT error FROM connector_runs ORDER BY started_at DESC LIMIT 1")
        ).one()
        stored = {
            table: repr(c.execute(sa.text(f"SELECT * FROM {table}")).all())
            for table in sa.inspect(engine).get_table_names()
        }
    engine.dispose()
    assert run_error and "GET" in run_error  # the failure is told, without its data
    assert "c3@example.com" in stored.pop("connector_contact_hashes")  # the check can see it
    # The identifiers confirmed rows own (issue 19 item 4: conflicts across runs).
    assert "c3@example.com" in stored.pop("connector_contact_idents")
    for where, text in {"log": logged, "output": printed, **stored}.items():
        assert not any(form in text for form in EMAIL_FORMS), (where, text)
