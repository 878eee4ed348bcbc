"""``toy_webhook``: a made-up endpoint, the example of docs/adding-a-destination.md.

The registry test copies this file into ``connector/destinations/`` of a copy of the package,
adds its one line to ``registry.ENDPOINT_MODULES`` and runs a sync through it: config, JSON
Schema, validate and sync need nothing else. (Absolute imports, so the file also type-checks
where it lies; a real destination module imports ``..base``, ``..event_endpoint`` and its
vendor module.)

ToyCo's API: ``POST /hooks/events`` with a JSON array of ``{id, email, name, at, props}``;
≤ 50 events and ≤ 64 KB per request; 200 = all stored; 422 ``{"rejected": {"<index>":
"<reason>"}}`` = the listed events refused, nothing stored; ``id`` deduplicates re-sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import orjson
from pydantic import Field

from connector.core.options import CommonOptions, DestinationSettings, RateLimit
from connector.destinations.base import Item, Limits, Outcome, Request, Vendor, dumps
from connector.destinations.checks import no_identifier_rows
from connector.destinations.event_endpoint import EventDestination
from connector.model.events import Events

VENDOR = Vendor(name="toyco", title="ToyCo")


class ToyWebhookOptions(CommonOptions):
    """``options`` of ``toy_webhook``."""

    channel: str = Field("main", min_length=1, description="ToyCo channel of every event.")


class ToyWebhookDestination(DestinationSettings):
    """``destination`` block of a ``toy_webhook`` sync."""

    type: Literal["toy_webhook"]
    options: ToyWebhookOptions = Field(default_factory=ToyWebhookOptions)


class ToyWebhook(EventDestination[ToyWebhookDestination]):
    """``toy_webhook``: up to 50 events per request, deduplicated by id."""

    type = "toy_webhook"
    config_model = ToyWebhookDestination
    options: ToyWebhookOptions
    vendor = VENDOR
    identifier_fields = ("email",)
    default_base_url = "https://hooks.toyco.invalid"
    path = "/hooks/events"
    limits = Limits(
        max_items=50,
        max_bytes=64 * 1024,
        concurrency=1,
        rate=RateLimit(per_second=100),
        dedup=True,
    )
    secret_headers = ("x-toy-key",)

    def auth_headers(self) -> dict[str, str]:
        return {"x-toy-key": self.api_key, "content-type": "application/json"}

    def validate(self, events: Events) -> dict[int, str]:
        return {i: "no email" for i in no_identifier_rows(events, self.identifier_fields)}

    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        emails = events.identifiers["email"].to_pylist()
        names, times = events.names.to_pylist(), events.times.to_pylist()
        items = []
        for i in rows:
            body = {
                "id": events.dedup_ids[i],
                "email": emails[i],
                "name": names[i],
                "at": times[i],
                "channel": self.options.channel,
                "props": events.event_properties[i],
            }
            payload = dumps(body)
            items.append(Item(events, i, payload, len(payload) + 1))
        return items, {}

    def request_overhead(self, count: int) -> int:
        return 2 + count

    def build(self, items: list[Item], variant: str | None = None) -> Request:
        body = b"[" + b",".join(item.payload for item in items) + b"]"
        return Request(self.path, body, self.auth_headers(), items)

    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        n = len(request.items)
        if status == 200:
            return Outcome(delivered=list(range(n)))
        if status == 422:
            refused = {int(k): f"ToyCo: {v}" for k, v in orjson.loads(body)["rejected"].items()}
            return Outcome(rejected=refused, resend=[i for i in range(n) if i not in refused])
        return Outcome(fatal=f"ToyCo answered {status}: {body[:200]!r}")


DESTINATION = ToyWebhook
