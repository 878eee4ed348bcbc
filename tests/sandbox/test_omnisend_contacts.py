"""The sandbox's Omnisend contacts, API version 2026-03-15 (``sandbox.omnisend_contacts``),
against the vendor's own documents, over real HTTP on loopback: create then update by e-mail,
the welcome message, identifiers held by another contact, validation of every field, the
documented contacts batch, its item errors, rules, stops, rate limit and polls; the contact
read endpoint ``connector verify`` uses and the ``/_sandbox`` edit admin. Each test quotes the
document whose example or rule it replays."""

from __future__ import annotations

from typing import Any

import httpx

from connector.sandbox import Fault, JobFault, RateWindow, SandboxServer
from tests.conftest import SANDBOX_KEYS
from tests.helpers import sandbox_client
from tests.sandbox.test_klaviyo_profiles import client, make, sb
from tests.verify.test_verify import sandbox

__all__ = ["client", "sandbox", "sb"]  # fixtures used by name


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
    with server, sandbox_client(server.url) as client:
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


def test_the_sandbox_read_endpoints_and_the_edit_admin(sandbox: SandboxServer) -> None:
    with sandbox_client(sandbox.url) as client:
        omnisend = {
            "Authorization": f"Omnisend-API-Key {SANDBOX_KEYS['OMNISEND_API_KEY']}",
            "Omnisend-Version": "2026-03-15",
        }
        body = {"identifiers": [{"type": "email", "id": "A@example.com"}], "firstName": "A"}
        assert client.post("/api/contacts", json=body, headers=omnisend).status_code == 201
        r = client.get("/api/contacts", params={"email": "a@example.com"}, headers=omnisend)
        assert r.status_code == 200
        [contact] = r.json()["contacts"]
        assert contact["firstName"] == "A" and contact["updatedAt"]
        assert r.json()["paging"]["hasMore"] is False
        bad = client.get("/api/contacts", params={"limit": "0"}, headers=omnisend)
        assert bad.status_code == 400
        edit = {"identifier": "A@example.com", "changes": {"firstName": "B"}}
        r = client.post("/_sandbox/contacts/omnisend_contacts/edit", json=edit)
        assert r.status_code == 200 and r.json()["firstName"] == "B"
        assert r.json()["updatedAt"] >= contact["updatedAt"]
        gone = {"identifier": "A@example.com", "delete": True}
        assert client.post("/_sandbox/contacts/omnisend_contacts/edit", json=gone).json() == {}
        r = client.get("/api/contacts", params={"email": "a@example.com"}, headers=omnisend)
        assert r.json()["contacts"] == []
        r = client.post("/_sandbox/contacts/omnisend_contacts/edit", json=gone)
        assert r.status_code == 404
        assert client.post("/_sandbox/contacts/nope/edit", json=gone).status_code == 404
