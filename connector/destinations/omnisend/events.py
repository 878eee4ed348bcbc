"""Omnisend events: the dated API ``POST https://api.omnisend.com/api/events`` (version
2026-03-15, the default; contracts.md §5.3) or v5 ``POST /v5/events`` (option
``api_version: v5``; §5.2). Both take the same body.

Dated API, from https://api-docs.omnisend.com/v2026-03-15/reference/authentication,
https://api-docs.omnisend.com/reference/events and the published OpenAPI (``Events API``
2026-03-15): header ``Authorization: Omnisend-API-Key <key>`` and the required
``Omnisend-Version: 2026-03-15``; 202 = accepted; errors are RFC 9457 problem bodies
``{type, title, status, detail, instance}``, a 400 adds ``errors: [{field, code, message}]``
listing every invalid field (https://api-docs.omnisend.com/v2026-03-15/reference/responses).
v5, from https://api-docs.omnisend.com/reference/post_events (v5 text) and
https://api-docs.omnisend.com/docs/how-to-send-events-rest-api: header ``X-API-KEY``;
400 ``{error, fields}``.

Body ``{eventName, origin, eventID, eventTime, eventVersion?, contact, properties}``; the contact
needs ``id``, ``email`` or ``phone`` (anonymous events are refused with 400); contact fields
firstName/lastName ≤ 50, address ≤ 500, city/state/country ≤ 100, postalCode ≤ 20,
countryCode ≤ 3, phone ≤ 15 (characters: JSON Schema ``maxLength``), birthdate ``YYYY-MM-DD``,
gender ``m|f``, tags ≤ 100 strings, optIns/optOuts ≤ 10 and consents ≤ 100 items; any other
contact property goes to ``customProperties`` (arrays there hold strings only); ``properties``
are free-form (nested allowed).

Dedup: events with the same ``eventID`` **and** ``eventTime`` are processed once (Omnisend
documents this for historical events). ``eventID`` is a UUIDv5 of the row's dedup id and
``eventTime`` is always the source time, so every re-send carries the same pair.

Rate limit, https://api-docs.omnisend.com/reference/rate-limit-timeouts-errors: 400 requests
per minute per store, ``X-Rate-Limit-Limit/-Remaining/-Reset`` on every response.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from typing_extensions import override

from ...core.options import CommonOptions, DestinationSettings
from ...model.events import Events
from ...model.jsonfrag import text_value
from ..base import Item, Limits, Request, dumps
from ..checks import no_identifier_rows
from ..event_endpoint import SingleEventDestination
from .vendor import (
    AUTH_HELP,
    OMNISEND_RATE,
    VENDOR,
    contact_identifier_collisions,
    identifier_values,
    omnisend_about_request,
    omnisend_headers,
    omnisend_message,
    problem_message,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ...core.lazy import pa, pc


# api_version → (path, version header value or None). The dated API names its version in a
# header; v5 names it in the path.
API_VERSIONS: dict[str, tuple[str, str | None]] = {
    "2026-03-15": ("/api/events", "2026-03-15"),
    "v5": ("/v5/events", None),
}

# A fixed namespace: eventID = uuid5(EVENT_ID_NAMESPACE, "<sync>:<primary key>") forever.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1f4e-3f5b-5b8e-9a43-2c7e8f0d1a55")

# Contact fields Omnisend models itself (2026 schema lengths, contracts.md §5.2).
STRING_FIELDS: dict[str, int] = {
    "firstName": 50,
    "lastName": 50,
    "address": 500,
    "city": 100,
    "state": 100,
    "postalCode": 20,
    "country": 100,
    "countryCode": 3,
}
LIST_FIELDS: dict[str, int] = {"tags": 100, "optIns": 10, "optOuts": 10, "consents": 100}
PATTERN_FIELDS: dict[str, tuple[str, str]] = {
    "birthdate": (r"^\d{4}-\d{2}-\d{2}$", "birthdate must be YYYY-MM-DD"),
    "gender": (r"^(m|f)$", "gender must be 'm' or 'f'"),
}
MAX_PHONE = 15


def event_id(dedup_id: str) -> str:
    """Deterministic eventID: the same row always gets the same UUID."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, dedup_id))


