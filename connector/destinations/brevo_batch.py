"""Brevo ``POST /v3/events/batch`` (contracts.md §3) and the rules it shares with §2.

Source: https://developers.brevo.com/docs/event-endpoints and
https://developers.brevo.com/reference/create-batch-events — ≤ 200 events and ≤ 512 KB per
request; per event ``event_name`` ≤ 255 chars of ``[A-Za-z0-9_-]``, at least one identifier,
``contact_id`` an integer, ``event_properties`` ≤ 50 KB with keys ≤ 255 chars of
``[A-Za-z0-9_-]``. 202 = all queued; 207 = partial (valid ones kept, never re-send wholesale);
400 = none stored, per-index errors. No dedup key: a re-sent event may be stored twice, so the
run counts those as "possibly duplicated". The rate bucket of this endpoint is undocumented:
pacing follows the ``x-sib-ratelimit-*`` headers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..config import RateLimit
from ..mapping import Events
from .base import (
    Destination,
    Item,
    Limits,
    Outcome,
    Request,
    dumps,
    no_identifier_rows,
    regex_failures,
    static_key_problems,
)

log = logging.getLogger("connector.brevo")

MAX_EVENTS = 200
MAX_BYTES = 512 * 1024
MAX_PROPERTIES_BYTES = 50 * 1024
EVENT_NAME = r"^[A-Za-z0-9_-]{1,255}$"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
IDENTIFIERS = ("email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id", "contact_id")


def brevo_identifiers(events: Events, i: int, cols: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, col in cols.items():
        v = col[i]
        if v is None or v == "":
            continue
        out[k] = int(v) if k == "contact_id" else str(v)
    return out


def brevo_validate(events: Events, identifier_fields: tuple[str, ...]) -> dict[int, str]:
    """The per-event rules shared by ``/v3/events`` and ``/v3/events/batch``."""
    reasons: dict[int, str] = {}

    def add(rows: list[int], reason: str) -> None:
        for i in rows:
            reasons.setdefault(i, reason)

    add(
        no_identifier_rows(events, identifier_fields),
        "no identifier: every mapped identifier ("
        + ", ".join(f for f in identifier_fields if f in events.identifiers)
        + ") is empty",
    )
    add([i for i, v in enumerate(pc.is_null(events.names).to_pylist()) if v], "event name is NULL")
    add(
        regex_failures(events.names, EVENT_NAME),
        "event name must be 1-255 characters of letters, digits, '-' and '_'",
    )
    add(
        [i for i, v in enumerate(pc.is_null(events.time_utc).to_pylist()) if v],
        "event time is NULL",
    )
    contact_id = events.identifiers.get("contact_id")
    if contact_id is not None and not pa.types.is_integer(contact_id.type):
        add(regex_failures(contact_id, r"^\d+$"), "contact_id is not an integer")
    return reasons


def brevo_properties_problem(events: Events, i: int) -> str | None:
    for k, v in events.contact_properties[i].items():
        if isinstance(v, (dict, list)):
            return (
                f"contact property {k} is an object/array; Brevo accepts string, number or boolean"
            )
    for k in events.event_properties[i]:
        if not _KEY.match(k):
            return f"event property key {k!r} must be 1-255 letters, digits, '-' or '_'"
    return None


def brevo_check_mapping(mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
    return static_key_problems(
        mapping, "event_properties", _KEY, "must be 1-255 letters, digits, '-' or '_' for Brevo"
    )


class BrevoEventsBatch(Destination):
    type = "brevo_events_batch"
    identifier_fields = IDENTIFIERS
    default_base_url = "https://api.brevo.com"
    path = "/v3/events/batch"
    limits = Limits(
        max_events=MAX_EVENTS,
        max_bytes=MAX_BYTES,
        concurrency=2,
        # Undocumented bucket: start modestly; the x-sib-ratelimit-* headers steer from there.
        rate=RateLimit(per_second=5),
        dedup=False,
    )
    supports_object = True
    secret_headers = ("api-key",)

    def __init__(self, config: Any, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        self.shape: str = self.options.body_shape
        self.shape_switched = False

    @classmethod
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        return brevo_check_mapping(mapping)

    def auth_headers(self) -> dict[str, str]:
        return {
            "api-key": self.api_key,
            "content-type": "application/json",
            "accept": "application/json",
        }

    def validate(self, events: Events) -> dict[int, str]:
        return brevo_validate(events, self.identifier_fields)

    def encode_event(
        self,
        events: Events,
        i: int,
        idents: dict[str, list[Any]],
        names: list[Any],
        times: list[Any],
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_name": names[i],
            "event_date": times[i],
            "identifiers": brevo_identifiers(events, i, idents),
        }
        if events.contact_properties[i]:
            event["contact_properties"] = events.contact_properties[i]
        if events.event_properties[i]:
            event["event_properties"] = events.event_properties[i]
        if events.object_type:
            obj_ids: dict[str, Any] = {}
            if events.object_id is not None and events.object_id[i].is_valid:
                obj_ids["id"] = events.object_id[i].as_py()
            if events.object_ext_id is not None and events.object_ext_id[i].is_valid:
                obj_ids["ext_id"] = events.object_ext_id[i].as_py()
            event["object"] = {"type": events.object_type, "identifiers": obj_ids}
        return event

    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        idents = {k: v.to_pylist() for k, v in events.identifiers.items()}
        names = events.names.to_pylist()
        times = events.times.to_pylist()
        for i in rows:
            problem = brevo_properties_problem(events, i)
            if problem:
                reasons[i] = problem
                continue
            props = events.event_properties[i]
            if props:
                size = len(dumps(props))
                if size > MAX_PROPERTIES_BYTES:
                    reasons[i] = f"event_properties encode to {size} bytes (Brevo max 50 KB)"
                    continue
            payload = dumps(self.encode_event(events, i, idents, names, times))
            if len(payload) + 16 > MAX_BYTES:
                reasons[i] = f"event encodes to {len(payload)} bytes; a batch allows 512 KB"
                continue
            items.append(Item(events, i, payload, len(payload) + 1))
        return items, reasons

    def request_overhead(self, count: int) -> int:
        return len(b'{"events":[]}') + count

    def build(self, items: list[Item]) -> Request:
        joined = b",".join(item.payload for item in items)
        body = b'{"events":[' + joined + b"]}" if self.shape == "object" else b"[" + joined + b"]"
        return Request(self.path, body, self.auth_headers(), items)

    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        n = len(request.items)
        if status in (200, 201, 202, 204):
            return Outcome(delivered=list(range(n)))
        data = _json(body)
        if status in (207, 400) and isinstance(data, dict) and isinstance(data.get("errors"), list):
            rejected: dict[int, str] = {}
            for err in data["errors"]:
                if not isinstance(err, dict):
                    continue
                msg = str(err.get("message") or "invalid event")[:300]
                for idx in err.get("eventIndex") or []:
                    if isinstance(idx, int) and 0 <= idx < n:
                        rejected.setdefault(idx, f"Brevo: {msg}")
            rest = [i for i in range(n) if i not in rejected]
            if status == 207:
                # Valid events were stored and are not rolled back: never re-send them.
                return Outcome(delivered=rest, rejected=rejected)
            if rejected:
                return Outcome(rejected=rejected, resend=rest)  # 400: nothing stored
        message = str(data.get("message", "")) if isinstance(data, dict) else ""
        if status == 400 and "cannot unmarshal" in message and not self.shape_switched:
            self.shape = "array" if self.shape == "object" else "object"
            self.shape_switched = True
            log.warning(
                "Brevo refused the %s body shape (%s); switching to %r for this run. "
                "Set destination.options.body_shape: %s to make this permanent.",
                "array" if self.shape == "object" else "object",
                message,
                self.shape,
                self.shape,
            )
            return Outcome(switch_shape=True, resend=list(range(n)))
        if status in (400, 413):
            if n == 1:
                return Outcome(rejected={0: f"Brevo {status}: {message or _excerpt(body)}"})
            return Outcome(split=True)  # a 400/413 stores nothing, so halves are safe
        return Outcome(fatal=f"Brevo answered {status}: {message or _excerpt(body)}")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _excerpt(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")
