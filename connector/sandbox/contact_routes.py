"""The contact endpoints: (method, path pattern) → :class:`Endpoint` bound to the path's ids
and the query string. Every path is reachable with and without a trailing slash."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING

from connector.sandbox import (
    brevo_contacts,
    contact_lists,
    klaviyo_profiles,
    omnisend,
    omnisend_contacts,
)
from connector.sandbox._shared import Reply

if TYPE_CHECKING:
    from connector.sandbox.endpoint import Context, Endpoint


def omnisend_versions(ctx: Context) -> omnisend.Versions:
    """The ``Omnisend-Version`` values the sandbox serves and those it has retired."""
    opts = ctx.options
    return omnisend.Versions(opts.omnisend_versions, opts.omnisend_retired_versions)


#: handler(params, query, body, headers, ctx) → Reply
Handler = Callable[[Mapping[str, str], Mapping[str, str], bytes, Message, "Context"], Reply]


@dataclass(frozen=True)
class ContactRoute:
    """One contact endpoint of the sandbox: method and path pattern, the kind it is rate-limited and
    recorded as, the vendor whose auth and error bodies apply, and its handler."""

    method: str
    pattern: re.Pattern[str]
    kind: str  # the rate-limit / recorder kind
    vendor: str  # klaviyo | brevo | omnisend: auth, headers and error bodies
    handler: Handler


def base_url(headers: Message) -> str:
    """The scheme and host the client used, for the ``links`` vendors return."""
    return f"http://{headers.get('Host') or '127.0.0.1'}"


def _klaviyo_create(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return klaviyo_profiles.handle_create(
        body,
        h.get("Content-Type"),
        h.get("revision"),
        ctx.contacts,
        now=ctx.options.wall_clock(),
        polls=ctx.options.contact_job_polls,
        base_url=base_url(h),
        validate=ctx.options.validate,
    )


def _klaviyo_job(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return klaviyo_profiles.handle_get_job(
        params["id"], h.get("revision"), ctx.contacts, ctx.options.wall_clock()
    )


def _klaviyo_errors(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return klaviyo_profiles.handle_import_errors(
        params["id"], query, h.get("revision"), ctx.contacts
    )


def _klaviyo_profile_import(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return klaviyo_profiles.handle_profile_import(
        body,
        h.get("Content-Type"),
        h.get("revision"),
        ctx.contacts,
        base_url=base_url(h),
        validate=ctx.options.validate,
    )


def _brevo_import(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return brevo_contacts.handle_import(
        body,
        h.get("Content-Type"),
        ctx.contacts,
        ctx.contacts.brevo_attributes(ctx.options.brevo_attributes),
        now=ctx.options.wall_clock(),
        polls=ctx.options.contact_job_polls,
        validate=ctx.options.validate,
    )


def _brevo_process(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return brevo_contacts.handle_process(
        params["id"], ctx.contacts, ctx.options.wall_clock(), base_url(h)
    )


def _brevo_attributes(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return brevo_contacts.handle_attributes(
        ctx.contacts.brevo_attributes(ctx.options.brevo_attributes)
    )


def _brevo_create_attribute(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return brevo_contacts.handle_create_attribute(
        params["category"],
        params["name"],
        body,
        h.get("Content-Type"),
        ctx.contacts,
        ctx.options.brevo_attributes,
    )


def _omnisend_contact(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_contact(
        body,
        h.get("Content-Type"),
        h.get("Omnisend-Version"),
        ctx.contacts,
        now=ctx.options.wall_clock(),
        validate=ctx.options.validate,
        versions=omnisend_versions(ctx),
    )


def _omnisend_update(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_update(
        body,
        h.get("Content-Type"),
        h.get("Omnisend-Version"),
        query.get("email"),
        ctx.contacts,
        now=ctx.options.wall_clock(),
    )


def _omnisend_remove_tags(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_remove_tags(
        body, h.get("Content-Type"), h.get("Omnisend-Version"), ctx.contacts
    )


def _omnisend_batch(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_create_batch(
        body,
        h.get("Content-Type"),
        h.get("Omnisend-Version"),
        ctx.contacts,
        now=ctx.options.wall_clock(),
        polls=ctx.options.contact_job_polls,
        validate=ctx.options.validate,
        versions=omnisend_versions(ctx),
    )


def _omnisend_get_batch(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_get_batch(
        params["id"],
        h.get("Omnisend-Version"),
        ctx.contacts,
        ctx.options.wall_clock(),
        items=False,
        versions=omnisend_versions(ctx),
    )


def _omnisend_batch_items(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_get_batch(
        params["id"],
        h.get("Omnisend-Version"),
        ctx.contacts,
        ctx.options.wall_clock(),
        items=True,
        versions=omnisend_versions(ctx),
        split=ctx.options.omnisend_batch_items == "split",
    )


def _omnisend_list(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return omnisend_contacts.handle_list_contacts(query, h.get("Omnisend-Version"), ctx.contacts)


def _klaviyo_profiles_get(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return contact_lists.handle_get_profiles(query, h.get("revision"), ctx.contacts, base_url(h))


def _klaviyo_list_remove(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return contact_lists.handle_remove_from_list(
        params["id"], body, h.get("Content-Type"), h.get("revision"), ctx.contacts
    )


def _brevo_list_remove(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return contact_lists.handle_brevo_remove(
        params["id"], body, h.get("Content-Type"), ctx.contacts
    )


def _brevo_contact(
    params: Mapping[str, str], query: Mapping[str, str], body: bytes, h: Message, ctx: Context
) -> Reply:
    return contact_lists.handle_brevo_contact(params["identifier"], query, ctx.contacts)


def _p(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern + "/?")


ROUTES: tuple[ContactRoute, ...] = (
    ContactRoute(
        "POST", _p(r"/api/profile-bulk-import-jobs"), "klaviyo_profiles", "klaviyo", _klaviyo_create
    ),
    ContactRoute(
        "GET",
        _p(r"/api/profile-bulk-import-jobs/(?P<id>[^/]+)"),
        "klaviyo_profiles_poll",
        "klaviyo",
        _klaviyo_job,
    ),
    ContactRoute(
        "GET",
        _p(r"/api/profile-bulk-import-jobs/(?P<id>[^/]+)/import-errors"),
        "klaviyo_profiles_poll",
        "klaviyo",
        _klaviyo_errors,
    ),
    ContactRoute(
        "POST",
        _p(r"/api/profile-import"),
        "klaviyo_profile_import",
        "klaviyo",
        _klaviyo_profile_import,
    ),
    ContactRoute("POST", _p(r"/v3/contacts/import"), "brevo_contacts", "brevo", _brevo_import),
    ContactRoute(
        "GET",
        _p(r"/v3/processes/(?P<id>[^/]+)"),
        "brevo_contacts_poll",
        "brevo",
        _brevo_process,
    ),
    ContactRoute(
        "GET", _p(r"/v3/contacts/attributes"), "brevo_contacts_poll", "brevo", _brevo_attributes
    ),
    ContactRoute(
        "POST",
        _p(r"/v3/contacts/attributes/(?P<category>[^/]+)/(?P<name>[^/]+)"),
        "brevo_contacts",
        "brevo",
        _brevo_create_attribute,
    ),
    ContactRoute(
        "GET", _p(r"/api/profiles"), "klaviyo_profiles_get", "klaviyo", _klaviyo_profiles_get
    ),
    ContactRoute(
        "DELETE",
        _p(r"/api/lists/(?P<id>[^/]+)/relationships/profiles"),
        "klaviyo_list_profiles",
        "klaviyo",
        _klaviyo_list_remove,
    ),
    ContactRoute(
        "POST",
        _p(r"/v3/contacts/lists/(?P<id>[^/]+)/contacts/remove"),
        "brevo_contact_lists",
        "brevo",
        _brevo_list_remove,
    ),
    ContactRoute(
        "GET",
        _p(r"/v3/contacts/(?P<identifier>(?!(?:import|attributes|lists)/?$)[^/]+)"),
        "brevo_contacts_poll",
        "brevo",
        _brevo_contact,
    ),
    ContactRoute("POST", _p(r"/api/contacts"), "omnisend_contacts", "omnisend", _omnisend_contact),
    ContactRoute("GET", _p(r"/api/contacts"), "omnisend_contacts_poll", "omnisend", _omnisend_list),
    ContactRoute("PATCH", _p(r"/api/contacts"), "omnisend_contacts", "omnisend", _omnisend_update),
    ContactRoute(
        "DELETE",
        _p(r"/api/contacts/tags"),
        "omnisend_contacts_poll",
        "omnisend",
        _omnisend_remove_tags,
    ),
    ContactRoute("POST", _p(r"/api/batches"), "omnisend_contacts", "omnisend", _omnisend_batch),
    ContactRoute(
        "GET",
        _p(r"/api/batches/(?P<id>[^/]+)"),
        "omnisend_contacts_poll",
        "omnisend",
        _omnisend_get_batch,
    ),
    ContactRoute(
        "GET",
        _p(r"/api/batches/(?P<id>[^/]+)/items"),
        "omnisend_contacts_poll",
        "omnisend",
        _omnisend_batch_items,
    ),
)


def _bind(
    handler: Handler, params: Mapping[str, str], query: Mapping[str, str]
) -> Callable[[bytes, Message, Context], Reply]:
    def handle(body: bytes, headers: Message, ctx: Context) -> Reply:
        return handler(params, query, body, headers, ctx)

    return handle


def resolve(
    method: str, path: str, query: Mapping[str, str], endpoint_for: Callable[..., Endpoint]
) -> Endpoint | list[str] | None:
    """The bound endpoint; the allowed methods when only the method is wrong; None if no
    contact route has this path."""
    allowed: list[str] = []
    for route in ROUTES:
        m = route.pattern.fullmatch(path)
        if m is None:
            continue
        if route.method != method:
            allowed.append(route.method)
            continue
        return endpoint_for(route.kind, route.vendor, _bind(route.handler, m.groupdict(), query))
    return allowed or None


__all__ = ["ROUTES", "ContactRoute", "resolve"]
