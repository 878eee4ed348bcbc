"""Omnisend: v4 ``POST /v4/track`` (contracts §5.1), v5 ``POST /v5/events`` (§5.2) and the
dated API ``POST /api/events`` (§5.3, version 2026-03-15).

v4/v5 errors use the v3-style body ``{"error": str, "fields": {...}}`` (§5.2, [INF] for v4/v5).
The dated API answers RFC 9457 problem bodies (https://api-docs.omnisend.com/v2026-03-15/
reference/responses) and checks the contact schema of its published OpenAPI (``maxLength`` is
counted in characters, as JSON Schema defines it). v4 freezes property types per eventName in a
:class:`SchemaRegistry`; v5 and the dated API deduplicate on (eventID, eventTime) through the
dedup keys the server commits.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Any

import orjson

from connector.sandbox._shared import (
    JSON,
    Rejected,
    Reply,
    empty_reply,
    json_reply,
    non_empty_str,
    parse_json,
    parse_rfc3339,
)
from connector.sandbox.ratelimit import Decision

# §5.1: ≤ 100 properties, names of latin letters/digits/underscore ≤ 128, strings ≤ 2048.
MAX_PROPERTIES = 100
PROPERTY_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,128}")
MAX_STRING_CHARS = 2048
# §5.1: v4 contact selector; §5.2: v5 contact identifiers.
V4_CONTACT_KEYS = ("id", "email", "phoneNumber")
V5_CONTACT_KEYS = ("id", "email", "phone")
# §5.1: auto-detected types; YYYY-MM-DD is "date", RFC 3339 is "dateTime", then the seed's
# "email" ("string, email format") and "url" ("string, URL format", e.g. https://example.com/).
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL_RE = re.compile(r"https?://\S+")
# §5.2: eventID is a UUID string.
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

Errors = dict[str, str]  # field → message, in detection order; the first is the "error"


def error(status: int, message: str, fields: Errors | None = None) -> Reply:
    """An Omnisend v4/v5 error reply: ``{error, fields}`` with the given status."""
    return json_reply(status, {"error": message, "fields": fields or {}})


def _errors_reply(errors: Errors) -> Reply:
    return error(400, next(iter(errors.values())), errors)


def bearer_auth_error(authorization: str | None, tokens: Collection[str]) -> Reply | None:
    """§5.1: v4 takes ``Authorization: Bearer <token>`` only."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in tokens:
        return json_reply(401, {"error": "Unauthorized: missing or invalid Bearer token"})
    return None


def api_key_auth_error(api_key: str | None, keys: Collection[str]) -> Reply | None:
    """§5.2: v5 takes ``X-API-KEY: <key>``."""
    if api_key is None or api_key not in keys:
        return json_reply(401, {"error": "Unauthorized: missing or invalid X-API-KEY"})
    return None


def _parse(body: bytes, content_type: str | None) -> Any:
    payload = parse_json(
        body,
        content_type,
        ("application/json",),
        lambda got: error(400, f"Content-Type must be application/json, got {got!r}"),
        lambda: error(400, "Request body is not valid JSON"),
    )
    if not isinstance(payload, dict):
        raise Rejected(error(400, "Request body must be a JSON object"))
    return payload


