"""Brevo contact import, from the vendor's reference (developers.brevo.com).

- ``POST /v3/contacts/import`` (reference/import-contacts): exactly one of ``jsonBody``
  ("**Mandatory if fileUrl and fileBody is not defined.** JSON content to be imported. **Maximum
  allowed json body size is 10MB**. However we recommend a safe limit of around 8 MB"),
  ``fileBody`` or ``fileUrl``; ``listIds`` ("**Mandatory if newList is not defined.**") or
  ``newList {listName, folderId}``; ``updateExistingContacts`` (default true);
  ``emptyContactsAttributes`` (default false; "the empty fields in your import will erase any
  attribute that currently contain data", "only available if ``updateExistingContacts`` set to
  true"); ``emailBlacklist``, ``smsBlacklist``, ``disableNotification``, ``notifyUrl``. A
  ``jsonBody`` item is ``{email, attributes}``. "Any contact attribute that doesn't exist in
  your account will be ignored at import end." Answers 202 ``{"processId": <long>}``.
- ``GET /v3/processes/{processId}`` (reference/get-process): ``{id, name, status, info}``;
  status queued | in_process | processing | completed | failed | cancelled; ``info.import``
  (completed IMPORTUSER processes only) holds URLs of CSV reports about problematic records
  (invalid_emails, duplicate_email_id, duplicate_ext_id, duplicate_phone_id, ...).
- ``GET /v3/contacts/attributes`` (reference/get-attributes): ``{attributes: [{name, category,
  type, enumeration?}]}``.

The sandbox's reports live at ``/_sandbox/reports/<processId>/<name>.csv`` (``;``-separated,
like Brevo's CSV). Identifier attributes: EXT_ID and SMS (with the email) [INF].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from connector.sandbox import brevo
from connector.sandbox._shared import Rejected, Reply, is_int, is_number, json_reply
from connector.sandbox.contacts import DONE, FAILED, ContactStore, Job, ProfileBook

KIND = "brevo_contacts"
MAX_JSON_BODY_BYTES = 10 * 1024 * 1024
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Dates: YYYY-MM-DD, and the dd/mm/yyyy form of the import changelog example ("BIRTHDAY":
# "11/02/1989").
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4}")
IDENTIFIER_ATTRIBUTES = ("EXT_ID", "SMS", "WHATSAPP", "LANDLINE_NUMBER")
# info.import report names per identifier (get-process).
DUPLICATE_REPORT = {
    "email": "duplicate_email_id",
    "EXT_ID": "duplicate_ext_id",
    "SMS": "duplicate_phone_id",
    "WHATSAPP": "duplicate_whatsapp_id",
    "LANDLINE_NUMBER": "duplicate_landline_number_id",
}
_BOOLS = (
    "updateExistingContacts",
    "emptyContactsAttributes",
    "emailBlacklist",
    "smsBlacklist",
    "disableNotification",
)


def _bad(code: str, message: str) -> Rejected:
    return Rejected(brevo.error(400, code, message))


def _parse(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(payload, dict):
        raise _bad("bad_request", "Request body must be a JSON object")
    sources = [k for k in ("jsonBody", "fileBody", "fileUrl") if payload.get(k) is not None]
    if not sources:
        raise _bad("missing_parameter", "One of jsonBody, fileBody or fileUrl is required")
    if len(sources) > 1:
        raise _bad("invalid_parameter", "Send only one of jsonBody, fileBody or fileUrl")
    if sources != ["jsonBody"]:
        raise _bad(
            "invalid_parameter",
            f"The sandbox imports jsonBody only; {sources[0]} is not supported here",
        )
    items = payload["jsonBody"]
    if not isinstance(items, list) or not items:
        raise _bad("invalid_parameter", "jsonBody must be a non-empty array of contacts")
    for flag in _BOOLS:
        if payload.get(flag) is not None and not isinstance(payload[flag], bool):
            raise _bad("invalid_parameter", f"{flag} must be a boolean")
    list_ids = payload.get("listIds")
    new_list = payload.get("newList")
    if list_ids is None and new_list is None:
        raise _bad("missing_parameter", "listIds is mandatory if newList is not defined")
    if list_ids is not None and not (
        isinstance(list_ids, list) and all(is_int(i) and i > 0 for i in list_ids)
    ):
        raise _bad("invalid_parameter", "listIds must be an array of list ids (integers)")
    if new_list is not None and not (
        isinstance(new_list, dict) and isinstance(new_list.get("listName"), str)
    ):
        raise _bad("invalid_parameter", "newList needs a listName")
    update = payload.get("updateExistingContacts", True)
    empty = payload.get("emptyContactsAttributes", False)
    if empty and not update:
        raise _bad(
            "invalid_parameter",
            "emptyContactsAttributes is only available if updateExistingContacts is true",
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad("invalid_parameter", f"jsonBody[{i}] must be an object")
        if item.get("email") is not None and not isinstance(item["email"], str):
            raise _bad("invalid_parameter", f"jsonBody[{i}].email must be a string")
        if item.get("attributes") is not None and not isinstance(item["attributes"], dict):
            raise _bad("invalid_parameter", f"jsonBody[{i}].attributes must be an object")
    options = {
        "listIds": list(list_ids or []),
        "newList": new_list,
        "update": update,
        "empty": empty,
        "emailBlacklist": payload.get("emailBlacklist", False),
        "smsBlacklist": payload.get("smsBlacklist", False),
    }
    return items, options


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


def value_fits(kind: str, value: Any) -> bool:
    """Does a (non-empty) value match an account attribute's type?"""
    if kind == "text":
        return isinstance(value, str)
    if kind == "float":
        return is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        return isinstance(value, str) and DATE_RE.fullmatch(value) is not None
    if kind == "category":
        return is_int(value) or isinstance(value, str)
    return isinstance(value, str) or is_int(value)  # id


