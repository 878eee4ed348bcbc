"""JSON text built column-wise with Arrow compute, so no per-row Python builds the bodies.

Every function takes Arrow arrays and returns a string array of JSON *fragments*, null where the
value is to be omitted. Rows that need Python (control characters in strings, nested
struct/list values) are patched individually through orjson, so the output is always valid JSON.

Note: ``binary_join_element_wise(..., null_handling="skip")`` drops rows whose inputs are all
null in pyarrow 26 (the result is shorter than the input), so every join here is null-free.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import np, pa, pc


# A plain str (not a module-level pa.scalar): creating Arrow values at import time would make
# pyarrow import pandas before ``process.keep_pandas_out`` can run.
_EMPTY = ""


def concat(*parts: pa.Array | pa.Scalar | str) -> pa.Array:
    """Element-wise concatenation; null where any part is null."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, _EMPTY, null_handling="emit_null")


def _bytes_of(s: pa.Array) -> np.ndarray | None:
    """The UTF-8 bytes a string array's values occupy (a superset when sliced), or None."""
    if not pa.types.is_string(s.type) or len(s) == 0:
        return None
    data = s.buffers()[2]
    return np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)


def strings(arr: pa.Array) -> pa.Array:
    """JSON string literals for a string array (quotes and escapes)."""
    s = pc.cast(arr, pa.string())
    raw = _bytes_of(s)  # one vectorised pass tells which escapes the column needs at all
    escaped = s
    if raw is None or (raw == 0x5C).any():
        escaped = pc.replace_substring(escaped, "\\", "\\\\")
    if raw is None or (raw == 0x22).any():
        escaped = pc.replace_substring(escaped, '"', '\\"')
    out = concat('"', escaped, '"')
    if raw is not None and not (raw < 0x20).any():
        return out
    ctrl = pc.fill_null(pc.match_substring_regex(s, "[\\x00-\\x1f]"), False)
    if pc.any(ctrl).as_py():
        rows = [i for i, c in enumerate(ctrl.to_pylist()) if c]
        values = s.to_pylist()
        fixed = out.to_pylist()
        for i in rows:
            fixed[i] = orjson.dumps(values[i]).decode()
        out = pa.array(fixed, pa.string())
    return out


class JsonNumber(Decimal):
    """A number read from a JSON column's text (``loads_exact``): it is written back with the
    spelling it was read with (``1e-7`` stays ``1e-7``), as the column-wise path copies it."""

    text: str


def _json_number(text: str) -> JsonNumber:
    number = JsonNumber(text)
    number.text = text
    return number


def decimal_text(value: Decimal) -> str:
    """A warehouse DECIMAL's exact text with its scale, never an exponent.

    ``0.0000000001`` (not ``1E-10``), ``5.00``, ``0.0000000000``; a JSON number keeps its own
    spelling instead."""
    if isinstance(value, JsonNumber):
        return value.text
    exponent = value.as_tuple().exponent
    return format(value, "f") if isinstance(exponent, int) and exponent < 0 else str(value)


def json_default(value: Any) -> Any:
    """orjson's fallback: a Decimal is written as its exact text (a JSON number, never a
    float round-trip, never an exponent the warehouse did not write); bytes as hex; anything
    else as its text."""
    if isinstance(value, Decimal):
        return orjson.Fragment(decimal_text(value)) if value.is_finite() else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


# A fraction, an exponent or 16+ digits: a number a float could change (18.99 stays, but
# 12345678901234567.89, 2**64 or the spelling 5.00 would not).
_INEXACT = re.compile(r"\d[.eE]|\d{16}")


def _int(text: str) -> int | Decimal:
    # orjson writes integers up to 64 bits; a wider one stays exact as a Decimal.
    return int(text) if len(text) < 19 else Decimal(text)


def loads_exact(text: str | bytes) -> Any:
    """JSON text → Python values whose numbers keep their exact value and spelling.

    orjson (fast) when the text holds only short integers; otherwise the standard parser with
    fractions and exponents as ``JsonNumber`` (which ``json_default`` writes back verbatim)."""
    s = text.decode() if isinstance(text, (bytes, bytearray)) else text
    if not _INEXACT.search(s):
        return orjson.loads(s)
    return json.loads(s, parse_float=_json_number, parse_int=_int)


def python_values(arr: pa.Array) -> pa.Array:
    """Fallback for nested types: orjson per row."""
    opts = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
    return pa.array(
        [
            None if v is None else orjson.dumps(v, default=json_default, option=opts).decode()
            for v in arr.to_pylist()
        ],
        pa.string(),
    )


# --------------------------------------------------------------------------- the number rule
# One spelling per number on every path (column-wise here, per row through ``json_default`` and
# orjson): integers as their digits; DECIMAL as its digits with its scale; a float in orjson's
# shortest round-trip form (``1.0``, ``-0.0``, ``0.1``, ``1e+16``), so a float always reads as
# one; a REAL is widened by its shortest digits (``0.1``, not ``0.10000000149011612``). NaN and
# ±infinity have no JSON form: they are rejects (``model.events``), and null here.


