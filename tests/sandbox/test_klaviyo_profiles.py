"""The sandbox's Klaviyo Bulk Import Profiles (``sandbox.klaviyo_profiles``) against the
vendor's own documents, over real HTTP on loopback: the guide's example job, per-profile errors,
error pages, null and unset, lists, limits, schema errors, keys and revisions, job faults and
polls, the control routes that show stored contacts, sink mode. Each test quotes the document
(URL) whose example or rule it replays, so the oracle the contact destinations are tested
against follows the docs, not our client.

The server and client fixtures here serve the other contact endpoints' tests too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connector.sandbox import Fault, JobFault, SandboxOptions, SandboxServer
from tests.helpers import sandbox_client

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
    with sandbox_client(sb.url) as c:
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
    with sandbox_client(sb.url) as client:
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
        with sandbox_client(server.url) as client:
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
