"""List membership: finding profiles and removing them from a list, from the vendors' references.

Klaviyo (revision 2026-07-15; developers.klaviyo.com/en/reference):

- ``GET /api/profiles`` — get_profiles: ``filter`` "Allowed field(s)/operator(s): ``id``:
  ``any``, ``equals``; ``email``: ``any``, ``equals``; ``phone_number``: ``any``, ``equals``;
  ``external_id``: ``any``, ``equals``; ``_kx``: ``equals``" (plus time and suppression
  fields the sandbox does not serve: 400); syntax from the filtering guide,
  ``equals(email,"sarah.mason@klaviyo-demo.com")`` and ``any(email,["a@x.com","b@x.com"])``;
  ``page[size]`` "Default: 20. Min: 1. Max: 100.", cursor pages (``links.next``);
  ``fields[profile]`` sparse fieldsets. Burst 75/s, steady 750/m.
- ``DELETE /api/lists/{id}/relationships/profiles`` — remove_profiles_from_list: body
  ``{"data": [{"type": "profile", "id": ...}]}`` (ListMembersDeleteQuery), "This endpoint
  accepts a maximum of 1000 profiles per call", answers ``204``; "Removing a profile from a
  list will not impact the profile's consent status or subscription status in general."
  Burst 10/s, steady 150/m. An unknown list or profile id answers 404 [INF: the reference
  lists only ``4XX``].

Brevo (developers.brevo.com/reference):

- ``POST /v3/contacts/lists/{listId}/contacts/remove`` — remove-contact-from-list: body
  ``emails`` ("Required if 'all' is false and EXT_ID attributes, IDs are not passed ... a
  maximum of 150 emails"), ``ids`` (contact ids, "maximum of 150 Ids"), ``extIds`` (EXT_ID
  attributes, "maximum of 150 extIds") or ``all: true``; 201 ``{"contacts": {"success": [...],
  "failure": [...]}}`` ("All contacts have been removed successfully from the list with details
  of failed ones"); 400 ``{code, message}``; 404 for an unknown list. Which values fail is not
  documented [INF: a value naming no contact, or a contact not in the list]; with several
  kinds the sandbox reads ``emails``, else ``extIds``, else ``ids`` [INF]. ``all`` (an async
  process) is not implemented (400).
- ``GET /v3/contacts/{identifier}`` — get-contact-info: ``identifierType`` email_id |
  contact_id | ext_id | phone_id | whatsapp_id | landline_number_id; 200 with ``email``,
  ``id`` (long), ``emailBlacklisted``, ``smsBlacklisted``, ``attributes``, ``listIds``,
  ``createdAt`` and ``modifiedAt`` ("Last modification UTC date-time of the contact"); 404
  ``document_not_found`` when there is no such contact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode

import orjson

from connector.sandbox import brevo, klaviyo
from connector.sandbox._shared import Rejected, Reply, empty_reply, is_int, json_reply
from connector.sandbox.contacts import ContactStore, ProfileBook
from connector.sandbox.klaviyo_profiles import KIND as KLAVIYO
from connector.sandbox.klaviyo_profiles import (
    cursor_for,
    jsonapi_body,
    page_window,
    revision_error,
)

BREVO = "brevo_contacts"
MAX_LIST_REMOVE = 1000  # Klaviyo remove_profiles_from_list
MAX_BREVO_REMOVE = 150  # Brevo remove-contact-from-list, per array
FILTER_FIELDS = {
    "id": ("any", "equals"),
    "email": ("any", "equals"),
    "phone_number": ("any", "equals"),
    "external_id": ("any", "equals"),
    "_kx": ("equals",),
}
_CALL = re.compile(r"^\s*([a-z-]+)\(\s*([A-Za-z_.]+)\s*,\s*(.*)\)\s*$", re.S)
_QUOTED = re.compile(r"\s*(\"[^\"]*\"|'[^']*')\s*(,|$)")
IDENTIFIER_TYPES = (
    "email_id",
    "contact_id",
    "ext_id",
    "phone_id",
    "whatsapp_id",
    "landline_number_id",
)
_TYPE_ATTRIBUTE = {
    "ext_id": "EXT_ID",
    "phone_id": "SMS",
    "whatsapp_id": "WHATSAPP",
    "landline_number_id": "LANDLINE_NUMBER",
}


# --------------------------------------------------------------------------- Klaviyo


def _bad_filter(detail: str) -> Rejected:
    return Rejected(klaviyo.error(400, "invalid", "Invalid input.", detail, parameter="filter"))


def _values(raw: str) -> list[str]:
    """The quoted strings of ``"a"`` or ``["a","b"]``; Rejected when it is neither."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if not text.strip():
            raise _bad_filter("any() needs at least one value.")
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _QUOTED.match(text, pos)
        if m is None:
            raise _bad_filter("Filter values must be quoted strings.")
        out.append(m.group(1)[1:-1])
        pos = m.end()
    return out


