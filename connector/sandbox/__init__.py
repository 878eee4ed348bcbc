"""A strict local fake of the vendor event APIs, over real HTTP on one port.

    from connector.sandbox import SandboxServer, SandboxOptions, Fault

    with SandboxServer(SandboxOptions(), port=0) as sb:
        ...  # point every destination's base_url at sb.url
        sb.events("klaviyo_bulk_events")

Endpoints (contracts.md §2-§6): ``POST /v3/events``, ``/v3/events/batch``,
``/api/v2/trackEvent``, ``/v4/track``, ``/v5/events``, ``/api/event-bulk-create-jobs[/]``.
Control endpoints for out-of-process use live under ``/_sandbox/`` (see :mod:`.server`).
"""

from connector.sandbox.faults import Fault
from connector.sandbox.options import (
    DEFAULT_BREVO_API_KEY,
    DEFAULT_BREVO_MA_KEY,
    DEFAULT_KLAVIYO_API_KEY,
    DEFAULT_OMNISEND_API_KEY,
    DEFAULT_OMNISEND_TOKEN,
    DEFAULT_RATE_LIMITS,
    KINDS,
    SandboxOptions,
)
from connector.sandbox.ratelimit import RateWindow
from connector.sandbox.recorder import RequestRecord
from connector.sandbox.server import SandboxServer, serve

__all__ = [
    "DEFAULT_BREVO_API_KEY",
    "DEFAULT_BREVO_MA_KEY",
    "DEFAULT_KLAVIYO_API_KEY",
    "DEFAULT_OMNISEND_API_KEY",
    "DEFAULT_OMNISEND_TOKEN",
    "DEFAULT_RATE_LIMITS",
    "KINDS",
    "Fault",
    "RateWindow",
    "RequestRecord",
    "SandboxOptions",
    "SandboxServer",
    "serve",
]
