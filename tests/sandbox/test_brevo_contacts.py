"""The sandbox's Brevo contact import (``sandbox.brevo_contacts``) against the vendor's own
documents, over real HTTP on loopback: jsonBody imports and their processes, the account's
attributes and their types, empty values, reports of invalid e-mails as CSV URLs, the request
rules and faults. Each test quotes the document whose example or rule it replays, so the oracle
the contact destinations are tested against follows the docs, not our client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connector.sandbox import Fault, JobFault, SandboxServer
from tests.helpers import sandbox_client
from tests.sandbox.test_klaviyo_profiles import make

BREVO = {"api-key": "sandbox-brevo-key"}
ACCOUNT = {"FNAME": "text", "LNAME": "text", "COUNTRY": "text", "BIRTHDAY": "date", "LTV": "float"}

# https://developers.brevo.com/changelog/contact-import-endpoint-now-supports-json-body — the
# cURL example (notifyUrl kept, addresses anonymised).
DOC_IMPORT = {
    "listIds": [67],
    "emailBlacklist": False,
    "smsBlacklist": False,
    "updateExistingContacts": True,
    "emptyContactsAttributes": False,
    "notifyUrl": "http://mywebhook.com",
    "jsonBody": [
        {
            "email": "smith@example.com",
            "attributes": {"LNAME": "smith", "FNAME": "andreas", "COUNTRY": "NE"},
        },
        {
            "email": "jackson@example.com",
            "attributes": {
                "LNAME": "jackson",
                "FNAME": "Mark",
                "COUNTRY": "DE",
                "BIRTHDAY": "11/02/1989",
                "PREFERED_COLOR": "BLACK",
            },
        },
    ],
}


@pytest.fixture
def bsb() -> Iterator[SandboxServer]:
    with make(brevo_attributes=ACCOUNT) as server:
        yield server


@pytest.fixture
def bclient(bsb: SandboxServer) -> Iterator[httpx.Client]:
    with sandbox_client(bsb.url) as c:
        yield c


def start_import(client: httpx.Client, body: dict[str, Any]) -> int:
    r = client.post("/v3/contacts/import", json=body, headers=BREVO)
    assert r.status_code == 202, r.text
    process_id = r.json()["processId"]
    assert isinstance(process_id, int)
    return process_id


def process(client: httpx.Client, process_id: int) -> dict[str, Any]:
    r = client.get(f"/v3/processes/{process_id}", headers=BREVO)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def finish(client: httpx.Client, process_id: int) -> dict[str, Any]:
    while (body := process(client, process_id))["status"] not in ("completed", "failed"):
        pass
    return body


def test_brevo_imports_the_changelog_example_and_ignores_unknown_attributes(
    bsb: SandboxServer, bclient: httpx.Client
) -> None:
    """import-contacts: 202 {processId}; "Any contact attribute that doesn't exist in your
    account will be ignored at import end" (PREFERED_COLOR is not in the account);
    get-process: {id, name, status}; the contacts join listIds."""
    r = bclient.post("/v3/contacts/import", json=DOC_IMPORT, headers=BREVO)
    assert r.status_code == 202
    assert r.headers["x-sib-ratelimit-limit"] == "10"
    process_id = r.json()["processId"]
    assert bsb.events("brevo_contacts") == DOC_IMPORT["jsonBody"]
    running = process(bclient, process_id)
    assert running == {"id": process_id, "name": "IMPORTUSER", "status": "in_process"}
    assert bsb.contacts("brevo_contacts") == []
    done = process(bclient, process_id)
    assert done["status"] == "completed"
    assert done["info"] == {"import": {}}  # no problematic records, no reports
    jackson = bsb.contact("brevo_contacts", "jackson@example.com")
    assert jackson is not None
    assert jackson["attributes"] == {
        "LNAME": "jackson",
        "FNAME": "Mark",
        "COUNTRY": "DE",
        "BIRTHDAY": "11/02/1989",
    }
    assert jackson["listIds"] == [67]
    stats = bsb.stats()["contacts"]["brevo_contacts"]
    assert (stats["stored"], stats["ignored_attributes"], stats["ignored_values"]) == (2, 1, 0)


def test_brevo_lists_the_account_attributes_with_types(bclient: httpx.Client) -> None:
    """get-attributes: {"attributes": [{name, category, type}]} (category normal for these)."""
    r = bclient.get("/v3/contacts/attributes", headers=BREVO)
    assert r.status_code == 200
    assert r.json()["attributes"][0] == {"name": "FNAME", "category": "normal", "type": "text"}
    assert {a["name"]: a["type"] for a in r.json()["attributes"]} == ACCOUNT
    assert bclient.get("/v3/contacts/attributes").status_code == 401
    assert bclient.get("/v3/contacts/attributes", headers={"api-key": "x"}).json() == {
        "code": "unauthorized",
        "message": "Key not found",
    }


def _one(email: str, flags: dict[str, Any] | None = None, **attributes: Any) -> dict[str, Any]:
    return {
        "listIds": [2],
        **(flags or {}),
        "jsonBody": [{"email": email, "attributes": attributes}],
    }


def test_brevo_empty_values_erase_only_with_empty_contacts_attributes(
    bsb: SandboxServer, bclient: httpx.Client
) -> None:
    """import-contacts: "emptyContactsAttributes = true means the empty fields in your import
    will erase any attribute that currently contain data in Brevo, & emptyContactsAttributes =
    false means the empty fields will not affect your existing data"; fields not sent are
    never touched."""
    finish(bclient, start_import(bclient, _one("a@example.com", FNAME="Ann", COUNTRY="FR")))
    finish(bclient, start_import(bclient, _one("a@example.com", COUNTRY="", LTV=None)))
    contact = bsb.contact("brevo_contacts", "a@example.com")
    assert contact is not None and contact["attributes"] == {"FNAME": "Ann", "COUNTRY": "FR"}
    clear = _one("a@example.com", {"emptyContactsAttributes": True}, COUNTRY=None)
    finish(bclient, start_import(bclient, clear))
    contact = bsb.contact("brevo_contacts", "a@example.com")
    assert contact is not None and contact["attributes"] == {"FNAME": "Ann"}
    both_off = _one(
        "a@example.com", {"emptyContactsAttributes": True, "updateExistingContacts": False}
    )
    r = bclient.post("/v3/contacts/import", json=both_off, headers=BREVO)
    assert r.status_code == 400 and "updateExistingContacts" in r.json()["message"]


def test_brevo_update_existing_contacts_false_leaves_existing_contacts_alone(
    bsb: SandboxServer, bclient: httpx.Client
) -> None:
    """import-contacts: updateExistingContacts (default true) — "To facilitate the choice to
    update the existing contacts"."""
    finish(bclient, start_import(bclient, _one("a@example.com", FNAME="Ann")))
    body = {
        "listIds": [2],
        "updateExistingContacts": False,
        "jsonBody": [
            {"email": "a@example.com", "attributes": {"FNAME": "Changed"}},
            {"email": "b@example.com", "attributes": {"FNAME": "Bea"}},
        ],
    }
    finish(bclient, start_import(bclient, body))
    a = bsb.contact("brevo_contacts", "a@example.com")
    b = bsb.contact("brevo_contacts", "b@example.com")
    assert a is not None and a["attributes"] == {"FNAME": "Ann"}
    assert b is not None and b["attributes"] == {"FNAME": "Bea"}


