"""Klaviyo ``POST /api/event-bulk-create-jobs`` (contracts.md §6).

Limits and rules, all from https://developers.klaviyo.com/en/reference/bulk_create_events and
https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling (rev 2026-07-15):
1,000 events and 5 MB per request; metric name < 128 chars; time after 1990 (2000 before
revision 2026-07-15) and at most one year ahead; ≤ 400 properties; strings ≤ 100 KB; arrays
≤ 4,000 items; nesting ≤ 10; burst 10/s and steady 150/min. ``unique_id`` dedups re-sends of the
same (profile, metric); a duplicate inside one request fails the whole request, so the batcher
never puts one id twice in a request (primary keys are unique within a run).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
    length_failures,
    no_identifier_rows,
    regex_failures,
    walk_limits,
)

MAX_EVENTS = 1_000
MAX_BYTES = 5 * 1024 * 1024
MAX_METRIC_NAME = 127  # "must be less than 128 characters"
MAX_PROPERTIES = 400
MAX_STRING = 100 * 1024
MAX_ARRAY = 4_000
MAX_DEPTH = 10
E164 = r"^\+[1-9]\d{1,14}$"

# Profile attributes Klaviyo models itself; every other contact property goes to
# attributes.properties.
_STANDARD = {"first_name", "last_name", "organization", "title", "image", "locale", "location"}
_POINTER = re.compile(
    r"^/data/attributes/events-bulk-create/data/(\d+)(?:/attributes/events/data/(\d+))?"
)
_PREFIX = b'{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":['
_SUFFIX = b"]}}}}"


class KlaviyoBulkEvents(Destination):
    type = "klaviyo_bulk_events"
    identifier_fields = ("email", "phone_number", "external_id", "id")
    default_base_url = "https://a.klaviyo.com"
    path = "/api/event-bulk-create-jobs"
    limits = Limits(
        max_events=MAX_EVENTS,
        max_bytes=MAX_BYTES,
        concurrency=4,
        rate=RateLimit(per_second=10, per_minute=150),
        dedup=True,
    )
    supports_value = True
    secret_headers = ("authorization",)

    def __init__(self, config: Any, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        revision = self.options.revision
        self.min_time = datetime(1990 if revision >= "2026-07-15" else 2000, 1, 1, tzinfo=UTC)

    def auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Klaviyo-API-Key {self.api_key}",
            "revision": self.options.revision,
            "Content-Type": "application/vnd.api+json",
            "Accept": "application/vnd.api+json",
        }

    # -- validation --------------------------------------------------------------------
    def validate(self, events: Events) -> dict[int, str]:
        reasons: dict[int, str] = {}

        def add(rows: list[int], reason: str) -> None:
            for i in rows:
                reasons.setdefault(i, reason)

        add(no_identifier_rows(events, self.identifier_fields),
            "no profile identifier: email, phone_number, external_id and id are all empty")
        names = events.names
        add([i for i, v in enumerate(pc.is_null(names).to_pylist()) if v], "event name is NULL")
        add([i for i, v in enumerate(pc.fill_null(pc.equal(pc.utf8_length(names), 0),
                                                  False).to_pylist()) if v],
            "event name is empty")
        add(length_failures(names, MAX_METRIC_NAME),
            f"event name longer than {MAX_METRIC_NAME} characters (Klaviyo metric names "
            "must be under 128)")
        add([i for i, v in enumerate(pc.is_null(events.time_utc).to_pylist()) if v],
            "event time is NULL")
        latest = datetime.now(UTC) + timedelta(days=365)
        lo = pa.scalar(self.min_time, pa.timestamp("ms", tz="UTC"))
        hi = pa.scalar(latest, pa.timestamp("ms", tz="UTC"))
        out_of_range = pc.fill_null(
            pc.or_(pc.less(events.time_utc, lo), pc.greater(events.time_utc, hi)), False
        )
        add([i for i, v in enumerate(out_of_range.to_pylist()) if v],
            f"event time outside Klaviyo's range ({self.min_time.year}-01-01 to one year "
            "from now)")
        if "phone_number" in events.identifiers:
            add(regex_failures(events.identifiers["phone_number"], E164),
                "phone_number is not E.164 (e.g. +15005550006)")
        if "email" in events.identifiers:
            add(regex_failures(events.identifiers["email"], r"^[^@\s]+@[^@\s]+$"),
                "email is not an email address")
        if events.value_currency is not None:
            add(regex_failures(events.value_currency, r"^[A-Z]{3}$"),
                "value_currency is not an ISO 4217 code like USD")
        return reasons

    # -- encoding ----------------------------------------------------------------------
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        idents = {k: v.to_pylist() for k, v in events.identifiers.items()}
        names = events.names.to_pylist()
        times = events.times.to_pylist()
        values = events.value.to_pylist() if events.value is not None else None
        currencies = (
            events.value_currency.to_pylist() if events.value_currency is not None else None
        )
        backfill = self.options.backfill
        metric_cache: dict[str, bytes] = {}
        for i in rows:
            props = events.event_properties[i]
            if len(props) > MAX_PROPERTIES:
                reasons[i] = f"{len(props)} event properties (Klaviyo allows {MAX_PROPERTIES})"
                continue
            profile_attrs: dict[str, Any] = {}
            profile_id = None
            for k, col in idents.items():
                v = col[i]
                if v is None or v == "":
                    continue
                if k == "id":
                    profile_id = str(v)
                else:
                    profile_attrs[k] = str(v) if k != "email" else v
            custom: dict[str, Any] = {}
            for k, v in events.contact_properties[i].items():
                if k in _STANDARD:
                    profile_attrs[k] = v
                elif k == "properties" and isinstance(v, dict):
                    custom.update(v)
                else:
                    custom[k] = v
            if custom:
                profile_attrs["properties"] = custom
            profile: dict[str, Any] = {"type": "profile", "attributes": profile_attrs}
            if profile_id is not None:
                profile["id"] = profile_id
            name = names[i]
            metric = metric_cache.get(name)
            if metric is None:
                metric = metric_cache[name] = dumps(
                    {"data": {"type": "metric", "attributes": {"name": name}}}
                )
            attrs: dict[str, Any] = {
                "properties": props,
                "metric": orjson.Fragment(metric),
                "time": times[i],
                "unique_id": events.dedup_ids[i],
            }
            if values is not None and values[i] is not None:
                attrs["value"] = values[i]
            if currencies is not None and currencies[i] is not None:
                attrs["value_currency"] = currencies[i]
            if backfill:
                attrs["backfill"] = True
            event_bytes = dumps({"type": "event", "attributes": attrs})
            profile_bytes = dumps({"data": profile})
            size = len(event_bytes) + len(profile_bytes) + 80
            if size > MAX_STRING:
                problem = walk_limits(props, MAX_STRING, MAX_ARRAY, MAX_DEPTH) or walk_limits(
                    profile_attrs, MAX_STRING, MAX_ARRAY, MAX_DEPTH, "profile"
                )
                if problem:
                    reasons[i] = problem
                    continue
            elif any(isinstance(v, (dict, list)) for v in props.values()):
                problem = walk_limits(props, None, MAX_ARRAY, MAX_DEPTH)
                if problem:
                    reasons[i] = problem
                    continue
            if size > MAX_BYTES - len(_PREFIX) - len(_SUFFIX):
                reasons[i] = f"event encodes to {size} bytes; a request allows {MAX_BYTES}"
                continue
            items.append(Item(events, i, (profile_bytes, event_bytes), size))
        return items, reasons

    # -- requests ----------------------------------------------------------------------
    def request_overhead(self, count: int) -> int:
        return len(_PREFIX) + len(_SUFFIX) + count

    def build(self, items: list[Item]) -> Request:
        # Group events by identical profile payload (smaller body, one upsert per profile).
        groups: dict[bytes, list[int]] = {}
        for idx, item in enumerate(items):
            groups.setdefault(item.payload[0], []).append(idx)
        parts = []
        for profile_bytes, idxs in groups.items():
            events_json = b",".join(items[j].payload[1] for j in idxs)
            parts.append(
                b'{"type":"event-bulk-create","attributes":{"profile":' + profile_bytes
                + b',"events":{"data":[' + events_json + b"]}}}"
            )
        body = _PREFIX + b",".join(parts) + _SUFFIX
        return Request(self.path, body, self.auth_headers(), items, list(groups.values()))

    def interpret(self, request: Request, status: int, headers: Mapping[str, str],
                  body: bytes) -> Outcome:
        everything = list(range(len(request.items)))
        if 200 <= status < 300:
            return Outcome(delivered=everything)
        if status == 413:
            return Outcome(split=True)
        errors = _errors(body)
        if status == 400:
            rejected: dict[int, str] = {}
            for err in errors:
                pointer = (err.get("source") or {}).get("pointer") or ""
                m = _POINTER.match(pointer)
                if not m:
                    continue
                gi = int(m.group(1))
                if gi >= len(request.groups):
                    continue
                group = request.groups[gi]
                detail = str(err.get("detail") or err.get("title") or "invalid")[:300]
                if m.group(2) is None:  # the profile itself: every event of it
                    for j in group:
                        rejected.setdefault(j, f"Klaviyo: {detail} ({pointer})")
                else:
                    ej = int(m.group(2))
                    if ej < len(group):
                        rejected.setdefault(group[ej], f"Klaviyo: {detail} ({pointer})")
            if rejected:
                # Nothing of a 400 is stored: the others are sent again (same unique_id).
                return Outcome(rejected=rejected,
                               resend=[i for i in everything if i not in rejected])
            if len(request.items) == 1:
                detail = "; ".join(str(e.get("detail") or e.get("title")) for e in errors)
                return Outcome(rejected={0: f"Klaviyo 400: {detail or body[:200]!r}"})
            return Outcome(split=True)
        detail = "; ".join(f"{e.get('code')}: {e.get('detail')}" for e in errors)
        return Outcome(fatal=f"Klaviyo answered {status}: {detail or _excerpt(body)}")


def _errors(body: bytes) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    errs = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errs if isinstance(e, dict)] if isinstance(errs, list) else []


def _excerpt(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")
