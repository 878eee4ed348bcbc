"""Klaviyo Bulk Import Profiles, from the vendor's reference (revision 2026-07-15).

- ``POST /api/profile-bulk-import-jobs`` — developers.klaviyo.com/en/reference/bulk_import_profiles:
  "Accepts up to 10,000 profiles per request. The maximum allowed payload size is 5MB" and
  100 KB per profile; JSON:API body ``data.type = profile-bulk-import-job``,
  ``data.attributes.profiles.data[]`` (ProfileUpsertQueryResourceObject) and optional
  ``data.relationships.lists.data[{type: list, id}]``; 202 with the job resource.
- ``GET /api/profile-bulk-import-jobs/{job_id}`` — get_bulk_import_profiles_job: ``status``
  is one of ``cancelled, complete, processing, queued``; ``total_count``, ``completed_count``,
  ``failed_count``, ``created_at``, ``started_at``, ``completed_at``, ``expires_at``.
- ``GET /api/profile-bulk-import-jobs/{id}/import-errors`` —
  get_errors_for_bulk_import_profiles_job: ``import-error`` resources {code, title, detail,
  source.pointer, original_payload}, cursor pages, ``page[size]`` default 20, 1..100.
- Nulls (guide use_klaviyos_bulk_profile_import_api, "Clearing fields with null values"): the
  bulk import "does not support setting fields to null to clear them. Only fields explicitly
  provided with non-null values will be updated"; custom properties are removed with
  ``meta.patch_properties.unset``.

Structural and type errors answer 400 for the whole request; value problems a real job finds
while processing (email, phone format, no identifier, a profile over 100 KB) become that
profile's import errors, matched to the request by ``original_payload`` (no row index).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from connector.sandbox import klaviyo
from connector.sandbox._shared import Rejected, Reply, media_type
from connector.sandbox.contacts import DONE, FAILED, RUNNING, ContactStore, Job, ProfileBook

KIND = "klaviyo_profiles"
JOB_TYPE = "profile-bulk-import-job"
MAX_PROFILES = 10_000
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024
PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX = 20, 100
# The path exists from the first GA revision on (2023-02-22; named spawn_bulk_profile_import_job
# until the 2024 renames) [INF]: an older revision is refused like a malformed one.
MIN_REVISION = "2023-02-22"
# ProfileUpsertQueryResourceObject identifiers (id is the resource id, not an attribute).
IDENTIFIERS = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ROOT = "/data/attributes/profiles/data"
# Jobs expire a while after they are created (expires_at); the sandbox says 7 days [INF].
EXPIRY = timedelta(days=7)


def jsonapi_body(
    body: bytes, content_type: str | None, revision: str | None, *, max_bytes: int | None = None
) -> Any:
    """The parsed JSON of a Klaviyo JSON:API write, or the ``Reply`` with Klaviyo's error for
    the request as a whole, checked in this order: the ``revision`` header (400), the body's
    size when the endpoint has a limit (413), its media type (415), its JSON (400)."""
    problem = revision_error(revision)
    if problem is not None:
        return problem
    if max_bytes is not None and len(body) > max_bytes:
        return klaviyo.error(
            413,
            "request_too_large",
            "Request too large.",
            f"The request body must be at most {max_bytes // 1_000_000} MB.",
            pointer="/data",
        )
    kind = media_type(content_type)
    if kind not in klaviyo.ACCEPTED_TYPES:
        return klaviyo.error(
            415,
            "unsupported_media_type",
            "Unsupported media type.",
            f'Unsupported media type "{kind}" in request; use {klaviyo.JSONAPI}.',
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return klaviyo.error(400, "parse_error", "Malformed request.", "JSON parse error.")
    return payload


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def revision_error(revision: str | None) -> Reply | None:
    """Klaviyo's 400 for a missing or malformed ``revision`` header or one older than bulk profile
    import supports; None when it is fine."""
    problem = klaviyo.revision_error(revision, "0000-00-00")
    if problem is not None:
        return problem
    assert revision is not None
    if revision.strip()[:10] < MIN_REVISION:
        return klaviyo.error(
            400,
            "invalid",
            "Invalid input.",
            f"Bulk profile import needs revision {MIN_REVISION} or later.",
            parameter="revision",
        )
    return None


def not_found(job_id: str) -> Reply:
    """Klaviyo's 404 for an unknown profile bulk import job."""
    return klaviyo.error(
        404, "not_found", "Not found.", f"A profile bulk import job with id {job_id} was not found."
    )


