"""Destination modules, one per API endpoint, registered by their config ``type``."""

from __future__ import annotations

from .base import Destination, Item, Limits, Outcome, Request
from .brevo_batch import BrevoEventsBatch
from .brevo_event import BrevoEvent
from .brevo_tracker import BrevoTracker
from .klaviyo_bulk import KlaviyoBulkEvents
from .omnisend_events import OmnisendEvents
from .omnisend_track import OmnisendTrack

DESTINATIONS: dict[str, type[Destination]] = {
    cls.type: cls
    for cls in (
        BrevoEventsBatch,
        KlaviyoBulkEvents,
        BrevoEvent,
        BrevoTracker,
        OmnisendTrack,
        OmnisendEvents,
    )
}

__all__ = ["DESTINATIONS", "Destination", "Item", "Limits", "Outcome", "Request"]