def test_brevo_value_of_the_wrong_type_is_ignored(
    bsb: SandboxServer, bclient: httpx.Client
) -> None:
    """contracts-contacts: "unknown attributes and values of the wrong type are silently
    ignored by the import" (LTV is a float attribute; BIRTHDAY a date)."""
    body = _one("a@example.com", FNAME="Ann", LTV="lots", BIRTHDAY="yesterday")
    finish(bclient, start_import(bclient, body))
    contact = bsb.contact("brevo_contacts", "a@example.com")
    assert contact is not None and contact["attributes"] == {"FNAME": "Ann"}
    assert bsb.stats()["contacts"]["brevo_contacts"]["ignored_values"] == 2


def test_brevo_process_reports_invalid_emails_and_duplicates_as_csv_urls(
    bsb: SandboxServer, bclient: httpx.Client
) -> None:
    """get-process: "Completed import processes include CSV report URLs with details about
    problematic records" (info.import: invalid_emails, duplicate_email_id, duplicate_ext_id...)."""
    body = {
        "listIds": [2],
        "jsonBody": [
            {"email": "ok@example.com", "attributes": {"EXT_ID": "c-1"}},
            {"email": "not-an-email", "attributes": {}},
            {"email": "ok@example.com", "attributes": {}},
            {"email": "other@example.com", "attributes": {"EXT_ID": "c-1"}},
        ],
    }
    done = finish(bclient, start_import(bclient, body))
    reports = done["info"]["import"]
    assert sorted(reports) == ["duplicate_email_id", "duplicate_ext_id", "invalid_emails"]
    csv = bclient.get(reports["invalid_emails"].removeprefix(bsb.url))
    assert (csv.status_code, csv.text) == (200, "EMAIL\nnot-an-email\n")
    assert bclient.get(reports["duplicate_ext_id"]).text == "IDENTIFIER\nc-1\n"
    assert [c["email"] for c in bsb.contacts("brevo_contacts")] == ["ok@example.com"]
    assert bsb.stats()["contacts"]["brevo_contacts"]["skipped_rows"] == 3