# --------------------------------------------------------------------------- POST


def _fail(pointer: str, detail: str) -> Rejected:
    return Rejected(klaviyo.errors_reply(400, [klaviyo.invalid(pointer, detail)]))


def _parse_job(payload: Any) -> tuple[list[Any], list[str]]:
    """(profile items, list ids) of a job body, or Rejected with the structural error."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise _fail("/data", "data is required and must be an object.")
    if data.get("type") != JOB_TYPE:
        raise _fail("/data/type", f"data.type must be '{JOB_TYPE}'.")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise _fail("/data/attributes", "data.attributes is required and must be an object.")
    profiles = attributes.get("profiles")
    items = profiles.get("data") if isinstance(profiles, dict) else None
    if not isinstance(items, list) or not items:
        raise _fail(ROOT, "profiles.data must be a non-empty array of profiles.")
    if len(items) > MAX_PROFILES:
        raise _fail(ROOT, f"A job may contain at most {MAX_PROFILES} profiles; got {len(items)}.")
    lists: list[str] = []
    relationships = data.get("relationships")
    if relationships is not None:
        wrapper = relationships.get("lists") if isinstance(relationships, dict) else None
        refs = wrapper.get("data") if isinstance(wrapper, dict) else None
        if not isinstance(refs, list):
            raise _fail(
                "/data/relationships/lists/data", "relationships.lists.data must be an array."
            )
        for i, ref in enumerate(refs):
            pointer = f"/data/relationships/lists/data/{i}"
            if not isinstance(ref, dict) or ref.get("type") != "list":
                raise _fail(f"{pointer}/type", "Each list must be {type: 'list', id}.")
            if not isinstance(ref.get("id"), str) or not ref["id"]:
                raise _fail(f"{pointer}/id", "list id must be a non-empty string.")
            lists.append(ref["id"])
    return items, lists


def _schema_problem(item: Any, pointer: str) -> tuple[str, str] | None:
    """OAS type rules of one ProfileUpsertQueryResourceObject (fail the whole request)."""
    if not isinstance(item, dict):
        return pointer, "Each profile must be an object."
    if item.get("type") != "profile":
        return f"{pointer}/type", "profile type must be 'profile'."
    if item.get("id") is not None and not isinstance(item["id"], str):
        return f"{pointer}/id", "profile id must be a string."
    attributes = item.get("attributes")
    if not isinstance(attributes, dict):
        return f"{pointer}/attributes", "profile attributes are required and must be an object."
    for key in IDENTIFIERS:
        value = attributes.get(key)
        if value is not None and not isinstance(value, str):
            return f"{pointer}/attributes/{key}", f"{key} must be a string."
    problem = klaviyo._attribute_types_problem(attributes, f"{pointer}/attributes")
    if problem is None:
        problem = klaviyo._meta_problem(item.get("meta"), f"{pointer}/meta")
    return problem


def _value_problem(item: dict[str, Any], pointer: str) -> tuple[str, str, str] | None:
    """(code, pointer, detail) for what the job itself rejects in one profile."""
    attributes = item["attributes"]
    if len(orjson.dumps(item)) > MAX_PROFILE_BYTES:
        return "invalid", pointer, "A profile may be at most 100 KB."
    email = attributes.get("email")
    if email is not None and not EMAIL_RE.fullmatch(email):
        return "invalid", f"{pointer}/attributes/email", f"Invalid email address: {email}"
    phone = attributes.get("phone_number")
    if phone is not None and not klaviyo.E164_RE.fullmatch(phone):
        return (
            "invalid",
            f"{pointer}/attributes/phone_number",
            f"Invalid phone number format (Example of a valid format: +12345678901): {phone}",
        )
    if item.get("id") is None and all(attributes.get(k) is None for k in IDENTIFIERS):
        return (
            "invalid",
            f"{pointer}/attributes",
            "A profile needs an identifier: id, email, phone_number, external_id, anonymous_id "
            "or _kx.",
        )
    return None


def import_error(code: str, pointer: str, detail: str, original: Any) -> dict[str, Any]:
    """One ``import-error`` resource (ImportErrorResponseObjectResource)."""
    return {
        "type": "import-error",
        "id": str(uuid.uuid4()),
        "attributes": {
            "code": code,
            "title": "Invalid input.",
            "detail": detail,
            "source": {"pointer": pointer},
            "original_payload": original,
        },
    }


def handle_create(
    body: bytes,
    content_type: str | None,
    revision: str | None,
    store: ContactStore,
    *,
    now: datetime,
    polls: int,
    base_url: str,
    validate: bool = True,
) -> Reply:
    """``POST /api/profile-bulk-import-jobs``: validate the JSON:API body and its profiles as
    Klaviyo does and queue the job; 202 with the job resource, or Klaviyo's error."""
    payload = jsonapi_body(body, content_type, revision, max_bytes=MAX_BODY_BYTES)
    if isinstance(payload, Reply):
        return payload
    try:
        items, lists = _parse_job(payload)
    except Rejected as exc:
        return exc.reply
    total = len(items)
    errors: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    if validate:
        schema_errors = []
        for i, item in enumerate(items):
            problem_at = _schema_problem(item, f"{ROOT}/{i}")
            if problem_at is not None:
                schema_errors.append(klaviyo.invalid(*problem_at))
        if schema_errors:
            reply = klaviyo.errors_reply(400, schema_errors)
            reply.event_count = total
            return reply
        for i, item in enumerate(items):
            found = _value_problem(item, f"{ROOT}/{i}")
            if found is None:
                valid.append(item)
            else:
                errors.append(import_error(*found, item["attributes"]))

    def apply(book: ProfileBook) -> None:
        for item in valid:
            upsert(book, item, lists)

    job_id = uuid.uuid4().hex
    store.note_lists(KIND, lists)
    job = store.create_job(
        job_id, KIND, now, total, polls, apply, errors, {"lists": lists, "base_url": base_url}
    )
    reply = Reply(202, orjson.dumps({"data": job_resource(job)}), klaviyo.JSONAPI)
    reply.event_count = total
    if validate:
        reply.events = list(items)
    else:
        reply.sink_count = total
    return reply