def value_type(value: Any) -> str:
    """§5.1 type detection; bool before int because bool is an int in Python."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        if _DATE_RE.fullmatch(value):
            return "date"
        if parse_rfc3339(value) is not None:
            return "dateTime"
        if _EMAIL_RE.fullmatch(value):
            return "email"
        if _URL_RE.fullmatch(value):
            return "url"
        return "string"
    return "null" if value is None else type(value).__name__


class SchemaRegistry:
    """Per-eventName property types, frozen by the first accepted event (§5.1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schemas: dict[str, dict[str, str]] = {}

    def check_and_freeze(self, event_name: str, types: dict[str, str]) -> Errors:
        """Mismatches against the stored schema; when there are none, add the new properties."""
        with self._lock:
            schema = self._schemas.get(event_name, {})
            errors: Errors = {}
            for name, got in types.items():
                expected = schema.get(name)
                # An int into a float property is accepted; every other difference is not.
                if expected is None or expected == got or (expected, got) == ("float", "int"):
                    continue
                errors[f"properties.{name}"] = (
                    f"property '{name}' type mismatch: expected {expected}, got {got}"
                )
            if not errors:
                stored = self._schemas.setdefault(event_name, {})
                for name, got in types.items():
                    stored.setdefault(name, got)
            return errors

    def snapshot(self) -> dict[str, dict[str, str]]:
        """A copy of every frozen schema: event name → property → type."""
        with self._lock:
            return {name: dict(schema) for name, schema in self._schemas.items()}

    def clear(self) -> None:
        """Forget every frozen schema (``POST /_sandbox/reset``)."""
        with self._lock:
            self._schemas.clear()


def _contact_errors(contact: Any, keys: tuple[str, ...]) -> Errors:
    if not isinstance(contact, dict):
        return {"contact": "contact is required and must be an object"}
    present = [k for k in keys if contact.get(k) is not None]
    for key in present:
        if not non_empty_str(contact[key]):
            return {f"contact.{key}": f"contact.{key} must be a non-empty string"}
    if not present:
        # §5.2: anonymous events (no identifier) are rejected with 400.
        return {"contact": "contact must include at least one of " + ", ".join(keys)}
    return {}


def validate_track(payload: dict[str, Any]) -> tuple[Errors, dict[str, str]]:
    """Static §5.1 rules → (errors, property types to check against the frozen schema)."""
    errors: Errors = {}
    if not non_empty_str(payload.get("eventName")):
        errors["eventName"] = "eventName is required and must be a non-empty string"
    errors.update(_contact_errors(payload.get("contact"), V4_CONTACT_KEYS))
    properties = payload.get("properties")
    types: dict[str, str] = {}
    if properties is None:
        return errors, types
    if not isinstance(properties, dict):
        errors["properties"] = "properties must be an object"
        return errors, types
    if len(properties) > MAX_PROPERTIES:
        errors["properties"] = f"at most {MAX_PROPERTIES} properties are allowed"
    for name, value in properties.items():
        field = f"properties.{name}"
        if not PROPERTY_NAME_RE.fullmatch(name):
            errors[field] = (
                f"property name '{name}' must be 1-128 latin letters, digits or underscores"
            )
        elif isinstance(value, dict | list):
            errors[field] = f"property '{name}' must not be an object or array"
        elif value is None:
            # [INF] null is none of the §5.1 types; clients should omit the property.
            errors[field] = f"property '{name}' must not be null"
        elif isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            errors[field] = f"property '{name}' exceeds {MAX_STRING_CHARS} characters"
        else:
            types[name] = value_type(value)
    return errors, types


def handle_track(
    body: bytes,
    content_type: str | None,
    schemas: SchemaRegistry,
    *,
    validate: bool = True,
) -> Reply:
    """§5.1: 202 empty on success (success code undocumented; 202 chosen like v5)."""
    try:
        payload = _parse(body, content_type)
    except Rejected as exc:
        return exc.reply
    if not validate:
        return Reply(202, content_type=None, event_count=1, sink_count=1)
    errors, types = validate_track(payload)
    if not errors:
        errors = schemas.check_and_freeze(payload["eventName"], types)
    if errors:
        reply = _errors_reply(errors)
    else:
        reply = empty_reply(202)
        reply.events = [payload]
    reply.event_count = 1
    return reply


def validate_event(payload: dict[str, Any]) -> Errors:
    """§5.2 rules for one v5 event."""
    errors: Errors = {}
    if not non_empty_str(payload.get("eventName")):
        errors["eventName"] = "eventName is required and must be a non-empty string"
    if not non_empty_str(payload.get("origin")):
        errors["origin"] = "origin is required and must be a non-empty string"
    errors.update(_contact_errors(payload.get("contact"), V5_CONTACT_KEYS))
    event_id = payload.get("eventID")
    if event_id is not None and not (isinstance(event_id, str) and _UUID_RE.fullmatch(event_id)):
        errors["eventID"] = "eventID must be a UUID string"
    event_time = payload.get("eventTime")
    if event_time is not None and parse_rfc3339(event_time) is None:
        errors["eventTime"] = "eventTime must be an RFC 3339 date-time with offset"
    version = payload.get("eventVersion")
    if version is not None and not isinstance(version, str):
        errors["eventVersion"] = "eventVersion must be a string"
    properties = payload.get("properties")
    if properties is not None and not isinstance(properties, dict):
        errors["properties"] = "properties must be an object"
    return errors


def dedup_key(payload: dict[str, Any]) -> Hashable | None:
    """§5.2: same eventID *and* eventTime (exact strings) → processed once."""
    event_id, event_time = payload.get("eventID"), payload.get("eventTime")
    if event_id is None or event_time is None:
        return None  # the vendor fills a fresh id / "now", so nothing can repeat
    return (event_id, event_time)


def handle_events(body: bytes, content_type: str | None, *, validate: bool = True) -> Reply:
    """§5.2: 202 empty on success (duplicates too; the server records them once)."""
    try:
        payload = _parse(body, content_type)
    except Rejected as exc:
        return exc.reply
    if not validate:
        return Reply(202, content_type=None, event_count=1, sink_count=1)
    errors = validate_event(payload)
    if errors:
        reply = _errors_reply(errors)
    else:
        reply = empty_reply(202)
        reply.events = [payload]
        reply.dedup_keys = [dedup_key(payload)]
    reply.event_count = 1
    return reply


def rate_headers(decision: Decision) -> dict[str, str]:
    """§5.2: ``X-Rate-Limit-*`` on every response; reset = seconds left in the window."""
    window = decision.tightest
    return {
        "X-Rate-Limit-Limit": str(window.limit),
        "X-Rate-Limit-Remaining": str(window.remaining),
        "X-Rate-Limit-Reset": str(window.reset_s),
    }


def throttled(decision: Decision) -> Reply:
    """§5.2: 429 over the limit; no Retry-After documented."""
    reply = json_reply(429, {"error": "Too many requests"}, rate_headers(decision))
    reply.throttled = True
    return reply


def fault_body(status: int, reason: str) -> tuple[bytes, str]:
    """Omnisend v4/v5's ``{error}`` body for an injected ``status`` without its own body, with its
    content type."""
    return orjson.dumps({"error": reason}), JSON


# --------------------------------------------------------------------------- dated API (§5.3)

#: The versions the dated API accepts in ``Omnisend-Version`` (OpenAPI default 2026-03-15).
DATED_VERSIONS = ("2026-03-15",)
PROBLEM_TYPE = "https://problems.omnisend.com/"
# OpenAPI ``contactDto.Contact``: string maxLength (characters), list maxItems.
CONTACT_MAX_LENGTH = {
    "firstName": 50,
    "lastName": 50,
    "address": 500,
    "city": 100,
    "state": 100,
    "postalCode": 20,
    "country": 100,
    "countryCode": 3,
    "phone": 15,
}
CONTACT_MAX_ITEMS = {"tags": 100, "optIns": 10, "optOuts": 10, "consents": 100}
# eventTime: RFC 3339 or the space-separated "YYYY-MM-DD HH:MM:SS±HH:MM" (OpenAPI text).
_SPACED_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")

FieldError = dict[str, str]  # {field, code, message}


@dataclass(frozen=True)
class Versions:
    """The ``Omnisend-Version`` values the dated API serves (``supported``) and those it has
    retired (``retired``: answered 410 Gone, as the vendor answers a retired version;
    contracts-contacts.md). Any other value, or none, is a 400 problem without field
    errors."""

    supported: tuple[str, ...] = DATED_VERSIONS
    retired: tuple[str, ...] = ()

    def error(self, version: str | None) -> Reply | None:
        """The problem reply for a missing, unsupported or retired version; None when it is
        served."""
        if version is None:
            return problem(
                400, "Bad request", "The Omnisend-Version header is required", "bad-request"
            )
        if version in self.retired:
            return problem(
                410,
                "Gone",
                f"API version {version} was retired; use one of: " + ", ".join(self.supported),
                "gone",
            )
        if version not in self.supported:
            return problem(
                400,
                "Bad request",
                f"Unsupported Omnisend-Version {version!r}; supported: "
                + ", ".join(self.supported),
                "bad-request",
            )
        return None


DEFAULT_VERSIONS = Versions()


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An RFC 9457 body ``{type, title, status, detail, instance}`` (+ ``errors`` on 400)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": f"urn:omnisend:request:{uuid.uuid4()}",
    }
    if errors is not None:
        body["errors"] = errors
    return json_reply(status, body, headers)


