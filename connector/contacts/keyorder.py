r"""Primary keys as bytes whose order is the warehouse's key order (``ord``).

The diff of a full scan reads the stored hashes in the order the source pages come in, a
range per page (``hashes``). That needs one order both sides agree on: the source's
``ORDER BY`` of the primary key and the state store's byte order of ``ord``. The encoding:

- a *scheme* prefix naming the key's column kinds (``b"i\x00"`` for one integer column,
  ``b"si\x00"`` for text then integer): keys of one scheme form one contiguous block, so a
  change of the key's type is noticed (``HashStore.prepare`` encodes the stored keys again);
- an integer: 8 bytes big-endian of the value with its sign bit flipped (offset binary), so
  -1 < 0 < 1 bytewise; values are the 64-bit signed range;
- text: its UTF-8 bytes with each NUL doubled as ``00 FF`` and ended by ``00 01``, so a
  shorter text sorts first ("a" < "a\x00" < "ab") and a column's end is unambiguous;
- a composite key: its columns' encodings one after the other (each self-delimiting, so the
  byte order is the tuple's order).

Text in byte order is what each warehouse module's ``bytewise`` compares and orders by
(PostgreSQL ``COLLATE "C"``, MySQL ``CAST(... AS BINARY)``, Snowflake no collation, DuckDB's
default), which the reader applies to text key columns of a full contact scan on warehouses
whose module declares ``key_order`` (``Reader(..., byte_order=True)``). Other key kinds
(decimal, date, timestamp, unsigned 64-bit, ...) and other warehouses have no encoding here:
those syncs diff by key lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import np, pa, pc


INTEGER, TEXT = "i", "s"


class Unordered(Exception):
    """A page whose key values have no order-preserving encoding here."""


def kinds_for(column_kinds: Sequence[str | None]) -> tuple[str, ...] | None:
    """The encoding kinds of a key whose columns have these ``Reader.column_types`` kinds, or
    None when one of them has no encoding (the sync then diffs by key lookups)."""
    out = []
    for kind in column_kinds:
        if kind == "integer":
            out.append(INTEGER)
        elif kind == "string":
            out.append(TEXT)
        else:
            return None
    return tuple(out)


class KeyOrder:
    """The ``ord`` encoding of one sync's primary key (see the module docstring)."""

    def __init__(self, kinds: Sequence[str]) -> None:
        self.kinds = tuple(kinds)
        self.prefix = "".join(self.kinds).encode() + b"\x00"
        # Every ord of this scheme is > prefix and < upper (prefixes are NUL-terminated).
        self.upper = self.prefix[:-1] + b"\x01"

    # -- a page of source rows (vectorised) ----------------------------------------------
    def page(self, pk: Sequence[pa.Array]) -> pa.Array:
        """The ``ord`` of every row: a binary array. Raises ``Unordered`` when a column's
        Arrow type does not match its kind (an unsigned 64-bit or decimal "integer")."""
        n = len(pk[0]) if pk else 0
        if all(k == INTEGER for k in self.kinds):
            width = len(self.prefix) + 8 * len(self.kinds)
            out = np.empty((n, width), dtype=np.uint8)
            out[:, : len(self.prefix)] = np.frombuffer(self.prefix, dtype=np.uint8)
            at = len(self.prefix)
            for arr in pk:
                out[:, at : at + 8] = self._int_bytes(arr).reshape(n, 8)
                at += 8
            fixed = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(width), n, [None, pa.py_buffer(out.tobytes())]
            )
            return fixed.cast(pa.binary())
        parts: list[pa.Array] = []
        for kind, arr in zip(self.kinds, pk, strict=True):
            if kind == INTEGER:
                raw = self._int_bytes(arr).tobytes()
                fixed = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(8), n, [None, pa.py_buffer(raw)]
                )
                parts.append(fixed.cast(pa.binary()))
            else:
                parts.append(self._text_bytes(arr))
        prefix = pa.array([self.prefix] * n, pa.binary())
        return pc.binary_join_element_wise(prefix, *parts, b"")

    @staticmethod
    def _int_bytes(arr: pa.Array) -> np.ndarray:
        t = arr.type
        if not pa.types.is_integer(t) or t == pa.uint64():
            raise Unordered(f"an integer key column arrived as {arr.type}")
        if arr.null_count:
            raise Unordered("a NULL key")
        values = arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
        flipped = values.view(np.uint64) ^ np.uint64(1 << 63)
        return flipped.astype(">u8").view(np.uint8)

    @staticmethod
    def _text_bytes(arr: pa.Array) -> pa.Array:
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) and not (
            str(arr.type) == "string_view"
        ):
            raise Unordered(f"a text key column arrived as {arr.type}")
        if arr.null_count:
            raise Unordered("a NULL key")
        raw = arr.cast(pa.string()).cast(pa.binary())
        escaped = pc.replace_substring(raw, b"\x00", b"\x00\xff")
        end = pa.array([b"\x00\x01"] * len(arr), pa.binary())
        return pc.binary_join_element_wise(escaped, end, b"")

    # -- one stored key's text (``key_strings``) ------------------------------------------
    def from_key(self, key: str) -> bytes | None:
        """The ``ord`` of a stored key's text, or None when it cannot be a key of this kind
        (text where the column is an integer, a wrong number of parts)."""
        if len(self.kinds) == 1:
            parts = [key]
        else:
            parts = [p.replace("%2C", ",").replace("%25", "%") for p in key.split(",")]
            if len(parts) != len(self.kinds):
                return None
        out = [self.prefix]
        for kind, text in zip(self.kinds, parts, strict=True):
            if kind == INTEGER:
                try:
                    value = int(text)
                except ValueError:
                    return None
                if not -(2**63) <= value < 2**63 or text != str(value):
                    return None
                out.append((value + 2**63).to_bytes(8, "big"))
            else:
                out.append(text.encode().replace(b"\x00", b"\x00\xff") + b"\x00\x01")
        return b"".join(out)