def upsert(book: ProfileBook, item: dict[str, Any], lists: list[str]) -> None:
    """Create or update one profile: non-null values only; ``unset`` removes properties."""
    attributes: dict[str, Any] = item["attributes"]
    idents = {k: attributes.get(k) for k in book.identifiers}
    record_id = book.find(idents)
    if record_id is None:
        record_id, record = book.new()
        record["properties"] = {}
        record["lists"] = []
    else:
        record = book.get(record_id)
        book.updated += 1
    for key, value in attributes.items():
        if value is None:
            continue
        if key == "properties":
            record["properties"].update({k: v for k, v in value.items() if v is not None})
        elif key == "location":
            location = record.setdefault("location", {})
            location.update({k: v for k, v in value.items() if v is not None})
        else:
            record[key] = value
    meta = item.get("meta") or {}
    unset = (meta.get("patch_properties") or {}).get("unset")
    if unset is not None:
        for name in [unset] if isinstance(unset, str) else unset:
            record["properties"].pop(name, None)
    for list_id in lists:
        if list_id not in record["lists"]:
            record["lists"].append(list_id)
    book.reindex(record_id)


# --------------------------------------------------------------------------- GETs


def _status(job: Job) -> str:
    if job.state == DONE:
        return "complete"
    if job.state == FAILED:
        return "cancelled"  # the OAS enum has no "failed"
    return "queued" if job.polls == 0 else "processing"


