"""Brevo ``POST /v3/events`` — one event per request (contracts.md §2, §1.1).

Rules and limits, from https://developers.brevo.com/reference/create-event and
https://developers.brevo.com/docs/event-endpoints: ``event_name`` 1-255 characters of
``[A-Za-z0-9_-]``; ``identifiers`` needs at least one of email_id, ext_id, phone_id, whatsapp_id,
landline_number_id, contact_id (an integer; when present it wins over the others);
``event_properties`` keys 1-255 characters of ``[A-Za-z0-9_-]`` and the object ≤ 50 KB;
``contact_properties`` values are scalars; optional ``object: {type, identifiers: {id,
ext_id}}``. 204 = stored, 400 ``{code, message}`` = this event refused.

Rate limits, from https://developers.brevo.com/docs/api-limits (per account): General 10 req/s
and 36,000 req/h, Advanced 20 req/s and 72,000 req/h, Extended 60 req/s. Responses carry
``x-sib-ratelimit-*`` (read by ``delivery``). No dedup key: a re-sent event may be stored twice,
so retried events are counted as "possibly duplicated".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field
from typing_extensions import override

from ...core.options import CommonOptions, DestinationSettings
from ...model.events import Events
from ..base import Item, Limits, dumps
from ..event_endpoint import SingleEventDestination
from .vendor import (
    IDENTIFIERS,
    TIER_RATES,
    VENDOR,
    brevo_check_mapping,
    brevo_headers,
    brevo_message,
    brevo_validate,
    encode_brevo_event,
)


class BrevoEventOptions(CommonOptions):
    """``options`` of ``brevo_event``."""

    tier: Literal["general", "advanced", "extended"] = Field(
        "general",
        description="Brevo API rate tier of the account: general 10 req/s + 36,000/h, "
        "advanced 20 req/s + 72,000/h, extended 60 req/s (ignored when rate_limit is set).",
    )


class BrevoEventDestination(DestinationSettings):
    """``destination`` block of a ``brevo_event`` sync."""

    type: Literal["brevo_event"]
    options: BrevoEventOptions = Field(default_factory=BrevoEventOptions)


class BrevoEvent(SingleEventDestination[BrevoEventDestination]):
    """``brevo_event``: one Brevo event per request, paced per account and tier."""

    type = "brevo_event"
    config_model = BrevoEventDestination
    options: BrevoEventOptions
    vendor = VENDOR
    api_name = "Brevo"
    identifier_fields = IDENTIFIERS
    default_base_url = "https://api.brevo.com"
    path = "/v3/events"
    limits = Limits(
        max_items=1,
        max_bytes=1024 * 1024,  # no documented request cap beyond event_properties ≤ 50 KB
        # 8 in flight reach even the Extended tier's 60 req/s at ~100 ms latency; the Pacer
        # holds the account to its tier.
        concurrency=8,
        rate=TIER_RATES["general"],
        dedup=False,
    )
    supports_object = True
    secret_headers = ("api-key",)
    flat_blocks = ("contact_properties",)  # contact attributes are scalars

    def __init__(self, config: BrevoEventDestination, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        if self.options.rate_limit is None:
            # The tier decides the documented pacing; an explicit rate_limit still wins.
            self.options = self.options.model_copy(
                update={"rate_limit": TIER_RATES[self.options.tier]}
            )

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        return brevo_check_mapping(mapping)

    @override
    def auth_headers(self) -> dict[str, str]:
        return brevo_headers("api-key", self.api_key)

    @override
    def validate(self, events: Events) -> dict[int, str]:
        return brevo_validate(events, self.identifier_fields)

    @override
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        if not rows:
            return items, reasons
        idents = {k: v.to_pylist() for k, v in events.identifiers.items()}
        names = events.names.to_pylist()
        times = events.times.to_pylist()
        for i in rows:
            event, why = encode_brevo_event(
                events,
                i,
                idents,
                names,
                times,
                events.contact_properties[i],
                events.event_properties[i],
            )
            if event is None:
                reasons[i] = why
                continue
            payload = dumps(event)
            items.append(Item(events, i, payload, len(payload)))
        return items, reasons

    @override
    def message(self, status: int, body: bytes) -> str:
        return brevo_message(status, body)


DESTINATION = BrevoEvent
