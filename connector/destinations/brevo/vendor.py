"""Brevo: what its event endpoints share (contracts.md §1-§4), for ``brevo_batch``,
``brevo_event`` and ``brevo_tracker``. A vendor module: endpoint modules import it, never each
other.

Per-event rules of ``/v3/events`` and ``/v3/events/batch``, from
https://developers.brevo.com/reference/create-event and
https://developers.brevo.com/docs/event-endpoints: ``event_name`` 1-255 characters of
``[A-Za-z0-9_-]``; at least one identifier (``contact_id`` an int64: OpenAPI ``format:
int64``); ``event_properties`` keys 1-255 characters of ``[A-Za-z0-9_-]``, values of any JSON
type (arrays too) and the object ≤ 50 KB; contact attributes are scalars. Errors are ``{code,
message}`` bodies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ...core.options import RateLimit
from ...model.events import Events
from ..base import Vendor, dumps
from ..checks import no_identifier_rows, regex_failures, static_key_problems

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ...core.lazy import pa, pc


VENDOR = Vendor(name="brevo", title="Brevo")

MAX_PROPERTIES_BYTES = 50 * 1024
EVENT_NAME = r"^[A-Za-z0-9_-]{1,255}$"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
IDENTIFIERS = ("email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id", "contact_id")


def brevo_identifiers(events: Events, i: int, cols: dict[str, list[Any]]) -> dict[str, Any]:
    """Row ``i``'s Brevo ``identifiers`` object from the identifier columns ``cols``: empty values
    left out, ``contact_id`` as an integer, the others as text."""
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
    if contact_id is not None:
        for rows, reason in contact_id_problems(contact_id):
            add(rows, reason)
    return reasons


# identifiers.contact_id: "type": "integer", "format": "int64" (the OpenAPI of POST /v3/events and
# /v3/events/batch): a text column holds its digits, sent exactly or refused, never cut.
INT64_MAX = 2**63 - 1
CONTACT_ID_RANGE = f"contact_id is beyond Brevo's limit (a 64-bit integer, at most {INT64_MAX})"


def contact_id_problems(arr: pa.Array) -> list[tuple[list[int], str]]:
    """Rows whose ``contact_id`` is not an integer, or not one Brevo's int64 can hold."""
    if pa.types.is_integer(arr.type):
        if pa.types.is_unsigned_integer(arr.type) and arr.type.bit_width == 64:
            over = pc.fill_null(pc.greater(arr, pa.scalar(INT64_MAX, arr.type)), False)
            return [(_indices(over), CONTACT_ID_RANGE)]
        return []
    too_big = pc.invert(pc.fill_null(_fits_int64(arr), True))
    return [
        (regex_failures(arr, r"^[0-9]+$"), "contact_id is not an integer"),
        (_indices(too_big), CONTACT_ID_RANGE),
    ]


def _fits_int64(text: pa.Array) -> pa.Array:
    """Digit texts whose value is at most INT64_MAX (null where the text is not digits)."""
    text = pc.cast(text, pa.string())
    digits = pc.match_substring_regex(text, r"^[0-9]+$")
    bare = pc.utf8_ltrim(text, characters="0")
    size = pc.utf8_length(bare)
    # Same length: digit strings compare like their numbers.
    fits = pc.or_(
        pc.less(size, 19),
        pc.and_(pc.equal(size, 19), pc.less_equal(bare, str(INT64_MAX))),
    )
    return pc.if_else(digits, fits, pa.scalar(None, pa.bool_()))


def contact_id_ints(arr: pa.Array) -> pa.Array:
    """``contact_id`` as int64 (the column-wise encoder): null where ``contact_id_problems``
    refuses the row."""
    if pa.types.is_integer(arr.type):
        if pa.types.is_unsigned_integer(arr.type) and arr.type.bit_width == 64:
            over = pc.fill_null(pc.greater(arr, pa.scalar(INT64_MAX, arr.type)), False)
            arr = pc.if_else(over, pa.scalar(None, arr.type), arr)
        return pc.cast(arr, pa.int64())
    text = pc.cast(arr, pa.string())
    ok = pc.fill_null(_fits_int64(text), False)
    return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.int64())


