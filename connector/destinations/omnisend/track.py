"""Omnisend v4 ``POST https://api.omnisend.com/v4/track`` (contracts.md §5.1). Deprecated.

From https://api-docs.omnisend.com/v4.0/reference/post_v4-track: OAuth ``Authorization: Bearer``
only; body ``{eventName, contact: {id | email | phoneNumber, ...}, properties}``; ≤ 100
properties; names of latin letters, digits and ``_``, ≤ 128 characters; string values ≤ 2,048
characters; no objects or arrays; floats rounded to 6 digits of precision (by the API: the
connector sends numbers exactly as the warehouse holds them); types (bool, int, float,
string, date, dateTime, email, url) are detected on the first event of a name and then
**frozen**: a later value of another type is an error. The connector learns the types it sent
per (account, event name) in the state store and rejects a mismatching row locally, naming both
types, instead of letting the API refuse it.

Sunset 2027-06-15 (https://api-docs.omnisend.com/v4.0/reference/migrate-from-v4): use
``omnisend_events`` (the dated ``/api/events``, or v5). No rate limit is documented for v4; we
pace at the account's v3/v5 limit of 400 req/min
(https://api-docs.omnisend.com/reference/rate-limit-timeouts-errors). No dedup key: re-sent
events count as possibly duplicated. v4 has no event-time field (option
``event_time_property`` sends the source time as a dateTime property).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from typing_extensions import override

from ...core.options import CommonOptions, DestinationSettings
from ...model.events import Events
from ..base import AccountMemory, Item, Learned, Limits, Outcome, Request, dumps
from ..checks import no_identifier_rows
from ..event_endpoint import SingleEventDestination
from .vendor import (
    OMNISEND_RATE,
    VENDOR,
    contact_identifier_collisions,
    identifier_values,
    omnisend_about_request,
    omnisend_message,
)

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:
    from ...core.lazy import pc


MAX_PROPERTIES = 100
MAX_STRING = 2048
NAME = re.compile(r"^[A-Za-z0-9_]{1,128}$")
SUNSET = "2027-06-15"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://\S+$")


def value_type(value: Any) -> str:
    """Omnisend's type of a property value (the §5.1 'Supported types' table)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Decimal):
        # Sent as its exact text: 18.99 or 5.00 read as a float, 42 (scale 0) as an int.
        return "int" if value.as_tuple().exponent == 0 else "float"
    if isinstance(value, str):
        if _DATE.match(value):
            return "date"
        if _DATETIME.match(value):
            return "dateTime"
        if _EMAIL.match(value):
            return "email"
        if _URL.match(value):
            return "url"
        return "string"
    return type(value).__name__


def compatible(frozen: str, got: str) -> bool:
    """An int fits a float property (JSON has one number type); nothing else converts."""
    return frozen == got or (frozen == "float" and got == "int")


def flatten_properties(props: Mapping[str, Any], nested: str) -> tuple[dict[str, Any], str]:
    """v4-ready properties: nested objects flattened to ``a_b`` (or refused), numbers as they
    are (Omnisend applies its own rounding), non-finite numbers omitted; ``("", reason)``
    style failure as (partial, reason)."""
    out: dict[str, Any] = {}

    def put(name: str, value: Any) -> str:
        if isinstance(value, dict):
            if nested == "reject":
                return (
                    f"property {name} is an object; Omnisend v4 accepts no objects "
                    "(options.nested: reject)"
                )
            for k, v in value.items():
                why = put(f"{name}_{k}", v)
                if why:
                    return why
            return ""
        if isinstance(value, list):
            return f"property {name} is an array; Omnisend v4 accepts no arrays"
        if value is None:
            return ""
        if isinstance(value, float) and not math.isfinite(value):
            return ""
        if name in out:
            return f"property {name} is produced twice (a flattened name collides with another)"
        out[name] = value
        return ""

    for key, val in props.items():
        why = put(str(key), val)
        if why:
            return out, why
    return out, ""


def property_problem(props: Mapping[str, Any]) -> str | None:
    """The first §5.1 static rule the (flattened) properties break."""
    if len(props) > MAX_PROPERTIES:
        return f"{len(props)} properties; Omnisend v4 allows {MAX_PROPERTIES} per event"
    for name, value in props.items():
        if not NAME.match(name):
            return f"property name {name!r} must be 1-128 latin letters, digits or '_'"
        if isinstance(value, str) and len(value) > MAX_STRING:
            return f"property {name} is a string of {len(value)} characters (max {MAX_STRING})"
    return None


class OmnisendTrackOptions(CommonOptions):
    """``options`` of ``omnisend_track``."""

    nested: Literal["flatten", "reject"] = Field(
        "flatten",
        description="v4 accepts no objects: flatten nested properties to a_b names, or reject "
        "the row.",
    )
    event_time_property: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_]{1,128}$",
        description="v4 has no event-time field (Omnisend stamps events on receipt); set a "
        "name to also send the source event time as a dateTime property under it.",
    )


class OmnisendTrackDestination(DestinationSettings):
    """``destination`` block of an ``omnisend_track`` sync."""

    type: Literal["omnisend_track"]
    options: OmnisendTrackOptions = Field(default_factory=OmnisendTrackOptions)


