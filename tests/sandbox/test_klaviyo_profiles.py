"""The sandbox's contact endpoints against the vendors' own documents, over real HTTP on
loopback. Each test quotes the document (URL) whose example or rule it replays, so the oracle
the contact destinations are tested against follows the docs, not our client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connector.sandbox import Fault, JobFault, RateWindow, SandboxOptions, SandboxServer

NOW = datetime(2026, 11, 29, 7, 0, 0, tzinfo=UTC)
KLAVIYO = {
    "Authorization": "Klaviyo-API-Key pk_sandbox",
    "revision": "2026-07-15",
    "Content-Type": "application/vnd.api+json",
    "Accept": "application/vnd.api+json",
}
KJOBS = "/api/profile-bulk-import-jobs"


class FakeClock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**options: Any) -> SandboxServer:
    return SandboxServer(SandboxOptions(clock=FakeClock(), wall_clock=lambda: NOW, **options))


@pytest.fixture
def sb() -> Iterator[SandboxServer]:
    with make() as server:
        yield server


@pytest.fixture
def client(sb: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sb.url, timeout=10) as c:
        yield c


# --------------------------------------------------------------------------- Klaviyo

# https://developers.klaviyo.com/en/docs/use_klaviyos_bulk_profile_import_api, "Submit an import
# job": the example payload (addresses anonymised; the guide's second profile is cut short in
# our copy, so it carries the same shape with another preference list).
DOC_JOB = {
    "data": {
        "type": "profile-bulk-import-job",
        "attributes": {
            "profiles": {
                "data": [
                    {
                        "type": "profile",
                        "attributes": {
                            "email": "ada@example.com",
                            "properties": {"preferences": ["comedy", "drama"]},
                        },
                    },
                    {
                        "type": "profile",
                        "attributes": {
                            "email": "grace@example.com",
                            "properties": {"preferences": ["action"]},
                        },
                    },
                ]
            }
        },
    }
}


def job_body(*profiles: dict[str, Any], lists: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}
        },
    }
    if lists is not None:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": i} for i in lists]}}
    return {"data": data}


def start_job(client: httpx.Client, body: dict[str, Any]) -> str:
    r = client.post(KJOBS, json=body, headers=KLAVIYO)
    assert r.status_code == 202, r.text
    return str(r.json()["data"]["id"])


def poll(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.get(f"{KJOBS}/{job_id}", headers=KLAVIYO)
    assert r.status_code == 200, r.text
    attributes: dict[str, Any] = r.json()["data"]["attributes"]
    return attributes


def test_klaviyo_runs_the_guides_example_job_and_stores_only_when_it_completes(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """bulk_import_profiles: 202 with the job resource; get_bulk_import_profiles_job's example
    response: {"data": {"type": "profile-bulk-import-job", "id", "attributes": {"status":
    "processing", "created_at", "total_count": 10, "completed_count": 9, "failed_count": 1,
    "completed_at", "expires_at", "started_at"}, "relationships": {"lists": ...}}}."""
    r = client.post(KJOBS, json=DOC_JOB, headers=KLAVIYO)
    assert r.status_code == 202
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    assert r.headers["RateLimit-Limit"] == "150"  # "Steady: 150/m"
    job = r.json()["data"]
    assert job["type"] == "profile-bulk-import-job"
    assert job["attributes"]["status"] == "queued"
    assert job["attributes"]["total_count"] == 2
    assert set(job["attributes"]) == {
        "status",
        "created_at",
        "total_count",
        "completed_count",
        "failed_count",
        "completed_at",
        "expires_at",
        "started_at",
    }
    received = DOC_JOB["data"]["attributes"]["profiles"]["data"]  # type: ignore[index]
    assert sb.events("klaviyo_profiles") == received
    assert sb.contacts("klaviyo_profiles") == []  # queued: nothing processed yet

    first = poll(client, job["id"])  # default: one poll sees it still running
    assert (first["status"], first["completed_count"]) == ("processing", 0)
    assert sb.contacts("klaviyo_profiles") == []
    done = poll(client, job["id"])
    assert done["status"] == "complete"
    assert (done["total_count"], done["completed_count"], done["failed_count"]) == (2, 2, 0)
    assert done["completed_at"] == NOW.isoformat()
    ada = sb.contact("klaviyo_profiles", "ada@example.com")
    assert ada is not None and ada["properties"] == {"preferences": ["comedy", "drama"]}
    stats = sb.stats()["contacts"]["klaviyo_profiles"]
    assert (stats["stored"], stats["jobs_done"], stats["item_errors"]) == (2, 1, 0)
    assert sb.stats()["events"]["klaviyo_profiles"] == 2


def test_klaviyo_job_reports_per_profile_errors_matched_by_original_payload(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """get_errors_for_bulk_import_profiles_job: import-error {code, title, detail, source,
    original_payload} (ImportErrorResponseObjectResource: code "invalid", title "Invalid
    input"); phone numbers are E.164; valid profiles of the same job are stored."""
    job_id = start_job(
        client,
        job_body(
            {"email": "ok@example.com", "first_name": "Ok"},
            {"email": "not-an-email", "first_name": "Ava"},
            {"external_id": "c-3", "phone_number": "555-1234"},
            {"first_name": "Nobody"},
        ),
    )
    poll(client, job_id)
    done = poll(client, job_id)
    assert (done["status"], done["completed_count"], done["failed_count"]) == ("complete", 1, 3)
    r = client.get(f"{KJOBS}/{job_id}/import-errors", headers=KLAVIYO)
    assert r.status_code == 200
    errors = r.json()["data"]
    assert [e["type"] for e in errors] == ["import-error"] * 3
    payloads = [e["attributes"]["original_payload"] for e in errors]
    assert payloads == [
        {"email": "not-an-email", "first_name": "Ava"},
        {"external_id": "c-3", "phone_number": "555-1234"},
        {"first_name": "Nobody"},
    ]
    pointers = [e["attributes"]["source"]["pointer"] for e in errors]
    assert pointers == [
        "/data/attributes/profiles/data/1/attributes/email",
        "/data/attributes/profiles/data/2/attributes/phone_number",
        "/data/attributes/profiles/data/3/attributes",
    ]
    assert all(e["attributes"]["code"] == "invalid" for e in errors)
    assert [p["email"] for p in sb.contacts("klaviyo_profiles")] == ["ok@example.com"]
    assert sb.stats()["contacts"]["klaviyo_profiles"]["item_errors"] == 3


def test_klaviyo_import_errors_page_with_cursor_links(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """get_errors_for_bulk_import_profiles_job: cursor pagination, page[size] 1..100, default
    20; links.next carries the cursor."""
    job_id = start_job(client, job_body(*({"email": f"bad{i}"} for i in range(3))))
    poll(client, job_id)
    poll(client, job_id)
    seen: list[str] = []
    url: str | None = f"{KJOBS}/{job_id}/import-errors?page[size]=2"
    pages = 0
    while url:
        r = client.get(url, headers=KLAVIYO)
        assert r.status_code == 200
        seen += [e["attributes"]["original_payload"]["email"] for e in r.json()["data"]]
        url = r.json()["links"]["next"]
        pages += 1
    assert (seen, pages) == (["bad0", "bad1", "bad2"], 2)
    for size in ("0", "101", "x"):
        r = client.get(f"{KJOBS}/{job_id}/import-errors?page[size]={size}", headers=KLAVIYO)
        assert r.status_code == 400 and "page[size]" in r.json()["errors"][0]["detail"]


def test_klaviyo_bulk_import_never_clears_with_null_and_unsets_custom_properties(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Guide, "Clearing fields with null values": "The Bulk Import Profiles API does not support
    setting fields to null to clear them. Only fields explicitly provided with non-null values
    will be updated." Custom properties are removed with meta.patch_properties.unset (OAS
    ProfileMeta)."""
    sb.options.contact_job_polls = 0
    first = job_body(
        {
            "email": "ada@example.com",
            "first_name": "Ada",
            "location": {"city": "London", "country": "UK"},
            "properties": {"plan": "pro", "ltv": 12.5, "team": "a"},
        }
    )
    poll(client, start_job(client, first))
    second = job_body(
        {
            "email": "ada@example.com",
            "first_name": None,
            "location": {"city": None, "zip": "N1"},
            "properties": {"plan": None, "ltv": 20},
        }
    )
    second["data"]["attributes"]["profiles"]["data"][0]["meta"] = {
        "patch_properties": {"unset": ["team"]}
    }
    poll(client, start_job(client, second))
    ada = sb.contact("klaviyo_profiles", "ada@example.com")
    assert ada is not None
    assert ada["first_name"] == "Ada"  # null did not clear it
    assert ada["location"] == {"city": "London", "country": "UK", "zip": "N1"}
    assert ada["properties"] == {"plan": "pro", "ltv": 20}  # null kept; unset removed
    stats = sb.stats()["contacts"]["klaviyo_profiles"]
    assert (stats["stored"], stats["created"], stats["updated"]) == (1, 1, 1)


def test_klaviyo_job_adds_profiles_to_the_related_list(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """bulk_import_profiles: data.relationships.lists.data [{type: "list", id}] — "Optional
    list to add the profiles to"; the job resource relates the list."""
    sb.options.contact_job_polls = 0
    r = client.post(KJOBS, json=job_body({"external_id": "c-1"}, lists=["VRgFBd"]), headers=KLAVIYO)
    assert r.status_code == 202
    job = r.json()["data"]
    assert job["relationships"]["lists"]["data"] == [{"type": "list", "id": "VRgFBd"}]
    poll(client, job["id"])
    assert sb.contact("klaviyo_profiles", "c-1") == {
        "id": sb.contacts("klaviyo_profiles")[0]["id"],
        "external_id": "c-1",
        "properties": {},
        "lists": ["VRgFBd"],
        # get_profiles' read-only times, set by the job that wrote it (the sandbox's clock)
        "created": "2026-11-29T07:00:00+00:00",
        "updated": "2026-11-29T07:00:00+00:00",
    }
    bad = job_body({"email": "a@example.com"})
    bad["data"]["relationships"] = {"lists": {"data": [{"type": "segment", "id": "x"}]}}
    assert client.post(KJOBS, json=bad, headers=KLAVIYO).status_code == 400


def test_klaviyo_job_limits_10000_profiles_and_5mb(sb: SandboxServer, client: httpx.Client) -> None:
    """bulk_import_profiles: "Accepts up to 10,000 profiles per request. The maximum allowed
    payload size is 5MB." A limit breach fails the request; no job is made."""
    ten_k = job_body(*({"external_id": str(i)} for i in range(10_000)))
    assert client.post(KJOBS, json=ten_k, headers=KLAVIYO).status_code == 202
    over = job_body(*({"external_id": str(i)} for i in range(10_001)))
    r = client.post(KJOBS, json=over, headers=KLAVIYO)
    assert r.status_code == 400
    assert "10000" in r.json()["errors"][0]["detail"]
    big = job_body({"email": "a@example.com", "properties": {"x": "y" * (5 * 1024 * 1024)}})
    r = client.post(KJOBS, json=big, headers=KLAVIYO)
    assert r.status_code == 413
    assert sb.stats()["contacts"]["klaviyo_profiles"]["jobs"] == 1


def test_klaviyo_profile_over_100kb_is_an_import_error(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Max per-profile payload size: 100KB (the request itself is under 5 MB)."""
    sb.options.contact_job_polls = 0
    props = {f"p{i}": "x" * 1000 for i in range(110)}
    job_id = start_job(
        client, job_body({"email": "big@example.com", "properties": props}, {"email": "s@ex.io"})
    )
    assert poll(client, job_id)["failed_count"] == 1
    errors = client.get(f"{KJOBS}/{job_id}/import-errors", headers=KLAVIYO).json()["data"]
    assert errors[0]["attributes"]["original_payload"]["email"] == "big@example.com"
    assert [p["email"] for p in sb.contacts("klaviyo_profiles")] == ["s@ex.io"]


def test_klaviyo_schema_errors_fail_the_whole_request(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """OAS ProfileUpsertQueryResourceObject: the attribute types (first_name a string,
    properties an object, type "profile") — a JSON:API 400 pointing into the request."""
    body = job_body({"email": "a@example.com"}, {"email": "b@example.com", "first_name": 5})
    body["data"]["attributes"]["profiles"]["data"][0]["type"] = "person"
    r = client.post(KJOBS, json=body, headers=KLAVIYO)
    assert r.status_code == 400
    pointers = [e["source"]["pointer"] for e in r.json()["errors"]]
    assert pointers == [
        "/data/attributes/profiles/data/0/type",
        "/data/attributes/profiles/data/1/attributes/first_name",
    ]
    assert sb.stats()["contacts"]["klaviyo_profiles"]["jobs"] == 0
    wrong_type = {"data": {"type": "event-bulk-create-job", "attributes": {}}}
    assert client.post(KJOBS, json=wrong_type, headers=KLAVIYO).status_code == 400


def test_klaviyo_contact_routes_check_key_and_revision_like_the_events_endpoint(
    client: httpx.Client,
) -> None:
    """Every call: Authorization: Klaviyo-API-Key <key> (401 otherwise) and the required
    revision header (revisionHeader: {"name": "revision", "required": true})."""
    job_id = start_job(client, DOC_JOB)
    for path in (f"{KJOBS}/{job_id}", f"{KJOBS}/{job_id}/import-errors"):
        no_key = {k: v for k, v in KLAVIYO.items() if k != "Authorization"}
        assert client.get(path, headers=no_key).status_code == 401
        no_rev = {k: v for k, v in KLAVIYO.items() if k != "revision"}
        r = client.get(path, headers=no_rev)
        assert r.status_code == 400 and r.json()["errors"][0]["source"]["parameter"] == "revision"
    bad = {**KLAVIYO, "Authorization": "Klaviyo-API-Key wrong"}
    assert client.post(KJOBS, json=DOC_JOB, headers=bad).status_code == 401
    assert client.get(f"{KJOBS}/nope", headers=KLAVIYO).status_code == 404
    assert client.delete(f"{KJOBS}/{job_id}", headers=KLAVIYO).status_code == 405
    assert client.get(f"{KJOBS}/{job_id}/", headers=KLAVIYO).status_code == 200  # trailing /


def test_klaviyo_job_fault_keeps_a_job_processing_across_polls_then_completes(
    sb: SandboxServer, client: httpx.Client
) -> None:
    sb.inject_job(JobFault("klaviyo_profiles", polls=3))
    job_id = start_job(client, DOC_JOB)
    statuses = [poll(client, job_id)["status"] for _ in range(4)]
    assert statuses == ["processing", "processing", "processing", "complete"]
    assert len(sb.contacts("klaviyo_profiles")) == 2
    assert poll(client, start_job(client, DOC_JOB))["status"] == "processing"  # default again


def test_klaviyo_failed_job_is_cancelled_and_stores_nothing(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """The job status enum is cancelled | complete | processing | queued (no "failed")."""
    r = client.post(
        "/_sandbox/job-faults", json={"kind": "klaviyo_profiles", "fail": True, "polls": 0}
    )
    assert r.json() == {"queued": 1}
    job_id = start_job(client, DOC_JOB)
    assert poll(client, job_id)["status"] == "cancelled"
    assert poll(client, job_id)["status"] == "cancelled"
    assert sb.contacts("klaviyo_profiles") == []
    errors = client.get(f"{KJOBS}/{job_id}/import-errors", headers=KLAVIYO)
    assert errors.json()["data"] == []
    assert sb.stats()["contacts"]["klaviyo_profiles"]["jobs_failed"] == 1


def test_klaviyo_contact_routes_take_http_faults_including_a_glob_for_polls(
    sb: SandboxServer, client: httpx.Client
) -> None:
    sb.inject(Fault(KJOBS, status=429, headers={"Retry-After": "7"}))
    r = client.post(KJOBS, json=DOC_JOB, headers=KLAVIYO)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "7")
    assert r.json()["errors"][0]["code"] == "throttled"
    assert sb.stats()["contacts"]["klaviyo_profiles"]["jobs"] == 0
    job_id = start_job(client, DOC_JOB)
    sb.inject(Fault(f"{KJOBS}/*", status=503, times=2))
    assert client.get(f"{KJOBS}/{job_id}", headers=KLAVIYO).status_code == 503
    assert client.get(f"{KJOBS}/{job_id}/import-errors", headers=KLAVIYO).status_code == 503
    assert poll(client, job_id)["status"] == "processing"  # the faulted polls did not count
    log = [(r.method, r.status) for r in sb.requests]
    assert log == [("POST", 429), ("POST", 202), ("GET", 503), ("GET", 503), ("GET", 200)]


def test_klaviyo_poll_rate_limit_is_its_own_window(sb: SandboxServer) -> None:
    """get_bulk_import_profiles_job: "Burst: 10/s" — the 11th poll in a second is 429 with
    Retry-After, while a new job can still be created (another endpoint)."""
    with httpx.Client(base_url=sb.url, timeout=10) as client:
        job_id = start_job(client, DOC_JOB)
        codes = [client.get(f"{KJOBS}/{job_id}", headers=KLAVIYO).status_code for _ in range(11)]
        assert codes == [200] * 10 + [429]
        start_job(client, DOC_JOB)


def test_sandbox_control_routes_show_stored_contacts(
    sb: SandboxServer, client: httpx.Client
) -> None:
    sb.options.contact_job_polls = 0
    poll(client, start_job(client, DOC_JOB))
    stored = client.get("/_sandbox/contacts/klaviyo_profiles").json()
    assert sorted(p["email"] for p in stored) == ["ada@example.com", "grace@example.com"]
    assert client.get("/_sandbox/contacts/nope").status_code == 404
    bad = client.post("/_sandbox/job-faults", json={"kind": "nope", "fail": True})
    assert bad.status_code == 400
    client.post("/_sandbox/reset")
    assert client.get("/_sandbox/contacts/klaviyo_profiles").json() == []


def test_klaviyo_sink_mode_counts_profiles_and_completes_jobs_without_storing() -> None:
    """Benchmarks: validate=False counts the profiles and still runs the job protocol."""
    with make(validate=False, contact_job_polls=0) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            job_id = start_job(client, job_body(*({"email": f"x{i}"} for i in range(50))))
            done = poll(client, job_id)
        assert (done["status"], done["completed_count"], done["failed_count"]) == (
            "complete",
            50,
            0,
        )
        assert server.stats()["events"]["klaviyo_profiles"] == 50
        assert server.events("klaviyo_profiles") == []
        assert server.contacts("klaviyo_profiles") == []


# --------------------------------------------------------------------------- Brevo

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
    with httpx.Client(base_url=bsb.url, timeout=10) as c:
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


# --------------------------------------------------------------------------- Omnisend 2026-03-15

OMNI = {"Authorization": "Omnisend-API-Key sandbox-omnisend-key", "Omnisend-Version": "2026-03-15"}

# https://api-docs.omnisend.com/v5/docs ("How to: sync contacts", "Create contact"): the curl
# example body (address anonymised), sent to the 2026-03-15 path and headers.
DOC_CONTACT = {
    "identifiers": [
        {
            "channels": {"email": {"status": "subscribed", "statusDate": "2020-02-29T10:07:28Z"}},
            "id": "jane@example.com",
            "type": "email",
            "sendWelcomeMessage": True,
        }
    ],
    "firstName": "Jane",
    "lastName": "Doe",
    "country": "United Kingdom",
    "countryCode": "GB",
    "city": "London",
    "address": "Westminster",
    "postalCode": "SW1A 1AA",
    "gender": "f",
    "birthdate": "1997-05-02",
}

# The Batches API description, "Batch post contacts" example (addresses anonymised).
DOC_BATCH = {
    "method": "POST",
    "endpoint": "contacts",
    "items": [
        {
            "identifiers": [
                {
                    "type": "email",
                    "id": "vanessa.kensington@example.com",
                    "channels": {
                        "email": {"status": "subscribed", "statusDate": "2019-05-30T14:11:12Z"}
                    },
                }
            ]
        },
        {
            "identifiers": [
                {
                    "type": "email",
                    "id": "vanessa@example.com",
                    "channels": {
                        "email": {"status": "subscribed", "statusDate": "2019-05-30T14:11:12Z"}
                    },
                }
            ],
            "firstName": "Vanessa",
        },
    ],
}


def email_contact(email: str, welcome: bool | None = False, **fields: Any) -> dict[str, Any]:
    ident: dict[str, Any] = {"type": "email", "id": email}
    if welcome is not None:
        ident["sendWelcomeMessage"] = welcome
    return {"identifiers": [ident], **fields}


def test_omnisend_creates_201_then_updates_200_by_email(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Contacts API (2026-03-15) POST /contacts: "Returns 201 Created for new contacts and 200 OK
    when an existing contact was updated"; ContactResponse carries id and the derived email."""
    r = client.post("/api/contacts", json=DOC_CONTACT, headers=OMNI)
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "jane@example.com" and r.json()["id"]
    assert r.headers["X-Rate-Limit-Limit"] == "400"
    update = email_contact("jane@example.com", tags=["source: warehouse"], lastName="Smith")
    r = client.post("/api/contacts", json=update, headers=OMNI)
    assert r.status_code == 200
    jane = sb.contact("omnisend_contacts", "jane@example.com")
    assert jane is not None
    assert (jane["firstName"], jane["lastName"], jane["tags"]) == (
        "Jane",
        "Smith",
        ["source: warehouse"],
    )
    stats = sb.stats()["contacts"]["omnisend_contacts"]
    assert (stats["stored"], stats["created"], stats["updated"]) == (1, 1, 1)
    assert sb.events("omnisend_contacts") == [DOC_CONTACT, update]


def test_omnisend_send_welcome_message_defaults_to_true(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """ContactIdentifierRequest.sendWelcomeMessage: "Whether to send a welcome message for this
    identifier. Defaults to true." Only an explicit false suppresses it."""
    for email, welcome in (("a@example.com", None), ("b@example.com", False)):
        assert client.post("/api/contacts", json=email_contact(email, welcome), headers=OMNI)
    assert sb.stats()["contacts"]["omnisend_contacts"]["welcome_messages"] == 1


def test_omnisend_ignores_an_identifier_held_by_another_contact(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """reference/contacts: "If you try to create or update a contact with an identifier that
    already exists for another contact, the system will ignore the identifier. If it is the only
    identifier, the contact will not be created."""
    phone = {"type": "phone", "id": "+37060000000", "sendWelcomeMessage": False}
    first = email_contact("a@example.com")
    first["identifiers"].append(phone)
    assert client.post("/api/contacts", json=first, headers=OMNI).status_code == 201
    second = email_contact("b@example.com")
    second["identifiers"].append(phone)
    assert client.post("/api/contacts", json=second, headers=OMNI).status_code == 201
    b = sb.contact("omnisend_contacts", "b@example.com")
    assert b is not None and b["phone"] == []
    r = client.post("/api/contacts", json={"identifiers": [phone]}, headers=OMNI)
    assert r.status_code == 409 and r.json()["status"] == 409
    assert len(sb.contacts("omnisend_contacts")) == 2
    assert sb.stats()["contacts"]["omnisend_contacts"]["identifiers_ignored"] == 2


def test_omnisend_contact_validation_lists_every_field(client: httpx.Client) -> None:
    """reference/responses: one entry per invalid field, all at once; ContactRequest: gender m|f,
    birthdate YYYY-MM-DD, tags maxItems 100, phone E.164; custom property names of latin
    letters, digits and "_" (≤ 128)."""
    body = {
        "identifiers": [{"type": "email", "id": "nope"}, {"type": "phone", "id": "555"}],
        "gender": "x",
        "birthdate": "02/05/1997",
        "tags": ["t"] * 101,
        "customProperties": {"bad-name": 1, "ok_name": 2},
    }
    r = client.post("/api/contacts", json=body, headers=OMNI)
    assert r.status_code == 400
    problem = r.json()
    assert problem["type"].startswith("https://problems.omnisend.com/")
    assert [e["field"] for e in problem["errors"]] == [
        "identifiers.0.id",
        "identifiers.1.id",
        "birthdate",
        "gender",
        "tags",
        "customProperties.bad-name",
    ]
    no_ident = client.post("/api/contacts", json={"firstName": "X"}, headers=OMNI)
    assert no_ident.status_code == 400 and no_ident.json()["errors"][0]["field"] == "identifiers"


def test_omnisend_contact_routes_need_key_and_version(client: httpx.Client) -> None:
    """Authorization: Omnisend-API-Key <key> and the required Omnisend-Version header."""
    body = email_contact("a@example.com")
    r = client.post("/api/contacts", json=body, headers={"Omnisend-Version": "2026-03-15"})
    assert r.status_code == 401 and r.json()["status"] == 401
    legacy = {"X-API-KEY": "sandbox-omnisend-key", "Omnisend-Version": "2026-03-15"}
    assert client.post("/api/batches", json=DOC_BATCH, headers=legacy).status_code == 401
    no_version = {"Authorization": OMNI["Authorization"]}
    r = client.post("/api/batches", json=DOC_BATCH, headers=no_version)
    assert r.status_code == 400 and "Omnisend-Version" in r.json()["detail"]
    assert client.get("/api/batches/x", headers=no_version).status_code == 400


def batch(client: httpx.Client, batch_id: str, items: bool = False) -> dict[str, Any]:
    path = f"/api/batches/{batch_id}" + ("/items" if items else "")
    r = client.get(path, headers=OMNI)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_omnisend_runs_the_documented_contacts_batch(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Batches API: POST /batches → 201 {batchID, totalCount}; GET /batches/{batchID} status
    (pending | inProgress | finished | stopped), finishedCount, errorsCount; GET .../items:
    BatchItem {itemID, request, response, responseCode, status}."""
    r = client.post("/api/batches", json=DOC_BATCH, headers=OMNI)
    assert r.status_code == 201
    created = r.json()
    assert created["totalCount"] == 2 and set(created) == {"batchID", "totalCount"}
    batch_id = created["batchID"]
    running = batch(client, batch_id)
    assert (running["status"], running["finishedCount"]) == ("inProgress", 0)
    assert sb.contacts("omnisend_contacts") == []
    done = batch(client, batch_id)
    assert (done["status"], done["finishedCount"], done["errorsCount"]) == ("finished", 2, 0)
    assert (done["endpoint"], done["method"]) == ("contacts", "POST")
    items = batch(client, batch_id, items=True)
    assert [i["responseCode"] for i in items["responses"]] == [201, 201]
    assert items["responses"][1]["request"] == DOC_BATCH["items"][1]
    assert items["errors"] == []
    vanessa = sb.contact("omnisend_contacts", "vanessa@example.com")
    assert vanessa is not None and vanessa["firstName"] == "Vanessa"
    assert sb.stats()["contacts"]["omnisend_contacts"]["welcome_messages"] == 2  # default true


def test_omnisend_batch_item_errors_are_per_item(sb: SandboxServer, client: httpx.Client) -> None:
    sb.options.contact_job_polls = 0
    body = {
        "method": "POST",
        "endpoint": "contacts",
        "items": [email_contact("ok@example.com"), email_contact("bad", gender="x")],
    }
    batch_id = client.post("/api/batches", json=body, headers=OMNI).json()["batchID"]
    done = batch(client, batch_id)
    assert (done["status"], done["finishedCount"], done["errorsCount"]) == ("finished", 2, 1)
    failed = batch(client, batch_id, items=True)["errors"]
    assert len(failed) == 1 and failed[0]["responseCode"] == 400
    assert failed[0]["request"]["identifiers"][0]["id"] == "bad"
    assert [e["field"] for e in failed[0]["response"]["errors"]] == ["identifiers.0.id", "gender"]
    assert [c["email"] for c in sb.contacts("omnisend_contacts")] == ["ok@example.com"]


def test_omnisend_batch_request_rules(sb: SandboxServer, client: httpx.Client) -> None:
    """CreateBatchRequest: items maxItems 100, minItems 1; method POST|PUT; endpoint enum."""
    many = {"method": "POST", "endpoint": "contacts", "items": [email_contact("a@ex.io")] * 101}
    r = client.post("/api/batches", json=many, headers=OMNI)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "max_items"
    hundred = {**many, "items": [email_contact(f"a{i}@ex.io") for i in range(100)]}
    assert client.post("/api/batches", json=hundred, headers=OMNI).status_code == 201
    bad = {"method": "DELETE", "endpoint": "people", "items": []}
    r = client.post("/api/batches", json=bad, headers=OMNI)
    assert [e["field"] for e in r.json()["errors"]] == ["method", "endpoint", "items"]
    products = {"method": "POST", "endpoint": "products", "items": [{}]}
    assert client.post("/api/batches", json=products, headers=OMNI).status_code == 400
    r = client.get("/api/batches/nope", headers=OMNI)
    assert r.status_code == 404 and r.json()["status"] == 404


def test_omnisend_stopped_batch_stores_nothing(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject_job(JobFault("omnisend_contacts", fail=True))
    batch_id = client.post("/api/batches", json=DOC_BATCH, headers=OMNI).json()["batchID"]
    assert [batch(client, batch_id)["status"] for _ in range(2)] == ["inProgress", "stopped"]
    assert batch(client, batch_id, items=True)["responses"] == []
    assert sb.contacts("omnisend_contacts") == []


def test_omnisend_contacts_429_is_a_rate_limit_problem_with_retry_after() -> None:
    """RateLimitProblem: "Use the retryAfter value to know when it is safe to retry"; contacts
    and batches share the brand's window ("rate limited to 400 requests per minute")."""
    server = make(rate_limits={"omnisend_contacts": [RateWindow(1, 60.0)]})
    with server, httpx.Client(base_url=server.url, timeout=10) as client:
        body = email_contact("a@example.com")
        assert client.post("/api/contacts", json=body, headers=OMNI).status_code == 201
        r = client.post("/api/batches", json=DOC_BATCH, headers=OMNI)
        assert r.status_code == 429
        assert r.json()["retryAfter"] == 60 and r.json()["status"] == 429
        assert r.headers["X-Rate-Limit-Remaining"] == "0"


def test_omnisend_batch_polls_take_glob_faults(sb: SandboxServer, client: httpx.Client) -> None:
    sb.inject(Fault("/api/batches/*", status=500))
    batch_id = client.post("/api/batches", json=DOC_BATCH, headers=OMNI).json()["batchID"]
    r = client.get(f"/api/batches/{batch_id}", headers=OMNI)
    assert r.status_code == 500 and r.json()["status"] == 500
    assert batch(client, batch_id)["status"] == "inProgress"


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


def test_klaviyo_profile_import_clears_standard_fields_with_null(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """create_or_update_profile (POST /api/profile-import): "Returns 201 if a new profile was
    created, 200 if an existing profile was updated"; the bulk guide: "To remove a field value
    from a profile, use ... the Create or Update Profile endpoint" with the field set to null."""
    sb.options.contact_job_polls = 0
    poll(
        client,
        start_job(
            client,
            job_body(
                {
                    "email": "ada@example.com",
                    "first_name": "Ada",
                    "title": "Countess",
                    "location": {"city": "London", "zip": "N1"},
                    "properties": {"plan": "pro"},
                }
            ),
        ),
    )
    body = {
        "data": {
            "type": "profile",
            "attributes": {"email": "ada@example.com", "title": None, "location": {"zip": None}},
        }
    }
    r = client.post("/api/profile-import", json=body, headers=KLAVIYO)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["type"] == "profile"
    assert r.headers["RateLimit-Limit"] == "700"  # "Steady: 700/m"
    ada = sb.contact("klaviyo_profiles", "ada@example.com")
    assert ada is not None
    assert "title" not in ada and ada["first_name"] == "Ada"
    assert ada["location"] == {"city": "London"} and ada["properties"] == {"plan": "pro"}
    new = {"data": {"type": "profile", "attributes": {"external_id": "c-9"}}}
    assert client.post("/api/profile-import", json=new, headers=KLAVIYO).status_code == 201
    bad = {"data": {"type": "profile", "attributes": {"email": "nope"}}}
    r = client.post("/api/profile-import", json=bad, headers=KLAVIYO)
    assert r.status_code == 400
    assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/email"
    assert sb.events("klaviyo_profile_import") == [body["data"], new["data"]]


# --------------------------------------------------------------------------- connector sandbox


def test_cli_sandbox_takes_job_polls_and_brevo_attributes() -> None:
    """`connector sandbox --job-polls 0 --brevo-attribute PLAN:text` in its own process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "connector.cli", "sandbox", "--port", str(port)]
    bad = subprocess.run([*cmd, "--brevo-attribute", "PLAN"], capture_output=True, text=True)
    assert bad.returncode == 2 and "NAME:TYPE" in bad.stderr
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*cmd, "--job-polls", "0", "--brevo-attribute", "PLAN:text"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and "Sandbox listening" in proc.stdout.readline()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            listed = client.get("/v3/contacts/attributes", headers=BREVO).json()["attributes"]
            assert listed == [{"name": "PLAN", "category": "normal", "type": "text"}]
            process_id = start_import(client, _one("a@example.com", PLAN="pro"))
            assert process(client, process_id)["status"] == "completed"  # no running poll
            stored = client.get("/_sandbox/contacts/brevo_contacts").json()
            assert [c["attributes"] for c in stored] == [{"PLAN": "pro"}]
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_job_created_behind_a_failed_answer_still_runs(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """Fault(after_process=True): the vendor made the job, the client saw a 502 — the job and its
    profiles exist all the same (a client that retries sends them twice)."""
    sb.options.contact_job_polls = 0
    sb.inject(Fault(KJOBS, status=502, after_process=True))
    assert client.post(KJOBS, json=DOC_JOB, headers=KLAVIYO).status_code == 502
    assert sb.stats()["contacts"]["klaviyo_profiles"]["jobs"] == 1
    assert len(sb.events("klaviyo_profiles")) == 2


# --------------------------------------------------------------------------- list membership

KLIST = "/api/lists/{}/relationships/profiles"


def _klaviyo_in_list(sb: SandboxServer, client: httpx.Client, *profiles: dict[str, Any]) -> None:
    sb.options.contact_job_polls = 0
    poll(client, start_job(client, job_body(*profiles, lists=["VRgFBd"])))


def test_klaviyo_get_profiles_filters_on_identifiers_with_the_documented_syntax(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """get_profiles: filter "email: any, equals; phone_number: any, equals; external_id: any,
    equals"; the filtering guide's example ?filter=equals(email,"sarah.mason@klaviyo-demo.com");
    the SDK README's any(email,["henry.chan@klaviyo-demo.com","amanda.das@klaviyo-demo.com"]);
    page[size] "Default: 20. Min: 1. Max: 100." with cursor links."""
    _klaviyo_in_list(
        sb,
        client,
        {"email": "sarah.mason@klaviyo-demo.com", "first_name": "Sarah"},
        {"email": "henry.chan@klaviyo-demo.com", "external_id": "c-2"},
        {"email": "amanda.das@klaviyo-demo.com", "phone_number": "+15005550006"},
    )

    def get(**params: Any) -> httpx.Response:
        return client.get("/api/profiles", params=params, headers=KLAVIYO)

    one = get(filter='equals(email,"sarah.mason@klaviyo-demo.com")').json()
    assert [p["attributes"]["first_name"] for p in one["data"]] == ["Sarah"]
    assert one["data"][0]["type"] == "profile" and one["data"][0]["id"].startswith("sb")
    two = get(filter='any(email,["henry.chan@klaviyo-demo.com","amanda.das@klaviyo-demo.com"])')
    assert sorted(p["attributes"]["email"] for p in two.json()["data"]) == [
        "amanda.das@klaviyo-demo.com",
        "henry.chan@klaviyo-demo.com",
    ]
    assert [
        p["attributes"]["email"] for p in get(filter="equals(external_id,'c-2')").json()["data"]
    ] == ["henry.chan@klaviyo-demo.com"]
    by_phone = get(filter='any(phone_number,["+15005550006"])', **{"fields[profile]": "email"})
    assert by_phone.json()["data"][0]["attributes"] == {"email": "amanda.das@klaviyo-demo.com"}
    assert get(filter='equals(email,"nobody@example.com")').json()["data"] == []
    page = get(**{"page[size]": 2}).json()
    assert len(page["data"]) == 2 and page["links"]["next"]
    rest = client.get(page["links"]["next"], headers=KLAVIYO).json()
    assert len(rest["data"]) == 1 and rest["links"]["next"] is None
    for bad in ({"page[size]": 101}, {"filter": 'equals(first_name,"Sarah")'}, {"filter": "x"}):
        r = get(**bad)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid", bad
    assert client.get("/api/profiles", headers={**KLAVIYO, "revision": ""}).status_code == 400


def test_klaviyo_remove_profiles_from_list_leaves_the_profiles(
    sb: SandboxServer, client: httpx.Client
) -> None:
    """remove_profiles_from_list: DELETE /api/lists/{id}/relationships/profiles with
    {"data": [{"type": "profile", "id"}]} → 204; "Removing a profile from a list will not impact
    the profile's consent status or subscription status"; "a maximum of 1000 profiles per
    call"."""
    _klaviyo_in_list(sb, client, {"email": "a@example.com"}, {"email": "b@example.com"})
    a, b = sb.contacts("klaviyo_profiles")
    r = client.request(
        "DELETE",
        KLIST.format("VRgFBd"),
        json={"data": [{"type": "profile", "id": a["id"]}]},
        headers=KLAVIYO,
    )
    assert (r.status_code, r.content) == (204, b"")
    assert [p["email"] for p in sb.list_members("klaviyo_profiles", "VRgFBd")] == ["b@example.com"]
    assert sb.contact("klaviyo_profiles", "a@example.com") == {**a, "lists": []}
    again = client.request(  # not in the list any more: nothing to do
        "DELETE",
        KLIST.format("VRgFBd"),
        json={"data": [{"type": "profile", "id": a["id"]}]},
        headers=KLAVIYO,
    )
    assert again.status_code == 204
    over = {"data": [{"type": "profile", "id": b["id"]}] * 1001}
    cases = [
        ("VRgFBd", over, 400),
        ("VRgFBd", {"data": [{"type": "list", "id": b["id"]}]}, 400),
        ("VRgFBd", {"data": []}, 400),
        ("Nope12", {"data": [{"type": "profile", "id": b["id"]}]}, 404),
        ("VRgFBd", {"data": [{"type": "profile", "id": "01UNKNOWN"}]}, 404),
    ]
    for list_id, body, status in cases:
        r = client.request("DELETE", KLIST.format(list_id), json=body, headers=KLAVIYO)
        assert r.status_code == status, (list_id, r.text)
        assert "errors" in r.json()
    assert [p["email"] for p in sb.list_members("klaviyo_profiles", "VRgFBd")] == ["b@example.com"]
    assert client.get("/_sandbox/lists/klaviyo_profiles/VRgFBd").json()[0]["id"] == b["id"]
    assert client.get("/_sandbox/lists/nope/VRgFBd").status_code == 404


@pytest.fixture
def esb() -> Iterator[SandboxServer]:
    with make(brevo_attributes={**ACCOUNT, "EXT_ID": "text", "SMS": "text"}) as server:
        yield server


def test_brevo_remove_contacts_from_list_answers_success_and_failure(esb: SandboxServer) -> None:
    """remove-contact-from-list: POST /v3/contacts/lists/{listId}/contacts/remove with emails
    ("a maximum of 150 emails"), ids or extIds; 201 {"contacts": {"success": [...], "failure":
    [...]}}; 404 for an unknown list. The contact stays, with its other lists and flags."""
    with httpx.Client(base_url=esb.url, timeout=10) as c:
        people = [
            {"email": "smith@example.com", "attributes": {"EXT_ID": "e1"}},
            {"email": "jackson@example.com", "attributes": {"EXT_ID": "e2"}},
            {"email": "lee@example.com", "attributes": {"EXT_ID": "e3"}},
        ]
        finish(c, start_import(c, {"jsonBody": people, "listIds": [2, 7]}))
        path = "/v3/contacts/lists/{}/contacts/remove"
        r = c.post(
            path.format(2),
            json={"emails": ["smith@example.com", "nobody@example.com"]},
            headers=BREVO,
        )
        assert r.status_code == 201, r.text
        assert r.json() == {
            "contacts": {"success": ["smith@example.com"], "failure": ["nobody@example.com"]}
        }
        smith = esb.contact("brevo_contacts", "smith@example.com")
        assert smith is not None and smith["listIds"] == [7]
        assert (smith["emailBlacklisted"], smith["smsBlacklisted"]) == (False, False)
        r = c.post(path.format(2), json={"extIds": ["e2"]}, headers=BREVO)
        assert r.json()["contacts"] == {"success": ["e2"], "failure": []}
        lee = c.get("/v3/contacts/lee@example.com", headers=BREVO).json()
        r = c.post(path.format(2), json={"ids": [lee["id"]]}, headers=BREVO)
        assert r.json()["contacts"] == {"success": [lee["id"]], "failure": []}
        assert esb.list_members("brevo_contacts", 2) == []
        assert len(esb.list_members("brevo_contacts", 7)) == 3
        assert len(esb.contacts("brevo_contacts")) == 3
        errors = [
            ("2", {"emails": [f"x{i}@example.com" for i in range(151)]}, 400, "invalid_parameter"),
            ("2", {}, 400, "missing_parameter"),
            ("2", {"ids": ["x"]}, 400, "invalid_parameter"),
            ("99", {"emails": ["smith@example.com"]}, 404, "document_not_found"),
            ("two", {"emails": ["smith@example.com"]}, 400, "invalid_parameter"),
        ]
        for list_id, body, status, code in errors:
            r = c.post(path.format(list_id), json=body, headers=BREVO)
            assert (r.status_code, r.json()["code"]) == (status, code), (list_id, body)
        assert c.post(path.format(7), json={"emails": ["a@b.co"]}).status_code == 401


def test_brevo_get_contact_info_by_identifier_type(esb: SandboxServer) -> None:
    """get-contact-info: GET /v3/contacts/{identifier}?identifierType=email_id | contact_id |
    ext_id | phone_id ...: the contact with its listIds; 404 when there is none."""
    with httpx.Client(base_url=esb.url, timeout=10) as c:
        item = {"email": "smith@example.com", "attributes": {"EXT_ID": "e1", "SMS": "+33612345678"}}
        finish(c, start_import(c, {"jsonBody": [item], "listIds": [2]}))
        by_email = c.get("/v3/contacts/smith%40example.com", headers=BREVO)
        assert by_email.status_code == 200, by_email.text
        body = by_email.json()
        assert body["email"] == "smith@example.com" and isinstance(body["id"], int)
        assert body["listIds"] == [2] and body["emailBlacklisted"] is False
        for value, kind in (
            ("e1", "ext_id"),
            ("+33612345678", "phone_id"),
            (body["id"], "contact_id"),
        ):
            r = c.get(f"/v3/contacts/{value}", params={"identifierType": kind}, headers=BREVO)
            assert r.json()["id"] == body["id"], kind
        missing = c.get("/v3/contacts/nobody@example.com", headers=BREVO)
        assert (missing.status_code, missing.json()["code"]) == (404, "document_not_found")
        bad = c.get("/v3/contacts/e1", params={"identifierType": "nope"}, headers=BREVO)
        assert bad.status_code == 400
        assert c.get("/v3/contacts/attributes", headers=BREVO).json()["attributes"]