def job_resource(job: Job) -> dict[str, Any]:
    """The JSON:API resource of a job: status, counts, times and its lists."""
    done = job.state == DONE
    failed = len(job.errors) if done else 0
    base = job.info["base_url"]
    lists = [{"type": "list", "id": list_id} for list_id in job.info["lists"]]
    self_url = f"{base}/api/profile-bulk-import-jobs/{job.id}/"
    return {
        "type": JOB_TYPE,
        "id": job.id,
        "attributes": {
            "status": _status(job),
            "created_at": _iso(job.created_at),
            "total_count": job.total,
            "completed_count": job.total - failed if done else 0,
            "failed_count": failed,
            "completed_at": _iso(job.finished_at) if done else None,
            "expires_at": _iso(job.created_at + EXPIRY),
            "started_at": _iso(job.created_at) if job.polls or job.state != RUNNING else None,
        },
        "relationships": {
            "lists": {
                "data": lists,
                "links": {
                    "self": f"{self_url}relationships/lists/",
                    "related": f"{self_url}lists/",
                },
            },
            "profiles": {
                "links": {
                    "self": f"{self_url}relationships/profiles/",
                    "related": f"{self_url}profiles/",
                }
            },
        },
        "links": {"self": self_url},
    }


def handle_get_job(job_id: str, revision: str | None, store: ContactStore, now: datetime) -> Reply:
    """``GET /api/profile-bulk-import-jobs/{id}``: count one poll and return the job resource; 404
    for an unknown job."""
    problem = revision_error(revision)
    if problem is not None:
        return problem
    job = store.poll(job_id, now)
    if job is None or job.kind != KIND:
        return not_found(job_id)
    return Reply(200, orjson.dumps({"data": job_resource(job)}), klaviyo.JSONAPI)


def cursor_for(offset: int) -> str:
    """The ``page[cursor]`` of the page starting at ``offset`` (opaque to clients)."""
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(cursor: str) -> int | None:
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        return None
    return value if value >= 0 else None


def page_window(query: Mapping[str, str]) -> tuple[int, int] | Reply:
    """The (offset, size) a Klaviyo cursor-paginated GET asks for (``page[cursor]``,
    ``page[size]`` from 1 to 100, default 20), or the 400 Klaviyo answers for a bad one."""
    raw_size = query.get("page[size]", str(PAGE_SIZE_DEFAULT))
    size = int(raw_size) if raw_size.isdigit() else 0
    if not 1 <= size <= PAGE_SIZE_MAX:
        return klaviyo.error(
            400,
            "invalid",
            "Invalid input.",
            f"page[size] must be an integer from 1 to {PAGE_SIZE_MAX}.",
            parameter="page[size]",
        )
    offset = 0
    if "page[cursor]" in query:
        found = _offset(query["page[cursor]"])
        if found is None:
            return klaviyo.error(
                400, "invalid", "Invalid input.", "Invalid page cursor.", parameter="page[cursor]"
            )
        offset = found
    return offset, size


def handle_import_errors(
    job_id: str, query: Mapping[str, str], revision: str | None, store: ContactStore
) -> Reply:
    """``GET /api/profile-bulk-import-jobs/{id}/import-errors``: one page of the job's ``import-
    error`` resources (cursor pagination); 404 for an unknown job."""
    problem = revision_error(revision)
    if problem is not None:
        return problem
    job = store.peek(job_id)
    if job is None or job.kind != KIND:
        return not_found(job_id)
    window = page_window(query)
    if isinstance(window, Reply):
        return window
    offset, size = window
    # Errors exist once the job has processed its profiles.
    errors = job.errors if job.state == DONE else []
    page = errors[offset : offset + size]
    base = f"{job.info['base_url']}/api/profile-bulk-import-jobs/{job.id}/import-errors/"
    links: dict[str, str | None] = {
        "self": base,
        "first": f"{base}?page[size]={size}",
        "last": None,
        "prev": f"{base}?page[cursor]={cursor_for(max(0, offset - size))}&page[size]={size}"
        if offset > 0
        else None,
        "next": f"{base}?page[cursor]={cursor_for(offset + size)}&page[size]={size}"
        if offset + size < len(errors)
        else None,
    }
    return Reply(200, orjson.dumps({"data": page, "links": links}), klaviyo.JSONAPI)


