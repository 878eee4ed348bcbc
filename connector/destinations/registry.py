"""The destination registry: every destination the connector knows, one line each, of either
kind (``kind``: ``events`` or ``contacts``).

A destination is one module in this package (its options and config models, vendor, limits,
capabilities and the ``EventDestination`` or ``ContactDestination`` subclass, exported as
``DESTINATION``) plus its line in ``ENDPOINT_MODULES``. Everything else reads this registry:
``config`` builds the ``destination`` union of a sync file (and so the JSON Schema) from the
config models and tells event syncs from contact syncs by ``kind``, ``connector validate``
shows deprecations and asks contact destinations their preflight, the demo lists what the
sandbox received per kind, the factory (``deliver.factory``) builds either kind, and the
Dagster translator takes the vendor (group, kind, pool) from it.
docs/adding-a-destination.md walks through an example of each kind.
"""

from __future__ import annotations

from importlib import import_module
from typing import get_args

from ..core.options import DestinationSettings
from .base import Destination, DestinationKind
from .contact_endpoint import ContactDestination
from .event_endpoint import EventDestination

DestinationClass = type[Destination[DestinationSettings]]

# One line per destination module (the order is the order of the JSON Schema's union).
ENDPOINT_MODULES: tuple[str, ...] = (
    "brevo.batch",
    "klaviyo.bulk",
    "brevo.event",
    "brevo.tracker",
    "omnisend.track",
    "omnisend.events",
    "klaviyo.profiles",
    "brevo.contacts",
    "omnisend.contacts",
)


def _load(module: str) -> DestinationClass:
    """The ``DESTINATION`` class of one endpoint module, checked against its config model."""
    mod = import_module(f"{__package__}.{module}")
    cls = getattr(mod, "DESTINATION", None)
    if not (isinstance(cls, type) and issubclass(cls, (EventDestination, ContactDestination))):
        raise TypeError(
            f"{mod.__name__}: DESTINATION must name its EventDestination or ContactDestination "
            "subclass"
        )
    declared = get_args(cls.config_model.model_fields["type"].annotation)
    if declared != (cls.type,):
        raise TypeError(
            f"{mod.__name__}: {cls.config_model.__name__}.type must be Literal[{cls.type!r}]"
        )
    return cls


def _registry(modules: tuple[str, ...]) -> dict[str, DestinationClass]:
    found: dict[str, DestinationClass] = {}
    for module in modules:
        cls = _load(module)
        if cls.type in found:
            raise TypeError(f"destination type {cls.type!r} is registered twice")
        found[cls.type] = cls
    return found


DESTINATIONS: dict[str, DestinationClass] = _registry(ENDPOINT_MODULES)


def destination_class(destination_type: str) -> DestinationClass:
    """The destination class of a ``destination.type`` (config has validated the type)."""
    return DESTINATIONS[destination_type]


def types_of(kind: DestinationKind) -> list[str]:
    """The registered types of one kind, in registry order."""
    return [t for t, cls in DESTINATIONS.items() if cls.kind == kind]
