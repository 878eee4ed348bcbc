"""Klaviyo ``POST /api/event-bulk-create-jobs`` (contracts.md §6).

Limits and rules, all from https://developers.klaviyo.com/en/reference/bulk_create_events and
https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling (rev 2026-07-15):
1,000 events and 5 MB per request; metric name < 128 chars; time after 1990 (2000 before
revision 2026-07-15) and at most one year ahead; ≤ 400 properties; strings ≤ 100 KB (UTF-8 bytes);
arrays ≤ 4,000 items; nesting ≤ 10; burst 10/s and steady 150/min. Profile attributes follow
the OAS types: identifiers and standard attributes are strings, ``image`` a URL, ``location`` an
object of strings (latitude/longitude string or number). ``unique_id`` dedups re-sends of the
same (profile, metric); a duplicate inside one request fails the whole request, so the batcher
never puts one id twice in a request (primary keys are unique within a run).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field
from typing_extensions import override

from ...core.options import CommonOptions, DestinationSettings, RateLimit
from ...model import jsonfrag
from ...model.events import Events
from ..answers import About, judge, request_problem
from ..base import Item, Limits, Outcome, Request
from ..checks import length_failures, no_identifier_rows, regex_failures, walk_limits
from ..event_endpoint import EventDestination, request_fix
from .vendor import (
    E164,
    PROFILE_IDENTIFIERS,
    PROFILE_STRINGS,
    VENDOR,
    klaviyo_headers,
    profile_key_problem,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ...core.lazy import pa, pc


MAX_EVENTS = 1_000
MAX_BYTES = 5 * 1024 * 1024
MAX_METRIC_NAME = 127  # "must be less than 128 characters"
MAX_PROPERTIES = 400
MAX_STRING = 100 * 1024
MAX_ARRAY = 4_000
MAX_DEPTH = 10
_COORDINATES = {"location.latitude", "location.longitude"}
_STANDARD = {*PROFILE_STRINGS, "location"}
# image is "URL pointing to the location of a profile image": matched on the JSON fragment.
_IMAGE_URL = r'^"https?://[^\s"]+"$'
_POINTER = re.compile(
    r"^/data/attributes/events-bulk-create/data/(\d+)(?:/attributes/events/data/(\d+))?"
)
_ITEMS = "/data/attributes/events-bulk-create/data"
_PREFIX = b'{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":['
_SUFFIX = b"]}}}}"


class KlaviyoBulkOptions(CommonOptions):
    """``options`` of ``klaviyo_bulk_events``."""

    revision: str = Field("2026-07-15", pattern=r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
    backfill: bool = Field(
        False, description="Send backfill=true (record without triggering flows)."
    )
    metric_service: str | None = Field(
        None,
        min_length=1,
        description="metric.service of every event (Klaviyo: advanced use; unset = Klaviyo's "
        "default, api).",
    )
    null_profile_properties: Literal["omit", "unset"] = Field(
        "omit",
        description="A NULL custom profile property: omit it (the profile keeps its value) or "
        "list it in meta.patch_properties.unset (Klaviyo removes it from the profile).",
    )


class KlaviyoBulkEventsDestination(DestinationSettings):
    """``destination`` block of a ``klaviyo_bulk_events`` sync."""

    type: Literal["klaviyo_bulk_events"]
    options: KlaviyoBulkOptions = Field(default_factory=KlaviyoBulkOptions)


class KlaviyoBulkEvents(EventDestination[KlaviyoBulkEventsDestination]):
    """``klaviyo_bulk_events``: up to 1,000 events per bulk-create job, deduplicated."""

    type = "klaviyo_bulk_events"
    config_model = KlaviyoBulkEventsDestination
    options: KlaviyoBulkOptions
    vendor = VENDOR
    identifier_fields = (*PROFILE_IDENTIFIERS, "id")
    default_base_url = "https://a.klaviyo.com"
    path = "/api/event-bulk-create-jobs"
    limits = Limits(
        max_items=MAX_EVENTS,
        max_bytes=MAX_BYTES,
        # The steady limit is 150 requests/min (2.5/s): two in flight keep it busy even at
        # 800 ms per request, and hold fewer 5 MB bodies in memory than more would.
        concurrency=2,
        rate=RateLimit(per_second=10, per_minute=150),
        dedup=True,
    )
    supports_value = True
    secret_headers = ("authorization",)

    def __init__(self, config: KlaviyoBulkEventsDestination, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        revision = self.options.revision
        self.min_time = datetime(1990 if revision >= "2026-07-15" else 2000, 1, 1, tzinfo=UTC)
        service = self.options.metric_service
        self._service = "" if service is None else ',"service":' + orjson.dumps(service).decode()

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = []
        props = mapping.get("event_properties")
        if isinstance(props, dict) and len(props) > MAX_PROPERTIES:
            out.append(
                (
                    "mapping.event_properties",
                    f"{len(props)} properties; Klaviyo allows {MAX_PROPERTIES} per event",
                )
            )
        name = mapping.get("event_name")
        if isinstance(name, str) and len(name) > MAX_METRIC_NAME:
            out.append(("mapping.event_name", "Klaviyo metric names must be under 128 characters"))
        contact = mapping.get("contact_properties")
        if isinstance(contact, dict):
            out += [
                (f"mapping.contact_properties.{key}", problem)
                for key in contact
                if (problem := profile_key_problem(str(key))) is not None
            ]
        return out

    @override
    def auth_headers(self) -> dict[str, str]:
        return klaviyo_headers(self.api_key, self.options.revision)

    # -- validation --------------------------------------------------------------------
    @override
    def validate(self, events: Events) -> dict[int, str]:
        reasons: dict[int, str] = {}

        def add(rows: list[int], reason: str) -> None:
            for i in rows:
                reasons.setdefault(i, reason)

        add(
            no_identifier_rows(events, self.identifier_fields),
            "no profile identifier: "
            + ", ".join(self.identifier_fields[:-1])
            + f" and {self.identifier_fields[-1]} are all empty",
        )
        names = events.names
        add([i for i, v in enumerate(pc.is_null(names).to_pylist()) if v], "event name is NULL")
        add(
            [
                i
                for i, v in enumerate(
                    pc.fill_null(pc.equal(pc.utf8_length(names), 0), False).to_pylist()
                )
                if v
            ],
            "event name is empty",
        )
        add(
            length_failures(names, MAX_METRIC_NAME),
            f"event name longer than {MAX_METRIC_NAME} characters (Klaviyo metric names "
            "must be under 128)",
        )
        add(
            [i for i, v in enumerate(pc.is_null(events.time_utc).to_pylist()) if v],
            "event time is NULL",
        )
        latest = datetime.now(UTC) + timedelta(days=365)
        lo = pa.scalar(self.min_time, pa.timestamp("ms", tz="UTC"))
        hi = pa.scalar(latest, pa.timestamp("ms", tz="UTC"))
        out_of_range = pc.fill_null(
            pc.or_(pc.less_equal(events.time_utc, lo), pc.greater(events.time_utc, hi)), False
        )
        add(
            [i for i, v in enumerate(out_of_range.to_pylist()) if v],
            f"event time outside Klaviyo's range (after {self.min_time.year}-01-01 00:00 UTC, at "
            "most one year from now)",
        )
        if "phone_number" in events.identifiers:
            add(
                regex_failures(events.identifiers["phone_number"], E164),
                "phone_number is not E.164 (e.g. +15005550006)",
            )
        if "email" in events.identifiers:
            add(
                regex_failures(events.identifiers["email"], r"^[^@\s]+@[^@\s]+$"),
                "email is not an email address",
            )
        if events.value_currency is not None:
            add(
                regex_failures(events.value_currency, r"^[A-Z]{3}$"),
                "value_currency is not an ISO 4217 code like USD",
            )
        _, _, problems = _profile_attributes(events)
        for rows, reason in problems:
            add(rows, reason)
        return reasons

    # -- encoding ----------------------------------------------------------------------
    def _profiles(self, events: Events) -> pa.Array:
        """``{"data": {"type": "profile", "id"?: ..., "attributes": {...}}}`` per row."""
        n = events.n
        pairs: list[tuple[str, pa.Array]] = []
        for name in PROFILE_IDENTIFIERS:
            arr = events.identifiers.get(name)
            if arr is not None:
                arr = pc.cast(arr, pa.string())
                empty = pc.fill_null(pc.equal(arr, ""), False)
                pairs.append(
                    (name, pc.if_else(empty, pa.scalar(None, pa.string()), jsonfrag.strings(arr)))
                )
        standard, custom, _ = _profile_attributes(events)
        pairs += standard
        pairs += custom
        attributes = jsonfrag.obj(pairs, n)
        id_part: pa.Array | str = ""
        if "id" in events.identifiers:
            ids = jsonfrag.strings(events.identifiers["id"])
            id_part = pc.fill_null(jsonfrag.concat('"id":', ids, ","), "")
        meta: pa.Array | str = ""
        if self.options.null_profile_properties == "unset":
            meta = _unset(custom, n)
        return jsonfrag.concat(
            '{"data":{"type":"profile",', id_part, '"attributes":', attributes, meta, "}}"
        )

    def _events(self, events: Events) -> tuple[pa.Array, pa.Array]:
        props = events.event_props.json_object()
        value = ""
        if events.value is not None:
            value = jsonfrag.optional_member("value", jsonfrag.numbers(events.value), None)
        currency = ""
        if events.value_currency is not None:
            currency = jsonfrag.optional_member(
                "value_currency", jsonfrag.strings(events.value_currency), None
            )
        body = jsonfrag.concat(
            '{"type":"event","attributes":{"properties":',
            props,
            ',"metric":{"data":{"type":"metric","attributes":{"name":',
            jsonfrag.strings(events.names),
            self._service,
            '}}},"time":"',
            events.times,
            '","unique_id":',
            jsonfrag.strings(events.dedup_array),
            value,
            currency,
            ',"backfill":true}}' if self.options.backfill else "}}",
        )
        return body, props

    @override
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        items: list[Item] = []
        reasons: dict[int, str] = {}
        if not rows:
            return items, reasons
        profiles = self._profiles(events)
        bodies, _props = self._events(events)
        profile_bytes = jsonfrag.to_bytes(profiles)
        event_bytes = jsonfrag.to_bytes(bodies)
        sizes_arr = pc.add(pc.binary_length(profiles), pc.binary_length(bodies))
        sizes = sizes_arr.to_pylist()
        limit = MAX_BYTES - len(_PREFIX) - len(_SUFFIX)
        # Rows that need a closer look (column-wise, so most rows are never looked at): only
        # nested values (JSON/struct/list columns) can be too deep or hold long arrays, and
        # only a large event can hold a string over the limit or pass the request size.
        flags = pc.greater(sizes_arr, min(MAX_STRING, limit) - 80)
        for name in events.event_props.nested_names():
            frag = events.event_props.json_values[name]
            deep = pc.greater(
                pc.add(pc.count_substring(frag, "{"), pc.count_substring(frag, "[")), MAX_DEPTH - 1
            )
            wide = pc.greater_equal(pc.count_substring(frag, ","), MAX_ARRAY - 1)
            flags = pc.or_(flags, pc.fill_null(pc.or_(deep, wide), False))
        closer = set(pc.indices_nonzero(flags).to_pylist())
        for i in rows:
            size = sizes[i] + 80
            if i in closer:
                problem = walk_limits(
                    events.event_props.row(i), MAX_STRING, MAX_ARRAY, MAX_DEPTH, in_bytes=True
                )
                if problem is None and size > MAX_STRING:
                    problem = walk_limits(
                        events.contact_props.row(i),
                        MAX_STRING,
                        MAX_ARRAY,
                        MAX_DEPTH,
                        "profile",
                        in_bytes=True,
                    )
                if problem:
                    reasons[i] = problem
                    continue
                if size > limit:
                    reasons[i] = f"event encodes to {size} bytes; a request allows {MAX_BYTES}"
                    continue
            profile, event = profile_bytes[i], event_bytes[i]
            assert profile is not None and event is not None  # a valid row always encodes
            items.append(Item(events, i, event, size, group=profile))
        return items, reasons

    # -- requests ----------------------------------------------------------------------
    @override
    def request_overhead(self, count: int) -> int:
        return len(_PREFIX) + len(_SUFFIX) + count

    @override
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        # Group events by identical profile payload (smaller body, one upsert per profile).
        groups: dict[bytes, list[int]] = {}
        for idx, item in enumerate(items):
            groups.setdefault(item.group, []).append(idx)
        parts = []
        for profile_bytes, idxs in groups.items():
            events_json = b",".join(items[j].payload for j in idxs)
            parts.append(
                b'{"type":"event-bulk-create","attributes":{"profile":'
                + profile_bytes
                + b',"events":{"data":['
                + events_json
                + b"]}}}"
            )
        body = _PREFIX + b",".join(parts) + _SUFFIX
        return Request(self.path, body, self.auth_headers(), items, list(groups.values()))

    @override
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        everything = list(range(len(request.items)))
        if 200 <= status < 300:
            return Outcome(delivered=everything)
        if status == 413:  # the request's size, not an event: halves (a 413 stores nothing)
            if len(everything) == 1:
                return Outcome(rejected={0: f"Klaviyo 413: {_excerpt(body)}"})
            return Outcome(split=True)
        errors = _errors(body)
        if status == 400:
            problem = _about_request(errors)  # a header, a parameter, the envelope
            rejected = _pointed(errors, request.groups)
            text = problem or "; ".join(
                str(e.get("detail") or e.get("title") or e.get("code")) for e in errors
            )
            about = judge(
                status,
                text or _excerpt(body),
                item_detail=bool(rejected),
                request_detail=bool(problem),
            )
            if about is About.REQUEST:
                text = text or _excerpt(body)
                return Outcome(fatal=request_fix("Klaviyo (400)", text, self._fix(text)))
            # Nothing of a 400 is stored: the others are sent again (same unique_id).
            return Outcome(rejected=rejected, resend=[i for i in everything if i not in rejected])
        detail = "; ".join(f"{e.get('code')}: {e.get('detail')}" for e in errors)
        return Outcome(fatal=f"Klaviyo answered {status}: {detail or _excerpt(body)}")

    def _fix(self, problem: str) -> str:
        if "revision" in problem.lower():
            return (
                f"set destination.options.revision (now {self.options.revision}) to a revision "
                "that has this endpoint (2024-05-15 or later; the connector is tested with "
                "2026-07-15)"
            )
        return "fix the destination options (revision, headers) or base_url"


def _pointed(errors: list[dict[str, Any]], groups: list[list[int]]) -> dict[int, str]:
    """Item index → reason, for the errors whose ``source.pointer`` points into the events
    (a profile's pointer: every event of it). The reason names the place inside the event
    (``event /attributes/time``), not its position in the request, which means nothing once
    the request is gone: events refused for one cause read alike."""
    rejected: dict[int, str] = {}
    for err in errors:
        raw = err.get("source")
        pointer = str((raw if isinstance(raw, dict) else {}).get("pointer") or "")
        m = _POINTER.match(pointer)
        if not m or int(m.group(1)) >= len(groups):
            continue
        group = groups[int(m.group(1))]
        detail = str(err.get("detail") or err.get("title") or "invalid")[:300]
        rest = pointer[m.end() :]
        if m.group(2) is None:  # the profile itself: every event of it
            for j in group:
                rejected.setdefault(j, f"Klaviyo: {detail} (profile{rest})")
        elif int(m.group(2)) < len(group):
            rejected.setdefault(group[int(m.group(2))], f"Klaviyo: {detail} (event{rest})")
    return rejected


def _about_request(errors: list[dict[str, Any]]) -> str | None:
    """The errors that are about the request, joined, or None. JSON:API says where an error
    is: ``source.header`` / ``source.parameter`` name the request line or a header, and a
    ``pointer`` outside the events array points at the body's envelope. Errors without a
    source count when their text is about the request (revision, media type, JSON parse)."""
    found = []
    for err in errors:
        raw = err.get("source")
        source: dict[str, Any] = raw if isinstance(raw, dict) else {}
        pointer = str(source.get("pointer") or "")
        text = str(err.get("detail") or err.get("title") or err.get("code") or "invalid")
        if source.get("header") or source.get("parameter"):
            where = source.get("header") or source.get("parameter")
            found.append(f"{text} ({where})")
        elif pointer and not pointer.startswith(_ITEMS):
            found.append(f"{text} ({pointer})")
        elif not pointer and (err.get("code") == "parse_error" or request_problem(text)):
            found.append(text)
    return "; ".join(found) or None


def _profile_attributes(
    events: Events,
) -> tuple[list[tuple[str, pa.Array]], list[tuple[str, pa.Array]], list[tuple[list[int], str]]]:
    """(standard attribute pairs, custom property pairs, [(rows, reason)]) of the profile.

    Standard attributes are strings in the OAS: by the string-field rule (``jsonfrag.as_text``)
    numbers and booleans are sent as their text (an INTEGER zip → "10017"), objects and arrays
    reject the row. Latitude/longitude keep numbers (string or number). Custom properties keep
    their JSON type under ``properties`` ("properties.x" and "x" both land there)."""
    contact = events.contact_props
    values = contact.json_values
    standard: list[tuple[str, pa.Array]] = []
    custom: list[tuple[str, pa.Array]] = []
    problems: list[tuple[list[int], str]] = []
    for name in contact.names:
        frag = values[name]
        if name.split(".")[0] not in _STANDARD:
            custom.append(("properties." + name.removeprefix("properties."), frag))
            continue
        text, nested = jsonfrag.as_text(frag)
        if name in _COORDINATES:  # "string or number": a number stays one
            number = pc.fill_null(pc.match_substring_regex(frag, r"^\s*-?[0-9]"), False)
            text = pc.if_else(number, pc.utf8_trim_whitespace(frag), text)
        bad = pc.indices_nonzero(nested).to_pylist()
        if bad:
            problems.append(
                (bad, f"profile {name} is a string attribute: the JSON holds an object or array")
            )
        if name == "image":
            url = pc.match_substring_regex(text, _IMAGE_URL)
            bad = pc.indices_nonzero(pc.fill_null(pc.invert(url), False)).to_pylist()
            if bad:
                problems.append((bad, "profile image is not a URL (e.g. https://…/photo.jpg)"))
        standard.append((name, text))
    return standard, custom, problems


def _unset(custom: list[tuple[str, pa.Array]], n: int) -> pa.Array | str:
    """``,"meta":{"patch_properties":{"unset":[...]}}`` naming the NULL custom properties of
    each row, or "" where none is NULL. Only top-level names: Klaviyo unsets whole keys."""
    parts = [
        pc.if_else(
            pc.is_null(frag),
            pa.scalar(jsonfrag.key(name.removeprefix("properties.")) + ",", pa.string()),
            pa.scalar("", pa.string()),
        )
        for name, frag in custom
        if "." not in name.removeprefix("properties.")
    ]
    if not parts:
        return ""
    names = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters=",")
    meta = jsonfrag.concat(',"meta":{"patch_properties":{"unset":[', names, "]}}")
    return pc.if_else(pc.equal(names, ""), pa.scalar("", pa.string()), meta)


def _errors(body: bytes) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    errs = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errs if isinstance(e, dict)] if isinstance(errs, list) else []


def _excerpt(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")


DESTINATION = KlaviyoBulkEvents
