"""Brevo ``POST /v3/contacts/import`` with ``jsonBody`` (contracts-contacts.md, Brevo).

From developers.brevo.com (reference/import-contacts, get-process, get-attributes, api-limits): the
``jsonBody`` import allows 10 MB and Brevo recommends about 8 MB, so a job holds at most 8 MiB of
contacts (and 10,000: the engine's memory bound); ``listIds`` is mandatory (``options.list_ids``);
``updateExistingContacts`` is always sent as ``true``. The import answers 202 ``{"processId"}``; the
process is polled with ``GET /v3/processes/{id}`` until ``completed`` (``failed`` / ``cancelled``
fail the run and confirm nothing). Rows Brevo left out are listed in CSV reports linked from
``info.import`` (invalid_emails, duplicate_email_id, duplicate_ext_id...) without a row index: they
are matched to the job's rows by identifier and become rejects.

Brevo ignores unknown attributes and values of the wrong type *silently*, so before anything is
sent (``connector validate`` and the start of every run) the mapped attributes are checked
against the account's (``GET /v3/contacts/attributes``): an unknown attribute, a read-only one
or a column whose kind cannot hold the attribute's type is a config error (exit 2). A text
column feeding a ``date`` attribute is checked per row (a value that is not a date is a reject).

Identifiers: ``email`` (the item's ``email``) and the identifier attributes ``EXT_ID``,
``SMS``, ``WHATSAPP``, ``LANDLINE_NUMBER`` (mapped as ``ext_id``, ``sms``, ``whatsapp``,
``landline_number``). Attribute names are Brevo's (upper-case; the mapping's names are
upper-cased). NULLs: a NULL attribute is left out of the import (Brevo keeps its value without
``emptyContactsAttributes``) and cleared by a second import, sent once the first completed,
with ``emptyContactsAttributes: true`` that carries only the row's identifiers and its NULL
attributes; a row is confirmed only when both imports completed without listing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import orjson
from pydantic import Field, PositiveInt, field_validator
from typing_extensions import override

from ...core.errors import RequestError
from ...core.options import DestinationSettings, RateLimit
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
    email_change_warning,
    identifier_problem,
    join_body,
    json_object,
    match_errors,
    request_error,
)
from .vendor import VENDOR, brevo_headers

MAX_BYTES = 8 * 1024 * 1024  # of a 10 MB limit: Brevo's "safe limit of around 8 MB"
IMPORT = "/v3/contacts/import"
ATTRIBUTES = "/v3/contacts/attributes"
# mapping identifier → the item field or attribute that carries it
IDENTIFIERS = {
    "email": "email",
    "ext_id": "EXT_ID",
    "sms": "SMS",
    "whatsapp": "WHATSAPP",
    "landline_number": "LANDLINE_NUMBER",
}
# info.import report → the identifier its lines hold (get-process)
REPORTS = {
    "invalid_emails": ("email",),
    "duplicate_email_id": ("email",),
    "duplicate_ext_id": ("ext_id",),
    "duplicate_phone_id": ("sms",),
    "duplicate_whatsapp_id": ("whatsapp",),
    "duplicate_landline_number_id": ("landline_number",),
}
# Brevo attribute type → the warehouse column kinds (connector.source) whose JSON fits it.
FITS = {
    "text": ("string", "date", "timestamp", "timestamptz"),
    "float": ("integer", "number", "float"),
    "boolean": ("boolean",),
    "date": ("date", "string"),  # text: checked per row
    "id": ("string", "integer"),
    "category": ("string", "integer"),
}
READ_ONLY = ("calculated", "global")
DATE = re.compile(rb'^"(\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4})"$')
DONE = "completed"
# remove-contact-from-list: "a maximum of 150 emails" / "150 Ids" / "150 extIds" per request.
MAX_UNLIST = 150
# get-contact-info: identifierType per mapping identifier (the path holds the value).
IDENTIFIER_TYPES = {
    "email": "email_id",
    "ext_id": "ext_id",
    "sms": "phone_id",
    "whatsapp": "whatsapp_id",
    "landline_number": "landline_number_id",
}
RUNNING = ("queued", "in_process", "processing")


class BrevoContactsOptions(ContactOptions):
    """``options:`` of a Brevo contact sync."""

    list_ids: list[PositiveInt] = Field(
        ...,
        min_length=1,
        description="Brevo list ids every imported contact joins (listIds is mandatory).",
    )

    def fingerprint_fields(self) -> dict[str, Any]:
        """The lists shape the contacts: changing them re-sends every row."""
        return {"list_ids": sorted(self.list_ids)}

    @field_validator("on_missing")
    @classmethod
    def _no_update_only(cls, value: str) -> str:
        if value == "skip":
            raise ValueError(
                "on_missing: skip (update-only) is not available for brevo_contacts: Brevo's "
                "contact "
                "import has no update-only option (updateExistingContacts: false is the opposite, "
                "create-only), and its batch update is deprecated; use on_missing: create"
            )
        return value


class BrevoContactsDestination(DestinationSettings):
    """``destination:`` block of a Brevo contact sync."""

    type: Literal["brevo_contacts"]
    options: BrevoContactsOptions


@dataclass
class _Process:
    """One job: the main import, then (when rows hold NULLs) the clearing import."""

    main: str
    clear_bodies: list[bytes] = field(default_factory=list)  # clearing imports to send
    clear: str | None = None  # the clearing import being polled
    reports: dict[str, str] = field(default_factory=dict)  # report name → URL (both imports)


class BrevoContacts(ContactDestination[BrevoContactsDestination]):
    """Brevo contact import (the module docstring has the rules)."""

    type = "brevo_contacts"
    config_model = BrevoContactsDestination
    options: BrevoContactsOptions
    vendor = VENDOR
    default_base_url = "https://api.brevo.com"
    identifier_fields = tuple(IDENTIFIERS)
    stable_ids = ("ext_id",)
    # /v3/contacts/* is a bucket of its own beside /v3/events (api-limits): General plan.
    limits = Limits(
        max_items=1_000_000,  # no count limit documented (the run caps a job at ROWS_PER_JOB)
        max_bytes=MAX_BYTES,
        rate=RateLimit(per_second=10, per_minute=600),  # 36,000/h
    )
    secret_headers = ("api-key",)

    def __init__(
        self,
        config: BrevoContactsDestination,
        api_key: str,
        sync_name: str,
        http: Http | None = None,
    ) -> None:
        super().__init__(config, api_key, sync_name, http)
        self._clears: dict[str, bytes] = {}  # row key → its clearing item (rows with NULLs)
        self._processes: dict[str, _Process] = {}
        self._date_checks: tuple[str, ...] = ()  # text columns feeding date attributes

    @classmethod
    @override
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Dotted names (Brevo attributes are flat) and identifiers mapped as attributes."""
        out = []
        props = mapping.get("contact_properties")
        taken = {v.upper() for v in IDENTIFIERS.values()}
        seen: dict[str, str] = {}
        for name in props if isinstance(props, dict) else {}:
            name = str(name)
            where = f"mapping.contact_properties.{name}"
            other = seen.setdefault(name.upper(), name)
            if other != name:
                out.append((where, f"{name} and {other} are the same Brevo attribute"))
            elif "." in name:
                out.append((where, "Brevo attributes are flat: use a name without dots"))
            elif name.upper() in taken:
                ident = next(k for k, v in IDENTIFIERS.items() if v == name.upper())
                out.append(
                    (where, f"{name} is an identifier: map it as mapping.identifiers.{ident}")
                )
        return out

    @override
    def auth_headers(self) -> dict[str, str]:
        """The account key (``api-key``) and JSON, as Brevo's event endpoints send them."""
        return brevo_headers("api-key", self.api_key)

    # -- before anything is sent -------------------------------------------------------
    @override
    def preflight(self, sync: SyncView, types: Mapping[str, str]) -> list[str]:
        """The mapped attributes against the account's (``GET /v3/contacts/attributes``)."""
        where = f"{sync.source_path or sync.name}: mapping.contact_properties"
        resp = self.call("GET", ATTRIBUTES)
        if resp.status_code != 200:
            raise request_error(f"GET {ATTRIBUTES}", resp)
        account: dict[str, tuple[str, str]] = {}
        for a in json_object(resp, f"GET {ATTRIBUTES}").get("attributes") or []:
            if isinstance(a, dict) and isinstance(a.get("name"), str):
                kind = str(a.get("type") or ("category" if a.get("enumeration") else "text"))
                account[a["name"].upper()] = (str(a.get("category") or "normal"), kind)
        problems = []
        dates = []
        # Identifiers leave as text: only their attribute's existence is checked.
        wanted: list[tuple[str, str | None]] = list(sync.mapping.contact_properties.items())
        wanted += [(IDENTIFIERS[i], None) for i in sync.mapping.identifiers if i != "email"]
        for name, column in wanted:
            found = account.get(name.upper())
            if found is None:
                problems.append(
                    f"{where}.{name}: the Brevo account has no attribute {name.upper()} (Brevo "
                    "would drop it silently); create it in Brevo (Contacts > Settings) or "
                    "remove it. The account has: " + ", ".join(sorted(account))
                )
                continue
            category, kind = found
            if category in READ_ONLY:
                problems.append(
                    f"{where}.{name}: {name.upper()} is a {category} attribute; imports cannot "
                    "write it"
                )
                continue
            col_kind = types.get(column) if column else None
            fits = FITS.get(kind)
            if col_kind is None or col_kind == "other" or fits is None:
                continue  # a missing column is reported by the column check
            if col_kind not in fits:
                problems.append(
                    f"{where}.{name}: column {column} is {col_kind} but Brevo attribute "
                    f"{name.upper()} is {kind} (Brevo would drop the values silently); map a "
                    f"column of kind {' or '.join(fits)}, or change the attribute's type"
                )
            elif kind == "date" and col_kind == "string":
                dates.append(name)
        self._date_checks = tuple(dates)
        return problems

    @override
    def validate_warnings(self, sync: SyncView) -> list[str]:
        return email_change_warning(sync, self.stable_ids, "Brevo")

    # -- rows --------------------------------------------------------------------------
    def check(self, contact: Contact) -> str | None:
        """An identifier present, the email's shape, dates from text columns."""
        none = "no contact identifier: " + ", ".join(IDENTIFIERS) + " are all empty"
        problem = identifier_problem(contact.identifiers, tuple(IDENTIFIERS), none)
        if problem is not None:
            return problem
        for name in self._date_checks:
            frag = contact.properties.get(name)
            if frag is not None and not DATE.match(frag):
                return f"{name} is not a date (YYYY-MM-DD) for Brevo's date attribute"
        return None

    def _item(self, contact: Contact, attrs: list[bytes]) -> bytes:
        ids = contact.identifiers
        attrs = [
            orjson.dumps(attr) + b":" + orjson.dumps(ids[ident])
            for ident, attr in IDENTIFIERS.items()
            if ident != "email" and ids.get(ident)
        ] + attrs
        head = b'{"email":' + orjson.dumps(ids["email"]) + b"," if ids.get("email") else b"{"
        return head + b'"attributes":{' + b",".join(attrs) + b"}}"

    def encode(self, contact: Contact) -> bytes:
        """The ``jsonBody`` item (NULLs left out; they go to the row's clearing item)."""
        values = [
            orjson.dumps(n.upper()) + b":" + f
            for n, f in contact.properties.items()
            if f is not None
        ]
        nulls = [
            orjson.dumps(n.upper()) + b":null" for n, f in contact.properties.items() if f is None
        ]
        if nulls:
            self._clears[contact.key] = self._item(contact, nulls)
        else:
            self._clears.pop(contact.key, None)
        return self._item(contact, values)

    # -- jobs --------------------------------------------------------------------------
    def job_overhead(self) -> int:
        """The import body's bytes besides its items."""
        return 120 + 12 * len(self.options.list_ids)

    def _body(self, items: list[bytes], *, empty: bool) -> bytes:
        tail = (
            b'],"listIds":'
            + orjson.dumps(self.options.list_ids)
            + b',"updateExistingContacts":true,"emptyContactsAttributes":'
            + (b"true" if empty else b"false")
            + b"}"
        )
        return join_body(b'{"jsonBody":[', items, tail)

    def job_request(self, rows: list[JobRow]) -> tuple[str, bytes]:
        """The main import of these rows (``preview``)."""
        return IMPORT, self._body([r.payload for r in rows], empty=False)

    def _import(self, body: bytes) -> str:
        resp = self.call("POST", IMPORT, body)
        if resp.status_code not in (200, 201, 202):
            raise request_error(f"POST {IMPORT}", resp)
        pid = json_object(resp, f"POST {IMPORT}").get("processId")
        if isinstance(pid, bool) or not isinstance(pid, (int, str)) or str(pid) == "":
            raise RequestError(f"POST {IMPORT} answered {resp.status_code} without a processId")
        return str(pid)

    def submit(self, rows: list[JobRow]) -> str:
        """Start the main import; its clearing imports wait for it to complete."""
        _, body = self.job_request(rows)
        bodies: list[bytes] = []
        items: list[bytes] = []
        size = self.job_overhead()
        for clear in (self._clears.pop(r.key, None) for r in rows):
            if clear is None:
                continue
            if items and size + len(clear) + 1 > MAX_BYTES:
                bodies.append(self._body(items, empty=True))
                items, size = [], self.job_overhead()
            items.append(clear)
            size += len(clear) + 1
        if items:
            bodies.append(self._body(items, empty=True))
        main = self._import(body)
        self._processes[main] = _Process(main, bodies)
        return main

    def _poll_one(self, pid: str, proc: _Process) -> bool:
        path = f"/v3/processes/{pid}"
        resp = self.call("GET", path)
        if resp.status_code != 200:
            raise request_error(f"GET {path}", resp)
        doc = json_object(resp, f"GET {path}")
        status = doc.get("status")
        if status == DONE:
            reports = (doc.get("info") or {}).get("import") or {}
            for name, url in reports.items() if isinstance(reports, dict) else ():
                if isinstance(url, str) and url:
                    proc.reports[f"{pid}:{name}"] = url
            return True
        if status in RUNNING:
            return False
        raise RequestError(
            f"Brevo import process {pid} ended {status!r}: none of its contacts is confirmed; "
            "they are sent again by the next run"
        )

    def poll(self, job_id: str) -> bool:
        """Poll the import in progress; start the next clearing import when it completed.
        True once the last one completed."""
        proc = self._processes[job_id]
        if not self._poll_one(proc.clear or proc.main, proc):
            return False
        if not proc.clear_bodies:
            return True
        # A clearing import starts once the import before it completed (same contacts).
        proc.clear = self._import(proc.clear_bodies.pop(0))
        return False

    def result(self, job_id: str, rows: list[JobRow]) -> JobResult:
        """The rows the imports' ``info.import`` reports list, matched by identifier."""
        proc = self._processes.pop(job_id)
        reported: list[tuple[dict[str, Any], str]] = []
        for where, url in proc.reports.items():
            pid, name = where.split(":", 1)
            fields = REPORTS.get(name, self.identifier_fields)
            for value in self._report_lines(url):
                reported.append(
                    ({f: value for f in fields}, f"{name} (Brevo import {pid} left it out)")
                )
        return match_errors(rows, reported, self.identifier_fields)

    def _report_lines(self, url: str) -> list[str]:
        """A CSV report's first column, header line skipped. The account key goes only to
        the API's own host; a report elsewhere is fetched without it."""
        import httpx  # here, not at import: `connector validate` and `state` never send

        base = httpx.URL(self.base_url)
        target = httpx.URL(url)
        if target.host == base.host and target.port == base.port:
            resp = self.call("GET", target.raw_path.decode())
        else:
            resp = self.http.request("GET", url)  # no headers: no key for another host
        if resp.status_code != 200:
            raise request_error(f"GET import report {target.path}", resp)
        lines = [ln.split(";")[0].strip().strip('"') for ln in resp.text.splitlines()[1:]]
        return [ln for ln in lines if ln]

    # -- removed rows ------------------------------------------------------------------
    max_unlist_per_request = MAX_UNLIST

    @override
    def unlist(self, rows: list[Gone]) -> dict[int, str]:
        """``on_removed: unlist``: remove these contacts from every list of
        ``options.list_ids`` with ``POST /v3/contacts/lists/{listId}/contacts/remove`` (by
        ``emails``, else ``extIds``: one kind per request, ≤ 150). A value the answer does
        not list under ``success`` is looked up (``GET /v3/contacts/{identifier}``): no
        contact, or one no longer in the list, has nothing to remove; one still in it is
        removed by its contact id, and refused if Brevo keeps it there. Contacts with only
        a phone-type identifier are found by that lookup too. Never unsubscribes (no
        blacklist flag is touched) and never deletes a contact."""
        lists = list(dict.fromkeys(self.options.list_ids))
        refused: dict[int, str] = {}
        check: dict[int, set[int]] = {}  # row → lists its removal is not confirmed from
        by_kind: dict[str, list[tuple[int, str]]] = {"emails": [], "extIds": []}
        for i, row in enumerate(rows):
            ids = row.identifiers
            if ids.get("email"):
                by_kind["emails"].append((i, ids["email"]))
            elif ids.get("ext_id"):
                by_kind["extIds"].append((i, ids["ext_id"]))
            elif any(ids.get(k) for k in IDENTIFIER_TYPES):
                check[i] = set(lists)
            else:
                refused[i] = "no contact identifier to find it in Brevo: " + ", ".join(
                    IDENTIFIER_TYPES
                )
        for list_id in lists:
            for kind, items in by_kind.items():
                for start in range(0, len(items), MAX_UNLIST):
                    chunk = items[start : start + MAX_UNLIST]
                    done = self._remove(list_id, kind, [v for _, v in chunk])
                    for i, value in chunk:
                        if _norm_value(value) not in done:
                            check.setdefault(i, set()).add(list_id)
        self._unlist_by_id(rows, check, refused)
        return refused

    def _unlist_by_id(
        self, rows: list[Gone], check: dict[int, set[int]], refused: dict[int, str]
    ) -> None:
        """Unconfirmed removals: look each contact up and remove it by id from the lists it
        is still in; what Brevo still does not remove goes to ``refused``."""
        by_id: dict[int, list[tuple[int, int]]] = {}
        for i in sorted(check):
            contact = self._contact(rows[i].identifiers)
            if contact is None:
                continue  # Brevo has no such contact: nothing to remove
            cid = contact.get("id")
            member = contact.get("listIds") or []
            for list_id in sorted(check[i]):
                if list_id not in member:
                    continue  # not (or no longer) in that list
                if not isinstance(cid, int) or isinstance(cid, bool):
                    refused[i] = f"Brevo's contact answer has no id; it stays in list {list_id}"
                    continue
                by_id.setdefault(list_id, []).append((i, cid))
        for list_id, items in by_id.items():
            for start in range(0, len(items), MAX_UNLIST):
                chunk = items[start : start + MAX_UNLIST]
                done = self._remove(list_id, "ids", [v for _, v in chunk])
                for i, cid in chunk:
                    if str(cid) not in done:
                        refused.setdefault(
                            i,
                            f"Brevo did not remove contact {cid} from list {list_id} (it "
                            "answered the removal without it under success)",
                        )

    def _remove(self, list_id: int, kind: str, values: list[Any]) -> set[str]:
        """One removal request; the values Brevo lists under ``success`` (normalized)."""
        path = f"/v3/contacts/lists/{list_id}/contacts/remove"
        resp = self.call("POST", path, orjson.dumps({kind: values}))
        if resp.status_code not in (200, 201):
            raise request_error(f"POST {path}", resp, tuple(map(str, values)))
        contacts = json_object(resp, f"POST {path}").get("contacts")
        success = contacts.get("success") if isinstance(contacts, dict) else None
        return {_norm_value(v) for v in success or [] if isinstance(v, (str, int))}

    def _contact(self, identifiers: Mapping[str, str]) -> dict[str, Any] | None:
        """The contact holding the first of these identifiers Brevo knows, or None."""
        for name, kind in IDENTIFIER_TYPES.items():
            value = identifiers.get(name)
            if not value:
                continue
            # The path holds the identifier: the client's messages never carry a path, and
            # this one's are named by the path template and keep Brevo's words without it.
            what = f"GET /v3/contacts/{{identifier}} ({kind})"
            resp = self.call(
                "GET", "/v3/contacts/" + quote(value, safe=""), None, {"identifierType": kind}
            )
            if resp.status_code == 404:
                continue
            if resp.status_code != 200:
                raise request_error(what, resp, (value,))
            return json_object(resp, what)
        return None


def _norm_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, str) and "@" in value else str(value)


DESTINATION = BrevoContacts
