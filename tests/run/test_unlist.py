"""``on_removed: unlist``, the vendor side: ``KlaviyoProfiles.unlist`` and ``BrevoContacts.unlist``
against the sandbox over real HTTP (profiles imported by the destinations' own jobs first), the
config rules per destination, and one unit test of Brevo's answer reading."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from connector.cli.main import main
from connector.core.errors import AuthError, RequestError, RetriesExhausted
from connector.destinations.brevo.contacts import (
    BrevoContacts,
    BrevoContactsDestination,
    BrevoContactsOptions,
)
from connector.destinations.contact_endpoint import Contact, ContactDestination, Gone, JobRow
from connector.destinations.klaviyo.profiles import (
    KlaviyoProfiles,
    KlaviyoProfilesDestination,
    KlaviyoProfilesOptions,
)
from connector.destinations.omnisend.contacts import OmnisendContactsOptions
from connector.sandbox import Fault, SandboxOptions, SandboxServer
from tests.conftest import Warehouse
from tests.contact_fixtures import connected

LIST = "VRgFBd"
# Every call an unlist may make: lookups and list removals, never consent or deletion.
LIST_CALLS = re.compile(
    r"GET /api/profiles|DELETE /api/lists/[^/]+/relationships/profiles"
    r"|POST /v3/contacts/lists/\d+/contacts/remove|GET /v3/contacts/[^/]+"
)


def only_list_calls(calls: list[tuple[str, str]]) -> bool:
    return all(LIST_CALLS.fullmatch(f"{m} {p}") for m, p in calls)


BREVO_ACCOUNT = {"FIRSTNAME": "text", "EXT_ID": "text", "SMS": "text"}


@pytest.fixture
def sb() -> Iterator[SandboxServer]:
    options = SandboxOptions(contact_job_polls=0, brevo_attributes=BREVO_ACCOUNT)
    with SandboxServer(options, host="127.0.0.1", port=0) as server:
        yield server


def klaviyo(url: str, key: str = "pk_sandbox", **options: Any) -> KlaviyoProfiles:
    opts = KlaviyoProfilesOptions(**{"list_id": LIST, "on_removed": "unlist", **options})
    cfg = KlaviyoProfilesDestination(
        type="klaviyo_profiles", api_key="${K}", base_url=url, options=opts
    )
    return connected(KlaviyoProfiles(cfg, key, "s"))


def brevo(
    url: str, lists: list[int], transport: httpx.BaseTransport | None = None, **options: Any
) -> BrevoContacts:
    opts = BrevoContactsOptions(list_ids=lists, on_removed="unlist", **options)
    cfg = BrevoContactsDestination(
        type="brevo_contacts", api_key="${B}", base_url=url, options=opts
    )
    return connected(BrevoContacts(cfg, "sandbox-brevo-key", "s"), transport)


def load(dest: ContactDestination, people: list[dict[str, str]]) -> None:
    """Import these contacts (identifiers + a FIRSTNAME/first_name) with the destination's own
    job, polled until it completes."""
    name = "FIRSTNAME" if isinstance(dest, BrevoContacts) else "first_name"
    rows = []
    for i, ids in enumerate(people):
        contact = Contact(i, str(i), ids, {name: orjson.dumps(f"N{i}")})
        rows.append(JobRow(str(i), "h", ids, dest.encode(contact)))
    job = dest.submit(rows)
    while not dest.poll(job):
        pass
    assert dest.result(job, rows).errors == {}


def vendor_paths(sb: SandboxServer, since: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in sb.requests[since:]]


# --------------------------------------------------------------------------- Klaviyo


def test_klaviyo_unlist_removes_exactly_the_gone_profiles_and_keeps_them(
    sb: SandboxServer,
) -> None:
    dest = klaviyo(sb.url)
    load(
        dest,
        [
            {"email": "a@example.com", "external_id": "1"},
            {"external_id": "2"},
            {"phone_number": "+15005550006"},
            {"email": "stays@example.com", "external_id": "4"},
        ],
    )
    before = {p["id"]: p for p in sb.contacts("klaviyo_profiles")}
    mark = len(sb.requests)
    gone = [
        Gone("1", {"email": "A@Example.com", "external_id": "1"}),  # case differs at the vendor
        Gone("2", {"external_id": "2"}),
        Gone("3", {"phone_number": "+15005550006"}),
        Gone("9", {"email": "never-sent@example.com", "external_id": "9"}),  # unknown: nothing
    ]
    assert dest.unlist(gone) == {}
    assert [p["email"] for p in sb.list_members("klaviyo_profiles", LIST)] == ["stays@example.com"]
    after = {p["id"]: p for p in sb.contacts("klaviyo_profiles")}
    assert after.keys() == before.keys()  # nobody deleted
    for pid, profile in before.items():  # nothing but the list membership changed
        assert {k: v for k, v in after[pid].items() if k != "lists"} == {
            k: v for k, v in profile.items() if k != "lists"
        }
    calls = vendor_paths(sb, mark)
    assert only_list_calls(calls), calls
    assert calls.count(("DELETE", f"/api/lists/{LIST}/relationships/profiles")) == 1


def test_klaviyo_unlist_by_stored_id_skips_the_lookup_and_refuses_unfindable_rows(
    sb: SandboxServer,
) -> None:
    dest = klaviyo(sb.url)
    load(dest, [{"email": "a@example.com"}])
    (profile,) = sb.contacts("klaviyo_profiles")
    mark = len(sb.requests)
    refused = dest.unlist([Gone("1", {"id": profile["id"]}), Gone("2", {"anonymous_id": "x"})])
    assert list(refused) == [1] and "no identifier" in refused[1]
    assert vendor_paths(sb, mark) == [("DELETE", f"/api/lists/{LIST}/relationships/profiles")]
    assert sb.list_members("klaviyo_profiles", LIST) == []
    assert dest.unlist([Gone("9", {"email": "nobody@example.com"})]) == {}


def test_klaviyo_unlist_sends_at_most_1000_profiles_per_delete(sb: SandboxServer) -> None:
    dest = klaviyo(sb.url)
    assert dest.max_unlist_per_request == 1000
    people = [{"email": f"c{i}@example.com"} for i in range(1001)]
    load(dest, people)
    mark = len(sb.requests)
    assert dest.unlist([Gone(str(i), ids) for i, ids in enumerate(people)]) == {}
    calls = vendor_paths(sb, mark)
    assert calls.count(("GET", "/api/profiles")) == 11  # 100 values per lookup
    assert calls.count(("DELETE", f"/api/lists/{LIST}/relationships/profiles")) == 2
    assert sb.list_members("klaviyo_profiles", LIST) == []
    assert len(sb.contacts("klaviyo_profiles")) == 1001


def test_klaviyo_unlist_request_errors_raise_and_remove_nothing(sb: SandboxServer) -> None:
    dest = klaviyo(sb.url, max_retries=1)
    load(dest, [{"email": "a@example.com"}])
    gone = [Gone("1", {"email": "a@example.com"})]
    with pytest.raises(RequestError, match="404"):
        klaviyo(sb.url, list_id="NoSuch").unlist(gone)  # a list the account does not have
    sb.inject(Fault("/api/lists/*", status=503, times=2))
    with pytest.raises(RetriesExhausted):
        dest.unlist(gone)
    sb.inject(Fault("/api/profiles", status=400, body={"errors": [{"detail": "bad filter"}]}))
    with pytest.raises(RequestError, match="bad filter"):
        dest.unlist(gone)
    with pytest.raises(AuthError):
        klaviyo(sb.url, key="pk_wrong").unlist(gone)
    assert len(sb.list_members("klaviyo_profiles", LIST)) == 1
    assert dest.unlist(gone) == {}  # and once the vendor answers, it goes
    assert sb.list_members("klaviyo_profiles", LIST) == []


# --------------------------------------------------------------------------- Brevo


def test_brevo_unlist_removes_from_every_list_and_keeps_the_contacts(sb: SandboxServer) -> None:
    dest = brevo(sb.url, [2, 7])
    load(
        dest,
        [
            {"email": "a@example.com", "ext_id": "1"},
            {"ext_id": "2"},
            {"sms": "+33612345678"},
            {"email": "new@example.com", "ext_id": "5"},  # its email changed since
            {"email": "stays@example.com", "ext_id": "4"},
        ],
    )
    before = {p["id"]: p for p in sb.contacts("brevo_contacts")}
    mark = len(sb.requests)
    gone = [
        Gone("1", {"email": "a@example.com", "ext_id": "1"}),
        Gone("2", {"ext_id": "2"}),
        Gone("3", {"sms": "+33612345678"}),
        Gone("5", {"email": "old@example.com", "ext_id": "5"}),
        Gone("9", {"email": "never-sent@example.com"}),  # unknown: nothing to remove
    ]
    assert dest.unlist(gone) == {}
    for list_id in (2, 7):
        members = sb.list_members("brevo_contacts", list_id)
        assert [p["email"] for p in members] == ["stays@example.com"], list_id
    after = {p["id"]: p for p in sb.contacts("brevo_contacts")}
    assert after.keys() == before.keys()
    for pid, contact in before.items():  # attributes, email and blacklist flags untouched
        assert {k: v for k, v in after[pid].items() if k != "listIds"} == {
            k: v for k, v in contact.items() if k != "listIds"
        }
        assert after[pid]["emailBlacklisted"] is False and after[pid]["smsBlacklisted"] is False
    calls = vendor_paths(sb, mark)
    assert only_list_calls(calls), calls
    removes = [p for m, p in calls if p.endswith("/contacts/remove")]
    # per list: one by emails, one by extIds, one by contact ids (sms-only and changed email)
    assert sorted(removes) == sorted(
        [f"/v3/contacts/lists/{n}/contacts/remove" for n in (2, 7)] * 3
    )


def test_brevo_unlist_sends_at_most_150_per_request(sb: SandboxServer) -> None:
    dest = brevo(sb.url, [3])
    assert dest.max_unlist_per_request == 150
    people = [{"email": f"c{i}@example.com"} for i in range(151)]
    load(dest, people)
    mark = len(sb.requests)
    assert dest.unlist([Gone(str(i), ids) for i, ids in enumerate(people)]) == {}
    assert vendor_paths(sb, mark) == [("POST", "/v3/contacts/lists/3/contacts/remove")] * 2
    assert sb.list_members("brevo_contacts", 3) == []
    assert len(sb.contacts("brevo_contacts")) == 151


def test_brevo_unlist_request_errors_raise(sb: SandboxServer) -> None:
    dest = brevo(sb.url, [2], max_retries=1)
    load(dest, [{"email": "a@example.com"}])
    gone = [Gone("1", {"email": "a@example.com"})]
    with pytest.raises(RequestError, match="404"):
        brevo(sb.url, [2, 99]).unlist(gone)  # list 99 does not exist
    sb.inject(Fault("/v3/contacts/lists/2/contacts/remove", status=500, times=2))
    with pytest.raises(RetriesExhausted):
        dest.unlist(gone)
    sb.inject(Fault("/v3/contacts/lists/2/contacts/remove", status=400))
    with pytest.raises(RequestError, match="400"):
        dest.unlist(gone)
    assert dest.unlist(gone) == {}
    assert sb.list_members("brevo_contacts", 2) == []


def test_brevo_unlist_refuses_a_contact_brevo_keeps_in_the_list() -> None:
    """Unit (MockTransport): the removal lists the email under failure, the lookup shows the
    contact still in the list, the removal by id fails again: a refusal with Brevo's words."""
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body: Any = orjson.loads(request.content) if request.content else None
        path = request.url.raw_path.decode().split("?")[0]
        calls.append((request.method, path, body))
        if request.url.path.endswith("/contacts/remove"):
            values = next(iter(body.values()))
            return httpx.Response(201, json={"contacts": {"success": [], "failure": values}})
        return httpx.Response(200, json={"email": "a@example.com", "id": 5, "listIds": [2]})

    dest = brevo("http://brevo.test", [2], transport=httpx.MockTransport(handler))
    refused = dest.unlist([Gone("1", {"email": "a@example.com"})])
    assert list(refused) == [0] and "contact 5" in refused[0] and "list 2" in refused[0]
    assert [(m, p) for m, p, _ in calls] == [
        ("POST", "/v3/contacts/lists/2/contacts/remove"),
        ("GET", "/v3/contacts/a%40example.com"),
        ("POST", "/v3/contacts/lists/2/contacts/remove"),
    ]
    assert [b for _, _, b in calls] == [{"emails": ["a@example.com"]}, None, {"ids": [5]}]