def widen(arr: pa.Array) -> pa.Array:
    """A float column as float64; REAL/half floats by their shortest digits (0.1 stays 0.1)."""
    if pa.types.is_float64(arr.type):
        return arr
    return pc.cast(pc.cast(arr, pa.string()), pa.float64())


def _float_texts(arr: pa.Array) -> pa.Array:
    """orjson's text of every finite float, null elsewhere (one orjson call for the column)."""
    arr = widen(arr)
    finite = pc.fill_null(pc.is_finite(arr), False)
    if len(arr) == 0:
        return pa.array([], pa.string())
    values = pc.if_else(finite, arr, 0.0).to_numpy(zero_copy_only=False)
    # "[a,b,c]" → "a,b,c": a float's text holds no comma.
    blob = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    joined = pa.array([blob], pa.large_binary())
    texts = pc.split_pattern(joined, b",").flatten().cast(pa.large_string()).cast(pa.string())
    return pc.if_else(finite, texts, pa.scalar(None, pa.string()))


def _decimal_texts(arr: pa.Array) -> pa.Array:
    """A DECIMAL column's exact digits with its scale. Arrow writes values under 1e-6 with an
    exponent (``1E-10``, ``0E-10``): those rows are rewritten as ``0.`` and the unscaled
    digits padded to the scale."""
    text = pc.cast(arr, pa.string())
    scale = arr.type.scale
    if scale <= 6:  # an exponent needs (digits - 1) - scale < -6
        return text
    sci = pc.fill_null(pc.match_substring(text, "E"), False)
    if not pc.any(sci).as_py():
        return text
    digits = pc.replace_substring_regex(text, r"[-.]|E.*$", "")
    sign = pc.if_else(pc.starts_with(text, "-"), "-", "")
    plain = concat(sign, "0.", pc.utf8_lpad(digits, width=scale, padding="0"))
    return pc.if_else(sci, plain, text)


def numbers(arr: pa.Array) -> pa.Array:
    """Numbers as JSON number text by the number rule above; null where NULL or not finite.

    Integers and decimals keep exactly the warehouse's digits (DECIMAL(10,2) 5.00 stays
    ``5.00``; no float in between). A string array is taken as number texts already checked."""
    if pa.types.is_floating(arr.type):
        return _float_texts(arr)
    if pa.types.is_decimal(arr.type):
        return _decimal_texts(arr)
    return pc.cast(arr, pa.string())


def non_finite(arr: pa.Array) -> pa.Array:
    """True where a float column holds NaN or ±infinity (False for NULL and other kinds)."""
    if not pa.types.is_floating(arr.type):
        return pa.array([False] * len(arr), pa.bool_())
    return pc.fill_null(pc.invert(pc.is_finite(arr)), False)


# --------------------------------------------------------------------------- string fields
# One rule for a field the vendor types as string (Klaviyo's profile attributes, Omnisend's
# contact fields): a string is sent as is, a number or a boolean as its JSON text in quotes
# (an INTEGER zip 75001 → "75001", by the number rule's digits), NULL omitted; an object or an
# array has no text form and rejects its row.


def as_text(frags: pa.Array) -> tuple[pa.Array, pa.Array]:
    """JSON value fragments → (JSON string fragments, True where the value is an object or an
    array: those rows are rejects and their fragment is left as it was)."""
    frags = pc.utf8_trim_whitespace(frags)  # JSON columns are copied verbatim
    head = pc.utf8_slice_codeunits(frags, 0, 1)
    nested = pc.fill_null(pc.or_(pc.equal(head, "{"), pc.equal(head, "[")), False)
    keep = pc.fill_null(pc.or_(nested, pc.equal(head, '"')), False)
    return pc.if_else(keep, frags, concat('"', frags, '"')), nested


def text_fragment(frag: bytes) -> bytes | None:
    """``as_text`` for one fragment: a JSON string, or None for an object or an array."""
    frag = frag.strip()
    head = frag[:1]
    if head == b'"':
        return frag
    if head in (b"{", b"["):
        return None
    return b'"' + frag + b'"'


def text_value(value: Any) -> str | None:
    """``as_text`` for one Python value (the per-row path): its text, or None for an object or
    an array."""
    if isinstance(value, dict | list):
        return None
    if isinstance(value, bool | int | float | Decimal):  # the number rule's text
        return orjson.dumps(value, default=json_default).decode()
    return value if isinstance(value, str) else str(value)


def values(arr: pa.Array, utc_text: Any, *, is_json: bool) -> pa.Array:
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
        if not is_json:
            return strings(arr)
        # A JSON column holding null is NULL: the property is omitted (as per row).
        text = pc.cast(arr, pa.string())
        null = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), "null"), False)
        return pc.if_else(null, pa.scalar(None, pa.string()), text)
    if pa.types.is_date32(t):
        return concat('"', pc.cast(arr, pa.string()), '"')
    if pa.types.is_timestamp(t) or pa.types.is_date64(t):
        return concat('"', utc_text(arr), '"')
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return strings(pc.cast(arr, pa.string()))
    return python_values(arr)


def key(name: str) -> str:
    """``name`` as a JSON string literal (quoted and escaped), ready to precede ``:``."""
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
