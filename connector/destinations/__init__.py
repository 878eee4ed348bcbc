"""Destination modules, one per API endpoint, registered by their config ``type`` in
``registry`` (event and contact endpoints alike); vendor modules (``brevo``, ``klaviyo``,
``omnisend``) hold what one vendor's endpoints share. ``base`` is the family,
``event_endpoint`` and ``contact_endpoint`` its two kinds."""

from __future__ import annotations

from .base import Destination, Item, Limits, Outcome, Request, Vendor
from .contact_endpoint import ContactDestination
from .event_endpoint import EventDestination
from .registry import DESTINATIONS, destination_class, types_of

__all__ = [
    "DESTINATIONS",
    "ContactDestination",
    "Destination",
    "EventDestination",
    "Item",
    "Limits",
    "Outcome",
    "Request",
    "Vendor",
    "destination_class",
    "types_of",
]
