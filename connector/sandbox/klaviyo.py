"""Klaviyo ``POST /api/event-bulk-create-jobs`` (contracts §6): JSON:API, all-or-nothing.

Every invalid event is reported with a ``source.pointer`` into the request and nothing is
stored (§6.4). A profile-level problem is reported once, pointing at the profile of item ``i``
(``…/data/<i>/attributes/profile/data/…``), and fails every event of that item.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from connector.sandbox._shared import (
    Rejected,
    Reply,
    empty_reply,
    is_number,
    media_type,
    non_empty_str,
    parse_rfc3339,
)
from connector.sandbox.ratelimit import Decision

JSONAPI = "application/vnd.api+json"
# §6.1: vnd.api+json per the OAS; plain application/json is accepted in practice.
ACCEPTED_TYPES = (JSONAPI, "application/json")
# §6.2: request limits.
MAX_EVENTS = 1000
MAX_BODY_BYTES = 5 * 1024 * 1024
# §6.2: metric name "must be less than 128 characters".
MAX_METRIC_NAME = 127
# §6.2: properties ≤ 400 keys, strings ≤ 100 KB, arrays ≤ 4,000 items, ≤ 10 nesting levels.
MAX_PROPERTIES = 400
# OAS: "A single string cannot exceed 100KB": counted in UTF-8 bytes, not characters.
MAX_STRING_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_DEPTH = 10
# §6.2: time at most one year in the future.
MAX_FUTURE = timedelta(days=365)
# §6.2: phone_number is E.164.
E164_RE = re.compile(r"\+[1-9]\d{1,14}")
# §6.2: at least one profile identifier (the order is the identity used for dedup). The OAS
# (2026-04-15 and 2026-07-15) lists anonymous_id and _kx (exchange id) among them.
PROFILE_IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
# OAS OnsiteProfileCreateQueryResourceObject: every other attribute is a nullable string …
PROFILE_STRINGS = ("first_name", "last_name", "organization", "locale", "title", "image")
# … location is a ProfileLocation of nullable strings, latitude/longitude string or number.
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
LOCATION_COORDINATES = ("latitude", "longitude")
# image: "URL pointing to the location of a profile image" [DOC]; http(s) form [INF].
URL_RE = re.compile(r"https?://[^\s]+")
# §6.1: revision YYYY-MM-DD with an optional suffix.
REVISION_RE = re.compile(r"(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9_]+)?")

ROOT = "/data/attributes/events-bulk-create/data"


def error_object(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    pointer: str | None = None,
    parameter: str | None = None,
) -> dict[str, Any]:
    """One JSON:API error as Klaviyo writes it (§6.4: id, status, code, title, detail, …)."""
    source: dict[str, str] = {}
    if pointer is not None:
        source["pointer"] = pointer
    if parameter is not None:
        source["parameter"] = parameter
    return {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code,
        "title": title,
        "detail": detail,
        "source": source,
        "links": {},
        "meta": {},
    }


def errors_reply(status: int, errors: list[dict[str, Any]]) -> Reply:
    """A Klaviyo JSON:API error reply: ``{"errors": [...]}`` with the given status."""
    return Reply(status, orjson.dumps({"errors": errors}), JSONAPI)


def error(status: int, code: str, title: str, detail: str, **source: str | None) -> Reply:
    """A Klaviyo error reply holding one error object (``source``: its pointer or parameter)."""
    return errors_reply(status, [error_object(status, code, title, detail, **source)])


def invalid(pointer: str, detail: str) -> dict[str, Any]:
    """Klaviyo's 400 ``invalid`` error object for the field at JSON ``pointer``."""
    return error_object(400, "invalid", "Invalid input.", detail, pointer=pointer)


def auth_error(authorization: str | None, keys: Collection[str]) -> Reply | None:
    """§6.1/§10: ``Authorization: Klaviyo-API-Key <key>``; anything else → 401."""
    title = "Authentication credentials were not provided."
    scheme, _, key = (authorization or "").partition(" ")
    if scheme != "Klaviyo-API-Key":
        detail = "Missing or invalid authorization scheme. Please use Klaviyo-API-Key."
        return error(401, "not_authenticated", title, detail, pointer="/data/")
    if key.strip() not in keys:
        return error(
            401,
            "not_authenticated",
            "Incorrect authentication credentials.",
            "Missing or invalid private key.",
            pointer="/data/",
        )
    return None


