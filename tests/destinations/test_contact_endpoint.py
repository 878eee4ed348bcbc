"""A contact endpoint's ``unlist`` (``destinations.contact_endpoint``; ``on_removed: unlist``,
the vendor side): ``KlaviyoProfiles.unlist`` and ``BrevoContacts.unlist`` against the sandbox
over real HTTP (profiles imported by the destinations' own jobs first), the config rules per
destination, and one unit test of Brevo's answer reading. The run's side is
run/test_unlist.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
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
