"""Destination modules, one per API endpoint, registered by their config ``type`` in
``registry``; vendor modules (``brevo``, ``klaviyo``, ``omnisend``) hold what one vendor's
endpoints share."""

from __future__ import annotations

from .base import Destination, Item, Limits, Outcome, Request, Vendor
from .registry import DESTINATIONS, destination_class

__all__ = [
    "DESTINATIONS",
    "Destination",
    "Item",
    "Limits",
    "Outcome",
    "Request",
    "Vendor",
    "destination_class",
]
