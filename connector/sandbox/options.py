"""Sandbox settings: accepted keys, rate limits, body-shape toggles, sink mode and clocks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from connector.sandbox.ratelimit import RateWindow

#: Event kinds, one per endpoint; the same names the destination configs use.
KINDS: tuple[str, ...] = (
    "brevo_event",
    "brevo_events_batch",
    "brevo_tracker",
    "omnisend_track",
    "omnisend_events",
    "klaviyo_bulk_events",
    # Contact endpoints: the items of accepted import/batch/create requests, as received.
    "klaviyo_profiles",
    "klaviyo_profile_import",
    "brevo_contacts",
    "omnisend_contacts",
)

#: The contact endpoints' status polls (job, errors, process, batch, attributes) are rate
#: limited under their own names; they record no items.
POLL_KINDS: tuple[str, ...] = (
    "klaviyo_profiles_poll",
    "brevo_contacts_poll",
    "omnisend_contacts_poll",
    # List membership (connector.sandbox.contact_lists): profile lookups and removals.
    "klaviyo_profiles_get",
    "klaviyo_list_profiles",
    "brevo_contact_lists",
)

#: Default windows per endpoint (override per kind with ``SandboxOptions.rate_limits``).
DEFAULT_RATE_LIMITS: Mapping[str, tuple[RateWindow, ...]] = {
    # contracts §1.1: POST /v3/events, General tier: 10 RPS and 36,000 RPH.
    "brevo_event": (RateWindow(10, 1.0), RateWindow(36_000, 3600.0)),
    # contracts §1.1: /v3/events/batch is not in Brevo's table; the sandbox picks 10 RPS.
    "brevo_events_batch": (RateWindow(10, 1.0),),
    # contracts §4: the legacy tracker documents no limit.
    "brevo_tracker": (),
    # contracts §5.2: 400 requests/minute per store (applied to v4 too, §5.1 "v3/v5 limit").
    "omnisend_track": (RateWindow(400, 60.0),),
    "omnisend_events": (RateWindow(400, 60.0),),
    # contracts §6.5: burst 10/s and steady 150/min.
    "klaviyo_bulk_events": (RateWindow(10, 1.0), RateWindow(150, 60.0)),
    # developers.klaviyo.com/en/reference/bulk_import_profiles (and the job / import-errors
    # GETs): burst 10/s, steady 150/m — each endpoint its own; the two GETs share one here.
    "klaviyo_profiles": (RateWindow(10, 1.0), RateWindow(150, 60.0)),
    "klaviyo_profiles_poll": (RateWindow(10, 1.0), RateWindow(150, 60.0)),
    # create_or_update_profile (POST /api/profile-import): burst 75/s, steady 700/m.
    "klaviyo_profile_import": (RateWindow(75, 1.0), RateWindow(700, 60.0)),
    # get_profiles: burst 75/s, steady 750/m; remove_profiles_from_list: 10/s, 150/m.
    "klaviyo_profiles_get": (RateWindow(75, 1.0), RateWindow(750, 60.0)),
    "klaviyo_list_profiles": (RateWindow(10, 1.0), RateWindow(150, 60.0)),
    "brevo_contact_lists": (RateWindow(10, 1.0), RateWindow(36_000, 3600.0)),
    # developers.brevo.com/docs/api-limits: /v3/contacts/* 10 RPS and 36,000 RPH (General).
    "brevo_contacts": (RateWindow(10, 1.0), RateWindow(36_000, 3600.0)),
    "brevo_contacts_poll": (RateWindow(10, 1.0), RateWindow(36_000, 3600.0)),
    # Omnisend: 400 requests/minute per brand.
    "omnisend_contacts": (RateWindow(400, 60.0),),
    "omnisend_contacts_poll": (RateWindow(400, 60.0),),
}

#: Brevo attributes of a fresh account (name → type), for ``GET /v3/contacts/attributes``.
DEFAULT_BREVO_ATTRIBUTES: Mapping[str, str] = {
    "FIRSTNAME": "text",
    "LASTNAME": "text",
    "SMS": "text",
    "WHATSAPP": "text",
    "LANDLINE_NUMBER": "text",
    "EXT_ID": "text",
}

#: developers.brevo.com/reference/get-attributes: attribute types.
BREVO_ATTRIBUTE_TYPES = ("text", "date", "float", "boolean", "id", "category")

DEFAULT_BREVO_API_KEY = "sandbox-brevo-key"
DEFAULT_BREVO_MA_KEY = "sandbox-ma-key"
DEFAULT_OMNISEND_TOKEN = "sandbox-omnisend-token"
DEFAULT_OMNISEND_API_KEY = "sandbox-omnisend-key"
DEFAULT_KLAVIYO_API_KEY = "pk_sandbox"


_KEY_FIELDS = (
    "brevo_api_keys",
    "brevo_ma_keys",
    "omnisend_bearer_tokens",
    "omnisend_api_keys",
    "klaviyo_api_keys",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SandboxOptions:
    """How strict and how fast the fake vendors are. Every field has a working default."""

    # Accepted credentials (demo values, not secrets).
    brevo_api_keys: tuple[str, ...] = (DEFAULT_BREVO_API_KEY,)
    brevo_ma_keys: tuple[str, ...] = (DEFAULT_BREVO_MA_KEY,)
    omnisend_bearer_tokens: tuple[str, ...] = (DEFAULT_OMNISEND_TOKEN,)
    omnisend_api_keys: tuple[str, ...] = (DEFAULT_OMNISEND_API_KEY,)
    klaviyo_api_keys: tuple[str, ...] = (DEFAULT_KLAVIYO_API_KEY,)
    #: False = sink mode: authenticate, parse, count events; no per-event validation or storage.
    validate: bool = True
    #: Which Brevo batch body shapes are accepted (contracts §3.1). Default: the top-level
    #: array of the endpoint document (seed 000: "[] Array Yes", "[].event_name", ...).
    brevo_batch_shape: Literal["object", "array", "both"] = "array"
    #: Shorthand: with ``brevo_batch_shape="object"``, also accept a bare array (= "both").
    brevo_batch_accept_array: bool = False
    #: False = no limits at all: never 429 and no rate-limit headers (clients would otherwise
    #: pace themselves on a window the sandbox does not enforce).
    rate_limits_enabled: bool = True
    #: Per-kind overrides of DEFAULT_RATE_LIMITS; an empty sequence removes that limit.
    rate_limits: Mapping[str, Sequence[RateWindow]] = field(default_factory=dict)
    #: Added to every vendor request (benchmarks).
    latency_s: float = 0.0
    #: Monotonic clock for rate windows and the request log.
    clock: Callable[[], float] = time.monotonic
    #: Wall clock (aware) for Klaviyo's time range and same-second dedup.
    wall_clock: Callable[[], datetime] = _utc_now
    #: Klaviyo: event ``time`` must be strictly after this. None (default): as the request's
    #: ``revision`` says (bulk_create_events: "after the year 1990" from 2026-07-15, "after the
    #: year 2000" in 2026-04-15 and before; ``klaviyo.min_event_time``).
    klaviyo_min_event_time: datetime | None = None
    #: Klaviyo: oldest ``revision`` that has the bulk endpoint (contracts §6.1).
    klaviyo_min_revision: str = "2024-05-15"
    #: The request log keeps this many most recent entries.
    request_log_limit: int = 100_000
    #: Keep the raw bytes of every vendor request body (``SandboxServer.bodies``): tests that
    #: check the exact text of numbers (a parsed body has already turned them into floats).
    keep_bodies: bool = False
    #: Bodies above this are refused with 413 and the connection closed (protects the process).
    max_body_bytes: int = 64 * 1024 * 1024
    #: Contact jobs (Klaviyo import jobs, Brevo processes, Omnisend batches) stay running
    #: across this many status polls; the next poll finishes them. Per job: ``JobFault``.
    contact_job_polls: int = 1
    #: Omnisend dated API: the ``Omnisend-Version`` values it serves; any other is a 400
    #: problem without field errors ("Unsupported Omnisend-Version ..."): set it to a newer
    #: version to see a client that speaks an unsupported one.
    omnisend_versions: tuple[str, ...] = ("2026-03-15",)
    #: Omnisend dated API: versions the vendor has retired, answered 410 Gone (RFC 9457,
    #: no field errors), as it answers a retired version (contracts-contacts.md).
    omnisend_retired_versions: tuple[str, ...] = ()
    #: Omnisend batch items (``GET /api/batches/{id}/items``): "all" lists every item under
    #: ``responses`` (the refused ones again under ``errors``); "split" lists the items that
    #: succeeded under ``responses`` and the refused ones only under ``errors`` — both are
    #: the 2026-03-15 ``Batch`` schema.
    omnisend_batch_items: Literal["all", "split"] = "all"
    #: Event names the account has not enabled: Brevo's batch refuses each such event with
    #: 400 ``errors[{eventIndex: [...], message: "event_name is not enabled on this
    #: account"}]`` (207 when others pass), Klaviyo's bulk endpoint with a pointer per event
    #: to its metric name — per-item detail, one and the same reason.
    disabled_event_names: tuple[str, ...] = ()
    #: Brevo account attributes (NAME → text | float | date | boolean | id | category)
    #: served by ``GET /v3/contacts/attributes`` and applied by imports.
    brevo_attributes: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_BREVO_ATTRIBUTES)
    )

    def __post_init__(self) -> None:
        # A bare string would make `key in keys` a substring test; always hold a tuple.
        for name in _KEY_FIELDS:
            value: Any = getattr(self, name)
            setattr(self, name, (value,) if isinstance(value, str) else tuple(value))
        problems = []
        for name in _KEY_FIELDS:
            if not all(isinstance(k, str) and k for k in getattr(self, name)):
                problems.append(f"{name} must hold non-empty strings")
        if self.brevo_batch_shape not in ("object", "array", "both"):
            problems.append("brevo_batch_shape must be 'object', 'array' or 'both'")
        known = (*KINDS, *POLL_KINDS)
        unknown = sorted(set(self.rate_limits) - set(known))
        if unknown:
            problems.append(f"rate_limits has unknown kinds {unknown}; known: {list(known)}")
        for kind, windows in self.rate_limits.items():
            if any(w.limit < 0 or w.period_s <= 0 for w in windows):
                problems.append(f"rate_limits[{kind!r}] needs limit >= 0 and period_s > 0")
        if self.latency_s < 0:
            problems.append("latency_s must be >= 0")
        if self.request_log_limit < 1:
            problems.append("request_log_limit must be >= 1")
        for name in ("omnisend_versions", "omnisend_retired_versions", "disabled_event_names"):
            value = getattr(self, name)
            setattr(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.omnisend_versions:
            problems.append("omnisend_versions must name at least one version")
        if self.omnisend_batch_items not in ("all", "split"):
            problems.append("omnisend_batch_items must be 'all' or 'split'")
        if self.contact_job_polls < 0:
            problems.append("contact_job_polls must be >= 0")
        bad_types = sorted(
            name
            for name, kind in self.brevo_attributes.items()
            if kind not in BREVO_ATTRIBUTE_TYPES
        )
        if bad_types:
            problems.append(
                f"brevo_attributes {bad_types} need a type among {list(BREVO_ATTRIBUTE_TYPES)}"
            )
        if problems:
            raise ValueError("invalid SandboxOptions: " + "; ".join(problems))

    @property
    def batch_shapes(self) -> frozenset[str]:
        """The Brevo batch shapes accepted, as a set of 'object' / 'array'."""
        if self.brevo_batch_shape == "both" or (
            self.brevo_batch_accept_array and self.brevo_batch_shape == "object"
        ):
            return frozenset({"object", "array"})
        return frozenset({self.brevo_batch_shape})

    def windows_for(self, kind: str) -> tuple[RateWindow, ...]:
        """The rate-limit windows of an endpoint kind: its override, else the default, none when
        rate limits are off."""
        if not self.rate_limits_enabled:
            return ()
        if kind in self.rate_limits:
            return tuple(self.rate_limits[kind])
        return DEFAULT_RATE_LIMITS.get(kind, ())


def parse_brevo_attributes(specs: Sequence[str]) -> dict[str, str]:
    """``["PLAN:text", "LTV:float"]`` → ``{"PLAN": "text", "LTV": "float"}``; ValueError names
    the bad entry and the accepted types."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, kind = spec.partition(":")
        if not sep or not name.strip() or kind not in BREVO_ATTRIBUTE_TYPES:
            raise ValueError(
                f"--brevo-attribute {spec!r}: write NAME:TYPE with TYPE one of "
                f"{', '.join(BREVO_ATTRIBUTE_TYPES)}, e.g. PLAN:text"
            )
        out[name.strip().upper()] = kind
    return out
