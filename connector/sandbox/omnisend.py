"""Omnisend: v4 ``POST /v4/track`` (contracts §5.1) and v5 ``POST /v5/events`` (§5.2).

Errors use the v3-style body ``{"error": str, "fields": {...}}`` (§5.2, [INF] for v4/v5).
v4 freezes property types per eventName in a :class:`SchemaRegistry`; v5 deduplicates on
(eventID, eventTime) through the dedup keys the server commits.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Hashable
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
# §5.1: auto-detected types; YYYY-MM-DD is "date", RFC 3339 is "dateTime".
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# §5.2: eventID is a UUID string.
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

Errors = dict[str, str]  # field → message, in detection order; the first is the "error"


def error(status: int, message: str, fields: Errors | None = None) -> Reply:
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
        with self._lock:
            return {name: dict(schema) for name, schema in self._schemas.items()}

    def clear(self) -> None:
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
    return orjson.dumps({"error": reason}), JSON
