"""JSON text built column-wise with Arrow compute, so no per-row Python builds the bodies.

Every function takes Arrow arrays and returns a string array of JSON *fragments*, null where the
value is to be omitted. Rows that need Python (control characters in strings, nested
struct/list values) are patched individually through orjson, so the output is always valid JSON.

Note: ``binary_join_element_wise(..., null_handling="skip")`` drops rows whose inputs are all
null in pyarrow 26 (the result is shorter than the input), so every join here is null-free.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

_EMPTY = pa.scalar("", pa.string())


def concat(*parts: pa.Array | pa.Scalar | str) -> pa.Array:
    """Element-wise concatenation; null where any part is null."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, _EMPTY, null_handling="emit_null")


def strings(arr: pa.Array) -> pa.Array:
    """JSON string literals for a string array (quotes and escapes)."""
    s = pc.cast(arr, pa.string())
    escaped = pc.replace_substring(pc.replace_substring(s, "\\", "\\\\"), '"', '\\"')
    out = concat('"', escaped, '"')
    ctrl = pc.fill_null(pc.match_substring_regex(s, "[\\x00-\\x1f]"), False)
    if pc.any(ctrl).as_py():
        rows = [i for i, c in enumerate(ctrl.to_pylist()) if c]
        values = s.to_pylist()
        fixed = out.to_pylist()
        for i in rows:
            fixed[i] = orjson.dumps(values[i]).decode()
        out = pa.array(fixed, pa.string())
    return out


def _json_default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def python_values(arr: pa.Array) -> pa.Array:
    """Fallback for nested types: orjson per row."""
    opts = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
    return pa.array(
        [
            None if v is None else orjson.dumps(v, default=_json_default, option=opts).decode()
            for v in arr.to_pylist()
        ],
        pa.string(),
    )


def numbers(arr: pa.Array) -> pa.Array:
    """Finite numbers as JSON numbers; NaN/±inf become null (omitted)."""
    if pa.types.is_decimal(arr.type):
        arr = pc.cast(arr, pa.float64())
    if pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, arr.type))
    return pc.cast(arr, pa.string())


def values(arr: pa.Array, utc_text: Any, is_json: bool) -> pa.Array:
    """Any Arrow column → JSON value fragments (null where the property is to be omitted).

    ``utc_text`` turns a timestamp/date array into RFC 3339 text (the mapper's time rules).
    """
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_boolean(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return numbers(arr)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(arr, pa.string()) if is_json else strings(arr)
    if pa.types.is_date32(t):
        return concat('"', pc.cast(arr, pa.string()), '"')
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        return concat('"', utc_text(arr), '"')
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return strings(pc.cast(arr, pa.string()))
    return python_values(arr)


def key(name: str) -> str:
    return orjson.dumps(name).decode()


def obj(pairs: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """``{"k": v, ...}`` per row, omitting null values; ``{}`` when all are null.

    Dotted keys (``video.title``) nest: ``{"video": {"title": ...}}``; an empty nested object
    is omitted like a null value.
    """
    if not pairs:
        return pa.array(["{}"] * n, pa.string())
    groups: dict[str, list[tuple[str, pa.Array]]] = {}
    leaves: list[tuple[str, pa.Array]] = []
    order: list[tuple[str, bool]] = []
    for name, arr in pairs:
        head, dot, rest = name.partition(".")
        if dot:
            if head not in groups:
                groups[head] = []
                order.append((head, True))
            groups[head].append((rest, arr))
        else:
            leaves.append((name, arr))
            order.append((name, False))
    parts: list[pa.Array] = []
    leaf_map = dict(leaves)
    for name, nested in order:
        if nested:
            inner = obj(groups[name], n)
            value = pc.if_else(pc.equal(inner, "{}"), pa.scalar(None, pa.string()), inner)
        else:
            value = leaf_map[name]
        parts.append(pc.fill_null(concat(key(name) + ":", value, ","), ""))
    body = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, _EMPTY)
    return concat("{", pc.utf8_rtrim(body, characters=","), "}")


def optional_member(name: str, value: pa.Array, empty: str | None = "{}") -> pa.Array:
    """``,"name":value`` or "" where the value is null (or equals ``empty``)."""
    if empty is not None:
        value = pc.if_else(pc.equal(value, empty), pa.scalar(None, pa.string()), value)
    return pc.fill_null(concat("," + key(name) + ":", value), "")


def to_bytes(arr: pa.Array) -> list[bytes | None]:
    """The fragments as bytes; None where a fragment is null."""
    return pc.cast(arr, pa.binary()).to_pylist()