# --------------------------------------------------------------------------- profile-import

# developers.klaviyo.com/en/reference/create_or_update_profile: POST /api/profile-import,
# "Returns 201 if a new profile was created, 200 if an existing profile was updated"; burst 75/s,
# steady 700/m. The bulk guide sends null-clearing here: "To remove a field value from a profile,
# use the Update Profile endpoint with the field set to null, or the Create or Update Profile
# endpoint."


def handle_profile_import(
    body: bytes,
    content_type: str | None,
    revision: str | None,
    store: ContactStore,
    *,
    base_url: str,
    validate: bool = True,
) -> Reply:
    """``POST /api/profile-import``: create or update one profile at once; 201 when created, 200
    when updated, or Klaviyo's error."""
    payload = jsonapi_body(body, content_type, revision)
    if isinstance(payload, Reply):
        return payload
    item = payload.get("data") if isinstance(payload, dict) else None
    found = _schema_problem(item, "/data")
    if found is None and isinstance(item, dict):
        value = _value_problem(item, "/data")
        if value is not None:
            found = value[1], value[2]
    if found is not None:
        reply = klaviyo.errors_reply(400, [klaviyo.invalid(*found)])
        reply.event_count = 1
        return reply
    assert isinstance(item, dict)
    if not validate:
        return Reply(200, b"{}", klaviyo.JSONAPI, event_count=1, sink_count=1)
    created, record = store.apply_now(KIND, lambda book: upsert_clearing(book, item))
    attributes = {k: v for k, v in record.items() if k not in ("id", "lists")}
    resource = {
        "type": "profile",
        "id": record["id"],
        "attributes": attributes,
        "links": {"self": f"{base_url}/api/profiles/{record['id']}/"},
    }
    reply = Reply(201 if created else 200, orjson.dumps({"data": resource}), klaviyo.JSONAPI)
    reply.event_count = 1
    reply.events = [item]
    return reply


def upsert_clearing(book: ProfileBook, item: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Create or update one profile where null clears a field (single-profile semantics)."""
    attributes: dict[str, Any] = item["attributes"]
    record_id = None
    if item.get("id") is not None:
        record_id = item["id"] if _has(book, item["id"]) else None
    if record_id is None:
        record_id = book.find({k: attributes.get(k) for k in book.identifiers})
    created = record_id is None
    if record_id is None:
        record_id, record = book.new()
        record["properties"] = {}
        record["lists"] = []
    else:
        record = book.get(record_id)
        book.updated += 1
    for key, value in attributes.items():
        if key == "properties":
            for name, prop in (value or {}).items():
                record["properties"][name] = prop
        elif key == "location":
            location = record.setdefault("location", {})
            for name, part in (value or {}).items():
                if part is None:
                    location.pop(name, None)
                else:
                    location[name] = part
        elif value is None:
            record.pop(key, None)
        else:
            record[key] = value
    meta = item.get("meta") or {}
    unset = (meta.get("patch_properties") or {}).get("unset")
    if unset is not None:
        for name in [unset] if isinstance(unset, str) else unset:
            record["properties"].pop(name, None)
    book.reindex(record_id)
    return created, dict(record)


def _has(book: ProfileBook, record_id: str) -> bool:
    try:
        book.get(record_id)
    except KeyError:
        return False
    return True
