"""The columnar events one chunk of source rows becomes: a leaf module (it imports no config,
no destination), so destinations and the mapper can both depend on it.

``Events`` is the canonical model of DESIGN.md held column-wise: one list (or Arrow array) per
field, one entry per source row. Properties are kept as columns (``Props``): the batch
destinations turn them into JSON text column-wise (``jsonfrag``); the per-row Python dicts other
destinations use are built only when first asked for. The value rules these conversions follow
are in ``mapping`` and docs/design.md "Value rules".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from . import jsonfrag
from .jsonfrag import json_default, loads_exact

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import pa, pc


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
        *,
        block: str = "properties",
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self.columns = columns
        self.json_columns = json_columns  # property names whose column holds JSON text
        self.zone = zone
        self.n = n
        # Found now, while the chunk is mapped: a caller reads the reasons once, before any
        # property value is built. A value JSON cannot carry rejects its row (never omitted).
        for name, arr in self.columns.items():
            where = f"{block}.{name}: column {(sources or {}).get(name, name)}"
            if name in self.json_columns:
                _json_problems(arr, where, reasons)
            else:
                _number_problems(arr, where, reasons)

    @property
    def names(self) -> list[str]:
        """The property names, in mapping order."""
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
        """One JSON-ready dict per row (omitted values left out); reasons a value cannot be sent are
        added to the shared reasons by row."""
        cols = [
            to_python(arr, self.zone, is_json=name in self.json_columns, column=name, reasons={})
            for name, arr in self.columns.items()
        ]
        return build_dicts(self.names, cols, self.n)

    def row(self, i: int) -> dict[str, Any]:
        """One row's dict without building the whole chunk's."""
        if "dicts" in self.__dict__:
            return self.dicts[i]
        cols = [
            to_python(
                arr.slice(i, 1),
                self.zone,
                is_json=name in self.json_columns,
                column=name,
                reasons={},
            )
            for name, arr in self.columns.items()
        ]
        return build_dicts(self.names, cols, 1)[0]

    @cached_property
    def json_values(self) -> dict[str, pa.Array]:
        """Property name → JSON value text (null = omitted)."""
        return {
            name: jsonfrag.values(
                arr, lambda a: _rfc3339(_utc(a, self.zone)), is_json=name in self.json_columns
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
    key_array: pa.Array  # the row key text (``key_strings``)
    dedup_array: pa.Array  # "<sync>:<key>": the id a destination dedups re-sends by
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

    @cached_property
    def keys(self) -> list[str]:
        """Row keys as Python strings, built only when a row needs its key (rejects)."""
        keys: list[str] = self.key_array.to_pylist()
        return keys

    @cached_property
    def dedup_ids(self) -> list[str]:
        """The dedup ids as Python strings (built on first use from ``dedup_array``)."""
        ids: list[str] = self.dedup_array.to_pylist()
        return ids

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
    but takes the *later* occurrence in a fold).

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
    arr: pa.Array, zone: str, *, is_json: bool, column: str, reasons: dict[int, str]
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
        # The number rule (``jsonfrag``): REAL widened by its digits; NaN and ±inf are rejects
        # (``Props``), None here.
        wide = jsonfrag.widen(arr)
        return pc.if_else(pc.is_finite(wide), wide, pa.scalar(None, pa.float64())).to_pylist()
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


NON_FINITE = "holds NaN or infinity, which JSON cannot carry; send NULL instead (e.g. NULLIF)"
TOO_LARGE = "holds a number beyond what JSON carries (±1.8e308, a 64-bit float)"


def _json_problems(arr: pa.Array, where: str, reasons: dict[int, str]) -> None:
    """Rows whose JSON text does not parse or holds a number no 64-bit float can hold (orjson
    refuses those; the vendors' parsers would read infinity or fail the request)."""
    for i, v in enumerate(arr.to_pylist()):
        if not isinstance(v, str):
            continue
        try:
            orjson.loads(v)
        except orjson.JSONDecodeError as exc:
            try:
                loads_exact(v)  # what orjson refuses but the exact parser reads (huge ints)
            except ValueError:
                reasons.setdefault(i, f"{where} holds invalid JSON")
                continue
            if "infinity" in str(exc):
                reasons.setdefault(i, f"{where} {TOO_LARGE}")


def _number_problems(arr: pa.Array, where: str, reasons: dict[int, str]) -> None:
    """Rows holding NaN or ±infinity, in a float column or inside a nested one."""
    if pa.types.is_floating(arr.type):
        for i in pc.indices_nonzero(jsonfrag.non_finite(arr)).to_pylist():
            reasons.setdefault(i, f"{where} {NON_FINITE}")
    elif pa.types.is_nested(arr.type) and _any_non_finite_leaf(arr):
        # Rare (checked column-wise first): find the rows in Python.
        for i, v in enumerate(arr.to_pylist()):
            if any(not math.isfinite(x) for x in _floats(v)):
                reasons.setdefault(i, f"{where} {NON_FINITE}")


def _any_non_finite_leaf(arr: pa.Array) -> bool:
    if pa.types.is_floating(arr.type):
        return bool(pc.any(jsonfrag.non_finite(arr)).as_py())
    if pa.types.is_struct(arr.type):
        return any(_any_non_finite_leaf(child) for child in arr.flatten())  # offsets applied
    if pa.types.is_map(arr.type):
        return _any_non_finite_leaf(arr.items)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return _any_non_finite_leaf(arr.flatten())
    if pa.types.is_fixed_size_list(arr.type):
        return _any_non_finite_leaf(arr.flatten())
    return False


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _floats(v)


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