def test_brevo_import_request_rules(bsb: SandboxServer, bclient: httpx.Client) -> None:
    """import-contacts: listIds "Mandatory if newList is not defined"; jsonBody / fileBody /
    fileUrl — one of them; "Maximum allowed json body size is 10MB"."""
    no_list = {"jsonBody": [{"email": "a@example.com"}]}
    r = bclient.post("/v3/contacts/import", json=no_list, headers=BREVO)
    assert (r.status_code, r.json()["code"]) == (400, "missing_parameter")
    assert "listIds" in r.json()["message"]
    new_list = {"newList": {"listName": "Imported"}, "jsonBody": [{"email": "a@example.com"}]}
    assert bclient.post("/v3/contacts/import", json=new_list, headers=BREVO).status_code == 202
    two = {"listIds": [1], "jsonBody": [{"email": "a@example.com"}], "fileUrl": "https://x/y.csv"}
    assert bclient.post("/v3/contacts/import", json=two, headers=BREVO).status_code == 400
    none = {"listIds": [1]}
    assert bclient.post("/v3/contacts/import", json=none, headers=BREVO).status_code == 400
    big = {
        "listIds": [1],
        "jsonBody": [{"email": "a@example.com", "attributes": {"FNAME": "x" * (10 * 1024 * 1024)}}],
    }
    r = bclient.post("/v3/contacts/import", json=big, headers=BREVO)
    assert (r.status_code, r.json()["code"]) == (400, "out_of_range")
    bad_ids = {"listIds": ["67"], "jsonBody": [{"email": "a@example.com"}]}
    assert bclient.post("/v3/contacts/import", json=bad_ids, headers=BREVO).status_code == 400
    assert bclient.post("/v3/contacts/import", json=DOC_IMPORT).status_code == 401
    assert bsb.stats()["contacts"]["brevo_contacts"]["jobs"] == 1


def test_brevo_failed_process_stores_nothing(bsb: SandboxServer, bclient: httpx.Client) -> None:
    """get-process status enum includes failed."""
    bsb.inject_job(JobFault("brevo_contacts", fail=True, polls=2))
    process_id = start_import(bclient, DOC_IMPORT)
    statuses = [process(bclient, process_id)["status"] for _ in range(4)]
    assert statuses == ["in_process", "in_process", "failed", "failed"]
    assert "info" not in process(bclient, process_id)
    assert bsb.contacts("brevo_contacts") == []
    assert bsb.stats()["contacts"]["brevo_contacts"]["jobs_failed"] == 1


def test_brevo_process_route_errors_and_faults(bsb: SandboxServer, bclient: httpx.Client) -> None:
    """get-process: processId is a long; an unknown one is 404."""
    assert bclient.get("/v3/processes/abc", headers=BREVO).status_code == 400
    r = bclient.get("/v3/processes/999", headers=BREVO)
    assert (r.status_code, r.json()["code"]) == (404, "document_not_found")
    assert bclient.get("/v3/processes/1").status_code == 401
    process_id = start_import(bclient, DOC_IMPORT)
    bsb.inject(Fault("/v3/processes/*", status=502))
    r = bclient.get(f"/v3/processes/{process_id}", headers=BREVO)
    assert (r.status_code, r.json()["code"]) == (502, "bad_gateway")
    assert finish(bclient, process_id)["status"] == "completed"
    bsb.inject(Fault("/v3/contacts/import", status=429, headers={"x-sib-ratelimit-reset": "3"}))
    r = bclient.post("/v3/contacts/import", json=DOC_IMPORT, headers=BREVO)
    assert (r.status_code, r.headers["x-sib-ratelimit-reset"]) == (429, "3")


def test_brevo_created_attribute_is_listed_and_imported(
    bsb: SandboxServer, bclient: httpx.Client
) -> None:
    """create-attribute: POST /v3/contacts/attributes/{attributeCategory}/{attributeName} with
    "type" for normal attributes; the import then keeps the value it ignored before."""
    finish(bclient, start_import(bclient, _one("a@example.com", PLAN="pro")))
    contact = bsb.contact("brevo_contacts", "a@example.com")
    assert contact is not None and contact["attributes"] == {}
    r = bclient.post("/v3/contacts/attributes/normal/PLAN", json={"type": "text"}, headers=BREVO)
    assert (r.status_code, r.content) == (201, b"")
    again = bclient.post(
        "/v3/contacts/attributes/normal/PLAN", json={"type": "text"}, headers=BREVO
    )
    assert again.status_code == 400
    bad = bclient.post("/v3/contacts/attributes/normal/X", json={"type": "blob"}, headers=BREVO)
    assert bad.status_code == 400
    listed = bclient.get("/v3/contacts/attributes", headers=BREVO).json()["attributes"]
    assert {"name": "PLAN", "category": "normal", "type": "text"} in listed
    finish(bclient, start_import(bclient, _one("a@example.com", PLAN="pro")))
    contact = bsb.contact("brevo_contacts", "a@example.com")
    assert contact is not None and contact["attributes"] == {"PLAN": "pro"}
    bclient.post("/_sandbox/reset")
    names = [
        a["name"]
        for a in bclient.get("/v3/contacts/attributes", headers=BREVO).json()["attributes"]
    ]
    assert "PLAN" not in names  # reset goes back to the configured account
