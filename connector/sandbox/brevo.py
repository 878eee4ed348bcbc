"""Brevo: ``POST /v3/events`` (contracts §2), ``POST /v3/events/batch`` (§3) and the legacy
tracker ``POST /api/v2/trackEvent`` (§4). Validation is pure: body in, :class:`Reply` out."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

from connector.sandbox._shared import (
    JSON,
    Rejected,
    Reply,
    empty_reply,
    is_int,
    json_reply,
    json_type,
    non_empty_str,
    parse_json,
    parse_rfc3339,
)
from connector.sandbox.ratelimit import Decision

# §2: event_name ≤ 255 chars of letters, digits, '-' and '_' (regex itself is [INF]).
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
# §2: event_properties keys ≤ 255 chars, letters/digits/'-'/'_'.
PROPERTY_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
# §2: at least one identifier; contact_id is an int64, the others strings.
IDENTIFIER_KEYS = (
    "contact_id",
    "email_id",
    "ext_id",
    "phone_id",
    "whatsapp_id",
    "landline_number_id",
)
# §2 / §3.2: event_properties ≤ 50 KB (measured as the encoded JSON).
MAX_EVENT_PROPERTIES_BYTES = 50 * 1024
# §3.2: ≤ 200 events and ≤ 512 KB per batch request.
MAX_BATCH_EVENTS = 200
MAX_BATCH_BYTES = 512 * 1024
# §3.3: the 202 message.
BATCH_ACCEPTED = "Batch accepted. Valid events have been added to the processing queue."
# §3.1: the Go decoder message for an array posted where the object wrapper is expected.
_GO_BATCH_OBJECT = "main.unifiedEventsRequest"
_GO_BATCH_ARRAY = "[]main.unifiedEvent"

Problem = tuple[str, str]  # (code, message); messages carry no values so they group


def error(status: int, code: str, message: str) -> Reply:
    """§1: every Brevo error body is ``{code, message}``."""
    return json_reply(status, {"code": code, "message": message})


def auth_error(presented: str | None, keys: Collection[str]) -> Reply | None:
    """§10: missing or wrong key → 401 ``{"code":"unauthorized","message":"Key not found"}``."""
    if presented is None or presented not in keys:
        return error(401, "unauthorized", "Key not found")
    return None


def _parse(body: bytes, content_type: str | None) -> Any:
    # §10: non-JSON content type or body → 400 bad_request.
    return parse_json(
        body,
        content_type,
        ("application/json",),
        lambda got: error(
            400, "bad_request", f"Content-Type must be application/json, not {got!r}"
        ),
        lambda: error(400, "bad_request", "Request body is not valid JSON"),
    )


def validate_event(event: Any) -> Problem | None:
    """The first §2 rule an event breaks, or None when it is valid."""
    if not isinstance(event, dict):
        return "invalid_parameter", "event must be a JSON object"
    name = event.get("event_name")
    if name is None:
        return "missing_parameter", "event_name is required"
    if not isinstance(name, str) or not EVENT_NAME_RE.fullmatch(name):
        return "invalid_parameter", "event_name must be 1-255 characters among A-Z a-z 0-9 _ -"
    identifiers = event.get("identifiers")
    if identifiers is None:
        return "missing_parameter", "identifiers is required"
    if not isinstance(identifiers, dict):
        return "invalid_parameter", "identifiers must be an object"
    present = [k for k in IDENTIFIER_KEYS if identifiers.get(k) is not None]
    if not present:
        return "missing_parameter", "identifiers must contain at least one of " + ", ".join(
            IDENTIFIER_KEYS
        )
    for key in present:
        value = identifiers[key]
        if key == "contact_id":
            if not is_int(value):
                return "invalid_parameter", "identifiers.contact_id must be an integer"
        elif not isinstance(value, str):
            return "invalid_parameter", f"identifiers.{key} must be a string"
    date = event.get("event_date")
    if date is not None and parse_rfc3339(date) is None:
        return (
            "invalid_parameter",
            "event_date must be an RFC 3339 date-time with offset, e.g. 2024-01-24T17:39:57+01:00",
        )
    contact_properties = event.get("contact_properties")
    if contact_properties is not None and not isinstance(contact_properties, dict):
        return "invalid_parameter", "contact_properties must be an object"
    properties = event.get("event_properties")
    if properties is not None:
        if not isinstance(properties, dict):
            return "invalid_parameter", "event_properties must be an object"
        if not all(PROPERTY_KEY_RE.fullmatch(k) for k in properties):
            return (
                "invalid_parameter",
                "event_properties keys must be 1-255 characters among A-Z a-z 0-9 _ -",
            )
        if any(v is None for v in properties.values()):
            return "invalid_parameter", "event_properties values must not be null"
        if len(orjson.dumps(properties)) > MAX_EVENT_PROPERTIES_BYTES:
            return "out_of_range", "event_properties must not exceed 50 KB"
    linked = event.get("object")
    if linked is not None and not isinstance(linked, dict):
        return "invalid_parameter", "object must be an object"
    return None


# The OpenAPI of both endpoints types each event property as ``oneOf [string, integer, boolean,
# object (additionalProperties: "Any type"), array (items: "Any type")]`` (the batch item's union
# lacks boolean, and both lack number, which the description lists: "string, number, boolean
# (true/false), date" — spec drift, so floats and booleans are taken). Arrays and anything nested
# are allowed; only a top-level null is none of these types.


def handle_event(body: bytes, content_type: str | None, *, validate: bool = True) -> Reply:
    """§2: one event → 204 empty, or 400 ``{code,message}``."""
    try:
        payload = _parse(body, content_type)
    except Rejected as exc:
        return exc.reply
    if not validate:
        return Reply(204, content_type=None, event_count=1, sink_count=1)
    if not isinstance(payload, dict):
        return error(
            400,
            "bad_request",
            f"json: cannot unmarshal {json_type(payload)} into Go value of type "
            "main.createEventRequest",
        )
    problem = validate_event(payload)
    if problem is not None:
        reply = error(400, *problem)
        reply.event_count = 1
        return reply
    reply = empty_reply(204)
    reply.events = [payload]
    reply.event_count = 1
    return reply


def _batch_events(payload: Any, shapes: frozenset[str]) -> list[Any]:
    """The event list of a batch body, or Rejected with the Go decoder's 400 (§3.1)."""
    if isinstance(payload, list):
        if "array" in shapes:
            events = payload
            item_type = "main.unifiedEvent"
            where = "Go value of type"
        else:
            raise Rejected(
                error(
                    400,
                    "bad_request",
                    f"json: cannot unmarshal array into Go value of type {_GO_BATCH_OBJECT}",
                )
            )
    elif isinstance(payload, dict) and "object" in shapes:
        raw = payload.get("events")
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise Rejected(
                error(
                    400,
                    "bad_request",
                    f"json: cannot unmarshal {json_type(raw)} into Go struct field "
                    f"unifiedEventsRequest.events of type {_GO_BATCH_ARRAY}",
                )
            )
        events = raw
        item_type = "main.unifiedEvent"
        where = "Go struct field unifiedEventsRequest.events of type"
    elif payload is None:
        return []  # Go decodes null into an empty request
    else:
        target = _GO_BATCH_OBJECT if "object" in shapes else _GO_BATCH_ARRAY
        raise Rejected(
            error(
                400,
                "bad_request",
                f"json: cannot unmarshal {json_type(payload)} into Go value of type {target}",
            )
        )
    for item in events:
        if not isinstance(item, dict):
            # Go fails the whole decode when an element is not an object.
            raise Rejected(
                error(
                    400,
                    "bad_request",
                    f"json: cannot unmarshal {json_type(item)} into {where} {item_type}",
                )
            )
    return events


