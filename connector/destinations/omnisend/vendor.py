"""Omnisend: what its event endpoints share, for ``omnisend_track`` (v4, sunsets 2027-06-15)
and ``omnisend_events`` (the dated API and v5). A vendor module: endpoint modules import it,
never each other, so removing v4 touches no other endpoint.

Rate limit, https://api-docs.omnisend.com/reference/rate-limit-timeouts-errors: 400 requests
per minute per store. Error bodies: v3/v4/v5 ``{error, fields}``; the dated API RFC 9457
problem bodies ``{type, title, status, detail, instance, errors?}``
(https://api-docs.omnisend.com/v2026-03-15/reference/responses).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ...core.options import RateLimit
from ...model.events import Events
from ..answers import About, judge
from ..base import Vendor

VENDOR = Vendor(name="omnisend", title="Omnisend")

# Omnisend's account limit (v3/v5 docs); the first `per_second` smooths bursts so the minute
# window is spent evenly (7/s ≈ 420/min, so the minute window stays the binding one).
OMNISEND_RATE = RateLimit(per_second=7, per_minute=400, per_hour=None)


# The dated API's two security schemes (OpenAPI 2026-03-15, on every operation, either one):
# ``ApiKeyAuth`` "Value format: 'Omnisend-API-Key {api-key}'" and OAuth 2.0 ``Bearer``.
AUTH_SCHEMES = {"api_key": "Omnisend-API-Key", "bearer": "Bearer"}
AUTH_HELP = (
    "Authorization scheme of the dated API: api_key sends 'Omnisend-API-Key <key>' (a store's "
    "API key), bearer sends 'Bearer <token>' (an OAuth 2.0 access token, as v4 apps use); "
    "destination.api_key names the variable holding either."
)


def omnisend_headers(api_key: str, version: str, auth: str = "api_key") -> dict[str, str]:
    """JSON request headers of the dated API: ``Authorization`` (``Omnisend-API-Key <key>``, or
    ``Bearer <token>`` with ``auth: bearer``) and the ``Omnisend-Version`` it speaks."""
    return {
        "Authorization": f"{AUTH_SCHEMES[auth]} {api_key}",
        "Omnisend-Version": version,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def omnisend_message(status: int, body: bytes) -> str:
    """``{"error": ..., "fields": {...}}`` → one line (or an excerpt of a non-JSON body)."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        fields = data.get("fields")
        detail = ""
        if isinstance(fields, dict) and fields:
            detail = " (" + "; ".join(f"{k}: {v}" for k, v in list(fields.items())[:5]) + ")"
        return f"{data['error']}{detail}"
    return body[:200].decode("utf-8", "replace") or f"HTTP {status}"


def omnisend_about_request(status: int, body: bytes) -> bool:
    """Whether an Omnisend error answer is about the request (``answers.judge``): both of its
    formats have a place for the event's fields — the dated API's RFC 9457 ``errors[]``
    (``{field, code, message}``), v3/v4/v5's ``fields`` — so an error naming no field is
    about the request (the version header, auth, the media type, JSON syntax), whatever its
    words; a body that is neither format is read by its words."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        text = body[:200].decode("utf-8", "replace")
        return judge(status, text, item_detail=False, detail_format=False) is About.REQUEST
    errors, fields = data.get("errors"), data.get("fields")
    item_detail = (isinstance(errors, list) and bool(errors)) or (
        isinstance(fields, dict) and bool(fields)
    )
    text = str(data.get("detail") or data.get("error") or data.get("message") or "")
    return judge(status, text, item_detail=item_detail) is About.REQUEST


def identifier_values(events: Events, fields: tuple[str, ...]) -> dict[str, list[Any]]:
    """The identifier columns among ``fields`` that the events have, as Python lists by name."""
    return {f: events.identifiers[f].to_pylist() for f in fields if f in events.identifiers}


def problem_message(status: int, body: bytes) -> str | None:
    """An RFC 9457 problem body → "title: detail (field: message; ...)", or None when the body
    is not one (then the v5 ``{error, fields}`` reading applies)."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not (data.get("detail") or data.get("title")):
        return None
    return problem_text(data)


def problem_text(data: Mapping[str, Any]) -> str:
    """An RFC 9457 problem (parsed) → "title: detail (field: message; ...)", as the event
    and the contact endpoints of the dated API both report it."""
    text = ": ".join(str(x) for x in (data.get("title"), data.get("detail")) if x)
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        parts = [
            f"{e.get('field')}: {e.get('message') or e.get('code')}"
            for e in errors[:5]
            if isinstance(e, dict)
        ]
        text += " (" + "; ".join(parts) + ")"
    return text


def contact_identifier_collisions(
    mapping: Mapping[str, Any], identifier_fields: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Mapped contact properties whose name is one of the contact identifiers."""
    out: list[tuple[str, str]] = []
    contact = mapping.get("contact_properties")
    if isinstance(contact, dict):
        for name in contact:
            if str(name).split(".")[0] in identifier_fields:
                out.append(
                    (
                        f"mapping.contact_properties.{name}",
                        "collides with a contact identifier; map it under identifiers",
                    )
                )
    return out