def dated_auth_error(
    authorization: str | None, keys: Collection[str], tokens: Collection[str]
) -> Reply | None:
    """``Authorization: Omnisend-API-Key <key>`` or OAuth ``Authorization: Bearer <token>``: the
    OpenAPI (2026-03-15) lists ``security: [{Bearer: [...]}, {ApiKeyAuth: []}]`` on every
    operation, either scheme."""
    scheme, _, credential = (authorization or "").partition(" ")
    if (scheme == "Omnisend-API-Key" and credential in keys) or (
        scheme.lower() == "bearer" and credential in tokens
    ):
        return None
    return problem(
        401,
        "Unauthorized",
        "Missing or invalid authentication: send Authorization: Omnisend-API-Key <key> or "
        "Authorization: Bearer <token>",
        "unauthorized",
    )


def _field(field: str, code: str, message: str) -> FieldError:
    return {"field": field, "code": code, "message": message}


def _dated_contact_errors(contact: Any) -> list[FieldError]:
    if contact is None:
        return [_field("contact", "required", "contact is required")]
    if not isinstance(contact, dict):
        return [_field("contact", "invalid_format", "contact must be an object")]
    out: list[FieldError] = []
    if not any(non_empty_str(contact.get(k)) for k in V5_CONTACT_KEYS):
        out.append(
            _field("contact", "required", "contact needs at least one of id, email or phone")
        )
    for key, limit in CONTACT_MAX_LENGTH.items():
        value = contact.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            out.append(_field(f"contact.{key}", "invalid_format", f"{key} must be a string"))
        elif len(value) > limit:  # JSON Schema maxLength counts characters, not bytes
            out.append(
                _field(f"contact.{key}", "max_length", f"Must be at most {limit} characters")
            )
    for key, limit in CONTACT_MAX_ITEMS.items():
        value = contact.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            out.append(_field(f"contact.{key}", "invalid_format", f"{key} must be an array"))
        elif len(value) > limit:
            out.append(_field(f"contact.{key}", "max_items", f"Must have at most {limit} items"))
        elif key == "tags" and not all(isinstance(t, str) for t in value):
            out.append(_field("contact.tags", "invalid_format", "tags must be strings"))
    birthdate = contact.get("birthdate")
    if birthdate is not None and not (isinstance(birthdate, str) and _DATE_RE.fullmatch(birthdate)):
        out.append(_field("contact.birthdate", "invalid_format", "Format: YYYY-MM-DD"))
    gender = contact.get("gender")
    if gender is not None and gender not in ("m", "f"):
        out.append(_field("contact.gender", "invalid_format", "gender must be m or f"))
    custom = contact.get("customProperties")
    if custom is not None and not isinstance(custom, dict):
        out.append(_field("contact.customProperties", "invalid_format", "must be an object"))
    return out