def parse_filter(expr: str) -> tuple[str, list[str]]:
    """(field, values) of ``equals(field,"v")`` / ``any(field,["a","b"])``; Rejected for
    anything get_profiles does not allow."""
    m = _CALL.match(expr)
    if m is None:
        raise _bad_filter(f"Invalid filter: {expr[:100]}")
    op, name, rest = m.groups()
    allowed = FILTER_FIELDS.get(name)
    if allowed is None:
        raise _bad_filter(f"The sandbox filters profiles on {', '.join(FILTER_FIELDS)} only.")
    if op not in allowed:
        raise _bad_filter(f"{op} is not allowed on {name}; allowed: {', '.join(allowed)}.")
    values = _values(rest)
    if op == "equals" and (len(values) != 1 or rest.strip().startswith("[")):
        raise _bad_filter("equals() takes one value.")
    if op == "any" and not rest.strip().startswith("["):
        raise _bad_filter('any() takes a list: any(email,["a@example.com"]).')
    return name, values


def _matches(record: dict[str, Any], name: str, wanted: set[str]) -> bool:
    value = record.get(name)
    if not isinstance(value, str):
        return False
    return (value.lower() if name == "email" else value) in wanted


def profile_resource(record: dict[str, Any], base_url: str, fields: list[str] | None) -> Any:
    """A stored profile as get_profiles returns it (sparse when ``fields`` is given)."""
    attributes = {k: v for k, v in record.items() if k not in ("id", "lists")}
    if fields is not None:
        attributes = {k: v for k, v in attributes.items() if k in fields}
    return {
        "type": "profile",
        "id": record["id"],
        "attributes": attributes,
        "links": {"self": f"{base_url}/api/profiles/{record['id']}/"},
    }


def handle_get_profiles(
    query: Mapping[str, str], revision: str | None, store: ContactStore, base_url: str
) -> Reply:
    """``GET /api/profiles``: one cursor page of the stored profiles the filter selects."""
    problem = revision_error(revision)
    if problem is not None:
        return problem
    window = page_window(query)
    if isinstance(window, Reply):
        return window
    offset, size = window
    records = store.contacts(KLAVIYO)
    if "filter" in query:
        try:
            name, values = parse_filter(query["filter"])
        except Rejected as exc:
            return exc.reply
        wanted = {v.lower() if name == "email" else v for v in values}
        records = [r for r in records if _matches(r, name, wanted)]
    fields = query["fields[profile]"].split(",") if "fields[profile]" in query else None
    page = records[offset : offset + size]
    here = {k: v for k, v in query.items() if k != "page[cursor]"}
    links: dict[str, str | None] = {
        "self": f"{base_url}/api/profiles/?{urlencode(query)}",
        "next": f"{base_url}/api/profiles/?"
        + urlencode({**here, "page[cursor]": cursor_for(offset + size)})
        if offset + size < len(records)
        else None,
        "prev": f"{base_url}/api/profiles/?"
        + urlencode({**here, "page[cursor]": cursor_for(max(0, offset - size))})
        if offset > 0
        else None,
    }
    data = [profile_resource(r, base_url, fields) for r in page]
    return Reply(200, orjson.dumps({"data": data, "links": links}), klaviyo.JSONAPI)


def _list_not_found(list_id: str) -> Reply:
    return klaviyo.error(404, "not_found", "Not found.", f"A list with id {list_id} was not found.")


def handle_remove_from_list(
    list_id: str,
    body: bytes,
    content_type: str | None,
    revision: str | None,
    store: ContactStore,
) -> Reply:
    """``DELETE /api/lists/{id}/relationships/profiles``: take the profiles out of the list
    (nothing else about them changes); 204, or Klaviyo's error for the whole request."""
    payload = jsonapi_body(body, content_type, revision)
    if isinstance(payload, Reply):
        return payload
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or not data:
        return klaviyo.errors_reply(
            400, [klaviyo.invalid("/data", "data must be a non-empty array of profiles.")]
        )
    if len(data) > MAX_LIST_REMOVE:
        return klaviyo.errors_reply(
            400,
            [
                klaviyo.invalid(
                    "/data",
                    f"This endpoint accepts a maximum of {MAX_LIST_REMOVE} profiles per call; "
                    f"got {len(data)}.",
                )
            ],
        )
    ids: list[str] = []
    for i, ref in enumerate(data):
        if not isinstance(ref, dict) or ref.get("type") != "profile":
            return klaviyo.errors_reply(
                400, [klaviyo.invalid(f"/data/{i}/type", "type must be 'profile'.")]
            )
        if not isinstance(ref.get("id"), str) or not ref["id"]:
            return klaviyo.errors_reply(
                400, [klaviyo.invalid(f"/data/{i}/id", "id is required and must be a string.")]
            )
        ids.append(ref["id"])
    if not store.has_list(KLAVIYO, list_id):
        return _list_not_found(list_id)

    def remove(book: ProfileBook) -> str | None:
        records = []
        for pid in ids:
            try:
                records.append(book.get(pid))
            except KeyError:
                return pid
        for record in records:
            record["lists"] = [x for x in record.get("lists") or [] if x != list_id]
        return None

    unknown = store.apply_now(KLAVIYO, remove)
    if unknown is not None:
        return klaviyo.error(
            404, "not_found", "Not found.", f"A profile with id {unknown} was not found."
        )
    return empty_reply(204)


