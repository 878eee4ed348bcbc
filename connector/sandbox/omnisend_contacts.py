"""Omnisend contacts, API version 2026-03-15, from the vendor's published OpenAPI (Contacts API
and Batches API, ReadMe branch v2026-03-15) and reference/contacts.

- ``POST /api/contacts`` — "Creates a new contact. If a contact with the provided email
  identifier already exists, it will be updated instead. Returns ``201 Created`` for new
  contacts and ``200 OK`` when an existing contact was updated." Body ``ContactRequest``:
  identifiers[{type: email|phone, id, channels{email|sms: {status: subscribed|nonSubscribed|
  unsubscribed, statusChangedAt}}, consent, sendWelcomeMessage ("Defaults to true"), source}],
  firstName, lastName, address, city, state, postalCode, country, countryCode, birthdate
  (YYYY-MM-DD), gender (m|f), createdAt, tags (maxItems 100), customProperties.
- reference/contacts: "Two contacts cannot share same identifier. If you try to create or
  update a contact with an identifier that already exists for another contact, the system will
  ignore the identifier. If it is the only identifier, the contact will not be created." Custom
  properties: at most 200, names of latin letters, digits and "_", ≤ 128, case-sensitive.
- ``POST /api/batches`` — CreateBatchRequest {method: POST|PUT, endpoint: products|contacts|
  events|categories, items (1..100), origin}; "Each batch operation can include up to 100
  actions"; 201 CreateBatchResponse {batchID, totalCount}.
- ``GET /api/batches/{batchID}`` and ``GET /api/batches/{batchID}/items`` — Batch {batchID,
  createdAt, startedAt, endedAt, endpoint, method, origin, status (pending | inProgress |
  finished | stopped), totalCount, finishedCount, errorsCount, responses[], errors[]} with
  BatchItem {itemID, request, response, responseCode, status}.

No endpoint of this version documents clearing a contact field or custom property (PATCH
``/api/contacts?email=``: "Pass only fields you want to update"); a null is kept out like an
absent field. Errors are RFC 9457 problems (the dated events endpoint's); every call needs
``Omnisend-Version: 2026-03-15``. The sandbox implements batches of ``POST contacts`` only.

- ``GET /api/contacts`` — List contacts, "filtered by the provided query parameters": ``email``,
  ``phone`` (and ``status``, ``segmentID``, ``tag``, which the sandbox does not serve: 400),
  ``limit`` "Range: 1-250. Default: 100"; "``updatedAtFrom`` cannot be combined with ``email``,
  ``phone``, ..."; 200 ListContactsResponse {contacts: [ContactResponse], paging {cursors,
  hasMore, limit}}; ContactResponse carries the read-only ``createdAt`` and ``updatedAt``
  ("Contact last updated timestamp"). One page: the sandbox's filters select one contact.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from connector.sandbox import omnisend
from connector.sandbox._shared import Rejected, Reply, json_reply, parse_json
from connector.sandbox.contacts import DONE, FAILED, ContactStore, Job, ProfileBook
from connector.sandbox.omnisend import (
    DEFAULT_VERSIONS,
    FieldError,
    Versions,
    _field,
    problem,
)
from connector.sandbox.ratelimit import Decision

KIND = "omnisend_contacts"
MAX_BATCH_ITEMS = 100
MAX_TAGS = 100
MAX_CUSTOM_PROPERTIES = 200
CUSTOM_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,128}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
E164_RE = re.compile(r"\+[1-9]\d{1,14}")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
CHANNEL_STATUSES = ("subscribed", "nonSubscribed", "unsubscribed")
STRING_FIELDS = (
    "firstName",
    "lastName",
    "address",
    "city",
    "state",
    "postalCode",
    "country",
    "countryCode",
    "createdAt",
)


def version_error(version: str | None, versions: Versions = DEFAULT_VERSIONS) -> Reply | None:
    """The dated API's problem for a missing, unsupported (400) or retired (410)
    ``Omnisend-Version`` header; None when it is served."""
    return versions.error(version)


def _json(body: bytes, content_type: str | None) -> Any:
    return parse_json(
        body,
        content_type,
        ("application/json",),
        lambda got: problem(
            400, "Bad request", f"Content-Type must be application/json, got {got!r}", "bad-request"
        ),
        lambda: problem(400, "Bad request", "Request body is not valid JSON", "bad-request"),
    )


def validation(errors: list[FieldError]) -> Reply:
    """The 400 ``validation-failed`` problem listing the field errors."""
    return problem(
        400, "Validation failed", "One or more fields are invalid.", "validation-failed", errors
    )


# --------------------------------------------------------------------------- one contact


def contact_errors(contact: Any, prefix: str = "") -> list[FieldError]:
    """Every ContactRequest rule a body breaks ("All validation errors are returned at once")."""
    if not isinstance(contact, dict):
        return [_field(prefix.rstrip(".") or "body", "invalid_format", "must be an object")]
    out: list[FieldError] = []
    identifiers = contact.get("identifiers")
    if not isinstance(identifiers, list) or not identifiers:
        out.append(
            _field(f"{prefix}identifiers", "required", "at least one email or phone identifier")
        )
        identifiers = []
    for i, ident in enumerate(identifiers):
        where = f"{prefix}identifiers.{i}"
        if not isinstance(ident, dict):
            out.append(_field(where, "invalid_format", "must be an object"))
            continue
        kind, value = ident.get("type"), ident.get("id")
        if kind not in ("email", "phone"):
            out.append(_field(f"{where}.type", "invalid_format", "type must be email or phone"))
        if not isinstance(value, str) or not value:
            out.append(_field(f"{where}.id", "required", "id is required"))
        elif kind == "email" and not EMAIL_RE.fullmatch(value):
            out.append(_field(f"{where}.id", "invalid_format", "Must be a valid email address"))
        elif kind == "phone" and not E164_RE.fullmatch(value):
            out.append(
                _field(f"{where}.id", "invalid_format", "Phone must be E.164, e.g. +1234567890")
            )
        welcome = ident.get("sendWelcomeMessage")
        if welcome is not None and not isinstance(welcome, bool):
            out.append(_field(f"{where}.sendWelcomeMessage", "invalid_format", "must be a boolean"))
        channels = ident.get("channels")
        if channels is not None:
            if not isinstance(channels, dict):
                out.append(_field(f"{where}.channels", "invalid_format", "must be an object"))
            else:
                for name, channel in channels.items():
                    status = channel.get("status") if isinstance(channel, dict) else None
                    if status not in CHANNEL_STATUSES:
                        out.append(
                            _field(
                                f"{where}.channels.{name}.status",
                                "invalid_format",
                                "status must be subscribed, nonSubscribed or unsubscribed",
                            )
                        )
    for key in STRING_FIELDS:
        value = contact.get(key)
        if value is not None and not isinstance(value, str):
            out.append(_field(f"{prefix}{key}", "invalid_format", f"{key} must be a string"))
    birthdate = contact.get("birthdate")
    if birthdate is not None and not (isinstance(birthdate, str) and DATE_RE.fullmatch(birthdate)):
        out.append(_field(f"{prefix}birthdate", "invalid_format", "Format: YYYY-MM-DD"))
    gender = contact.get("gender")
    if gender is not None and gender not in ("m", "f"):
        out.append(_field(f"{prefix}gender", "invalid_format", "gender must be m or f"))
    tags = contact.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            out.append(_field(f"{prefix}tags", "invalid_format", "tags must be strings"))
        elif len(tags) > MAX_TAGS:
            out.append(_field(f"{prefix}tags", "max_items", f"Must have at most {MAX_TAGS} items"))
    custom = contact.get("customProperties")
    if custom is not None:
        if not isinstance(custom, dict):
            out.append(_field(f"{prefix}customProperties", "invalid_format", "must be an object"))
        else:
            if len(custom) > MAX_CUSTOM_PROPERTIES:
                out.append(
                    _field(
                        f"{prefix}customProperties",
                        "max_items",
                        f"At most {MAX_CUSTOM_PROPERTIES} custom properties",
                    )
                )
            for name in custom:
                if not CUSTOM_NAME_RE.fullmatch(name):
                    out.append(
                        _field(
                            f"{prefix}customProperties.{name}",
                            "invalid_format",
                            "names: latin letters, digits and _, at most 128",
                        )
                    )
    return out


def upsert(
    book: ProfileBook, contact: dict[str, Any], now: datetime, *, existing: str | None = None
) -> tuple[int, Any]:
    """Apply one valid ContactRequest → (status, response body) as POST /api/contacts answers
    (``existing``: the record PATCH /api/contacts?email= found; its identifiers are "added or
    updated only if they are not already assigned to another contact")."""
    idents: list[dict[str, Any]] = list(contact["identifiers"])
    email = next((i["id"] for i in idents if i["type"] == "email"), None)
    record_id = existing
    if record_id is None:
        record_id = book.find({"email": email}) if email is not None else None
    created = record_id is None
    kept: list[dict[str, Any]] = []
    ignored = 0
    for ident in idents:
        owner = book.find({ident["type"]: ident["id"]})
        if owner is not None and owner != record_id:
            ignored += 1  # belongs to another contact: ignored
        else:
            kept.append(ident)
    book.ignored += ignored
    if not kept:
        detail = (
            "Every identifier already belongs to another contact; they were ignored and no "
            "contact was created"
        )
        return 409, orjson_problem(409, "Conflict", detail, "conflict")
    if record_id is None:
        record_id, record = book.new()
        record.update(identifiers=[], customProperties={}, tags=[], createdAt=now.isoformat())
    else:
        record = book.get(record_id)
        book.updated += 1
    known = {(i["type"], i["id"]) for i in record["identifiers"]}
    for ident in kept:
        stored = {
            "type": ident["type"],
            "id": ident["id"],
            "channels": ident.get("channels") or {},
        }
        if (ident["type"], ident["id"]) in known:
            for entry in record["identifiers"]:
                if (entry["type"], entry["id"]) == (ident["type"], ident["id"]):
                    entry["channels"].update(stored["channels"])
            continue
        record["identifiers"].append(stored)
        # "sendWelcomeMessage ... Defaults to true": a new identifier without an explicit
        # false would get the welcome message.
        if ident.get("sendWelcomeMessage", True):
            book.welcomed += 1
    for key in (*STRING_FIELDS, "birthdate", "gender"):
        if contact.get(key) is not None and key != "createdAt":
            record[key] = contact[key]
    if contact.get("createdAt") is not None:
        record["customProperties"]["externalCreated"] = contact["createdAt"]
    # The docs define no null (nor any way to clear a field): a null is not a value, and the
    # stored one stays, as for the standard fields above.
    custom = contact.get("customProperties") or {}
    record["customProperties"].update({k: v for k, v in custom.items() if v is not None})
    for tag in contact.get("tags") or ():
        if tag not in record["tags"]:
            record["tags"].append(tag)
    record["email"] = next((i["id"] for i in record["identifiers"] if i["type"] == "email"), None)
    record["phone"] = [i["id"] for i in record["identifiers"] if i["type"] == "phone"]
    record["updatedAt"] = now.isoformat()
    book.reindex_many(record_id, [(i["type"], i["id"]) for i in record["identifiers"]])
    return (201 if created else 200), dict(record)


def orjson_problem(status: int, title: str, detail: str, slug: str) -> dict[str, Any]:
    """A problem body as a dict (for a batch item's error)."""
    body: dict[str, Any] = orjson.loads(problem(status, title, detail, slug).body)
    return body


def handle_contact(
    body: bytes,
    content_type: str | None,
    version: str | None,
    store: ContactStore,
    *,
    now: datetime,
    validate: bool = True,
    versions: Versions = DEFAULT_VERSIONS,
) -> Reply:
    """``POST /api/contacts``: create (201) or update (200) one contact by its identifiers, or the
    400 problem."""
    bad = version_error(version, versions)
    if bad is not None:
        return bad
    try:
        payload = _json(body, content_type)
    except Rejected as exc:
        return exc.reply
    if not validate:
        return Reply(201, b"{}", event_count=1, sink_count=1)
    errors = contact_errors(payload)
    if errors:
        reply = validation(errors)
        reply.event_count = 1
        return reply
    status, response = store.apply_now(KIND, lambda book: upsert(book, payload, now))
    reply = json_reply(status, response)
    reply.event_count = 1
    reply.events = [payload]
    return reply


def handle_update(
    body: bytes,
    content_type: str | None,
    version: str | None,
    email: str | None,
    store: ContactStore,
    *,
    now: datetime,
) -> Reply:
    """``PATCH /api/contacts?email=``: "Update an existing contact" (200), 404 when no contact
    has that e-mail (it creates none), or the 400 problem."""
    bad = version_error(version)
    if bad is not None:
        return bad
    if not email:
        return validation([_field("email", "required", "email query parameter is required")])
    try:
        payload = _json(body, content_type)
    except Rejected as exc:
        return exc.reply
    errors = contact_errors(payload)
    if errors:
        return validation(errors)

    def apply(book: ProfileBook) -> tuple[int, Any]:
        record_id = book.find({"email": email})
        if record_id is None:
            return 404, orjson_problem(404, "Not Found", "Contact not found", "not-found")
        status, response = upsert(book, payload, now, existing=record_id)
        return (200 if status in (200, 201) else status), response

    status, response = store.apply_now(KIND, apply)
    reply = json_reply(status, response)
    reply.event_count = 1
    if status == 200:
        reply.events = [payload]
    return reply


def handle_remove_tags(
    body: bytes, content_type: str | None, version: str | None, store: ContactStore
) -> Reply:
    """``DELETE /api/contacts/tags``: remove ``tags`` from the contacts named by
    ``contactIDs``, ``emails`` or ``phones`` (204; unknown contacts are no error), or the 400
    problem. Nothing else of a contact changes."""
    bad = version_error(version)
    if bad is not None:
        return bad
    try:
        payload = _json(body, content_type)
    except Rejected as exc:
        return exc.reply
    errors: list[FieldError] = []
    tags = payload.get("tags") if isinstance(payload, dict) else None
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        errors.append(_field("tags", "required", "tags must be a non-empty array of strings"))
    named = {k: payload.get(k) for k in ("contactIDs", "emails", "phones")} if not errors else {}
    if not errors and not any(isinstance(v, list) and v for v in named.values()):
        errors.append(_field("emails", "required", "one of contactIDs, emails, phones is required"))
    if errors:
        return validation(errors)
    drop = set(tags or ())

    def apply(book: ProfileBook) -> int:
        found = 0
        ids = [("email", v) for v in named.get("emails") or ()]
        ids += [("phone", v) for v in named.get("phones") or ()]
        targets = [book.find({k: v}) for k, v in ids]
        targets += [i for i in named.get("contactIDs") or () if isinstance(i, str)]
        for record_id in {t for t in targets if t is not None}:
            try:
                record = book.get(record_id)
            except KeyError:
                continue
            record["tags"] = [t for t in record.get("tags") or () if t not in drop]
            found += 1
        return found

    store.apply_now(KIND, apply)
    return Reply(204, b"")


# --------------------------------------------------------------------------- batches


def handle_create_batch(
    body: bytes,
    content_type: str | None,
    version: str | None,
    store: ContactStore,
    *,
    now: datetime,
    polls: int,
    validate: bool = True,
    versions: Versions = DEFAULT_VERSIONS,
) -> Reply:
    """``POST /api/batches``: validate a batch of contacts and queue it (its items are applied when
    the batch finishes after ``polls`` polls); 202 with the batch, or the 400 problem."""
    bad = version_error(version, versions)
    if bad is not None:
        return bad
    try:
        payload = _json(body, content_type)
    except Rejected as exc:
        return exc.reply
    if not isinstance(payload, dict):
        return problem(400, "Bad request", "Request body must be a JSON object", "bad-request")
    errors: list[FieldError] = []
    method, endpoint, items = payload.get("method"), payload.get("endpoint"), payload.get("items")
    if method not in ("POST", "PUT"):
        errors.append(_field("method", "invalid_format", "method must be POST or PUT"))
    if endpoint not in ("products", "contacts", "events", "categories"):
        errors.append(
            _field("endpoint", "invalid_format", "endpoint: products, contacts, events, categories")
        )
    if not isinstance(items, list) or not items:
        errors.append(_field("items", "required", "items must hold 1 to 100 actions"))
    elif len(items) > MAX_BATCH_ITEMS:
        errors.append(
            _field("items", "max_items", f"Each batch can include up to {MAX_BATCH_ITEMS} actions")
        )
    if errors:
        return validation(errors)
    if (method, endpoint) != ("POST", "contacts"):
        return problem(
            400,
            "Bad request",
            "The sandbox implements batches of POST contacts only",
            "bad-request",
        )
    assert isinstance(items, list)
    total = len(items)
    batch_id = uuid.uuid4().hex[:24]
    results: list[dict[str, Any]] = []

    def apply(book: ProfileBook) -> None:
        for index, item in enumerate(items):
            item_errors = contact_errors(item) if validate else []
            if item_errors:
                code = 400
                response: Any = orjson_problem(
                    400, "Validation failed", "One or more fields are invalid.", "validation-failed"
                )
                response["errors"] = item_errors
            elif validate:
                code, response = upsert(book, item, now)
            else:
                code, response = 201, {}
            results.append(
                {
                    "itemID": f"{batch_id}-{index}",
                    "request": item,
                    "response": response,
                    "responseCode": code,
                    "status": "finished",
                }
            )

    store.create_job(
        batch_id,
        KIND,
        now,
        total,
        polls,
        apply,
        info={
            "results": results,
            "origin": payload.get("origin", "api"),
            "method": method,
            "endpoint": endpoint,
        },
    )
    reply = json_reply(201, {"batchID": batch_id, "totalCount": total})
    reply.event_count = total
    if validate:
        reply.events = list(items)
    else:
        reply.sink_count = total
    return reply


def _status(job: Job) -> str:
    if job.state == DONE:
        return "finished"
    if job.state == FAILED:
        return "stopped"
    return "pending" if job.polls == 0 else "inProgress"


def _batch(job: Job, *, with_items: bool, split: bool = False) -> dict[str, Any]:
    results: list[dict[str, Any]] = job.info["results"] if job.state == DONE else []
    failed = [r for r in results if r["responseCode"] >= 400]
    out: dict[str, Any] = {
        "batchID": job.id,
        "createdAt": job.created_at.isoformat(),
        "startedAt": job.created_at.isoformat(),
        "endpoint": job.info["endpoint"],
        "method": job.info["method"],
        "origin": job.info["origin"],
        "status": _status(job),
        "totalCount": job.total,
        "finishedCount": len(results),
        "errorsCount": len(failed),
    }
    if job.finished_at is not None:
        out["endedAt"] = job.finished_at.isoformat()
    if with_items:
        out["responses"] = [r for r in results if r["responseCode"] < 400] if split else results
        out["errors"] = failed
    return out


def handle_get_batch(
    batch_id: str,
    version: str | None,
    store: ContactStore,
    now: datetime,
    *,
    items: bool,
    versions: Versions = DEFAULT_VERSIONS,
    split: bool = False,
) -> Reply:
    """``GET /api/batches/{id}`` (counts a poll) or, with ``items``, ``GET /api/batches/{id}/items``
    (does not); 404 for an unknown batch. ``split``: ``responses`` lists the items that
    succeeded and ``errors`` the refused ones (each in one array only), as the ``Batch``
    schema allows; else ``responses`` lists every item and ``errors`` repeats the refused."""
    bad = version_error(version, versions)
    if bad is not None:
        return bad
    job = store.peek(batch_id) if items else store.poll(batch_id, now)
    if job is None or job.kind != KIND:
        return problem(404, "Not found", f"Batch {batch_id} was not found", "not-found")
    return json_reply(200, _batch(job, with_items=items, split=split))


def handle_list_contacts(
    query: Mapping[str, str], version: str | None, store: ContactStore
) -> Reply:
    """``GET /api/contacts?email=`` / ``?phone=``: the stored contacts holding that identifier
    (one page, ``hasMore`` false)."""
    bad = version_error(version)
    if bad is not None:
        return bad
    unserved = sorted(set(query) & {"status", "segmentID", "tag", "updatedAtFrom", "after"})
    if unserved:
        detail = f"the sandbox filters contacts by email or phone only, not {', '.join(unserved)}"
        return problem(400, "Bad Request", detail, "validation-error")
    limit = query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 250:
        return problem(400, "Bad Request", "limit: Range: 1-250", "validation-error")
    records = store.contacts(KIND)
    if "email" in query:
        wanted = query["email"].lower()
        records = [r for r in records if str(r.get("email") or "").lower() == wanted]
    if "phone" in query:
        records = [r for r in records if query["phone"] in (r.get("phone") or [])]
    page = records[: int(limit)]
    paging = {"cursors": {"after": None, "before": None}, "hasMore": False, "limit": int(limit)}
    return json_reply(200, {"contacts": page, "paging": paging})


def throttled(decision: Decision) -> Reply:
    """429 RateLimitProblem: "Use the retryAfter value to know when it is safe to retry"."""
    seconds = (decision.blocking or decision.tightest).reset_s
    body = orjson_problem(429, "Too many requests", "Rate limit exceeded", "rate-limited")
    body["retryAfter"] = seconds
    reply = json_reply(429, body, omnisend.rate_headers(decision))
    reply.throttled = True
    return reply