def _identifiers(item: dict[str, Any]) -> dict[str, Any]:
    attributes = item.get("attributes") or {}
    found: dict[str, Any] = {}
    if not _is_empty(item.get("email")):
        found["email"] = item["email"]
    for key in IDENTIFIER_ATTRIBUTES:
        if not _is_empty(attributes.get(key)):
            found[key] = str(attributes[key])
    return found


def handle_import(
    body: bytes,
    content_type: str | None,
    store: ContactStore,
    account_attributes: Mapping[str, str],
    *,
    now: datetime,
    polls: int,
    validate: bool = True,
) -> Reply:
    """``POST /v3/contacts/import``: validate the body as Brevo does and queue an import job (its
    rows are applied when the job finishes after ``polls`` polls); 202 with the ``processId``, or
    Brevo's 400 error."""
    if len(body) > MAX_JSON_BODY_BYTES:
        return brevo.error(400, "out_of_range", "Maximum allowed json body size is 10MB")
    try:
        items, options = _parse(brevo._parse(body, content_type))
    except Rejected as exc:
        return exc.reply
    total = len(items)
    reports: dict[str, list[str]] = {}
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (identifiers, attributes)
    counts = {"ignored_attributes": 0, "ignored_values": 0, "skipped_rows": 0}
    seen: set[tuple[str, str]] = set()
    for item in items if validate else ():
        idents = _identifiers(item)
        email = idents.get("email")
        if not idents or (email is not None and not EMAIL_RE.fullmatch(email)):
            reports.setdefault("invalid_emails", []).append(email or "")
            counts["skipped_rows"] += 1
            continue
        repeated = next((k for k, v in idents.items() if (k, v) in seen), None)
        if repeated is not None:
            reports.setdefault(DUPLICATE_REPORT[repeated], []).append(idents[repeated])
            counts["skipped_rows"] += 1
            continue
        seen.update(idents.items())
        attributes: dict[str, Any] = {}
        for name, value in (item.get("attributes") or {}).items():
            kind = account_attributes.get(name.upper())
            if kind is None:
                counts["ignored_attributes"] += 1
            elif not _is_empty(value) and not value_fits(kind, value):
                counts["ignored_values"] += 1
            else:
                attributes[name.upper()] = value
        rows.append((idents, attributes))
    list_ids = list(options["listIds"])
    if options["newList"] is not None:
        list_ids.append(100_000 + store.next_number())

    def apply(book: ProfileBook) -> None:
        for idents, attributes in rows:
            upsert(book, idents, attributes, list_ids, options)

    process_id = store.next_number()
    store.note_lists(KIND, list_ids)
    store.create_job(
        str(process_id),
        KIND,
        now,
        total,
        polls,
        apply,
        info={"reports": reports, "counts": counts},
    )
    reply = json_reply(202, {"processId": process_id})
    reply.event_count = total
    if validate:
        reply.events = list(items)
    else:
        reply.sink_count = total
    return reply


