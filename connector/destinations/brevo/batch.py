"""Brevo ``POST /v3/events/batch`` (contracts.md §3) and the rules it shares with §2.

Source: https://developers.brevo.com/docs/event-endpoints and
https://developers.brevo.com/reference/create-batch-events — ≤ 200 events and ≤ 512 KB per
request; per event ``event_name`` ≤ 255 chars of ``[A-Za-z0-9_-]``, at least one identifier,
``contact_id`` an int64, ``event_properties`` ≤ 50 KB with keys ≤ 255 chars of
``[A-Za-z0-9_-]`` and values of any JSON type (the OpenAPI's union holds objects and arrays of
"Any type"). 202 = all queued; 207 = partial (valid ones kept, never re-send wholesale);
400 = none stored, per-index errors. No dedup key: a re-sent event may be stored twice, so the
run counts those as "possibly duplicated". The rate bucket of this endpoint is undocumented:
pacing follows the ``x-sib-ratelimit-*`` headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field
from typing_extensions import override

from ...core.logcontext import get_logger
from ...core.options import CommonOptions, DestinationSettings, RateLimit
from ...model import jsonfrag
from ...model.events import Events
from ..answers import About, judge
from ..base import AccountMemory, Item, Learned, Limits, Outcome, Request, dumps
from ..event_endpoint import EventDestination, request_fix
from .vendor import (
    IDENTIFIERS,
    MAX_PROPERTIES_BYTES,
    VENDOR,
    brevo_check_mapping,
    brevo_headers,
    brevo_validate,
    contact_id_ints,
    encode_brevo_event,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ...core.lazy import pa, pc


log = get_logger("connector.brevo")

MAX_EVENTS = 200
MAX_BYTES = 512 * 1024
# A JSON key (a string followed by ':') holding a character outside [A-Za-z0-9_-], empty, or
# longer than 255. It may also match text that is not a key; such rows only get the exact check.
_SUSPECT_KEY = (
    r'"(?:[^"\\]|\\.)*[^A-Za-z0-9_"-](?:[^"\\]|\\.)*"\s*:'
    r'|""\s*:'
    r'|"[^"]{256,}"\s*:'
)


def _scalar_text(arr: pa.Array) -> bool:
    t = arr.type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t))


class BrevoBatchOptions(CommonOptions):
    """``options`` of ``brevo_events_batch``."""

    body_shape: Literal["object", "array"] | None = Field(
        None,
        description="Batch body: a bare array (the endpoint document) or {'events': [...]} "
        "(the current reference); unset = the shape this account accepted last, else the "
        "array. The other shape is tried once when Brevo answers 'cannot unmarshal'.",
    )


class BrevoEventsBatchDestination(DestinationSettings):
    """``destination`` block of a ``brevo_events_batch`` sync."""

    type: Literal["brevo_events_batch"]
    options: BrevoBatchOptions = Field(default_factory=BrevoBatchOptions)


class BrevoEventsBatch(EventDestination[BrevoEventsBatchDestination]):
    """``brevo_events_batch``: up to 200 events per request, 207 partial answers."""

    type = "brevo_events_batch"
    config_model = BrevoEventsBatchDestination
    options: BrevoBatchOptions
    vendor = VENDOR
    identifier_fields = IDENTIFIERS
    default_base_url = "https://api.brevo.com"
    path = "/v3/events/batch"
    limits = Limits(
        max_items=MAX_EVENTS,
        max_bytes=MAX_BYTES,
        concurrency=2,
        # Undocumented bucket: start modestly; the x-sib-ratelimit-* headers steer from there.
        rate=RateLimit(per_second=5),
        dedup=False,
    )
    supports_object = True
    secret_headers = ("api-key",)
    flat_blocks = ("contact_properties",)  # contact attributes are scalars

    def __init__(self, config: BrevoEventsBatchDestination, api_key: str, sync_name: str) -> None:
        super().__init__(config, api_key, sync_name)
        # The seed document (000) shows a top-level array; the current reference page an
        # object wrapper (contracts.md §3.1). Default: the seed's array, or the shape this
        # account accepted last time (``attach``). Written on the run's thread only
        # (attach, learn); sender threads read it in ``build``.
        self.shape: str = self.options.body_shape or "array"
        self._known: str | None = None  # the shape the state store holds for the account

    @override
    def attach(self, memory: AccountMemory | None, account: str) -> None:
        stored = memory.account_setting(account, SHAPE_SETTING) if memory else None
        if stored in ("object", "array"):
            self._known = stored
            if self.options.body_shape is None:
                self.shape = stored

    def learn(self, learned: Learned) -> None:
        """Brevo accepted a shape (stored by the run): send it from now on."""
        shape = learned.settings.get(SHAPE_SETTING)
        if shape in ("object", "array"):
            self._known = self.shape = shape

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

    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        """Column-wise JSON for every row (``jsonfrag``); rows that could break a rule only a
        parsed value can show (keys inside JSON columns, nested contact values, sizes near a
        limit) and chunks with unusual column types take the exact per-row path."""
        items: list[Item] = []
        reasons: dict[int, str] = {}
        if not rows:
            return items, reasons
        fast = self._fast_payloads(events) or [None] * events.n
        exact = [i for i in rows if fast[i] is None]
        if exact:
            idents = {k: v.to_pylist() for k, v in events.identifiers.items()}
            names = events.names.to_pylist()
            times = events.times.to_pylist()
        # A few exact rows: build just their dicts; many: the chunk's dicts at once (cheaper).
        whole = len(exact) > events.n // 8
        for i in rows:
            payload = fast[i]
            if payload is None:
                event, why = encode_brevo_event(
                    events,
                    i,
                    idents,
                    names,
                    times,
                    events.contact_properties[i] if whole else events.contact_props.row(i),
                    events.event_properties[i] if whole else events.event_props.row(i),
                )
                if event is None:
                    reasons[i] = why
                    continue
                payload = dumps(event)
                if len(payload) + 16 > MAX_BYTES:
                    reasons[i] = f"event encodes to {len(payload)} bytes; a batch allows 512 KB"
                    continue
            items.append(Item(events, i, payload, len(payload) + 1))
        return items, reasons

    def _fast_payloads(self, events: Events) -> list[bytes | None] | None:
        """Each row's event JSON, or None for a row that needs the exact path; None for the
        whole chunk when a column type is not one the column-wise encoder renders exactly."""
        n = events.n
        contact, props = events.contact_props, events.event_props
        plain_ids = all(_scalar_text(a) for a in events.identifiers.values())
        plain_object = all(
            a is None or _scalar_text(a) for a in (events.object_id, events.object_ext_id)
        )
        if not plain_ids or not plain_object or any("." in c for c in contact.names):
            return None
        null = pa.scalar(None, pa.string())
        pairs: list[tuple[str, pa.Array]] = []
        for name, arr in events.identifiers.items():
            if name == "contact_id":  # a JSON number, exactly the int() of the exact path
                pairs.append((name, pc.cast(contact_id_ints(arr), pa.string())))
            else:  # a JSON string, omitted when empty
                text = pc.cast(arr, pa.string())
                empty = pc.fill_null(pc.equal(text, ""), False)
                pairs.append((name, pc.if_else(empty, null, jsonfrag.strings(text))))
        identifiers = jsonfrag.obj(pairs, n)
        contact_obj = contact.json_object()
        props_obj = props.json_object()
        object_part: pa.Array | str = ""
        if events.object_type is not None:
            # Empty strings are omitted like NULL, and so is an object with no member left.
            def text(a: pa.Array) -> pa.Array:
                a = pc.cast(a, pa.string())
                return jsonfrag.strings(pc.if_else(pc.equal(a, ""), null, a))

            ids = jsonfrag.obj(
                [
                    (k, text(a))
                    for k, a in (("id", events.object_id), ("ext_id", events.object_ext_id))
                    if a is not None
                ],
                n,
            )
            ids = pc.if_else(pc.equal(ids, "{}"), null, ids)
            linked = jsonfrag.obj([("type", text(events.object_type)), ("identifiers", ids)], n)
            object_part = jsonfrag.optional_member("object", linked)
        body = jsonfrag.concat(
            '{"event_name":',
            jsonfrag.strings(events.names),
            ',"event_date":"',
            events.times,
            '","identifiers":',
            identifiers,
            jsonfrag.optional_member("contact_properties", contact_obj),
            jsonfrag.optional_member("event_properties", props_obj),
            object_part,
            "}",
        )
        # Rows the column-wise text cannot vouch for go the exact way.
        exact = pc.is_null(body)
        for name in props.nested_names():
            suspect = pc.match_substring_regex(props.json_values[name], _SUSPECT_KEY)
            exact = pc.or_(exact, pc.fill_null(suspect, False))
        for name in contact.nested_names():
            head = pc.utf8_slice_codeunits(
                pc.utf8_ltrim_whitespace(contact.json_values[name]), 0, 1
            )
            nested = pc.or_(pc.equal(head, "{"), pc.equal(head, "["))
            exact = pc.or_(exact, pc.fill_null(nested, False))
        # Sizes near a limit: the exact path measures the compact encoding.
        exact = pc.or_(exact, pc.greater(pc.binary_length(props_obj), MAX_PROPERTIES_BYTES // 2))
        exact = pc.or_(
            exact, pc.fill_null(pc.greater(pc.binary_length(body), MAX_BYTES // 2), True)
        )
        return jsonfrag.to_bytes(pc.if_else(exact, null, body))

    @override
    def request_overhead(self, count: int) -> int:
        return len(b'{"events":[]}') + count

    @override
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        joined = b",".join(item.payload for item in items)
        shape = variant or self.shape
        body = b'{"events":[' + joined + b"]}" if shape == "object" else b"[" + joined + b"]"
        return Request(
            self.path, body, self.auth_headers(), items, variant=shape, forced=variant is not None
        )

    @override
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        n = len(request.items)
        learned = None
        if status in (200, 201, 202, 204, 207) and request.variant != self._known:
            learned = Learned(settings={SHAPE_SETTING: request.variant})  # kept per account
        if status in (200, 201, 202, 204):
            return Outcome(delivered=list(range(n)), learned=learned)
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
                return Outcome(delivered=rest, rejected=rejected, learned=learned)
            if rejected:
                return Outcome(rejected=rejected, resend=rest)  # 400: nothing stored
        message = str(data.get("message", "")) if isinstance(data, dict) else ""
        if status == 400 and _SHAPE_REFUSED.search(message):
            if not request.forced:  # the other shape was not tried for these events yet
                other = "array" if request.variant == "object" else "object"
                log.warning(
                    "Brevo refused the %s batch body (%s); sending the %s shape instead "
                    "(remembered for this account once Brevo accepts it)",
                    request.variant,
                    message,
                    other,
                )
                return Outcome(resend=list(range(n)), resend_variant=other)
            return Outcome(
                fatal=request_fix(
                    "Brevo (400)",
                    message,
                    "Brevo refused both batch body shapes (a top-level array and "
                    '{"events": [...]}); check destination.base_url points at the '
                    "/v3/events/batch API, or use type brevo_event",
                )
            )
        # The request's size, not an event (413, or Brevo's 400 ``out_of_range`` for a body
        # over 512 KB or 200 events, §3.2): halves, as nothing was stored.
        oversize = status == 400 and isinstance(data, dict) and data.get("code") == "out_of_range"
        if status == 413 or oversize:
            if n == 1:
                return Outcome(rejected={0: f"Brevo {status}: {message or _excerpt(body)}"})
            return Outcome(split=True)
        # A 400 of an event's content lists it under errors[].eventIndex (batchEventsResponse,
        # all five fields required): one that points at no event is about the request.
        text = message or _excerpt(body)
        if status in (400, 422) and judge(status, text, item_detail=False) is About.REQUEST:
            return Outcome(fatal=request_fix(f"Brevo ({status})", text))
        return Outcome(fatal=f"Brevo answered {status}: {text}")


SHAPE_SETTING = "brevo_batch_body_shape"
# Go's decoder refusing the top-level array/object: the body has the other shape (§3.1). A
# field of one event reads "into Go struct field ...", which is about that event.
_SHAPE_REFUSED = re.compile(r"cannot unmarshal (?:array|object) into Go value of type")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def _excerpt(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace")


DESTINATION = BrevoEventsBatch
