"""List membership in the sandbox (``sandbox.contact_lists``), against the vendors' own
documents, over real HTTP on loopback: Klaviyo's get_profiles filters and its removal of
profiles from a list, Brevo's removal of contacts from a list and its get-contact-info by
identifier type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connector.sandbox import SandboxServer
from tests.helpers import sandbox_client
from tests.sandbox.test_brevo_contacts import ACCOUNT, BREVO, finish, start_import
from tests.sandbox.test_klaviyo_profiles import KLAVIYO, client, job_body, make, poll, sb, start_job

__all__ = ["client", "sb"]  # fixtures used by name


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
    with sandbox_client(esb.url) as c:
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
    with sandbox_client(esb.url) as c:
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