def revision_error(revision: str | None, min_revision: str) -> Reply | None:
    """§6.1: ``revision`` is required (exact error code undocumented; ``invalid`` used)."""
    if revision is None or not revision.strip():
        return error(
            400,
            "invalid",
            "Invalid input.",
            "The revision header is required, e.g. revision: 2026-07-15.",
            parameter="revision",
        )
    m = REVISION_RE.fullmatch(revision.strip())
    if m is None:
        return error(
            400,
            "invalid",
            "Invalid input.",
            "The revision header must look like YYYY-MM-DD, e.g. 2026-07-15.",
            parameter="revision",
        )
    if m.group(1) < min_revision:
        return error(
            400,
            "invalid",
            "Invalid input.",
            f"Bulk event creation needs revision {min_revision} or later.",
            parameter="revision",
        )
    return None


# bulk_create_events, OAS ``time``: "The time must be after the year 1990" (2026-07-15); the
# same text read "after the year 2000" up to revision 2026-04-15.
_NINETIES_FROM = "2026-07-15"


def min_event_time(revision: str | None) -> datetime:
    """The earliest event time the request's ``revision`` accepts (exclusive)."""
    day = (revision or "").strip()[:10]
    return datetime(1990 if day >= _NINETIES_FROM else 2000, 1, 1, tzinfo=UTC)


def _escape(key: str) -> str:
    """RFC 6901 JSON pointer token."""
    return key.replace("~", "~0").replace("/", "~1")


def _items(payload: Any) -> list[Any]:
    """The profile items of a bulk job, or Rejected listing the structural errors (§6.2)."""

    def fail(pointer: str, detail: str) -> Rejected:
        return Rejected(errors_reply(400, [invalid(pointer, detail)]))

    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise fail("/data", "data is required and must be an object.")
    if data.get("type") != "event-bulk-create-job":
        raise fail("/data/type", "data.type must be 'event-bulk-create-job'.")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise fail("/data/attributes", "data.attributes is required and must be an object.")
    bulk = attributes.get("events-bulk-create")
    if not isinstance(bulk, dict):
        raise fail(
            "/data/attributes/events-bulk-create",
            "events-bulk-create is required and must be an object.",
        )
    items = bulk.get("data")
    if not isinstance(items, list) or not items:
        raise fail(ROOT, "events-bulk-create.data must be a non-empty array.")
    return items


def _events_of(item: Any) -> list[Any] | None:
    try:
        events = item["attributes"]["events"]["data"]
    except (KeyError, TypeError):
        return None
    return events if isinstance(events, list) else None


def _profile_problem(profile: Any, pointer: str) -> tuple[str, str] | None:
    """(pointer, detail) for the first profile rule broken, else None."""
    if not isinstance(profile, dict):
        return pointer, "profile.data is required and must be an object."
    if profile.get("type") != "profile":
        return f"{pointer}/type", "profile.data.type must be 'profile'."
    if profile.get("id") is not None and not non_empty_str(profile["id"]):
        return f"{pointer}/id", "profile id must be a non-empty string."
    attributes = profile.get("attributes")
    if not isinstance(attributes, dict):
        return f"{pointer}/attributes", "profile attributes are required and must be an object."
    for key in PROFILE_IDENTIFIERS:
        value = attributes.get(key)
        if value is not None and not non_empty_str(value):
            return f"{pointer}/attributes/{key}", f"{key} must be a non-empty string."
    problem = _attribute_types_problem(attributes, f"{pointer}/attributes")
    if problem is None:
        problem = _meta_problem(profile.get("meta"), f"{pointer}/meta")
    if problem is not None:
        return problem
    email = attributes.get("email")
    if email is not None and "@" not in email:
        return f"{pointer}/attributes/email", "Invalid email address."
    phone = attributes.get("phone_number")
    if phone is not None and not E164_RE.fullmatch(phone):
        return f"{pointer}/attributes/phone_number", "Invalid phone number format (E.164)."
    if profile.get("id") is None and all(attributes.get(k) is None for k in PROFILE_IDENTIFIERS):
        return (
            f"{pointer}/attributes",
            "A profile needs at least one identifier: id, email, phone_number, external_id, "
            "anonymous_id or _kx.",
        )
    return None