class OmnisendTrack(SingleEventDestination[OmnisendTrackDestination]):
    """``omnisend_track``: one v4 track call per event, with property types frozen per name."""

    type = "omnisend_track"
    config_model = OmnisendTrackDestination
    options: OmnisendTrackOptions
    vendor = VENDOR
    api_name = "Omnisend"
    identifier_fields = ("id", "email", "phoneNumber")
    default_base_url = "https://api.omnisend.com"
    path = "/v4/track"
    limits = Limits(
        max_items=1,
        max_bytes=1024 * 1024,  # undocumented; ≤ 100 properties of ≤ 2 KB stay far below
        concurrency=4,  # 6.7 req/s at ~100 ms latency needs ~1 in flight; 4 absorbs jitter
        rate=OMNISEND_RATE,
        dedup=False,
    )
    secret_headers = ("authorization",)
    flatten_separator = "_"  # v4 takes no objects: video.title is sent as video_title
    deprecation = (
        f"Omnisend v4 (/v4/track) is deprecated and sunsets on {SUNSET}; move this sync to "
        "type omnisend_events (Omnisend's current /api/events API) with options.auth: bearer, "
        "which takes the same OAuth access token"
    )

    def __init__(self, config: OmnisendTrackDestination, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        # Type freezing lives on the run's thread only: encode reads and claims, learn records.
        self._memory: AccountMemory | None = None
        self._account = ""
        self._frozen: dict[str, dict[str, str]] = {}  # confirmed: state store + delivered
        self._claimed: dict[str, dict[str, str]] = {}  # sent (or about to be) in this run

    @override
    def attach(self, memory: AccountMemory | None, account: str) -> None:
        self._memory = memory
        self._account = account

    def learn(self, learned: Learned) -> None:
        """Delivered events confirmed these types (the run has stored them)."""
        for name, types in learned.property_types.items():
            frozen = self._schema(name)
            for prop, got in types.items():
                frozen.setdefault(prop, got)

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        props = mapping.get("event_properties")
        if isinstance(props, dict):
            if len(props) > MAX_PROPERTIES:
                out.append(
                    (
                        "mapping.event_properties",
                        f"{len(props)} properties; Omnisend v4 allows {MAX_PROPERTIES}",
                    )
                )
            for name in props:
                flat = "_".join(str(name).split("."))
                if not NAME.match(flat):
                    out.append(
                        (
                            f"mapping.event_properties.{name}",
                            f"property name {flat!r} must be 1-128 latin letters, digits "
                            "or '_' for Omnisend v4 (dots flatten to '_')",
                        )
                    )
        return out + contact_identifier_collisions(mapping, cls.identifier_fields)

    @override
    def auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    @override
    def validate(self, events: Events) -> dict[int, str]:
        reasons: dict[int, str] = {}
        for i in no_identifier_rows(events, self.identifier_fields):
            reasons[i] = "no contact identifier: id, email and phoneNumber are all empty"
        empty = pc.fill_null(pc.equal(pc.utf8_length(events.names), 0), True)
        for i, bad in enumerate(empty.to_pylist()):
            if bad:
                reasons.setdefault(i, "event name is NULL or empty")
        return reasons

    # -- type freezing -------------------------------------------------------------------
    def _schema(self, name: str) -> dict[str, str]:
        """Confirmed types of an event name (loaded once per run from the state store)."""
        schema = self._frozen.get(name)
        if schema is None:
            stored = self._memory.property_types(self._account, name) if self._memory else {}
            schema = self._frozen[name] = dict(stored)
        return schema

    def _check_types(self, name: str, types: dict[str, str]) -> str | None:
        """Reject a type change; otherwise claim the new properties' types for this run."""
        frozen = self._schema(name)
        claimed = self._claimed.setdefault(name, {})
        for prop, got in types.items():
            was = frozen.get(prop) or claimed.get(prop)
            if was is not None and not compatible(was, got):
                return (
                    f"property {prop} is {got} but Omnisend v4 froze it as {was} for "
                    f"event {name!r} on first send; types cannot change"
                )
        for prop, got in types.items():
            if prop not in frozen:
                claimed.setdefault(prop, got)
        return None

    # -- encoding ------------------------------------------------------------------------
    @override
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        if not rows:
            return items, reasons
        idents = identifier_values(events, self.identifier_fields)
        names = events.names.to_pylist()
        times = events.times.to_pylist()
        time_key = self.options.event_time_property
        for i in rows:
            props, why = flatten_properties(events.event_properties[i], self.options.nested)
            if not why and time_key and times[i] is not None:
                props[time_key] = times[i]
            why = why or property_problem(props) or ""
            types = {k: value_type(v) for k, v in props.items()}
            why = why or self._check_types(names[i], types) or ""
            if why:
                reasons[i] = why
                continue
            contact: dict[str, Any] = {}
            for field, col in idents.items():
                if col[i] is not None and col[i] != "":
                    contact[field] = str(col[i])
            for k, v in events.contact_properties[i].items():
                contact.setdefault(k, v)
            body: dict[str, Any] = {"eventName": names[i], "contact": contact}
            if props:
                body["properties"] = props
            payload = dumps(body)
            frozen = self._schema(names[i])
            new = {p: t for p, t in types.items() if p not in frozen}
            lesson = Learned(property_types={names[i]: new}) if new else None
            items.append(Item(events, i, payload, len(payload), lesson=lesson))
        return items, reasons

    @override
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        return Request(self.path, items[0].payload, self.auth_headers(), items)

    @override
    def message(self, status: int, body: bytes) -> str:
        return omnisend_message(status, body)

    @override
    def about_request(self, status: int, body: bytes, message: str) -> bool:
        return omnisend_about_request(status, body)

    @override
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        outcome = super().interpret(request, status, headers, body)
        if outcome.delivered:
            outcome.learned = request.items[0].lesson  # the types the API has now frozen
        return outcome


DESTINATION = OmnisendTrack
