"""The checks of a sync file that need its destination's class (from the registry): the
fields each kind requires or refuses, the identifiers the destination knows, property names
that would collide in a body, and what only the destination itself can see
(``check_mapping``). Tolerant of a half-valid file: they read the raw YAML."""

from __future__ import annotations

from typing import Any

from ..destinations.event_endpoint import EventDestination
from ..destinations.registry import DESTINATIONS, DestinationClass

# Event-only mapping fields a contact sync refuses (it has no event).
EVENT_FIELDS = (
    "event_name",
    "event_time",
    "event_properties",
    "value",
    "value_currency",
    "object",
)
# The property blocks each kind sends.
BLOCKS = {
    "events": ("event_properties", "contact_properties"),
    "contacts": ("contact_properties",),
}


def semantic_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems ``(field, message)`` of a sync file (raw YAML) that need the destination
    type: unknown types, the fields of the other kind, unknown identifiers, property names
    that collide, and the destination's own mapping rules."""
    dest = raw.get("destination") if isinstance(raw.get("destination"), dict) else {}
    mapping = raw.get("mapping") if isinstance(raw.get("mapping"), dict) else {}
    dtype = dest.get("type") if isinstance(dest, dict) else None
    cls = DESTINATIONS.get(dtype) if isinstance(dtype, str) else None
    if cls is None:
        if dtype is None:
            return []
        return [
            (
                "destination.type",
                f"unknown type {dtype!r}; expected one of " + ", ".join(sorted(DESTINATIONS)),
            )
        ]
    assert isinstance(mapping, dict)
    problems = _kind_problems(raw, cls, mapping)
    idents = mapping.get("identifiers")
    if isinstance(idents, dict):
        problems += [
            (
                f"mapping.identifiers.{key}",
                f"unknown identifier for {dtype}; expected one of "
                + ", ".join(cls.identifier_fields),
            )
            for key in idents
            if key not in cls.identifier_fields
        ]
    if issubclass(cls, EventDestination):
        for field, supported in (("object", cls.supports_object), ("value", cls.supports_value)):
            if mapping.get(field) is not None and not supported:
                problems.append((f"mapping.{field}", f"not supported by {dtype}; remove it"))
    problems += _name_conflicts(mapping, cls, BLOCKS[cls.kind])
    return problems + cls.check_mapping(mapping)


def _kind_problems(
    raw: dict[str, Any], cls: DestinationClass, mapping: dict[str, Any]
) -> list[tuple[str, str]]:
    """An event sync's required fields that are missing (contact syncs may leave them out),
    or a contact sync's event fields (it has no event)."""
    if cls.kind == "contacts":
        return [
            (f"mapping.{name}", f"{cls.type} syncs contacts, not events: remove it")
            for name in EVENT_FIELDS
            if mapping.get(name) is not None
        ]
    source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
    return [
        (f"{block}.{name}", f"Field required (by {cls.type})")
        for block, name, value in (
            ("source", "cursor", source),
            ("mapping", "event_name", mapping),
            ("mapping", "event_time", mapping),
        )
        if isinstance(value, dict) and value.get(name) is None
    ]


def _name_conflicts(
    mapping: dict[str, Any], cls: DestinationClass, blocks: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Property names of one block that would collide in the body: ``x`` and ``x.y`` (a
    value and an object under one key), names that flatten to one key, empty name parts,
    and dotted names in a block whose destination takes no nested values."""
    out: list[tuple[str, str]] = []
    dtype = cls.type
    for block in blocks:
        props = mapping.get(block)
        if not isinstance(props, dict):
            continue
        names = [str(n) for n in props]
        where = f"mapping.{block}"
        for name in names:
            if "" in name.split("."):
                out.append(
                    (f"{where}.{name}", "empty name part (a leading, trailing or double dot)")
                )
        if block in cls.flat_blocks:
            out += [
                (
                    f"{where}.{name}",
                    f"{dtype} {block} take no nested values, so a dotted name cannot nest; "
                    "use a name without dots",
                )
                for name in names
                if "." in name
            ]
            continue
        sep = cls.flatten_separator if block == "event_properties" else None
        if sep:
            owner: dict[str, str] = {}
            for name in names:
                key = name.replace(".", sep)
                if key in owner:
                    out.append(
                        (
                            where,
                            f"{owner[key]!r} and {name!r} both become property {key!r} "
                            f"({dtype} flattens dots to {sep!r}); rename one",
                        )
                    )
                else:
                    owner[key] = name
            continue
        mapped = set(names)
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])
                if prefix in mapped:
                    out.append(
                        (
                            where,
                            f"{prefix!r} and {name!r} are both mapped: {prefix!r} would be "
                            f"both a value and an object holding {parts[i]!r}; rename one",
                        )
                    )
    return out
