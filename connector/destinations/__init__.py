"""Destination modules, one per API endpoint, registered by their config ``type``."""

from __future__ import annotations

from .base import Destination, Item, Limits, Outcome, Request
from .brevo_batch import BrevoEventsBatch
from .klaviyo_bulk import KlaviyoBulkEvents

DESTINATIONS: dict[str, type[Destination]] = {
    cls.type: cls
    for cls in (
        BrevoEventsBatch,
        KlaviyoBulkEvents,
    )
}

__all__ = ["DESTINATIONS", "Destination", "Item", "Limits", "Outcome", "Request"]