# --------------------------------------------------------------------------- Brevo


def _brevo_id(record_id: str) -> int:
    return int(record_id[2:])  # the store's "sb00000042" → 42 (Brevo ids are longs)


def _find_brevo(book: ProfileBook, kind: str, value: Any) -> dict[str, Any] | None:
    if kind == "emails":
        wanted = str(value).lower()
        for record in book.records():
            if isinstance(record.get("email"), str) and record["email"].lower() == wanted:
                return record
        return None
    if kind == "ids":
        try:
            return book.get(f"sb{int(value):08d}")
        except (KeyError, ValueError):
            return None
    for record in book.records():  # extIds
        if str((record.get("attributes") or {}).get("EXT_ID")) == str(value):
            return record
    return None


def _remove_values(payload: Any) -> tuple[str, list[Any]]:
    if not isinstance(payload, dict):
        raise Rejected(brevo.error(400, "bad_request", "Request body must be a JSON object"))
    for kind in ("emails", "extIds", "ids"):
        values = payload.get(kind)
        if values is None:
            continue
        ok = isinstance(values, list) and all(
            (is_int(v) and v > 0) if kind == "ids" else isinstance(v, str) for v in values
        )
        if not ok or not values:
            what = "contact ids (integers)" if kind == "ids" else "strings"
            raise Rejected(
                brevo.error(400, "invalid_parameter", f"{kind} must be a non-empty array of {what}")
            )
        if len(values) > MAX_BREVO_REMOVE:
            raise Rejected(
                brevo.error(
                    400,
                    "invalid_parameter",
                    f"You can pass a maximum of {MAX_BREVO_REMOVE} {kind} in one request",
                )
            )
        return kind, values
    if payload.get("all") is True:
        raise Rejected(
            brevo.error(400, "invalid_parameter", "The sandbox does not implement all: true")
        )
    raise Rejected(
        brevo.error(400, "missing_parameter", "One of emails, ids, extIds or all is required")
    )


def handle_brevo_remove(
    list_id: str, body: bytes, content_type: str | None, store: ContactStore
) -> Reply:
    """``POST /v3/contacts/lists/{listId}/contacts/remove``: 201 with the values removed
    (``success``) and those that were not (``failure``)."""
    if not list_id.isdigit():
        return brevo.error(400, "invalid_parameter", "listId must be an integer (long)")
    try:
        kind, values = _remove_values(brevo._parse(body, content_type))
    except Rejected as exc:
        return exc.reply
    if not store.has_list(BREVO, list_id):
        return brevo.error(404, "document_not_found", "List ID does not exist")
    number = int(list_id)

    def remove(book: ProfileBook) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"success": [], "failure": []}
        for value in values:
            record = _find_brevo(book, kind, value)
            if record is None or number not in record.get("listIds", []):
                out["failure"].append(value)
                continue
            record["listIds"] = [x for x in record["listIds"] if x != number]
            out["success"].append(value)
        return out

    return json_reply(201, {"contacts": store.apply_now(BREVO, remove)})


def handle_brevo_contact(identifier: str, query: Mapping[str, str], store: ContactStore) -> Reply:
    """``GET /v3/contacts/{identifier}``: the contact (with ``listIds``), or 404."""
    value = unquote(identifier)
    kind = query.get("identifierType")
    if kind is None:
        kind = "email_id" if "@" in value else "contact_id" if value.isdigit() else ""
    if kind not in IDENTIFIER_TYPES:
        return brevo.error(
            400,
            "invalid_parameter",
            "identifierType must be one of " + ", ".join(IDENTIFIER_TYPES),
        )

    def find(book: ProfileBook) -> dict[str, Any] | None:
        if kind == "email_id":
            found = _find_brevo(book, "emails", value)
        elif kind == "contact_id":
            found = _find_brevo(book, "ids", value) if value.isdigit() else None
        else:
            attribute = _TYPE_ATTRIBUTE[kind]
            found = next(
                (
                    r
                    for r in book.records()
                    if str((r.get("attributes") or {}).get(attribute)) == value
                ),
                None,
            )
        return None if found is None else dict(found)

    record = store.apply_now(BREVO, find)
    if record is None:
        return brevo.error(404, "document_not_found", "Contact does not exist")
    return json_reply(
        200,
        {
            "email": record.get("email"),
            "id": _brevo_id(record["id"]),
            "emailBlacklisted": record.get("emailBlacklisted", False),
            "smsBlacklisted": record.get("smsBlacklisted", False),
            "attributes": dict(record.get("attributes") or {}),
            "listIds": list(record.get("listIds") or []),
            "createdAt": record.get("createdAt"),
            "modifiedAt": record.get("modifiedAt"),
        },
    )
