"""Each vendor's documented read endpoint for one contact, and the fields a profile payload
sets, both flattened to dotted paths (``properties.plan``, ``attributes.PLAN``,
``customProperties.plan``) so ``run`` compares them field by field.

- Klaviyo ``GET /api/profiles`` (get_profiles, revision 2026-07-15): ``filter`` allows
  ``equals`` on ``email``, ``phone_number``, ``external_id`` and ``id``; the profile's read-only
  ``updated`` is its last change.
- Brevo ``GET /v3/contacts/{identifier}`` (get-contact-info) with ``identifierType``
  (``email_id``, ``ext_id``, ``phone_id``, ...); 404 ``document_not_found`` when there is no
  such contact; ``modifiedAt`` is its last change.
- Omnisend ``GET /api/contacts?email=`` (or ``phone=``), API 2026-03-15 (List contacts);
  ``updatedAt`` is the contact's last change.

Event destinations: ``EVENTS_CANNOT`` says per destination why a sent event is not read back
(docs/verify.md, "Events").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from ..core.options import DestinationSettings
from ..destinations.brevo.contacts import IDENTIFIER_TYPES as BREVO_TYPES
from ..destinations.contact_endpoint import ContactDestination, json_object, request_error

Dest = ContactDestination[DestinationSettings]


@dataclass
class Found:
    """A contact as the vendor holds it: its fields flattened, and when it last changed."""

    fields: dict[str, Any]
    updated: datetime | None


class Unreadable(Exception):
    """This contact cannot be looked up (no identifier the read endpoint filters on)."""


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [2]}`` → ``{"a.b": 1, "c": [2]}`` (lists are values)."""
    out: dict[str, Any] = {}
    for name, value in doc.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 / RFC 3339 time as the vendors write it, in UTC (None if it is not one)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --------------------------------------------------------------------------- Klaviyo

KLAVIYO_FILTERS = ("email", "external_id", "phone_number", "id")


def klaviyo_sent(payload: bytes) -> dict[str, Any]:
    """The fields a bulk-import profile sets: its ``attributes``."""
    doc = orjson.loads(payload)
    return flatten(doc.get("attributes") or {})


def klaviyo_read(dest: Dest, identifiers: Mapping[str, str]) -> Found | None:
    """get_profiles filtered by the first identifier the row has."""
    name = next((n for n in KLAVIYO_FILTERS if identifiers.get(n)), None)
    if name is None:
        raise Unreadable("no email, external_id, phone_number or id to filter profiles by")
    value = identifiers[name]
    if '"' in value:
        raise Unreadable(f"its {name} holds a double quote, which a filter value cannot")
    resp = dest.call(
        "GET", "/api/profiles", params={"filter": f'equals({name},"{value}")', "page[size]": 1}
    )
    if resp.status_code != 200:
        raise request_error("GET /api/profiles", resp, (value,))
    data = json_object(resp, "GET /api/profiles").get("data") or []
    if not data or not isinstance(data[0], dict):
        return None
    attributes = data[0].get("attributes") or {}
    return Found(flatten(attributes), parse_time(attributes.get("updated")))


# --------------------------------------------------------------------------- Brevo


def brevo_sent(payload: bytes) -> dict[str, Any]:
    """The fields an import's ``jsonBody`` item sets: ``email`` and its ``attributes``."""
    return flatten(orjson.loads(payload))


def brevo_read(dest: Dest, identifiers: Mapping[str, str]) -> Found | None:
    """get-contact-info by the first identifier the row has, with its ``identifierType``."""
    name = next((n for n in BREVO_TYPES if identifiers.get(n)), None)
    if name is None:
        raise Unreadable("no identifier get-contact-info finds a contact by")
    value = identifiers[name]
    what = "GET /v3/contacts/{identifier}"
    resp = dest.call(
        "GET", "/v3/contacts/" + quote(value, safe=""), params={"identifierType": BREVO_TYPES[name]}
    )
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise request_error(what, resp, (value,))
    doc = json_object(resp, what)
    held = {"email": doc.get("email"), "attributes": doc.get("attributes") or {}}
    return Found(flatten(held), parse_time(doc.get("modifiedAt")))


