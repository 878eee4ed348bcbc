"""Brevo legacy tracker ``POST https://in-automate.brevo.com/api/v2/trackEvent`` (contracts.md §4).

From https://developers.brevo.com/docs/track-custom-events-rest and
https://developers.brevo.com/docs/track-events-2: header ``ma-key`` (the Marketing Automation
tracker key, not the v3 api-key); body ``{email, event, properties, eventdata: {id, data}}``;
the contact is identified **only** by ``email``, required on every call; ``properties`` are
contact attributes (scalars: a dotted name is a config error, a nested value rejects the row)
and must not contain the reserved keys ``email`` or ``event``; ``eventdata``
carries the event's own data, ``eventdata.id`` a unique id of the event (we send the row's dedup
id; Brevo documents no dedup semantics for it, so re-sent events count as possibly duplicated).
204 = tracked; 400 = refused.

The tracker has no event-time field: Brevo stamps each event on receipt (option
``event_time_property`` copies the source time into ``eventdata.data``). No rate limit is
documented; we pace at 10 req/s (the /v3/events General tier) so a backfill cannot flood it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from typing_extensions import override

from ...core.options import CommonOptions, DestinationSettings, RateLimit
from ...model.events import Events
from ..base import Item, Limits, dumps
from ..checks import no_identifier_rows
from ..event_endpoint import SingleEventDestination
from .vendor import VENDOR, brevo_headers, brevo_message

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:
    from ...core.lazy import pc


RESERVED = ("email", "event")  # never keys of `properties` (track-custom-events-rest)
EMAIL = r"^[^@\s]+@[^@\s]+$"


class BrevoTrackerOptions(CommonOptions):
    """``options`` of ``brevo_tracker``."""

    event_time_property: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,255}$",
        description="The tracker has no event-time field (Brevo stamps events on receipt); "
        "set a name to also send the source event time in eventdata.data under it.",
    )


class BrevoTrackerDestination(DestinationSettings):
    """``destination`` block of a ``brevo_tracker`` sync."""

    type: Literal["brevo_tracker"]
    options: BrevoTrackerOptions = Field(default_factory=BrevoTrackerOptions)


class BrevoTracker(SingleEventDestination[BrevoTrackerDestination]):
    """``brevo_tracker``: one legacy trackEvent call per event, identified by email."""

    type = "brevo_tracker"
    config_model = BrevoTrackerDestination
    options: BrevoTrackerOptions
    vendor = VENDOR
    api_name = "Brevo tracker"
    identifier_fields = ("email",)
    default_base_url = "https://in-automate.brevo.com"
    path = "/api/v2/trackEvent"
    limits = Limits(
        max_items=1,
        max_bytes=1024 * 1024,  # undocumented; one event is far below any plausible cap
        concurrency=4,  # 10 req/s at ~100 ms latency needs ~1-2 in flight; 4 absorbs jitter
        rate=RateLimit(
            per_second=10, per_minute=None, per_hour=None
        ),  # undocumented limit: our own sane default
        dedup=False,
    )
    secret_headers = ("ma-key",)
    flat_blocks = ("contact_properties",)  # contact attributes are scalars

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        idents = mapping.get("identifiers")
        if isinstance(idents, dict) and "email" not in idents:
            out.append(
                (
                    "mapping.identifiers",
                    "brevo_tracker identifies contacts only by email: map identifiers.email",
                )
            )
        props = mapping.get("contact_properties")
        if isinstance(props, dict):
            for name in props:
                head = str(name).split(".")[0]
                # A dotted name is refused by config's shared check (flat_blocks).
                if head in RESERVED:
                    out.append(
                        (
                            f"mapping.contact_properties.{name}",
                            f"{head!r} is reserved by the Brevo tracker (it is a top-level "
                            "field); rename the contact attribute",
                        )
                    )
        return out

    @override
    def auth_headers(self) -> dict[str, str]:
        return brevo_headers("ma-key", self.api_key)

    @override
    def validate(self, events: Events) -> dict[int, str]:
        reasons: dict[int, str] = {}

        def add(rows: list[int], reason: str) -> None:
            for i in rows:
                reasons.setdefault(i, reason)

        add(
            no_identifier_rows(events, ("email",)), "no email: the tracker needs one on every event"
        )
        email = events.identifiers.get("email")
        if email is not None:
            ok = pc.fill_null(pc.match_substring_regex(pc.cast(email, "string"), EMAIL), True)
            add([i for i, v in enumerate(ok.to_pylist()) if not v], "email is not an email address")
        empty = pc.fill_null(pc.equal(pc.utf8_length(events.names), 0), True)
        add([i for i, v in enumerate(empty.to_pylist()) if v], "event name is NULL or empty")
        return reasons

    @override
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        if not rows:
            return items, reasons
        emails = events.identifiers["email"].to_pylist()
        names = events.names.to_pylist()
        times = events.times.to_pylist()
        time_key = self.options.event_time_property
        for i in rows:
            contact = events.contact_properties[i]
            reserved = [k for k in RESERVED if k in contact]
            if reserved:  # a dynamic (JSON) attribute name can still collide
                reasons[i] = f"contact property {reserved[0]!r} is reserved by the tracker"
                continue
            nested = [k for k, v in contact.items() if isinstance(v, dict | list)]
            if nested:  # a JSON/struct/list column: attributes hold one value each (seed 002)
                reasons[i] = (
                    f"contact property {nested[0]} is an object/array; tracker properties are "
                    "contact attributes and take a string, number or boolean"
                )
                continue
            data = dict(events.event_properties[i])
            if time_key and times[i] is not None:
                data[time_key] = times[i]
            body: dict[str, Any] = {"email": str(emails[i]), "event": names[i]}
            if contact:
                body["properties"] = contact
            eventdata: dict[str, Any] = {"id": events.dedup_ids[i]}
            if data:
                eventdata["data"] = data
            body["eventdata"] = eventdata
            payload = dumps(body)
            items.append(Item(events, i, payload, len(payload)))
        return items, reasons

    @override
    def message(self, status: int, body: bytes) -> str:
        return brevo_message(status, body)


DESTINATION = BrevoTracker