#: An event name the account has not enabled (``SandboxOptions.disabled_event_names``).
DISABLED_EVENT = "event_name is not enabled on this account"


def handle_batch(
    body: bytes,
    content_type: str | None,
    *,
    shapes: frozenset[str] = frozenset({"array"}),
    validate: bool = True,
    disabled: frozenset[str] = frozenset(),
) -> Reply:
    """§3: 202 all valid, 207 some valid (stored, not rolled back), 400 none valid. An event
    whose name is in ``disabled`` (an account option) is refused like an invalid one."""
    if len(body) > MAX_BATCH_BYTES:
        # §3.2 + brief: oversize → 400 out_of_range (413 is unverified, §1).
        return error(400, "out_of_range", "Request body must not exceed 512 KB")
    try:
        events = _batch_events(_parse(body, content_type), shapes)
    except Rejected as exc:
        return exc.reply
    total = len(events)
    if total == 0:
        return error(400, "missing_parameter", "events must contain at least one event")  # §3.2
    if total > MAX_BATCH_EVENTS:
        return error(400, "out_of_range", f"A batch may contain at most {MAX_BATCH_EVENTS} events")
    if not validate:
        reply = json_reply(202, {"message": BATCH_ACCEPTED, "count": total})
        reply.event_count = reply.sink_count = total
        return reply
    accepted: list[dict[str, Any]] = []
    groups: dict[str, list[int]] = {}  # §3.3: indices sharing a message are grouped
    for index, event in enumerate(events):
        problem = validate_event(event)
        if problem is None and event.get("event_name") in disabled:
            problem = ("invalid_parameter", DISABLED_EVENT)
        if problem is None:
            accepted.append(event)
        else:
            groups.setdefault(problem[1], []).append(index)
    if not groups:
        reply = json_reply(202, {"message": BATCH_ACCEPTED, "count": total})
    else:
        summary = {
            "status": "partial_success" if accepted else "failure",
            "total_events": total,
            "successful_events": len(accepted),
            "failed_events": total - len(accepted),
            "errors": [{"eventIndex": idx, "message": msg} for msg, idx in groups.items()],
        }
        reply = json_reply(207 if accepted else 400, summary)
    reply.events = accepted
    reply.event_count = total
    return reply