def validate_dated_event(payload: dict[str, Any]) -> list[FieldError]:
    """Every invalid field at once ("the API does not stop at the first failure")."""
    out: list[FieldError] = []
    if not non_empty_str(payload.get("eventName")):
        out.append(_field("eventName", "required", "eventName is required"))
    if not non_empty_str(payload.get("origin")):  # "Every event requires origin"
        out.append(_field("origin", "required", "origin is required"))
    out.extend(_dated_contact_errors(payload.get("contact")))
    event_id = payload.get("eventID")
    if event_id is not None and not (isinstance(event_id, str) and _UUID_RE.fullmatch(event_id)):
        out.append(_field("eventID", "invalid_format", "eventID must be a UUID"))
    event_time = payload.get("eventTime")
    if event_time is not None and not (
        parse_rfc3339(event_time) is not None
        or (isinstance(event_time, str) and _SPACED_TIME_RE.fullmatch(event_time))
    ):
        out.append(
            _field(
                "eventTime",
                "invalid_format",
                "eventTime must be RFC 3339 or YYYY-MM-DD HH:MM:SS±HH:MM",
            )
        )
    version = payload.get("eventVersion")
    if version is not None and not isinstance(version, str):
        out.append(_field("eventVersion", "invalid_format", "eventVersion must be a string"))
    properties = payload.get("properties")
    if properties is not None and not isinstance(properties, dict):
        out.append(_field("properties", "invalid_format", "properties must be an object"))
    return out


def handle_dated_events(
    body: bytes,
    content_type: str | None,
    version: str | None,
    *,
    validate: bool = True,
    versions: Versions = DEFAULT_VERSIONS,
) -> Reply:
    """§5.3: 202 empty on success; RFC 9457 problems otherwise."""
    bad = versions.error(version)
    if bad is not None:
        return bad
    try:
        payload = parse_json(
            body,
            content_type,
            ("application/json",),
            lambda got: problem(
                400,
                "Bad request",
                f"Content-Type must be application/json, got {got!r}",
                "bad-request",
            ),
            lambda: problem(400, "Bad request", "Request body is not valid JSON", "bad-request"),
        )
    except Rejected as exc:
        return exc.reply
    if not isinstance(payload, dict):
        return problem(400, "Bad request", "Request body must be a JSON object", "bad-request")
    if not validate:
        return Reply(202, content_type=None, event_count=1, sink_count=1)
    errors = validate_dated_event(payload)
    if errors:
        reply = problem(
            400,
            "Validation failed",
            "One or more fields are invalid.",
            "validation-failed",
            errors,
        )
    else:
        reply = empty_reply(202)
        reply.events = [payload]
        reply.dedup_keys = [dedup_key(payload)]
    reply.event_count = 1
    return reply


def dated_throttled(decision: Decision) -> Reply:
    """429 as a problem body, with the ``X-Rate-Limit-*`` headers."""
    reply = problem(
        429,
        "Too many requests",
        "Rate limit exceeded",
        "rate-limited",
        headers=rate_headers(decision),
    )
    reply.throttled = True
    return reply


def dated_fault_body(status: int, reason: str) -> tuple[bytes, str]:
    """The dated API's RFC 9457 problem body for an injected ``status`` without its own body, with
    its content type."""
    return problem(status, reason, reason, reason.lower().replace(" ", "-")).body, JSON