def _attribute_types_problem(attributes: dict[str, Any], pointer: str) -> tuple[str, str] | None:
    """The OAS types of the profile attributes (all nullable)."""
    for key in PROFILE_STRINGS:
        value = attributes.get(key)
        if value is not None and not isinstance(value, str):
            return f"{pointer}/{key}", f"{key} must be a string."
    image = attributes.get("image")
    if image is not None and not URL_RE.fullmatch(image):
        return f"{pointer}/image", "image must be a URL (https://…) to the profile image."
    location = attributes.get("location")
    if location is not None:
        if not isinstance(location, dict):
            return f"{pointer}/location", "location must be an object."
        for key, value in location.items():
            if value is None or isinstance(value, str):
                continue
            if key in LOCATION_COORDINATES and is_number(value):
                continue
            kind = "a string or a number" if key in LOCATION_COORDINATES else "a string"
            return f"{pointer}/location/{_escape(str(key))}", f"location.{key} must be {kind}."
    properties = attributes.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return f"{pointer}/properties", "properties must be an object."
    for key, value in attributes.items():
        problem = _string_size_problem(value)
        if problem is not None:
            return "/".join([f"{pointer}/{_escape(key)}", *reversed(problem[0])]), problem[1]
    return None


def _string_size_problem(value: Any) -> tuple[list[str], str] | None:
    """Any string nested in ``value`` over 100 KB (UTF-8 bytes); pointer tokens innermost first."""
    if isinstance(value, str):
        return ([], _TOO_LONG) if _too_long(value) else None
    items: Any = value.items() if isinstance(value, dict) else None
    if isinstance(value, list):
        items = enumerate(value)
    for key, child in items or ():
        problem = _string_size_problem(child)
        if problem is not None:
            problem[0].append(_escape(str(key)))
            return problem
    return None


