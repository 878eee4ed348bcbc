"""The contact destinations by config ``type``, and the mapping rules they share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .brevo.contacts import BrevoContacts
from .contact_base import ContactDestination
from .klaviyo.profiles import KlaviyoProfiles
from .omnisend.contacts import OmnisendContacts

CONTACT_DESTINATIONS: dict[str, type[ContactDestination]] = {
    cls.type: cls for cls in (KlaviyoProfiles, BrevoContacts, OmnisendContacts)
}

# Event-only mapping fields a contact sync refuses (it has no event).
_EVENT_FIELDS = (
    "event_name",
    "event_time",
    "event_properties",
    "value",
    "value_currency",
    "object",
)


def mapping_problems(dtype: str, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Config problems of a contact sync's mapping (``config._semantic_problems``)."""
    cls = CONTACT_DESTINATIONS[dtype]
    out = [
        (f"mapping.{name}", f"{dtype} syncs contacts, not events: remove it")
        for name in _EVENT_FIELDS
        if mapping.get(name) is not None
    ]
    idents = mapping.get("identifiers")
    if isinstance(idents, dict):
        out += [
            (
                f"mapping.identifiers.{key}",
                f"unknown identifier for {dtype}; expected one of "
                + ", ".join(cls.identifier_fields),
            )
            for key in idents
            if key not in cls.identifier_fields
        ]
    props = mapping.get("contact_properties")
    if isinstance(props, dict):
        names = {str(n) for n in props}
        for name in sorted(names):
            if "" in name.split("."):
                out.append(
                    (
                        f"mapping.contact_properties.{name}",
                        "empty name part (a leading, trailing or double dot)",
                    )
                )
            parts = name.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])
                if prefix in names:
                    out.append(
                        (
                            "mapping.contact_properties",
                            f"{prefix!r} and {name!r} are both mapped: {prefix!r} would be "
                            f"both a value and an object holding {parts[i]!r}; rename one",
                        )
                    )
    return out + cls.mapping_problems(mapping)
