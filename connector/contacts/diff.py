"""Rows → what the vendor would store, hashed: the change detector's pure part.

Each row's identifiers (as text) and contact properties (their JSON text under the value rules
of ``connector.mapping``: exact decimals, RFC 3339 times, NULL kept as NULL) are joined in the
mapping's order, prefixed with the mapping's fingerprint and hashed (BLAKE2b, 128 bits). The
fingerprint covers the destination type, the mapping and the options that change a profile,
so changing any of them changes every hash and re-sends every row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from ..config.sync_file import SyncConfig
from ..destinations.contact_endpoint import Contact
from ..map.mapper import _text
from ..model.events import Chunk, Props, key_strings
from .keyorder import KeyOrder, Unordered

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import pa, pc


_NULL = "\x00"
_SEP = "\x1f"


def fingerprint(sync: SyncConfig) -> str:
    """Hash of everything besides the row that shapes what the vendor stores."""
    dest: Any = sync.destination
    spec = {
        "type": dest.type,
        "identifiers": sync.mapping.identifiers,
        "contact_properties": sync.mapping.contact_properties,
        "timezone": sync.source.timezone,
        "options": dest.options.fingerprint_fields(),
        "v": 1,
    }
    text = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(text, digest_size=8).hexdigest()


@dataclass
class Page:
    """One page of source rows, hashed. ``contact(i)`` builds row i's ``Contact``."""

    key_texts: pa.Array  # each row's key as text (``mapping.key_strings``)
    hashes: list[str]
    reasons: dict[int, str]  # rows whose values cannot be mapped
    identifiers: dict[str, pa.Array]
    values: dict[str, pa.Array]  # property → JSON text (null = NULL)
    ords: pa.Array | None = None  # the keys' ``keyorder`` encoding (None: no order)

    def __len__(self) -> int:
        return len(self.hashes)

    @cached_property
    def keys(self) -> list[str]:
        """The rows' keys as text; a page found unchanged never builds this list."""
        return list(self.key_texts.to_pylist())

    @cached_property
    def _ident_lists(self) -> dict[str, list[Any]]:
        return {k: v.to_pylist() for k, v in self.identifiers.items()}

    @cached_property
    def _value_lists(self) -> dict[str, list[Any]]:
        return {k: v.to_pylist() for k, v in self.values.items()}

    def contact(self, i: int) -> Contact:
        """Row ``i`` as a ``Contact``: its non-empty identifiers, and its properties as JSON
        fragments (``None`` where the warehouse value is NULL)."""
        idents = {k: v[i] for k, v in self._ident_lists.items() if v[i] not in (None, "")}
        props = {k: (None if v[i] is None else v[i].encode()) for k, v in self._value_lists.items()}
        return Contact(i, self.keys[i], idents, props)


class Hasher:
    """Maps and hashes the pages of one contact sync."""

    def __init__(self, sync: SyncConfig) -> None:
        self.sync = sync
        self.prefix = fingerprint(sync) + _SEP
        self.order: KeyOrder | None = None  # set: pages carry their keys' ords
        # Klaviyo ``options.external_id_prefix``: put in front of every external_id.
        self.id_prefix: str | None = getattr(sync.destination.options, "external_id_prefix", None)

    def ords(self, chunk: Chunk) -> pa.Array | None:
        """The ords of ``chunk``'s keys, or None when this page's key values have no
        encoding (``keyorder.Unordered``) or the sync has no order."""
        if self.order is None:
            return None
        t = chunk.table
        try:
            return self.order.page(
                [t.column(c).combine_chunks() for c in self.sync.source.primary_key]
            )
        except Unordered:
            return None

    def keys(self, chunk: Chunk) -> list[str]:
        """The row keys of ``chunk`` (its primary key as text, in row order), unhashed."""
        t = chunk.table
        pk = [t.column(c).combine_chunks() for c in self.sync.source.primary_key]
        return list(key_strings(pk).to_pylist())

    def page(self, chunk: Chunk, ords: pa.Array | None = None) -> Page:
        """Map and hash every row of ``chunk`` (whose ords are ``ords`` if already encoded).

        Returns a ``Page`` with each row's key and hash, its identifiers as text and its
        properties as JSON text; rows whose values cannot be mapped are listed in
        ``Page.reasons`` (row index → reason) and still hashed, so the engine rejects them.
        """
        t = chunk.table
        m = self.sync.mapping
        n = t.num_rows
        reasons: dict[int, str] = {}
        pk = [t.column(c).combine_chunks() for c in self.sync.source.primary_key]
        keys_arr = key_strings(pk)
        idents: dict[str, pa.Array] = {}
        for name, col in m.identifiers.items():
            idents[name] = _text(
                t.column(col).combine_chunks(), col, f"identifiers.{name}", reasons
            )
        if self.id_prefix is not None and "external_id" in idents:
            idents["external_id"] = pc.binary_join_element_wise(
                self.id_prefix, idents["external_id"], ""
            )
        props = Props(
            {name: t.column(col).combine_chunks() for name, col in m.contact_properties.items()},
            {name for name, col in m.contact_properties.items() if col in chunk.json_columns},
            self.sync.source.timezone,
            n,
            reasons,
            block="contact_properties",
            sources=m.contact_properties,
        )
        values = props.json_values
        parts: list[pa.Array | str] = [pa.array([self.prefix] * n, pa.string())] if n else []
        for arr in [*idents.values(), *values.values()]:
            parts.append(pc.fill_null(pc.cast(arr, pa.string()), _NULL))
        if n == 0:
            texts: list[bytes] = []
        elif len(parts) == 1:
            texts = [self.prefix.encode()] * n
        else:
            # As bytes: no str per row to build and encode again (a third of the hashing).
            joined = pc.binary_join_element_wise(*parts, _SEP)
            texts = joined.cast(pa.binary()).to_pylist()
        blake = hashlib.blake2b
        hashes = [blake(s, digest_size=16).hexdigest() for s in texts]
        if ords is None:
            ords = self.ords(chunk)
        return Page(keys_arr, hashes, reasons, idents, values, ords)
