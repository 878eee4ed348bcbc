"""Columns → canonical events, vectorized per chunk.

``Events`` is the canonical model of DESIGN.md held column-wise: one list (or Arrow array) per
field, one entry per source row. Building it is Arrow compute. Properties are kept as columns
(``Props``): the batch destinations turn them into JSON text column-wise (``jsonfrag``); the
per-row Python dicts other destinations use are built only when first asked for.

Value rules (docs/design.md "Value rules"): event time always RFC 3339 with an offset (UTC);
naive timestamps are read in ``source.timezone`` (DST gap → forward by the gap, fold → first
occurrence: ``localize``); numbers keep the warehouse's exact digits (Decimal → its text, never
a float); date → ``YYYY-MM-DD``; JSON/struct → objects; NULL/NaN/NaT → the property is omitted;
a value that cannot become its field rejects its row. Dotted property names build nested
objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from . import jsonfrag
from .config import ColumnRef, SyncConfig
from .jsonfrag import json_default, loads_exact


@dataclass
class Chunk:
    """One chunk of source rows as an Arrow table, plus which string columns hold JSON."""

    table: pa.Table
    json_columns: frozenset[str] = frozenset()


class Props:
    """Mapped property columns of one chunk: name (dotted = nested) → Arrow column."""

    def __init__(
        self,
        columns: dict[str, pa.Array],
        json_columns: set[str],
        zone: str,
        n: int,
        reasons: dict[int, str],
    ) -> None:
        self.columns = columns
        self.json_columns = json_columns  # property names whose column holds JSON text
        self.zone = zone
        self.n = n
        self.reasons = reasons

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def release(self) -> None:
        """Drop the cached JSON fragments (kept alive otherwise by every item of the chunk)."""
        self.__dict__.pop("json_values", None)

    def nested_names(self) -> list[str]:
        """Properties whose values can nest (JSON, struct, list, map columns)."""
        return [
            name
            for name, arr in self.columns.items()
            if name in self.json_columns or pa.types.is_nested(arr.type)
        ]

    @cached_property
    def dicts(self) -> list[dict[str, Any]]:
        cols = [
            to_python(arr, self.zone, name in self.json_columns, name, self.reasons)
            for name, arr in self.columns.items()
        ]
        return build_dicts(self.names, cols, self.n)

    def row(self, i: int) -> dict[str, Any]:
        """One row's dict without building the whole chunk's."""
        if "dicts" in self.__dict__:
            return self.dicts[i]
        cols = [
            to_python(arr.slice(i, 1), self.zone, name in self.json_columns, name, {})
            for name, arr in self.columns.items()
        ]
        return build_dicts(self.names, cols, 1)[0]

    @cached_property
    def json_values(self) -> dict[str, pa.Array]:
        """Property name → JSON value text (null = omitted)."""
        return {
            name: jsonfrag.values(
                arr, lambda a: _rfc3339(_utc(a, self.zone)), name in self.json_columns
            )
            for name, arr in self.columns.items()
        }

    def json_object(self, names: list[str] | None = None) -> pa.Array:
        """``{...}`` per row with the given properties (default all); nested by dots."""
        vals = self.json_values
        chosen = self.names if names is None else names
        return jsonfrag.obj([(name, vals[name]) for name in chosen], self.n)


@dataclass
class Events:
    """Canonical events of one chunk, column-wise (entry i of every field is row i)."""

    n: int
    keys: list[str]
    dedup_ids: list[str]
    cursor: pa.Array
    pk: list[pa.Array]
    names: pa.Array
    times: pa.Array  # RFC 3339 strings with offset; null where the time was NULL
    time_utc: pa.Array  # timestamp[ms, UTC], for range rules
    identifiers: dict[str, pa.Array]
    event_props: Props
    contact_props: Props
    value: pa.Array | None = None
    value_currency: pa.Array | None = None
    object_type: pa.Array | None = None  # string per row: the literal or the mapped column
    object_id: pa.Array | None = None
    object_ext_id: pa.Array | None = None
    # Mapping-level problems (e.g. a JSON column that does not parse): row -> reason.
    reasons: dict[int, str] = field(default_factory=dict)

    def position(self, i: int) -> tuple[Any, ...]:
        """The row's place in the read order: (cursor, *primary key), as Python values."""
        return (self.cursor[i].as_py(), *(col[i].as_py() for col in self.pk))

    @property
    def event_properties(self) -> list[dict[str, Any]]:
        """Per-row event property dicts (built on first use)."""
        return self.event_props.dicts

    @property
    def contact_properties(self) -> list[dict[str, Any]]:
        """Per-row contact property dicts (built on first use)."""
        return self.contact_props.dicts

    def identifier(self, name: str, i: int) -> Any:
        arr = self.identifiers.get(name)
        return None if arr is None else arr[i].as_py()


