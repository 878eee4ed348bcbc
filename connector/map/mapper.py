"""Columns → canonical events (``events.Events``), vectorized per chunk by the ``Mapper``.

Building the events is Arrow compute; the ``Events``/``Props`` types and the value conversions
they use live in the leaf module ``events`` (re-exported here).

Value rules (docs/design.md "Value rules"): event time always RFC 3339 with an offset (UTC);
naive timestamps are read in ``source.timezone`` (DST gap → forward by the gap, fold → first
occurrence: ``localize``); numbers keep the warehouse's exact digits (Decimal → its text, never
a float, never an exponent); floats one spelling on every path; date → ``YYYY-MM-DD``;
JSON/struct → objects; NULL, NaT and JSON ``null`` → the property is omitted; NaN, ±infinity and
numbers beyond a 64-bit float reject their row, as does a value that cannot become its field.
Dotted property names build nested objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..config.sections import ColumnRef
from ..config.sync_file import SyncConfig
from ..model import jsonfrag
from ..model.events import (
    NON_FINITE,
    TOO_LARGE,
    Chunk,
    Events,
    Props,
    _rfc3339,
    _utc,
    build_dicts,
    key_strings,
    localize,
    to_python,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import pa, pc


__all__ = [
    "Chunk",
    "Events",
    "Mapper",
    "Props",
    "_rfc3339",
    "_utc",
    "build_dicts",
    "key_strings",
    "localize",
    "to_python",
]


# --------------------------------------------------------------------------- conversions
# A value that cannot become what its field needs rejects its row (reason: column, field and
# value kind, never the value itself); the other rows go on.

_JSON_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"


def _kind(t: pa.DataType) -> str:
    """A value kind for messages: ``struct``, ``list``, ``string``, ``int64``..."""
    return str(t).split("<", 1)[0].split("[", 1)[0]


def _reject_all(arr: pa.Array, reason: str, reasons: dict[int, str]) -> pa.Array:
    for i in pc.indices_nonzero(pc.is_valid(arr)).to_pylist():
        reasons.setdefault(i, reason)
    return pa.nulls(len(arr), pa.string())


def _text(arr: pa.Array, column: str, field: str, reasons: dict[int, str]) -> pa.Array:
    """A column as text (names, identifiers, codes); a kind with no text form (struct, list,
    invalid UTF-8) rejects its rows."""
    if pa.types.is_string(arr.type) or pa.types.is_null(arr.type):
        return arr
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        why = f"{field}: column {column} holds {_kind(arr.type)} values, which are not text"
        return _reject_all(arr, why + "; map a text or integer column", reasons)


def _numbers(arr: pa.Array, column: str, field: str, reasons: dict[int, str]) -> pa.Array:
    """A numeric column as is (``jsonfrag.numbers`` writes its exact digits); a text column
    as its number texts. A row whose text is not a JSON number, or whose number JSON cannot
    carry (NaN, ±infinity, beyond a 64-bit float: ``1e999``), is rejected, never omitted."""
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_null(t):
        return arr
    if pa.types.is_floating(t):
        bad = jsonfrag.non_finite(arr)
        for i in pc.indices_nonzero(bad).to_pylist():
            reasons.setdefault(i, f"{field}: column {column} {NON_FINITE}")
        return pc.if_else(bad, pa.scalar(None, t), arr)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
        ok = pc.fill_null(pc.match_substring_regex(text, _JSON_NUMBER), False)
        bad = pc.and_(pc.invert(ok), pc.is_valid(arr))
        for i in pc.indices_nonzero(bad).to_pylist():
            reasons.setdefault(
                i, f"{field}: column {column} holds text that is not a number (e.g. 18.99)"
            )
        text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
        huge = pc.fill_null(pc.invert(pc.is_finite(pc.cast(text, pa.float64()))), False)
        for i in pc.indices_nonzero(huge).to_pylist():
            reasons.setdefault(i, f"{field}: column {column} {TOO_LARGE}")
        return pc.if_else(huge, pa.scalar(None, pa.string()), text)
    why = f"{field}: column {column} holds {_kind(t)} values, which are not numbers"
    return _reject_all(arr, why + "; map a numeric column", reasons)


def _times(arr: pa.Array, column: str, zone: str, reasons: dict[int, str]) -> pa.Array:
    """The event-time column → timestamp[ms, UTC]. Text is read as ISO 8601 per row (naive
    text in ``zone``); rows that do not parse, and columns of another kind, are rejected."""
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return _utc(arr, zone)
    out_type = pa.timestamp("ms", tz="UTC")
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        why = f"event_time: column {column} holds {_kind(t)} values, not timestamps"
        _reject_all(arr, why + "; map a timestamp or date column", reasons)
        return pa.nulls(len(arr), out_type)
    naive: list[datetime | None] = []
    aware: list[datetime | None] = []
    for i, v in enumerate(arr.to_pylist()):
        parsed = None
        if v is not None:
            try:
                parsed = datetime.fromisoformat(v.strip())
            except ValueError:
                reasons.setdefault(
                    i, f"event_time: column {column} holds text that is not an ISO 8601 time"
                )
        is_aware = parsed is not None and parsed.tzinfo is not None
        naive.append(parsed if parsed is not None and not is_aware else None)
        aware.append(parsed if is_aware else None)
    local = _utc(pa.array(naive, pa.timestamp("us")), zone)
    fixed = pc.cast(pa.array(aware, pa.timestamp("us", tz="UTC")), out_type, safe=False)
    return pc.if_else(pc.is_valid(fixed), fixed, local)


class Mapper:
    """Turns chunks of one sync's source rows into ``Events``."""

    def __init__(self, sync: SyncConfig) -> None:
        self.sync = sync
        self.m = sync.mapping
        self.zone = sync.source.timezone
        self.prefix = f"{sync.name}:"

    def _col(self, table: pa.Table, name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    def map(self, chunk: Chunk) -> Events:
        """Map one page of source rows to columnar events.

        Rows that cannot be events (NULL event name or time, a value the mapping cannot convert) are
        kept with their reason in ``Events.reasons`` for the run to record as rejects.
        """
        t, m, zone = chunk.table, self.m, self.zone
        n = t.num_rows
        reasons: dict[int, str] = {}
        pk = [self._col(t, c) for c in self.sync.source.primary_key]
        keys_arr = key_strings(pk)
        dedup_arr = pc.binary_join_element_wise(pa.scalar(self.prefix), keys_arr, "")

        if isinstance(m.event_name, ColumnRef):
            col = m.event_name.column
            names = _text(self._col(t, col), col, "event_name", reasons)
        else:
            names = pa.array([m.event_name] * n, pa.string())

        assert m.event_time is not None  # event syncs (config._flow_fields)
        time_utc = _times(self._col(t, m.event_time), m.event_time, zone, reasons)
        times = _rfc3339(time_utc)

        identifiers = {}
        for field_name, col in m.identifiers.items():
            arr = self._col(t, col)
            if not pa.types.is_integer(arr.type):
                arr = _text(arr, col, f"identifiers.{field_name}", reasons)
            identifiers[field_name] = arr

        def props(mapping: dict[str, str], block: str) -> Props:
            return Props(
                {name: self._col(t, col) for name, col in mapping.items()},
                {name for name, col in mapping.items() if col in chunk.json_columns},
                zone,
                n,
                reasons,
                block=block,
                sources=mapping,
            )

        value = None
        if m.value:
            value = _numbers(self._col(t, m.value), m.value, "value", reasons)
        currency = None
        if isinstance(m.value_currency, ColumnRef):
            col = m.value_currency.column
            currency = _text(self._col(t, col), col, "value_currency", reasons)
        elif m.value_currency:
            currency = pa.array([m.value_currency] * n, pa.string())

        obj = m.object
        obj_type = None
        if obj is not None:
            obj_type = (
                _text(self._col(t, obj.type.column), obj.type.column, "object.type", reasons)
                if isinstance(obj.type, ColumnRef)
                else pa.array([obj.type] * n, pa.string())
            )
        return Events(
            n=n,
            key_array=keys_arr,
            dedup_array=dedup_arr,
            cursor=self._col(t, self.sync.cursor),
            pk=pk,
            names=names,
            times=times,
            time_utc=time_utc,
            identifiers=identifiers,
            event_props=props(m.event_properties, "event_properties"),
            contact_props=props(m.contact_properties, "contact_properties"),
            value=value,
            value_currency=currency,
            object_type=obj_type,
            object_id=(
                _text(self._col(t, obj.id), obj.id, "object.id", reasons)
                if obj and obj.id
                else None
            ),
            object_ext_id=(
                _text(self._col(t, obj.ext_id), obj.ext_id, "object.ext_id", reasons)
                if obj and obj.ext_id
                else None
            ),
            reasons=reasons,
        )
