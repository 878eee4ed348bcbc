"""A strict local fake of the vendor event APIs, over real HTTP on one port.

    from connector.sandbox import SandboxServer, SandboxOptions, Fault

    with SandboxServer(SandboxOptions(), port=0) as sb:
        ...  # point every destination's base_url at sb.url
        sb.events("klaviyo_bulk_events")

Vendor endpoints (contracts.md §2-§6; /api/events is §5.3), all ``POST`` on one port:

    /v3/events                    brevo_event          api-key: sandbox-brevo-key
    /v3/events/batch              brevo_events_batch   api-key: sandbox-brevo-key
    /api/v2/trackEvent            brevo_tracker        ma-key: sandbox-ma-key
    /v4/track                     omnisend_track       Authorization: Bearer sandbox-omnisend-token
    /v5/events                    omnisend_events      X-API-KEY: sandbox-omnisend-key
    /api/events                   omnisend_events      Authorization: Omnisend-API-Key
                                                       sandbox-omnisend-key (or Bearer token)
                                                       + Omnisend-Version: 2026-03-15
    /api/event-bulk-create-jobs[/] klaviyo_bulk_events Authorization: Klaviyo-API-Key pk_sandbox

Contact endpoints (docs/sandbox.md): Klaviyo /api/profile-bulk-import-jobs[/{id}[/import-errors]]
and /api/profile-import; Brevo /v3/contacts/import, /v3/processes/{id}, /v3/contacts/attributes;
Omnisend /api/contacts, /api/batches[/{id}[/items]].

Control endpoints, for a sandbox running in another process (never faulted, never logged):

    GET  /_sandbox/events/<kind>  accepted events of one kind (JSON list)
    GET  /_sandbox/stats          counters (see SandboxServer.stats)
    GET  /_sandbox/requests       the request log as a JSON list of objects
    GET  /_sandbox/health         {"ok": true}
    POST /_sandbox/faults         one fault object or a list (fields of Fault)
    POST /_sandbox/release        let held (hang) requests go → {"released": n}
    POST /_sandbox/reset          forget everything (SandboxServer.reset)
    GET  /_sandbox/contacts/<kind> stored profiles of a contact kind
    POST /_sandbox/job-faults     one JobFault object or a list
    GET  /_sandbox/reports/<processId>/<name>.csv  a Brevo import report
"""

from connector.sandbox.contacts import CONTACT_KINDS
from connector.sandbox.faults import Fault, JobFault
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
    "CONTACT_KINDS",
    "DEFAULT_BREVO_API_KEY",
    "DEFAULT_BREVO_MA_KEY",
    "DEFAULT_KLAVIYO_API_KEY",
    "DEFAULT_OMNISEND_API_KEY",
    "DEFAULT_OMNISEND_TOKEN",
    "DEFAULT_RATE_LIMITS",
    "KINDS",
    "Fault",
    "JobFault",
    "RateWindow",
    "RequestRecord",
    "SandboxOptions",
    "SandboxServer",
    "serve",
]