def _utc(arr: pa.Array, zone: str) -> pa.Array:
    """Timestamp/date array → timestamp[ms, UTC]; naive values are read in ``zone``."""
    if pa.types.is_date(arr.type):
        arr = pc.cast(pc.cast(arr, pa.date32()), pa.timestamp("ms"))
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is None:
            arr = localize(arr, zone)
        # Truncate to milliseconds (Klaviyo keeps seconds; a safe cast would refuse).
        return pc.cast(arr, pa.timestamp("ms", tz="UTC"), safe=False)
    raise TypeError(f"expected a timestamp or date column, got {arr.type}")


def localize(naive: pa.Array, zone: str) -> pa.Array:
    """Naive wall-clock times read in ``zone`` → zoned instants, by one rule (the one of
    Python's zoneinfo with fold=0 and java.time; PostgreSQL's ``::timestamptz`` agrees on gaps
    but takes the *later* occurrence in a fold):

    - a time in a DST *gap* (it never happened) moves forward by the gap's length: Paris
      2026-03-29 02:30 → 03:30+02:00 (01:30Z);
    - a time in a *fold* (it happened twice) is the first occurrence, the earlier instant:
      Paris 2026-10-25 02:30 → 02:30+02:00 (00:30Z).

    Column-wise: Arrow's "earliest" puts a gap time at the last instant before the gap, whose
    offset is the one in force before it; applying that offset to the wall time gives the
    rule. Outside gaps the same arithmetic returns Arrow's own answer unchanged.
    """
    first = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="earliest")
    if zone in ("UTC", "Etc/UTC"):
        return first  # no gaps, no folds
    wall = pc.cast(pc.local_timestamp(first), pa.int64())
    at = pc.cast(first, pa.int64())
    in_gap = pc.fill_null(pc.not_equal(wall, pc.cast(naive, pa.int64())), False)
    if not pc.any(in_gap).as_py():
        return first
    offset = pc.subtract(wall, at)
    shifted = pc.subtract(pc.cast(naive, pa.int64()), offset)
    return pc.cast(pc.if_else(in_gap, shifted, at), first.type)