def contact_fields(props: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Mapped contact properties → Omnisend contact fields + customProperties, or a reason."""
    contact: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for key, value in props.items():
        if key == "customProperties" and isinstance(value, dict):
            custom.update(value)
        elif key in STRING_FIELDS or key in PATTERN_FIELDS:
            # The string-field rule: a number or boolean as its JSON text ("75001", "true").
            text = text_value(value)
            if text is None:
                return {}, f"contact {key} must be a string, not an object/array"
            limit = STRING_FIELDS.get(key)
            if limit is not None and len(text) > limit:
                return {}, f"contact {key} is {len(text)} characters (max {limit})"
            if key in PATTERN_FIELDS and not re.match(PATTERN_FIELDS[key][0], text):
                return {}, f"contact {PATTERN_FIELDS[key][1]}"
            contact[key] = text
        elif key in LIST_FIELDS:
            items = value if isinstance(value, list) else [value]
            if len(items) > LIST_FIELDS[key]:
                return {}, f"contact {key} has {len(items)} items (max {LIST_FIELDS[key]})"
            if key == "tags" and not all(isinstance(t, str) for t in items):
                return {}, "contact tags must be strings"
            contact[key] = items
        else:
            custom[key] = value
    for key, value in custom.items():
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            return {}, f"custom property {key} is an array of non-strings (strings only)"
    if custom:
        contact["customProperties"] = custom
    return contact, ""


class OmnisendEventsOptions(CommonOptions):
    """``options`` of ``omnisend_events``."""

    api_version: Literal["2026-03-15", "v5"] = Field(
        "2026-03-15",
        description="2026-03-15: POST /api/events with Authorization: Omnisend-API-Key and "
        "Omnisend-Version (the current API); v5: POST /v5/events with X-API-KEY.",
    )
    auth: Literal["api_key", "bearer"] = Field("api_key", description=AUTH_HELP)
    origin: str = Field("api", min_length=1, description='"api" for custom stores.')
    event_version: str | None = Field(
        None, description="eventVersion, only for Omnisend's recommended events (e.g. v2)."
    )

    @model_validator(mode="after")
    def _bearer_needs_the_dated_api(self) -> OmnisendEventsOptions:
        if self.auth == "bearer" and self.api_version == "v5":
            raise ValueError(
                "auth: bearer needs api_version 2026-03-15 (v5 takes only X-API-KEY); remove "
                "api_version: v5 to send the OAuth token to /api/events"
            )
        return self


class OmnisendEventsDestination(DestinationSettings):
    """``destination`` block of an ``omnisend_events`` sync."""

    type: Literal["omnisend_events"]
    options: OmnisendEventsOptions = Field(default_factory=OmnisendEventsOptions)


class OmnisendEvents(SingleEventDestination[OmnisendEventsDestination]):
    """``omnisend_events``: one event per request to the dated API (or v5), deduplicated by
    (eventID, eventTime)."""

    type = "omnisend_events"
    config_model = OmnisendEventsDestination
    options: OmnisendEventsOptions
    vendor = VENDOR
    api_name = "Omnisend"
    identifier_fields = ("id", "email", "phone")
    default_base_url = "https://api.omnisend.com"
    path = "/api/events"  # the default api_version; see API_VERSIONS
    limits = Limits(
        max_items=1,
        max_bytes=1024 * 1024,  # undocumented per-request cap
        concurrency=4,  # 6.7 req/s at ~100 ms latency needs ~1 in flight; 4 absorbs jitter
        rate=OMNISEND_RATE,
        dedup=True,
    )
    secret_headers = ("x-api-key", "authorization")

    def __init__(self, config: OmnisendEventsDestination, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        self.endpoint, self.version = API_VERSIONS[self.options.api_version]

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        return contact_identifier_collisions(mapping, cls.identifier_fields)

    @override
    def auth_headers(self) -> dict[str, str]:
        if self.version is None:  # v5
            return {
                "X-API-KEY": self.api_key,
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        return omnisend_headers(self.api_key, self.version, self.options.auth)

    @override
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        return Request(self.endpoint, items[0].payload, self.auth_headers(), items)

    @override
    def validate(self, events: Events) -> dict[int, str]:
        reasons: dict[int, str] = {}

        def add(mask: pa.Array, reason: str) -> None:
            for i, bad in enumerate(pc.fill_null(mask, False).to_pylist()):
                if bad:
                    reasons.setdefault(i, reason)

        for i in no_identifier_rows(events, self.identifier_fields):
            reasons[i] = "no contact identifier: id, email and phone are all empty"
        add(
            pc.fill_null(pc.equal(pc.utf8_length(events.names), 0), True),
            "event name is NULL or empty",
        )
        add(pc.is_null(events.time_utc), "event time is NULL (eventTime is part of the dedup key)")
        phone = events.identifiers.get("phone")
        if phone is not None:
            add(
                pc.greater(pc.utf8_length(pc.cast(phone, pa.string())), MAX_PHONE),
                f"phone is longer than {MAX_PHONE} characters",
            )
        # Plain contact columns are checked column-wise; JSON/nested ones again per row.
        for name, arr in events.contact_props.columns.items():
            if name not in STRING_FIELDS and name not in PATTERN_FIELDS:
                continue
            if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                continue
            if name in events.contact_props.json_columns:
                continue
            limit = STRING_FIELDS.get(name)
            if limit is not None:
                add(
                    pc.greater(pc.utf8_length(arr), limit),
                    f"contact {name} is longer than {limit} characters",
                )
            if name in PATTERN_FIELDS:
                pattern, rule = PATTERN_FIELDS[name]
                add(pc.invert(pc.match_substring_regex(arr, pattern)), f"contact {rule}")
        return reasons

    @override
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        if not rows:
            return items, reasons
        idents = identifier_values(events, self.identifier_fields)
        names = events.names.to_pylist()
        times = events.times.to_pylist()
        origin, version = self.options.origin, self.options.event_version
        for i in rows:
            contact, why = contact_fields(events.contact_properties[i])
            if why:
                reasons[i] = why
                continue
            for field, col in idents.items():
                if col[i] is not None and col[i] != "":
                    contact[field] = str(col[i])
            body: dict[str, Any] = {
                "eventName": names[i],
                "origin": origin,
                "eventID": event_id(events.dedup_ids[i]),
                "eventTime": times[i],
                "contact": contact,
            }
            if version:
                body["eventVersion"] = version
            props = events.event_properties[i]
            if props:
                body["properties"] = props
            payload = dumps(body)
            items.append(Item(events, i, payload, len(payload)))
        return items, reasons

    @override
    def message(self, status: int, body: bytes) -> str:
        return problem_message(status, body) or omnisend_message(status, body)

    @override
    def about_request(self, status: int, body: bytes, message: str) -> bool:
        # An RFC 9457 body that lists field errors is about the event; one without (an
        # unsupported or retired Omnisend-Version among them) is about the request.
        return omnisend_about_request(status, body)


DESTINATION = OmnisendEvents