# --------------------------------------------------------------------------- Omnisend

#: Set by the vendor, not by the payload: Omnisend keeps a sent ``createdAt`` as the custom
#: property ``externalCreated``.
_OMNISEND_SKIP = frozenset({"createdAt"})


def omnisend_sent(payload: bytes) -> dict[str, Any]:
    """The fields a ContactRequest sets; its identifiers as ``email`` / ``phone``."""
    doc = orjson.loads(payload)
    identifiers = doc.pop("identifiers", None) or []
    out = {k: v for k, v in flatten(doc).items() if k not in _OMNISEND_SKIP}
    for ident in identifiers:
        out[str(ident.get("type"))] = ident.get("id")
    return out


def omnisend_read(dest: Dest, identifiers: Mapping[str, str]) -> Found | None:
    """List contacts filtered by e-mail (else phone)."""
    name = next((n for n in ("email", "phone") if identifiers.get(n)), None)
    if name is None:
        raise Unreadable("no email or phone to list contacts by")
    value = identifiers[name]
    resp = dest.call("GET", "/api/contacts", params={name: value, "limit": 1})
    if resp.status_code != 200:
        raise request_error("GET /api/contacts", resp, (value,))
    contacts = json_object(resp, "GET /api/contacts").get("contacts") or []
    if not contacts or not isinstance(contacts[0], dict):
        return None
    return Found(flatten(contacts[0]), parse_time(contacts[0].get("updatedAt")))


@dataclass(frozen=True)
class VendorRead:
    """How ``verify`` reads one contact destination back."""

    endpoint: str  # for the report and the docs
    sent: Callable[[bytes], dict[str, Any]]
    read: Callable[[Dest, Mapping[str, str]], Found | None]


READERS: dict[str, VendorRead] = {
    "klaviyo_profiles": VendorRead(
        'GET /api/profiles?filter=equals(<identifier>,"...")', klaviyo_sent, klaviyo_read
    ),
    "brevo_contacts": VendorRead(
        "GET /v3/contacts/{identifier}?identifierType=...", brevo_sent, brevo_read
    ),
    "omnisend_contacts": VendorRead(
        "GET /api/contacts?email=... (API 2026-03-15)", omnisend_sent, omnisend_read
    ),
}

#: Why ``verify`` does not read sent events back, per event destination (docs/verify.md).
EVENTS_CANNOT: dict[str, str] = {
    "klaviyo_bulk_events": (
        "Klaviyo's get_events filters by metric_id, profile_id, datetime and timestamp only, "
        "not by the event's unique_id, and returns no unique_id: finding one sent event means "
        "resolving its profile and metric, then scanning a time window for matching "
        "properties. This version does not do that"
    ),
    "brevo_event": (
        "Brevo's GET /v3/events lists custom events by contact_id, event_name and a date range, "
        "with no event id: a sent event cannot be told apart from another with the same name "
        "and time. This version does not read them back"
    ),
    "brevo_events_batch": "as brevo_event: GET /v3/events has no event id to find one by",
    "brevo_tracker": (
        "the tracker's events are not listed by any documented read endpoint of the tracker "
        "API, and GET /v3/events has no event id"
    ),
    "omnisend_events": (
        "Omnisend documents no endpoint that reads events back (its Events API has POST "
        "/events only; the Event Metadata API lists event names, not events)"
    ),
    "omnisend_track": "Omnisend documents no endpoint that reads events back",
}


def cannot(dest_type: str) -> str:
    """Why a destination type cannot be verified ('' when it can)."""
    if dest_type in READERS:
        return ""
    return EVENTS_CANNOT.get(dest_type, f"{dest_type} has no documented read endpoint here")


__all__ = ["EVENTS_CANNOT", "READERS", "Found", "Unreadable", "VendorRead"]