def _indices(mask: pa.Array) -> list[int]:
    rows: list[int] = pc.indices_nonzero(mask).to_pylist()
    return rows


def key_problem(value: Any, where: str = "") -> str | None:
    """First event-property key, at any depth, that breaks Brevo's key rule."""
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{where}.{k}" if where else str(k)
            if not _KEY.match(str(k)):
                return f"event property key {path!r} must be 1-255 letters, digits, '-' or '_'"
            found = key_problem(v, path)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = key_problem(v, f"{where}[{i}]")
            if found:
                return found
    return None


def encode_brevo_event(
    events: Events,
    i: int,
    idents: dict[str, list[Any]],
    names: list[Any],
    times: list[Any],
    contact: dict[str, Any],
    props: dict[str, Any],
) -> tuple[dict[str, Any] | None, str]:
    """The §2 body of row ``i`` (also one element of a §3 batch), or (None, reason) when a
    per-row rule fails. ``contact`` and ``props`` are the row's property dicts."""
    for k, v in contact.items():
        if isinstance(v, dict | list):
            return None, (
                f"contact property {k} is an object/array; Brevo contact attributes "
                "take a string, number or boolean"
            )
    # Values of any JSON type: the OpenAPI of both endpoints types each event property as
    # string, integer, boolean, object (of "Any type") or array (of "Any type").
    problem = key_problem(props)
    if problem:
        return None, problem
    if props:
        size = len(dumps(props))
        if size > MAX_PROPERTIES_BYTES:
            return None, f"event_properties encode to {size} bytes (Brevo max 50 KB)"
    event: dict[str, Any] = {
        "event_name": names[i],
        "event_date": times[i],
        "identifiers": brevo_identifiers(events, i, idents),
    }
    if contact:
        event["contact_properties"] = contact
    if props:
        event["event_properties"] = props
    if events.object_type is not None:
        # Empty members are omitted (never sent as ""), and so is an object left empty.
        linked: dict[str, Any] = {}
        obj_type = events.object_type[i].as_py()
        if obj_type:
            linked["type"] = obj_type
        obj_ids: dict[str, Any] = {}
        for name, col in (("id", events.object_id), ("ext_id", events.object_ext_id)):
            value = None if col is None else col[i].as_py()
            if value:
                obj_ids[name] = value
        if obj_ids:
            linked["identifiers"] = obj_ids
        if linked:
            event["object"] = linked
    return event, ""


def brevo_check_mapping(mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Config problems the mapping alone shows for a Brevo endpoint, as ``(field, message)``:
    property keys outside Brevo's charset and a literal event name it would refuse."""
    out = static_key_problems(
        mapping, "event_properties", _KEY, "must be 1-255 letters, digits, '-' or '_' for Brevo"
    )
    # A literal name that breaks the rule would reject every row: say so before reading any.
    name = mapping.get("event_name")
    if isinstance(name, str) and not re.match(EVENT_NAME, name):
        out.append(
            (
                "mapping.event_name",
                f"{name!r}: Brevo event names must be 1-255 letters, digits, '-' or '_' "
                "(e.g. order_placed)",
            )
        )
    return out


# https://developers.brevo.com/docs/api-limits — POST /v3/events per tier.
TIER_RATES: dict[str, RateLimit] = {
    "general": RateLimit(per_second=10, per_minute=None, per_hour=36_000),
    "advanced": RateLimit(per_second=20, per_minute=None, per_hour=72_000),
    "extended": RateLimit(per_second=60, per_minute=None, per_hour=None),
}


def brevo_message(status: int, body: bytes) -> str:
    """``{code, message}`` → "code: message" (or an excerpt of a body that is not JSON)."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and (data.get("message") or data.get("code")):
        code, message = data.get("code"), data.get("message")
        return f"{code}: {message}" if code and message else str(message or code)
    return body[:200].decode("utf-8", "replace") or f"HTTP {status}"


def brevo_headers(key_header: str, api_key: str) -> dict[str, str]:
    """JSON request headers with the account key under ``key_header`` (api-key or ma-key)."""
    return {key_header: api_key, "content-type": "application/json", "accept": "application/json"}