# --------------------------------------------------------------------------- config


def test_on_removed_options_per_destination() -> None:
    assert KlaviyoProfilesOptions().on_removed == "keep"
    assert KlaviyoProfilesOptions(list_id="L", on_removed="unlist").on_removed == "unlist"
    with pytest.raises(ValidationError, match=r"set options\.list_id"):
        KlaviyoProfilesOptions(on_removed="unlist")
    assert BrevoContactsOptions(list_ids=[1], on_removed="unlist").on_removed == "unlist"
    with pytest.raises(ValidationError, match="has no lists"):
        OmnisendContactsOptions(on_removed="unlist")
    with pytest.raises(ValidationError):
        KlaviyoProfilesOptions(list_id="L", on_removed="delete")


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("{type: klaviyo_profiles, api_key: k, options: {on_removed: unlist}}", "list_id"),
        ("{type: omnisend_contacts, api_key: k, options: {on_removed: unlist}}", "has no lists"),
    ],
)
def test_unlist_where_it_cannot_apply_is_a_config_error_at_load(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    destination: str,
    expected: str,
) -> None:
    (tmp_path / "syncs").mkdir()
    (tmp_path / "syncs" / "c.yaml").write_text(
        "name: c\n"
        "source: {table: customers, primary_key: [customer_id], url: 'duckdb:///nowhere.db'}\n"
        f"destination: {destination}\n"
        "mapping: {identifiers: {email: email}}\n"
    )
    monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("CONNECTOR_STATE_URL", f"sqlite:///{tmp_path / 's.db'}")
    assert main(["validate"]) == 2
    out, err = capsys.readouterr()
    assert "c.yaml" in out + err and "on_removed" in out + err and expected in out + err


# --------------------------------------------------------------------------- end to end (CLI)

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
