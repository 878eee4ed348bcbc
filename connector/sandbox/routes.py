"""The vendor endpoints: path → kind, auth check, handler, rate-limit headers.

This is the only module that reads HTTP headers for the vendor modules, which take plain
values and stay pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from email.message import Message

from connector.sandbox import brevo, contact_routes, klaviyo, omnisend, omnisend_contacts
from connector.sandbox._shared import Reply, json_reply
from connector.sandbox.endpoint import Context, Endpoint


def _brevo_event(body: bytes, headers: Message, ctx: Context) -> Reply:
    return brevo.handle_event(body, headers.get("Content-Type"), validate=ctx.options.validate)


def _brevo_batch(body: bytes, headers: Message, ctx: Context) -> Reply:
    return brevo.handle_batch(
        body,
        headers.get("Content-Type"),
        shapes=ctx.options.batch_shapes,
        validate=ctx.options.validate,
        disabled=frozenset(ctx.options.disabled_event_names),
    )


def _brevo_tracker(body: bytes, headers: Message, ctx: Context) -> Reply:
    return brevo.handle_tracker(body, headers.get("Content-Type"), validate=ctx.options.validate)


def _omnisend_track(body: bytes, headers: Message, ctx: Context) -> Reply:
    return omnisend.handle_track(
        body, headers.get("Content-Type"), ctx.schemas, validate=ctx.options.validate
    )


def _omnisend_events(body: bytes, headers: Message, ctx: Context) -> Reply:
    return omnisend.handle_events(body, headers.get("Content-Type"), validate=ctx.options.validate)


def _omnisend_dated(body: bytes, headers: Message, ctx: Context) -> Reply:
    return omnisend.handle_dated_events(
        body,
        headers.get("Content-Type"),
        headers.get("Omnisend-Version"),
        validate=ctx.options.validate,
        versions=contact_routes.omnisend_versions(ctx),
    )


def _klaviyo_bulk(body: bytes, headers: Message, ctx: Context) -> Reply:
    opts = ctx.options
    return klaviyo.handle_bulk(
        body,
        headers.get("Content-Type"),
        headers.get("revision"),
        now=opts.wall_clock(),
        min_time=opts.klaviyo_min_event_time,
        min_revision=opts.klaviyo_min_revision,
        validate=opts.validate,
        disabled=frozenset(opts.disabled_event_names),
    )


_BREVO_EVENT = Endpoint(
    "brevo_event",
    lambda h, o: brevo.auth_error(h.get("api-key"), o.brevo_api_keys),
    _brevo_event,
    brevo.rate_headers,
    brevo.throttled,
    brevo.fault_body,
)
_BREVO_BATCH = Endpoint(
    "brevo_events_batch",
    lambda h, o: brevo.auth_error(h.get("api-key"), o.brevo_api_keys),
    _brevo_batch,
    brevo.rate_headers,
    brevo.throttled,
    brevo.fault_body,
)
_BREVO_TRACKER = Endpoint(
    "brevo_tracker",
    lambda h, o: brevo.auth_error(h.get("ma-key"), o.brevo_ma_keys),
    _brevo_tracker,
    brevo.rate_headers,
    brevo.throttled,
    brevo.fault_body,
)
_OMNISEND_TRACK = Endpoint(
    "omnisend_track",
    lambda h, o: omnisend.bearer_auth_error(h.get("Authorization"), o.omnisend_bearer_tokens),
    _omnisend_track,
    omnisend.rate_headers,
    omnisend.throttled,
    omnisend.fault_body,
)
_OMNISEND_EVENTS = Endpoint(
    "omnisend_events",
    lambda h, o: omnisend.api_key_auth_error(h.get("X-API-KEY"), o.omnisend_api_keys),
    _omnisend_events,
    omnisend.rate_headers,
    omnisend.throttled,
    omnisend.fault_body,
)
# The dated API shares the store's events, dedup keys and 400/min with v5 (same kind).
_OMNISEND_DATED = Endpoint(
    "omnisend_events",
    lambda h, o: omnisend.dated_auth_error(
        h.get("Authorization"), o.omnisend_api_keys, o.omnisend_bearer_tokens
    ),
    _omnisend_dated,
    omnisend.rate_headers,
    omnisend.dated_throttled,
    omnisend.dated_fault_body,
)
_KLAVIYO_BULK = Endpoint(
    "klaviyo_bulk_events",
    lambda h, o: klaviyo.auth_error(h.get("Authorization"), o.klaviyo_api_keys),
    _klaviyo_bulk,
    klaviyo.rate_headers,
    klaviyo.throttled,
    klaviyo.fault_body,
)

#: Request path → endpoint. Klaviyo is reachable with and without the trailing slash (§6.1).
ROUTES: dict[str, Endpoint] = {
    "/v3/events": _BREVO_EVENT,
    "/v3/events/batch": _BREVO_BATCH,
    "/api/v2/trackEvent": _BREVO_TRACKER,
    "/v4/track": _OMNISEND_TRACK,
    "/v5/events": _OMNISEND_EVENTS,
    "/api/events": _OMNISEND_DATED,
    "/api/event-bulk-create-jobs": _KLAVIYO_BULK,
    "/api/event-bulk-create-jobs/": _KLAVIYO_BULK,
}


# --------------------------------------------------------------------------- contact endpoints


def _contact_endpoint(
    kind: str, vendor: str, handle: Callable[[bytes, Message, Context], Reply]
) -> Endpoint:
    """A contact route's handler with its vendor's auth, rate-limit headers and error bodies."""
    if vendor == "klaviyo":
        return Endpoint(
            kind,
            lambda h, o: klaviyo.auth_error(h.get("Authorization"), o.klaviyo_api_keys),
            handle,
            klaviyo.rate_headers,
            klaviyo.throttled,
            klaviyo.fault_body,
        )
    if vendor == "brevo":
        return Endpoint(
            kind,
            lambda h, o: brevo.auth_error(h.get("api-key"), o.brevo_api_keys),
            handle,
            brevo.rate_headers,
            brevo.throttled,
            brevo.fault_body,
        )
    return Endpoint(
        kind,
        lambda h, o: omnisend.dated_auth_error(
            h.get("Authorization"), o.omnisend_api_keys, o.omnisend_bearer_tokens
        ),
        handle,
        omnisend.rate_headers,
        omnisend_contacts.throttled,
        omnisend.dated_fault_body,
    )


def resolve(method: str, path: str, query: Mapping[str, str]) -> Endpoint | Reply:
    """The endpoint serving ``method path``, or the 404/405 answer."""
    endpoint = ROUTES.get(path)
    if endpoint is not None:
        if method != "POST":
            return json_reply(405, {"error": "only POST is supported"}, {"Allow": "POST"})
        return endpoint
    found = contact_routes.resolve(method, path, query, _contact_endpoint)
    if found is None:
        return json_reply(404, {"error": f"no sandbox endpoint at {path}"})
    if isinstance(found, list):
        allowed = ", ".join(sorted(set(found)))
        return json_reply(405, {"error": f"only {allowed} at {path}"}, {"Allow": allowed})
    return found