def handle_tracker(body: bytes, content_type: str | None, *, validate: bool = True) -> Reply:
    """§4: legacy trackEvent → 204 empty, or 400 ``{code,message}`` (shape [INF])."""
    try:
        payload = _parse(body, content_type)
    except Rejected as exc:
        return exc.reply
    if not validate:
        return Reply(204, content_type=None, event_count=1, sink_count=1)
    problem = validate_tracker(payload)
    if problem is not None:
        reply = error(400, *problem)
        reply.event_count = 1
        return reply
    assert isinstance(payload, dict)
    reply = empty_reply(204)
    reply.events = [payload]
    reply.event_count = 1
    return reply


def validate_tracker(payload: Any) -> Problem | None:
    """The first §4 rule a trackEvent body breaks, or None."""
    if not isinstance(payload, dict):
        return "bad_request", "request body must be a JSON object"
    email = payload.get("email")
    # Seed 002: a 400 is "due to out_of_rangeModel, invalid_parameter, missingParameter" (the
    # tracker's own codes, not /v3's snake_case ones).
    if email is None:
        return "missingParameter", "email is required"  # §4: the only identifier
    if not isinstance(email, str) or "@" not in email:
        return "invalid_parameter", "email must be an email address"
    event = payload.get("event")
    if event is None:
        return "missingParameter", "event is required"
    if not non_empty_str(event):
        return "invalid_parameter", "event must be a non-empty string"
    properties = payload.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            return "invalid_parameter", "properties must be an object"
        reserved = sorted({"email", "event"} & set(properties))
        if reserved:  # §4: reserved keys must not appear in properties
            return "invalid_parameter", f"properties must not contain the key {reserved[0]}"
    eventdata = payload.get("eventdata")
    if eventdata is not None:
        if not isinstance(eventdata, dict):
            return "invalid_parameter", "eventdata must be an object"
        if eventdata.get("id") is not None and not isinstance(eventdata["id"], str):
            return "invalid_parameter", "eventdata.id must be a string"
        if eventdata.get("data") is not None and not isinstance(eventdata["data"], dict):
            return "invalid_parameter", "eventdata.data must be an object"
    return None


def rate_headers(decision: Decision) -> dict[str, str]:
    """§1.1: ``x-sib-ratelimit-*`` on every response, reset in seconds (tightest window)."""
    window = decision.tightest
    return {
        "x-sib-ratelimit-limit": str(window.limit),
        "x-sib-ratelimit-remaining": str(window.remaining),
        "x-sib-ratelimit-reset": str(window.reset_s),
    }


def throttled(decision: Decision) -> Reply:
    """§1.1: 429, no Retry-After; body shape undocumented, ``{code,message}`` assumed."""
    reply = error(429, "too_many_requests", "Too many requests; see x-sib-ratelimit-reset")
    reply.headers.update(rate_headers(decision))
    reply.throttled = True
    return reply


def fault_body(status: int, reason: str) -> tuple[bytes, str]:
    """Brevo's ``{code, message}`` error body for an injected ``status`` without its own body, with
    its content type."""
    code = "too_many_requests" if status == 429 else reason.lower().replace(" ", "_")
    return orjson.dumps({"code": code, "message": reason}), JSON