def _rfc3339(utc_ms: pa.Array) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS.mmm+00:00``. Casting the naive view to text is ~20x faster than
    strftime or casting the zoned array (which converts time zones row by row)."""
    naive = pc.cast(pc.cast(utc_ms, pa.int64()), pa.timestamp("ms"))
    text = pc.replace_substring(pc.cast(naive, pa.string()), " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, "+00:00", "")


def to_python(
    arr: pa.Array, zone: str, is_json: bool, column: str, reasons: dict[int, str]
) -> list[Any]:
    """Arrow column → JSON-ready Python values (None where the property is to be omitted)."""
    t = arr.type
    if pa.types.is_null(t):
        return [None] * len(arr)
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        return _rfc3339(_utc(arr, zone)).to_pylist()
    if pa.types.is_date32(t):
        return pc.cast(arr, pa.string()).to_pylist()
    if pa.types.is_decimal(t):
        # Decimal objects: the encoder writes their exact text (never a float).
        return arr.to_pylist()
    if pa.types.is_floating(t):
        # NaN and ±inf have no JSON form: omitted, like NULL (as the column-wise encoder does).
        return pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, t)).to_pylist()
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return pc.cast(arr, pa.string()).to_pylist()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return [None if v is None else v.hex() for v in arr.to_pylist()]
    values = arr.to_pylist()
    if is_json:
        out: list[Any] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            try:
                out.append(loads_exact(v))
            except ValueError:
                reasons.setdefault(i, f"column {column} holds invalid JSON")
                out.append(None)
        return out
    if (
        pa.types.is_struct(t)
        or pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_map(t)
    ):
        # Nested values may hold dates/decimals: round-trip through the encoder's rules
        # (numbers exact both ways).
        return [
            None
            if v is None
            else loads_exact(
                orjson.dumps(
                    v, default=json_default, option=orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
                )
            )
            for v in values
        ]
    return values


def _nested_builder(names: list[str]) -> list[tuple[str, ...]]:
    return [tuple(n.split(".")) for n in names]


def build_dicts(names: list[str], columns: list[list[Any]], n: int) -> list[dict[str, Any]]:
    """Row dicts from columns, skipping None; dotted names nest."""
    if not names:
        return [{} for _ in range(n)]
    if not any("." in name for name in names):
        return [
            {k: v for k, v in zip(names, row, strict=True) if v is not None}
            for row in zip(*columns, strict=True)
        ]
    paths = _nested_builder(names)
    out: list[dict[str, Any]] = []
    for row in zip(*columns, strict=True):
        d: dict[str, Any] = {}
        for path, v in zip(paths, row, strict=True):
            if v is None:
                continue
            node = d
            for part in path[:-1]:
                nxt = node.get(part)
                if not isinstance(nxt, dict):
                    nxt = node[part] = {}
                node = nxt
            node[path[-1]] = v
        out.append(d)
    return out


def key_strings(pk: list[pa.Array]) -> pa.Array:
    """The row key as text: the primary key value, or values joined by ',' (escaped)."""
    if len(pk) == 1:
        return pc.cast(pk[0], pa.string())
    parts = [
        pc.replace_substring(
            pc.replace_substring(pc.cast(col, pa.string()), "%", "%25"), ",", "%2C"
        )
        for col in pk
    ]
    return pc.binary_join_element_wise(*parts, ",")


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
    as its number texts, rows whose text is not a JSON number rejected."""
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return arr
    if pa.types.is_null(t):
        return arr
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        text = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
        ok = pc.fill_null(pc.match_substring_regex(text, _JSON_NUMBER), False)
        bad = pc.and_(pc.invert(ok), pc.is_valid(arr))
        for i in pc.indices_nonzero(bad).to_pylist():
            reasons.setdefault(
                i, f"{field}: column {column} holds text that is not a number (e.g. 18.99)"
            )
        return pc.if_else(ok, text, pa.scalar(None, pa.string()))
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
        self.prefix = pa.scalar(f"{sync.name}:")

    def _col(self, table: pa.Table, name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    def map(self, chunk: Chunk) -> Events:
        t, m, zone = chunk.table, self.m, self.zone
        n = t.num_rows
        reasons: dict[int, str] = {}
        pk = [self._col(t, c) for c in self.sync.source.primary_key]
        keys_arr = key_strings(pk)
        keys: list[str] = keys_arr.to_pylist()
        dedup_ids: list[str] = pc.binary_join_element_wise(self.prefix, keys_arr, "").to_pylist()

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

        def props(mapping: dict[str, str]) -> Props:
            return Props(
                {name: self._col(t, col) for name, col in mapping.items()},
                {name for name, col in mapping.items() if col in chunk.json_columns},
                zone,
                n,
                reasons,
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
            keys=keys,
            dedup_ids=dedup_ids,
            cursor=self._col(t, self.sync.cursor),
            pk=pk,
            names=names,
            times=times,
            time_utc=time_utc,
            identifiers=identifiers,
            event_props=props(m.event_properties),
            contact_props=props(m.contact_properties),
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
