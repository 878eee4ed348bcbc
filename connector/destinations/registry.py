"""The destination registry: every destination the connector knows, one line each, of either
kind (``kind``: ``events`` or ``contacts``).

A destination is one module in this package (its options and config models, vendor, limits,
capabilities and the ``EventDestination`` or ``ContactDestination`` subclass, exported as
``DESTINATION``) plus its line in ``ENDPOINT_MODULES`` (``type`` -> module). The registry imports
a module when its type is first looked up, so a sync imports its own destination and no
other. Everything else reads this registry: ``config`` validates a sync file's ``destination``
against the config model its type names, builds the JSON Schema's union from every config model
and tells event syncs from contact syncs by ``kind``, ``connector validate`` shows deprecations
and asks contact destinations their preflight, the demo lists what the sandbox received per
kind, the factory (``deliver.factory``) builds either kind, and the Dagster translator takes the
vendor (group, kind, pool) from it.
docs/adding-a-destination.md walks through an example of each kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import get_args

from ..core.options import DestinationSettings
from .base import Destination, DestinationKind
from .contact_endpoint import ContactDestination
from .event_endpoint import EventDestination

DestinationClass = type[Destination[DestinationSettings]]

# One line per destination module: its config ``type`` -> the module, relative to this package
# (the order is the order of the JSON Schema's union). Nothing is imported here: a sync file
# imports the one module its ``destination.type`` names (``DESTINATIONS[type]``).
ENDPOINT_MODULES: dict[str, str] = {
    "brevo_events_batch": "brevo.batch",
    "klaviyo_bulk_events": "klaviyo.bulk",
    "brevo_event": "brevo.event",
    "brevo_tracker": "brevo.tracker",
    "omnisend_track": "omnisend.track",
    "omnisend_events": "omnisend.events",
    "klaviyo_profiles": "klaviyo.profiles",
    "brevo_contacts": "brevo.contacts",
    "omnisend_contacts": "omnisend.contacts",
}


def _load(destination_type: str, module: str) -> DestinationClass:
    """The ``DESTINATION`` class of one endpoint module, checked against its registry line and
    its config model."""
    mod = import_module(f"{__package__}.{module}")
    cls = getattr(mod, "DESTINATION", None)
    if not (isinstance(cls, type) and issubclass(cls, (EventDestination, ContactDestination))):
        raise TypeError(
            f"{mod.__name__}: DESTINATION must name its EventDestination or ContactDestination "
            "subclass"
        )
    if cls.type != destination_type:
        raise TypeError(
            f"{mod.__name__}: registered as {destination_type!r} but its DESTINATION declares "
            f"type {cls.type!r}; the registry line is `{cls.type!r}: {module!r}`"
        )
    declared = get_args(cls.config_model.model_fields["type"].annotation)
    if declared != (cls.type,):
        raise TypeError(
            f"{mod.__name__}: {cls.config_model.__name__}.type must be Literal[{cls.type!r}]"
        )
    return cls


class Registry(Mapping[str, DestinationClass]):
    """``type`` -> destination class, importing an endpoint module when its type is first
    looked up. Keys, ``in`` and ``len`` import nothing; ``values()`` and ``items()`` import
    every module (the JSON Schema, the demo, ``types_of``)."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._loaded: dict[str, DestinationClass] = {}

    def __getitem__(self, destination_type: str) -> DestinationClass:
        cls = self._loaded.get(destination_type)
        if cls is None:
            cls = _load(destination_type, self._modules[destination_type])
            self._loaded[destination_type] = cls
        return cls

    def __contains__(self, destination_type: object) -> bool:
        return destination_type in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def module_of(self, destination_type: str) -> str:
        """The endpoint module of a registered type (imports nothing)."""
        return f"{__package__}.{self._modules[destination_type]}"

    def loaded(self) -> list[str]:
        """The types whose modules have been imported so far."""
        return list(self._loaded)


DESTINATIONS = Registry(ENDPOINT_MODULES)


def destination_class(destination_type: str) -> DestinationClass:
    """The destination class of a ``destination.type`` (config has validated the type)."""
    return DESTINATIONS[destination_type]


def types_of(kind: DestinationKind) -> list[str]:
    """The registered types of one kind, in registry order (imports every endpoint module)."""
    return [t for t, cls in DESTINATIONS.items() if cls.kind == kind]
