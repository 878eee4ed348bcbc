"""Omnisend contacts, API version 2026-03-15 (contracts-contacts.md, Omnisend).

From https://api-docs.omnisend.com/v2026-03-15 (Contacts API, Batches API, reference/contacts,
reference/responses, reference/rate-limit-timeouts-errors):

- ``mode: batch`` (default): ``POST /api/batches`` ``{method: POST, endpoint: contacts,
  items}`` with at most 100 items ("Each batch operation can include up to 100 actions"),
  201 ``{batchID, totalCount}``; ``GET /api/batches/{id}`` is polled until ``finished``
  (``stopped`` fails the run, nothing of the batch is confirmed); then
  ``GET /api/batches/{id}/items`` answers the ``Batch`` schema: its items (``itemID``,
  ``responseCode``, ``response``, ``request``) under ``responses[]`` and ``errors[]`` — both are
  read, one item per ``itemID``, as a refused item may be listed only under ``errors[]``.
  An item answered ≥ 400 is a reject of its row, matched by the identifiers of the item's
  ``request`` (our own payload), else by its position (only when ``responses[]`` lists every
  item in order); an item matching no row leaves the batch unconfirmed (never a guess), and
  the run's error says why.
- ``mode: single`` (accounts or plans where batches are not allowed): ``POST /api/contacts``
  per row (201 created / 200 updated). A 400 listing field ``errors`` or a 409 (every
  identifier belongs to another contact) is a reject of that row; any other refusal fails the
  run. A group of up to 100 such requests counts as one ``job`` with one (local) poll.
- Every request carries ``Authorization: Omnisend-API-Key <key>`` and
  ``Omnisend-Version: 2026-03-15``; errors are RFC 9457 problems. 400 requests per minute per
  store (contacts and batches share it).
- Body (ContactRequest): ``identifiers`` = ``[{type: email|phone, id, sendWelcomeMessage}]``;
  ``sendWelcomeMessage`` "Defaults to true" in this version, so it is always sent explicitly
  (option ``send_welcome_message``, default false). Channel subscription statuses are not
  sent (a contact sync does not change consent). Standard fields ``firstName``, ``lastName``,
  ``address``, ``city``, ``state``, ``postalCode``, ``country``, ``countryCode``,
  ``birthdate`` (YYYY-MM-DD), ``gender`` (m|f), ``createdAt``, ``tags`` (array, ≤ 100) take
  the mapped name as is; every other name is a ``customProperties`` entry (at most 200, names
  of latin letters, digits and ``_``, ≤ 128, case-sensitive: anything else is a config error).
- NULL: the field is left out, and Omnisend keeps the value it holds. The 2026-03-15 API
  documents no way to clear a contact field or custom property: ``POST /api/contacts`` and
  ``PATCH /api/contacts?email=`` ("Pass only fields you want to update") define no null or
  empty value, and the last reference that spoke of removal (v4) said "System properties
  cannot be removed at the moment, only modified". So a NULL is never sent (nor a made-up
  empty string: values leave as the warehouse holds them); ``validate`` warns about it until
  ``options.null_fields: keep`` acknowledges it.
- Bytes: the docs give no byte limit for a batch; ``max_job_bytes`` is a conservative cap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
from pydantic import Field, field_validator, model_validator
from typing_extensions import override

from ...core.errors import RequestError
from ...core.options import DestinationSettings
from ...model.jsonfrag import text_fragment
from ..answers import About, judge
from ..base import Limits
from ..contact_endpoint import (
    Contact,
    ContactDestination,
    ContactOptions,
    Gone,
    Http,
    JobResult,
    JobRow,
    SyncView,
    identifier_problem,
    json_object,
    match_errors,
    request_error,
)
from .vendor import AUTH_HELP, OMNISEND_RATE, VENDOR, omnisend_headers, problem_text

VERSION = "2026-03-15"
MAX_ITEMS = 100
MAX_BYTES = 4 * 1024 * 1024  # undocumented: a conservative cap, not Omnisend's
MAX_CUSTOM = 200
IDENTIFIERS = ("email", "phone")
STANDARD = (
    "firstName",
    "lastName",
    "address",
    "city",
    "state",
    "postalCode",
    "country",
    "countryCode",
    "birthdate",
    "gender",
    "createdAt",
    "tags",
)
# ContactRequest fields typed string (all of STANDARD but tags): the string-field rule applies.
TEXT_FIELDS = tuple(name for name in STANDARD if name != "tags")
CUSTOM_NAME = re.compile(r"[A-Za-z0-9_]{1,128}")
BATCHES = "/api/batches"
CONTACTS = "/api/contacts"
CONTACT_TAGS = "/api/contacts/tags"  # DELETE: remove tags by contactIDs, emails or phones


class OmnisendContactsOptions(ContactOptions):
    """``options`` of ``omnisend_contacts``."""

    mode: Literal["batch", "single"] = Field(
        "batch",
        description="batch: POST /api/batches of up to 100 contacts, polled; single: one "
        "POST /api/contacts per row (where batches are not allowed).",
    )
    send_welcome_message: bool = Field(
        False,
        description="sendWelcomeMessage on every identifier (sent explicitly: the API's own "
        "default in 2026-03-15 is true).",
    )
    api_version: Literal["2026-03-15"] = Field("2026-03-15", description="Omnisend-Version header.")
    auth: Literal["api_key", "bearer"] = Field("api_key", description=AUTH_HELP)
    null_fields: Literal["keep"] | None = Field(
        None,
        description="A NULL leaves the value Omnisend holds (its API documents no way to clear "
        "a contact field or custom property); 'keep' acknowledges it and silences validate's "
        "warning.",
    )

    removed_tag: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="on_removed: untag: a tag put on every contact the sync sends and removed "
        "(DELETE /api/contacts/tags) from the contacts whose source rows vanish; a segment on "
        "it stands in for a list.",
    )
    untag_ok: ClassVar[bool] = True

    @field_validator("on_removed")
    @classmethod
    def _no_lists(cls, value: str) -> str:
        if value == "unlist":
            raise ValueError(
                "Omnisend's API (2026-03-15) has no lists to remove a contact from (audiences "
                "are segments and tags); use on_removed: untag with options.removed_tag (a tag "
                "standing in for a list), or keep"
            )
        return value

    @model_validator(mode="after")
    def _untag_needs_a_tag(self) -> OmnisendContactsOptions:
        if self.on_removed == "untag" and not self.removed_tag:
            raise ValueError(
                "on_removed: untag removes the sync's tag from vanished rows' contacts, and "
                "this sync has none: set options.removed_tag (e.g. 'synced-customers')"
            )
        return self

    @override
    def fingerprint_fields(self) -> dict[str, Any]:
        # The tag is part of every contact sent: setting it sends every row again (tagged).
        return {"removed_tag": self.removed_tag} if self.removed_tag else {}


class OmnisendContactsDestination(DestinationSettings):
    """``destination:`` block of an Omnisend contact sync."""

    type: Literal["omnisend_contacts"]
    options: OmnisendContactsOptions = Field(default_factory=OmnisendContactsOptions)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class OmnisendContacts(ContactDestination[OmnisendContactsDestination]):
    """Omnisend contacts through batches or single upserts (rules: module docstring)."""

    type = "omnisend_contacts"
    config_model = OmnisendContactsDestination
    # DELETE /api/contacts/tags: no limit found in the reference; as many as a batch holds.
    max_unlist_per_request = 100
    options: OmnisendContactsOptions
    vendor = VENDOR
    default_base_url = "https://api.omnisend.com"
    identifier_fields = IDENTIFIERS
    limits = Limits(max_items=MAX_ITEMS, max_bytes=MAX_BYTES, rate=OMNISEND_RATE)
    rate_account = "omnisend_events"  # one 400/min budget per store for every endpoint
    secret_headers = ("authorization",)

    def __init__(
        self,
        config: OmnisendContactsDestination,
        api_key: str,
        sync_name: str,
        http: Http | None = None,
    ) -> None:
        super().__init__(config, api_key, sync_name, http)
        self._outcomes: dict[str, dict[int, str]] = {}  # single mode: group → row errors

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = []
        props = mapping.get("contact_properties")
        names = [str(n) for n in (props if isinstance(props, dict) else {})]
        custom = 0
        for name in names:
            where = f"mapping.contact_properties.{name}"
            if name in STANDARD:
                continue
            if name in IDENTIFIERS:
                out.append((where, f"{name} is an identifier: map it under mapping.identifiers"))
            elif _camel(name) in STANDARD:
                out.append(
                    (
                        where,
                        f"Omnisend's standard field is {_camel(name)!r}: map it under that "
                        "name (or give the custom property another name)",
                    )
                )
            elif not CUSTOM_NAME.fullmatch(name):
                out.append(
                    (
                        where,
                        "not a valid Omnisend custom property name: latin letters, digits "
                        "and _ only, at most 128 (Omnisend contacts are flat: no dots)",
                    )
                )
            else:
                custom += 1
        if custom > MAX_CUSTOM:
            out.append(
                (
                    "mapping.contact_properties",
                    f"{custom} custom properties; Omnisend allows at most {MAX_CUSTOM}",
                )
            )
        return out

    @override
    def validate_warnings(self, sync: SyncView) -> list[str]:
        props = list(sync.mapping.contact_properties or {})
        if not props or self.options.null_fields == "keep":
            return []
        return [
            f"{sync.source_path or sync.name}: a NULL in {', '.join(props)} leaves the value "
            "Omnisend holds: the 2026-03-15 API has no way to clear a contact field or custom "
            "property, so a value that became NULL in the warehouse stays at Omnisend (set "
            "destination.options.null_fields: keep to acknowledge this)",
        ]

    @override
    def auth_headers(self) -> dict[str, str]:
        return omnisend_headers(self.api_key, self.options.api_version, self.options.auth)

    # -- rows --------------------------------------------------------------------------
    @override
    def check(self, contact: Contact) -> str | None:
        none = "no contact identifier: email and phone are both empty"
        problem = identifier_problem(contact.identifiers, IDENTIFIERS, none, "phone")
        if problem is not None:
            return problem
        if self.options.on_missing == "skip" and not contact.identifiers.get("email"):
            return (
                "no email: on_missing: skip updates existing contacts found by e-mail "
                "(PATCH /api/contacts?email=), and this row has none"
            )
        for name, frag in contact.properties.items():
            if frag is not None and name in TEXT_FIELDS and text_fragment(frag) is None:
                return f"contact {name} is a string field: the JSON holds an object or array"
        return None

    @override
    def encode(self, contact: Contact) -> bytes:
        welcome = self.options.send_welcome_message
        body: dict[str, Any] = {
            "identifiers": [
                {"type": name, "id": contact.identifiers[name], "sendWelcomeMessage": welcome}
                for name in IDENTIFIERS
                if contact.identifiers.get(name)
            ]
        }
        custom: dict[str, Any] = {}
        for name, frag in contact.properties.items():
            if frag is None:
                continue  # NULL: left out, Omnisend keeps its value
            if name in TEXT_FIELDS:
                frag = text_fragment(frag) or frag  # strings in the OpenAPI: "75001"
            (body if name in STANDARD else custom)[name] = orjson.Fragment(frag)
        if custom:
            body["customProperties"] = custom
        tag = self.options.removed_tag
        if tag:  # the sync's tag (on_removed: untag) beside the mapped ones
            mapped = contact.properties.get("tags")
            tags = orjson.loads(mapped) if mapped is not None else []
            if isinstance(tags, list) and tag not in tags:
                tags.append(tag)
            body["tags"] = tags
        return orjson.dumps(body)

    # -- jobs --------------------------------------------------------------------------
    @override
    def job_overhead(self) -> int:
        return 64

    @override
    def job_request(self, rows: list[JobRow]) -> tuple[str, bytes]:
        if self.options.mode == "single" or self.options.on_missing == "skip":
            return CONTACTS, rows[0].payload  # preview: the group's first request
        body = (
            b'{"method":"POST","endpoint":"contacts","items":['
            + b",".join(r.payload for r in rows)
            + b"]}"
        )
        return BATCHES, body

    @override
    def submit(self, rows: list[JobRow]) -> str:
        if self.options.on_missing == "skip":
            return self._update_one_by_one(rows)
        if self.options.mode == "single":
            return self._send_one_by_one(rows)
        _, body = self.job_request(rows)
        resp = self.call("POST", BATCHES, body)
        if resp.status_code not in (200, 201, 202):
            raise request_error(f"POST {BATCHES}", resp)
        batch_id = json_object(resp, f"POST {BATCHES}").get("batchID")
        if not isinstance(batch_id, str) or not batch_id:
            raise RequestError(f"POST {BATCHES} answered {resp.status_code} without a batchID")
        return batch_id

    def _send_one_by_one(self, rows: list[JobRow]) -> str:
        errors: dict[int, str] = {}
        for i, row in enumerate(rows):
            resp = self.call("POST", CONTACTS, row.payload)
            if resp.status_code in (200, 201):
                continue
            data = json_object(resp, f"POST {CONTACTS}") if resp.content else {}
            listed = isinstance(data.get("errors"), list) and bool(data["errors"])
            # A 409 is about the row's identifiers (each belongs to another contact); a 400
            # or 422 is about the row only when it lists the row's fields (``answers``).
            code = resp.status_code
            about = judge(code, problem_text(data), item_detail=listed or code == 409)
            if code in (400, 409, 422) and about is About.ITEMS:
                errors[i] = _problem(code, data)
            else:
                raise request_error(f"POST {CONTACTS}", resp)
        group = f"single-{len(self._outcomes) + 1}"
        self._outcomes[group] = errors
        return group

    def _update_one_by_one(self, rows: list[JobRow]) -> str:
        """``on_missing: skip``: ``PATCH /api/contacts?email=`` per row, which "updates an
        existing contact" only: 404 (no contact has the address) is a reject of the row."""
        errors: dict[int, str] = {}
        for i, row in enumerate(rows):
            email = row.identifiers.get("email")
            resp = self.call("PATCH", CONTACTS, row.payload, params={"email": email})
            if resp.status_code in (200, 201):
                continue
            data = json_object(resp, f"PATCH {CONTACTS}") if resp.content else {}
            listed = isinstance(data.get("errors"), list) and bool(data["errors"])
            if resp.status_code == 404:
                errors[i] = (
                    "no Omnisend contact has this e-mail, and on_missing: skip creates none "
                    "(tried again next run; set on_missing: create to create it)"
                )
            elif resp.status_code == 409 or (resp.status_code in (400, 422) and listed):
                errors[i] = _problem(resp.status_code, data)
            else:
                raise request_error(f"PATCH {CONTACTS}", resp, (email or "",))
        group = f"single-{len(self._outcomes) + 1}"
        self._outcomes[group] = errors
        return group

    @override
    def poll(self, job_id: str) -> bool:
        if job_id in self._outcomes:
            return True  # single mode: every request already answered
        path = f"{BATCHES}/{job_id}"
        resp = self.call("GET", path)
        if resp.status_code != 200:
            raise request_error(f"GET {path}", resp)
        status = json_object(resp, f"GET {path}").get("status")
        if status == "finished":
            return True
        if status in ("pending", "inProgress"):
            return False
        raise RequestError(
            f"Omnisend batch {job_id} ended {status!r}: none of its contacts is confirmed; "
            "they are sent again by the next run"
        )

    @override
    def unlist(self, rows: list[Gone]) -> dict[int, str]:
        """``on_removed: untag``: ``DELETE /api/contacts/tags`` removes ``removed_tag`` from
        these contacts, found by their stored e-mails (or phones); nothing else changes."""
        tag = self.options.removed_tag
        if self.options.on_removed != "untag" or not tag:
            return super().unlist(rows)
        refused: dict[int, str] = {}
        emails: list[str] = []
        phones: list[str] = []
        for i, row in enumerate(rows):
            if row.identifiers.get("email"):
                emails.append(row.identifiers["email"])
            elif row.identifiers.get("phone"):
                phones.append(row.identifiers["phone"])
            else:
                refused[i] = "no stored e-mail or phone to find its contact: remove the tag by hand"
        body: dict[str, Any] = {"tags": [tag]}
        if emails:
            body["emails"] = emails
        if phones:
            body["phones"] = phones
        if emails or phones:
            resp = self.call("DELETE", CONTACT_TAGS, orjson.dumps(body))
            if resp.status_code not in (200, 202, 204):
                raise request_error(f"DELETE {CONTACT_TAGS}", resp, (*emails, *phones))
        return refused

    @override
    def result(self, job_id: str, rows: list[JobRow]) -> JobResult:
        if job_id in self._outcomes:
            return JobResult(errors=self._outcomes.pop(job_id))
        path = f"{BATCHES}/{job_id}/items"
        resp = self.call("GET", path)
        if resp.status_code != 200:
            raise request_error(f"GET {path}", resp)
        items, in_order = batch_items(json_object(resp, f"GET {path}"))
        if len(items) != len(rows):
            return JobResult(
                unknown=f"Omnisend batch {job_id} lists {len(items)} item results for "
                f"{len(rows)} contacts (responses[] and errors[] together); its rows stay "
                "unconfirmed and are sent again by the next run"
            )
        reported: list[tuple[dict[str, Any], str]] = []
        by_position: dict[int, str] = {}
        for position, item in enumerate(items):
            item = item if isinstance(item, dict) else {}
            code = item.get("responseCode")
            if isinstance(code, int) and code < 400:
                continue
            response = item.get("response")
            reason = _problem(code, response if isinstance(response, dict) else {})
            request = item.get("request")
            idents = request.get("identifiers") if isinstance(request, dict) else None
            ident = {
                str(i.get("type")): i.get("id")
                for i in (idents if isinstance(idents, list) else [])
                if isinstance(i, dict)
            }
            if ident:
                reported.append((ident, reason))
            elif in_order:
                by_position[position] = reason
            else:  # listed apart from the others: its position is not its row's
                reported.append(({}, reason))
        out = match_errors(rows, reported, IDENTIFIERS)
        for position, reason in by_position.items():
            out.errors.setdefault(position, reason)
        return out


def batch_items(doc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The items of a ``Batch`` (2026-03-15): ``responses[]`` and ``errors[]`` together, one
    per ``itemID`` (an item in both counts once, as its error), and whether their order is the
    batch's (every item came from ``responses[]``, which then lists them all in order). A
    refused item may be listed only under ``errors[]``."""
    merged: dict[Any, dict[str, Any]] = {}
    loose: list[dict[str, Any]] = []  # items without an itemID
    from_errors = False
    for name in ("responses", "errors"):
        listed = doc.get(name)
        for item in listed if isinstance(listed, list) else []:
            if not isinstance(item, dict):
                continue
            key = item.get("itemID")
            if name == "errors" and (key is None or key not in merged):
                from_errors = True
            if key is None or not isinstance(key, (str, int)):
                loose.append(item)
                continue
            merged[key] = item
    return [*merged.values(), *loose], not from_errors


def _problem(status: Any, data: dict[str, Any]) -> str:
    """An RFC 9457 problem → "409 Conflict: detail (field: message; ...)"."""
    return f"{status} {problem_text(data)}".strip()


DESTINATION = OmnisendContacts
