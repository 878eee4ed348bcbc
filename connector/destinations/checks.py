"""Per-row checks endpoint modules share: column-wise (Arrow) rules that return the rows
breaking them, and config-time checks of property names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..model.events import Events

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import pa, pc


def null_mask(arr: pa.Array) -> list[bool]:
    """True where the value is NULL or an empty string."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pc.fill_null(
            pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0)), True
        ).to_pylist()
    return pc.is_null(arr).to_pylist()


def no_identifier_rows(events: Events, fields: tuple[str, ...]) -> list[int]:
    """Rows where every mapped identifier is NULL/empty."""
    present = [events.identifiers[f] for f in fields if f in events.identifiers]
    if not present:
        return list(range(events.n))
    missing = None
    for arr in present:
        m = _null_or_empty(arr)
        missing = m if missing is None else pc.and_(missing, m)
    assert missing is not None
    return _rows(missing)


def _null_or_empty(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pc.fill_null(pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0)), True)
    return pc.is_null(arr)


def _rows(mask: pa.Array) -> list[int]:
    """Indices where the mask is true (only those become Python values)."""
    rows: list[int] = pc.indices_nonzero(mask).to_pylist()
    return rows


def regex_failures(arr: pa.Array, pattern: str) -> list[int]:
    """Rows whose (non-null) string value does not fully match ``pattern``."""
    ok = pc.match_substring_regex(pc.cast(arr, pa.string()), pattern)
    return _rows(pc.and_(pc.invert(pc.fill_null(ok, True)), pc.is_valid(arr)))


def length_failures(arr: pa.Array, max_chars: int) -> list[int]:
    """Row indexes whose value, as text, is longer than ``max_chars`` characters (NULL is not)."""
    return _rows(
        pc.fill_null(pc.greater(pc.utf8_length(pc.cast(arr, pa.string())), max_chars), False)
    )


def walk_limits(
    value: Any,
    max_string: int | None,
    max_array: int | None,
    max_depth: int | None,
    where: str = "",
    depth: int = 1,
    *,
    in_bytes: bool = False,
) -> str | None:
    """First nested-value rule the value breaks (string length, array size, depth).

    ``in_bytes`` counts string lengths in UTF-8 bytes (Klaviyo's "100 KB") instead of
    characters."""
    if isinstance(value, str):
        if max_string is not None and len(value) > max_string // (4 if in_bytes else 1):
            size = len(value.encode("utf-8", "surrogatepass")) if in_bytes else len(value)
            if size > max_string:
                unit = "bytes" if in_bytes else "characters"
                return f"{where or 'value'} is a string of {size} {unit} (max {max_string})"
        return None
    if isinstance(value, dict):
        if max_depth is not None and depth > max_depth:
            return f"{where or 'value'} nests deeper than {max_depth} levels"
        for k, v in value.items():
            r = walk_limits(
                v,
                max_string,
                max_array,
                max_depth,
                f"{where}.{k}" if where else str(k),
                depth + 1,
                in_bytes=in_bytes,
            )
            if r:
                return r
        return None
    if isinstance(value, list):
        if max_array is not None and len(value) > max_array:
            return f"{where or 'value'} is an array of {len(value)} items (max {max_array})"
        if max_depth is not None and depth > max_depth:
            return f"{where or 'value'} nests deeper than {max_depth} levels"
        for i, v in enumerate(value):
            r = walk_limits(
                v, max_string, max_array, max_depth, f"{where}[{i}]", depth + 1, in_bytes=in_bytes
            )
            if r:
                return r
    return None


def static_key_problems(
    mapping: Mapping[str, Any], block: str, pattern: re.Pattern[str], rule: str
) -> list[tuple[str, str]]:
    """Config-time check of property names (each dotted segment) against a key rule."""
    out: list[tuple[str, str]] = []
    props = mapping.get(block)
    if isinstance(props, dict):
        for name in props:
            for part in str(name).split("."):
                if not pattern.match(part):
                    out.append((f"mapping.{block}.{name}", f"property name {part!r} {rule}"))
                    break
    return out