def upsert(
    book: ProfileBook,
    idents: dict[str, Any],
    attributes: dict[str, Any],
    list_ids: list[int],
    options: dict[str, Any],
) -> None:
    """Create or update one contact in ``book`` as a Brevo import does (options: update existing,
    empty values, lists)."""
    record_id = book.find(idents)
    if record_id is None:
        record_id, record = book.new()
        record["email"] = idents.get("email")
        record["attributes"] = {k: v for k, v in attributes.items() if not _is_empty(v)}
        record["listIds"] = []
        record["emailBlacklisted"] = False
        record["smsBlacklisted"] = False
    else:
        if not options["update"]:
            return  # updateExistingContacts=false: existing contacts are left alone
        record = book.get(record_id)
        book.updated += 1
        if idents.get("email") is not None:
            record["email"] = idents["email"]
        for name, value in attributes.items():
            if not _is_empty(value):
                record["attributes"][name] = value
            elif options["empty"]:
                record["attributes"].pop(name, None)
    for list_id in list_ids:
        if list_id not in record["listIds"]:
            record["listIds"].append(list_id)
    if options["emailBlacklist"]:
        record["emailBlacklisted"] = True
    if options["smsBlacklist"]:
        record["smsBlacklisted"] = True
    book.reindex(record_id)


def _status(job: Job) -> str:
    if job.state == DONE:
        return "completed"
    if job.state == FAILED:
        return "failed"
    return "in_process"


def handle_process(process_id: str, store: ContactStore, now: datetime, base_url: str) -> Reply:
    """``GET /v3/processes/{id}``: count one poll of the import job and return its status (with
    report URLs once done); 400 for a non-numeric id, 404 for an unknown one."""
    if not process_id.isdigit():
        return brevo.error(400, "invalid_parameter", "processId must be an integer (long)")
    job = store.poll(process_id, now)
    if job is None or job.kind != KIND:
        return brevo.error(404, "document_not_found", "Process does not exist")
    body: dict[str, Any] = {"id": int(process_id), "name": "IMPORTUSER", "status": _status(job)}
    if job.state == DONE:
        reports = job.info["reports"]
        body["info"] = {
            "import": {
                name: f"{base_url}/_sandbox/reports/{process_id}/{name}.csv"
                for name in sorted(reports)
            }
        }
    return json_reply(200, body)


def report_csv(store: ContactStore, process_id: str, name: str) -> bytes | None:
    """A finished process's report as CSV text (one identifier per line), else None."""
    job = store.peek(process_id)
    if job is None or job.kind != KIND or job.state != DONE:
        return None
    values = job.info["reports"].get(name)
    if values is None:
        return None
    header = "EMAIL" if name in ("invalid_emails", "duplicate_email_id") else "IDENTIFIER"
    return ("\n".join([header, *values]) + "\n").encode()


def handle_attributes(account_attributes: Mapping[str, str]) -> Reply:
    """get-attributes: ``{"attributes": [{name, category, type}]}``."""
    out = []
    for name, kind in account_attributes.items():
        entry: dict[str, Any] = {"name": name, "category": "normal", "type": kind}
        if kind == "category":
            entry.update(category="category", enumeration=[])
        out.append(entry)
    return Reply(200, orjson.dumps({"attributes": out}))


ATTRIBUTE_CATEGORIES = ("normal", "transactional", "category", "calculated", "global")
NORMAL_TYPES = ("text", "date", "float", "boolean", "id")


def handle_create_attribute(
    category: str,
    name: str,
    body: bytes,
    content_type: str | None,
    store: ContactStore,
    seed: Mapping[str, str],
) -> Reply:
    """create-attribute: "use "type" for normal, transactional, or category attributes ...
    use "enumeration" for category attributes". The sandbox keeps normal and category ones."""
    if category not in ATTRIBUTE_CATEGORIES:
        return brevo.error(
            400,
            "invalid_parameter",
            "attributeCategory must be one of " + ", ".join(ATTRIBUTE_CATEGORIES),
        )
    try:
        payload = brevo._parse(body, content_type) if body else {}
    except Rejected as exc:
        return exc.reply
    if not isinstance(payload, dict):
        return brevo.error(400, "bad_request", "Request body must be a JSON object")
    if category == "category":
        kind = "category"
    elif category == "normal":
        kind = payload.get("type", "text")
        if kind not in NORMAL_TYPES:
            return brevo.error(
                400, "invalid_parameter", "type must be one of " + ", ".join(NORMAL_TYPES)
            )
    else:
        return brevo.error(
            400, "invalid_parameter", "The sandbox keeps normal and category attributes only"
        )
    if not store.add_brevo_attribute(seed, name.upper(), kind):
        return brevo.error(400, "invalid_parameter", "Attribute name must be unique")
    return Reply(201, b"", None)
