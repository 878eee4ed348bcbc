"""Klaviyo: what its endpoints share (auth, revision header, profile attributes), for
``klaviyo_bulk_events`` (and later profile endpoints). A vendor module: endpoint modules import
it, never each other.

From https://developers.klaviyo.com/en/reference/api_overview (auth and the ``revision``
header) and the profile object of the OAS (rev 2026-07-15): identifiers and standard attributes
are strings, ``location`` an object of strings (latitude/longitude string or number), phone
numbers E.164.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ...model.jsonfrag import text_fragment
from ..answers import About, judge
from ..base import Vendor

VENDOR = Vendor(name="klaviyo", title="Klaviyo")

E164 = r"^\+[1-9]\d{1,14}$"

# Profile identifiers sent as attributes (``id`` is the Klaviyo profile id, sent beside them).
PROFILE_IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
# Standard profile attributes (OAS: nullable strings); every other contact property goes to
# attributes.properties.
PROFILE_STRINGS = ("first_name", "last_name", "organization", "locale", "title", "image")
# ProfileLocation: strings, except latitude/longitude (string or number).
LOCATION_FIELDS = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)


def klaviyo_headers(api_key: str, revision: str) -> dict[str, str]:
    """JSON:API request headers: the private key and the API revision."""
    return {
        "Authorization": f"Klaviyo-API-Key {api_key}",
        "revision": revision,
        "Content-Type": "application/vnd.api+json",
        "Accept": "application/vnd.api+json",
    }


def profile_key_problem(key: str) -> str | None:
    """Why a contact property name cannot be sent as mapped (config time), else None."""
    head, _, rest = key.partition(".")
    if key in PROFILE_IDENTIFIERS:
        return f"{key} is a Klaviyo profile identifier: map it under mapping.identifiers"
    if head == "location":
        if not rest:
            return "map each location field on its own, e.g. location.city: city_column"
        if rest not in LOCATION_FIELDS:
            return "not a Klaviyo location field; expected location.<one of " + (
                ", ".join(LOCATION_FIELDS) + ">"
            )
    elif head in PROFILE_STRINGS and rest:
        return f"{head} is a string attribute of the profile; it cannot hold nested fields"
    return None


_NUMBER = re.compile(rb"\s*-?[0-9]")


def is_coordinate(name: str) -> bool:
    """``location.latitude`` / ``location.longitude``: OAS ``oneOf [string, number]``."""
    return name in ("location.latitude", "location.longitude")


def standard_fragment(name: str, frag: bytes) -> bytes | None:
    """A standard profile attribute's JSON by the string-field rule (the OAS types them all as
    strings): a number or boolean as its text, a coordinate's number as is; None for an object
    or an array (a reject)."""
    if is_coordinate(name) and _NUMBER.match(frag):
        return frag.strip()
    return text_fragment(frag)


def jsonapi_about_request(status: int, body: bytes) -> bool:
    """Whether a Klaviyo JSON:API error answer about one profile is about the request
    (``answers.judge``): ``source.header`` / ``source.parameter`` point at the request, a
    ``source.pointer`` into ``/data/attributes`` at the profile; an error that points at
    neither is about the request, whatever its words (JSON:API errors say where they are)."""
    try:
        doc: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    sources = [e.get("source") if isinstance(e.get("source"), dict) else {} for e in errors]
    request = any(src.get("header") or src.get("parameter") for src in sources)
    items = any(str(src.get("pointer") or "").startswith("/data/attributes") for src in sources)
    text = "; ".join(str(e.get("detail") or e.get("title") or "") for e in errors)
    about = judge(status, text, item_detail=items, request_detail=request)
    return about is About.REQUEST