def _meta_problem(meta: Any, pointer: str) -> tuple[str, str] | None:
    """OAS OnsiteProfileMeta: patch_properties {append, unappend: object; unset: string or
    array of strings} and patch_identifiers {append, unappend: object}, all nullable."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        return pointer, "meta must be an object."
    for block, members in (
        ("patch_properties", ("append", "unappend")),
        ("patch_identifiers", ("append", "unappend")),
    ):
        patch = meta.get(block)
        if patch is None:
            continue
        if not isinstance(patch, dict):
            return f"{pointer}/{block}", f"meta.{block} must be an object."
        for member in members:
            value = patch.get(member)
            if value is not None and not isinstance(value, dict):
                return f"{pointer}/{block}/{member}", f"{block}.{member} must be an object."
        if block == "patch_properties":
            unset = patch.get("unset")
            if unset is not None and not (
                isinstance(unset, str)
                or (isinstance(unset, list) and all(isinstance(k, str) for k in unset))
            ):
                return (
                    f"{pointer}/{block}/unset",
                    "patch_properties.unset must be a property name or an array of names.",
                )
    return None


def profile_identity(profile: dict[str, Any]) -> tuple[str, str]:
    """The identifier the dedup key uses: id, then email, phone_number, external_id [INF]."""
    if profile.get("id") is not None:
        return "id", profile["id"]
    attributes = profile["attributes"]
    for key in PROFILE_IDENTIFIERS:
        if attributes.get(key) is not None:
            return key, attributes[key]
    raise ValueError("profile has no identifier")  # excluded by _profile_problem


_TOO_LONG = f"Strings may be at most 100 KB ({MAX_STRING_BYTES} bytes of UTF-8)."


def _too_long(value: str) -> bool:
    # A character is 1 to 4 bytes: only strings in between need encoding to be sure.
    if len(value) > MAX_STRING_BYTES:
        return True
    if len(value) * 4 <= MAX_STRING_BYTES:
        return False
    return len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES


def _value_problem(value: Any, depth: int) -> tuple[list[str], str] | None:
    """§6.2 limits on one value at nesting ``depth`` (the properties object is level 1).

    Returns (pointer tokens below ``value``, innermost first; detail). Pointers are only built
    on failure, which keeps the common path cheap.
    """
    if isinstance(value, str):
        return ([], _TOO_LONG) if _too_long(value) else None
    children: Any
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            return [], f"Arrays may contain at most {MAX_ARRAY_ITEMS} items."
        children = enumerate(value)
    else:
        return None
    if depth > MAX_DEPTH:
        return [], f"Properties may be nested at most {MAX_DEPTH} levels deep."
    for key, child in children:
        if isinstance(child, (str, dict, list)):  # a tuple is faster than a union here
            problem = _value_problem(child, depth + 1)
            if problem is not None:
                problem[0].append(_escape(str(key)))
                return problem
    return None


def _event_problem(
    event: Any, pointer: str, now: datetime, min_time: datetime
) -> tuple[str, str] | None:
    """(pointer, detail) for the first rule an event breaks (§6.2), else None."""
    if not isinstance(event, dict):
        return pointer, "Each event must be an object."
    if event.get("type") != "event":
        return f"{pointer}/type", "event type must be 'event'."
    attributes = event.get("attributes")
    pointer = f"{pointer}/attributes"
    if not isinstance(attributes, dict):
        return pointer, "event attributes are required and must be an object."
    metric = attributes.get("metric")
    metric_data = metric.get("data") if isinstance(metric, dict) else None
    if not isinstance(metric_data, dict):
        return f"{pointer}/metric/data", "metric.data is required and must be an object."
    if metric_data.get("type") != "metric":
        return f"{pointer}/metric/data/type", "metric.data.type must be 'metric'."
    metric_attributes = metric_data.get("attributes")
    name = metric_attributes.get("name") if isinstance(metric_attributes, dict) else None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_METRIC_NAME:
        return (
            f"{pointer}/metric/data/attributes/name",
            "Metric name is required and must be less than 128 characters.",
        )
    service = metric_attributes.get("service") if isinstance(metric_attributes, dict) else None
    if service is not None and not isinstance(service, str):
        return f"{pointer}/metric/data/attributes/service", "metric service must be a string."
    properties = attributes.get("properties")
    if not isinstance(properties, dict):
        return f"{pointer}/properties", "properties is required and must be an object."
    if len(properties) > MAX_PROPERTIES:
        return f"{pointer}/properties", f"Events may have at most {MAX_PROPERTIES} properties."
    problem = _value_problem(properties, 1)
    if problem is not None:
        tokens, detail = problem
        return "/".join([f"{pointer}/properties", *reversed(tokens)]), detail
    time_value = attributes.get("time")
    if time_value is not None:
        when = parse_rfc3339(time_value)
        if when is None:
            return f"{pointer}/time", "time must be an ISO 8601 date-time with offset."
        if when <= min_time:
            return f"{pointer}/time", f"time must be after {min_time.date().isoformat()}."
        if when > now + MAX_FUTURE:
            return f"{pointer}/time", "time must be at most one year in the future."
    if attributes.get("value") is not None and not is_number(attributes["value"]):
        return f"{pointer}/value", "value must be a number."
    currency = attributes.get("value_currency")
    if currency is not None and not isinstance(currency, str):
        return f"{pointer}/value_currency", "value_currency must be a string (ISO 4217)."
    unique_id = attributes.get("unique_id")
    if unique_id is not None and not isinstance(unique_id, str):
        return f"{pointer}/unique_id", "unique_id must be a string."
    return None


def _second(attributes: dict[str, Any], now: datetime) -> str:
    """§6.3: without unique_id the event time truncated to the second is the key."""
    when = parse_rfc3339(attributes.get("time")) or now
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


_EVENT_MARKER = re.compile(rb'"type"\s*:\s*"event"')


#: The detail of an event whose metric the account has not enabled (``disabled``).
DISABLED = "The metric is not enabled on this account."


def handle_bulk(
    body: bytes,
    content_type: str | None,
    revision: str | None,
    *,
    now: datetime,
    min_time: datetime | None = None,
    min_revision: str = "2024-05-15",
    validate: bool = True,
    disabled: frozenset[str] = frozenset(),
) -> Reply:
    """§6: 202 empty when every event is valid, else 400 listing every invalid event. Without
    ``min_time`` the earliest event time follows the ``revision`` (``min_event_time``). An
    event whose metric name is in ``disabled`` (a sandbox fault option, not a documented
    Klaviyo answer) is refused with a pointer to its metric name."""
    problem = revision_error(revision, min_revision)
    if problem is not None:
        return problem
    if min_time is None:
        min_time = min_event_time(revision)
    if len(body) > MAX_BODY_BYTES:
        return error(
            413,
            "request_too_large",
            "Request too large.",
            "The request body must be at most 5 MB.",
            pointer="/data",
        )
    kind = media_type(content_type)
    if kind not in ACCEPTED_TYPES:
        return error(
            415,
            "unsupported_media_type",
            "Unsupported media type.",
            f'Unsupported media type "{kind}" in request; use {JSONAPI}.',
        )
    if not validate:
        # Sink mode (benchmarks): count the event objects without parsing the body, so the
        # fake costs next to nothing on the cores it shares with the connector. Counts
        # '"type": "event"' markers (one per event object).
        total = len(_EVENT_MARKER.findall(body))
        return Reply(202, content_type=None, event_count=total, sink_count=total)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, "parse_error", "Malformed request.", "JSON parse error.")
    try:
        items = _items(payload)
    except Rejected as exc:
        return exc.reply
    per_item = [_events_of(item) for item in items]
    total = sum(len(events) for events in per_item if events is not None)
    if total > MAX_EVENTS:
        return errors_reply(
            400, [invalid(ROOT, f"A request may contain at most {MAX_EVENTS} events; got {total}.")]
        )
    if not validate:
        return Reply(202, content_type=None, event_count=total, sink_count=total)
    return _validate_items(items, per_item, total, now, min_time, disabled)


def _validate_items(
    items: list[Any],
    per_item: list[list[Any] | None],
    total: int,
    now: datetime,
    min_time: datetime,
    disabled: frozenset[str] = frozenset(),
) -> Reply:
    errors: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    keys: list[Hashable | None] = []
    unique_ids: set[tuple[Any, ...]] = set()
    for i, (item, events) in enumerate(zip(items, per_item, strict=True)):
        p = f"{ROOT}/{i}"
        if not isinstance(item, dict):
            errors.append(invalid(p, "Each item must be an object."))
            continue
        if item.get("type") != "event-bulk-create":
            errors.append(invalid(f"{p}/type", "item type must be 'event-bulk-create'."))
            continue
        attributes = item.get("attributes")
        if not isinstance(attributes, dict):
            errors.append(invalid(f"{p}/attributes", "item attributes must be an object."))
            continue
        if not events:
            errors.append(
                invalid(f"{p}/attributes/events/data", "events.data must be a non-empty array.")
            )
            continue
        wrapper = attributes.get("profile")
        profile = wrapper.get("data") if isinstance(wrapper, dict) else None
        problem = _profile_problem(profile, f"{p}/attributes/profile/data")
        if problem is not None:
            errors.append(invalid(*problem))
            continue
        assert isinstance(profile, dict)
        identity = profile_identity(profile)
        stored_profile = dict(profile["attributes"])
        if profile.get("id") is not None:
            stored_profile["id"] = profile["id"]
        if profile.get("meta") is not None:
            stored_profile["meta"] = profile["meta"]
        for j, event in enumerate(events):
            pe = f"{p}/attributes/events/data/{j}"
            problem = _event_problem(event, pe, now, min_time)
            if problem is not None:
                errors.append(invalid(*problem))
                continue
            ev = event["attributes"]
            metric = ev["metric"]["data"]["attributes"]["name"]
            if metric in disabled:
                errors.append(invalid(f"{pe}/attributes/metric/data/attributes/name", DISABLED))
                continue
            unique_id = ev.get("unique_id")
            if unique_id is not None:
                key: tuple[Any, ...] = (identity, metric, "unique_id", unique_id)
                if key in unique_ids:
                    # §6.3: a repeated unique_id for the same profile+metric fails the request.
                    errors.append(
                        invalid(
                            f"{pe}/attributes/unique_id",
                            f"Duplicate unique_id {unique_id!r} for the same profile and metric "
                            "in this request; no events were processed.",
                        )
                    )
                    continue
                unique_ids.add(key)
            else:
                key = (identity, metric, "time", _second(ev, now))
            records.append({"profile": dict(stored_profile), "event": ev})
            keys.append(key)
    if errors:
        reply = errors_reply(400, errors)
    else:
        reply = empty_reply(202)
        reply.events = records
        reply.dedup_keys = keys
    reply.event_count = total
    return reply


def rate_headers(decision: Decision) -> dict[str, str]:
    """§6.5: ``RateLimit-*`` (steady window) on non-429 responses."""
    window = decision.longest
    return {
        "RateLimit-Limit": str(window.limit),
        "RateLimit-Remaining": str(window.remaining),
        "RateLimit-Reset": str(window.reset_s),
    }


def throttled(decision: Decision) -> Reply:
    """§6.4/§6.5: 429 ``throttled`` with only ``Retry-After``."""
    seconds = (decision.blocking or decision.tightest).reset_s
    reply = _throttled_reply(seconds)
    reply.headers["Retry-After"] = str(seconds)
    reply.throttled = True
    return reply


def _throttled_reply(seconds: int) -> Reply:
    return error(
        429,
        "throttled",
        "Request was throttled.",
        f"Request was throttled. Expected available in {seconds} second(s).",
        pointer="/data",
    )


def fault_body(status: int, reason: str) -> tuple[bytes, str]:
    """Klaviyo's JSON:API error body for an injected ``status`` without its own body (429 as Klaviyo
    throttles), with its content type."""
    if status == 429:
        return _throttled_reply(1).body, JSONAPI
    code = "error" if status >= 500 else reason.lower().replace(" ", "_")
    return error(status, code, f"{reason}.", f"{reason}.").body, JSONAPI
