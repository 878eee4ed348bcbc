"""What a contact endpoint module provides: ``ContactDestination`` (a row is a state), the
``Contact`` a changed row becomes, the job rows the run drives through the vendor's import
jobs, and the helpers the three vendors' contact endpoints share.

Each contact endpoint module (``klaviyo/profiles``, ``brevo/contacts``, ``omnisend/contacts``)
declares, beside its vendor's event endpoints and with their vendor module's headers and error
reading: its config model (``type: Literal[...]``), its documented ``Limits`` (profiles and bytes
per job, rate) with the source link, how a row becomes a profile payload, how a job is
submitted and how its outcome reads. Every request goes through ``http``, the run's one HTTP
client (``deliver.http_loop.HttpLoop``: pacing, retries, 429 waits, messages without paths).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol
from urllib.parse import quote

import orjson
from pydantic import Field, field_validator

from ..core.errors import ConfigError, RequestError
from ..core.options import CommonOptions
from .base import ConfigT, Destination

if TYPE_CHECKING:  # httpx is imported by the run that sends (cli start-up, docs/performance.md)
    import httpx


class ContactOptions(CommonOptions):
    """Options every contact destination takes (besides the transport ones)."""

    poll_interval_s: float = Field(
        2.0, gt=0, le=300, description="First wait between two polls of an import job."
    )
    poll_max_interval_s: float = Field(
        15.0, gt=0, le=600, description="Polls back off up to this interval."
    )
    job_timeout_s: float = Field(
        3600.0, gt=0, description="A job still running after this long fails the run."
    )
    jobs_in_flight: int = Field(
        2, ge=1, le=16, description="Import jobs submitted and not yet confirmed at once."
    )
    on_removed: Literal["keep", "unlist", "untag"] = Field(
        "keep",
        description="Rows that vanish from the source: keep (do nothing), unlist (remove "
        "their profiles from the sync's list(s); Klaviyo, Brevo) or untag (remove "
        "options.removed_tag from their contacts; Omnisend). Never unsubscribes or deletes "
        "anyone.",
    )
    on_missing: Literal["create", "skip"] = Field(
        "create",
        description="A row whose profile the vendor does not have: create it (default), or "
        "skip it (update-only: update the profiles that exist, create none; a missing one is "
        "a reject, tried again next run). Omnisend only: Klaviyo's bulk import and Brevo's "
        "contact import have no update-only mode.",
    )
    max_unlist_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="on_removed: unlist: when more than this share of the sync's confirmed "
        "contacts vanished in one run (an emptied or half-loaded source table?), the run fails "
        "and unlists nothing. 1 turns the guard off.",
    )

    def fingerprint_fields(self) -> dict[str, Any]:
        """Options that change what a profile looks like at the vendor: part of the mapping
        fingerprint, so changing one re-sends every row."""
        return {}

    # Destinations whose contacts carry a tag standing in for a list (``on_removed: untag``).
    untag_ok: ClassVar[bool] = False

    @field_validator("on_removed")
    @classmethod
    def _untag_where_tags_stand_in(cls, value: str) -> str:
        if value == "untag" and not cls.untag_ok:
            raise ValueError(
                "on_removed: untag is Omnisend's (a tag standing in for a list); this "
                "destination has lists: use on_removed: unlist or keep"
            )
        return value


def identity(identifiers: dict[str, str]) -> set[tuple[str, str]]:
    """A contact's identifiers as (name, value) pairs compared across rows: e-mail addresses
    without case (vendors match them so), the others as they are."""
    return {(n, v.lower() if n == "email" else v) for n, v in identifiers.items()}


@dataclass
class Contact:
    """One mapped row: identifiers as text, properties as JSON fragments (``None`` = the
    warehouse value is NULL). Property names are the mapping's (dotted = nested)."""

    index: int  # row in its page
    key: str
    identifiers: dict[str, str]
    properties: dict[str, bytes | None]


@dataclass(slots=True)
class JobRow:
    """A contact inside a submitted job: enough to confirm it and to name it in errors
    (a job holds up to tens of thousands until the vendor confirms them: no ``__dict__``)."""

    key: str
    hash: str
    identifiers: dict[str, str]
    payload: bytes


@dataclass
class Gone:
    """A contact whose source row vanished (``options.on_removed``): its key and the
    identifiers stored when the vendor last confirmed it (the source row is gone)."""

    key: str
    identifiers: dict[str, str]


@dataclass
class JobResult:
    """What the vendor said about a finished job: per-row errors by row index in the job
    (``errors``), and rows it could not say anything about (``unknown``: not confirmed)."""

    errors: dict[int, str] = field(default_factory=dict)
    unknown: str | None = None


class Http(Protocol):
    """The HTTP client a contact destination sends through (``deliver.http_loop.HttpLoop``):
    paced per account, retried on 5xx/408/timeouts, 429s waited out, 401/403 raised as
    ``AuthError``. Returns the response of a success or of a final refusal (another 4xx)."""

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request until it is answered for good."""

    def close(self) -> None:
        """Close the connection pool."""


class ContactMapping(Protocol):
    """The part of a sync's mapping a contact destination reads."""

    @property
    def identifiers(self) -> Mapping[str, str]:
        """Identifier name → column."""

    @property
    def contact_properties(self) -> Mapping[str, str]:
        """Property name → column."""


class SyncView(Protocol):
    """What a contact destination reads of its sync (``config.SyncConfig`` provides it)."""

    @property
    def name(self) -> str:
        """The sync's name."""

    @property
    def source_path(self) -> str | None:
        """The file it was loaded from, for messages."""

    @property
    def mapping(self) -> ContactMapping:
        """Its mapping."""


class ContactDestination(Destination[ConfigT]):
    """Base class of contact endpoints (one vendor's contact import): subclasses set the
    class attributes and implement the abstract methods. ``limits.max_items`` is profiles
    per job, ``limits.max_bytes`` a job's body."""

    kind = "contacts"
    options: ContactOptions
    max_unlist_per_request: ClassVar[int] = 100
    # Identifiers the vendor resolves a profile by before the e-mail (Klaviyo external_id,
    # Brevo ext_id): mapped, a row whose e-mail changes updates the same profile; else it
    # makes a new one (the run warns, ``contacts.conflicts.Conflicts.moved``).
    stable_ids: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, config: ConfigT, api_key: str, sync_name: str, http: Http | None = None
    ) -> None:
        super().__init__(config, api_key, sync_name)
        self._http = http

    @property
    def http(self) -> Http:
        """The run's HTTP client (``connect`` sets it; ``deliver.factory`` always does)."""
        if self._http is None:
            raise RuntimeError(f"{self.type}: no HTTP client; build it with make_destination")
        return self._http

    def connect(self, http: Http) -> None:
        """Send every request of this destination through ``http``."""
        self._http = http

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """One request to the vendor's API with this destination's headers."""
        return self.http.request(method, path, body, params=params, headers=self.auth_headers())

    # -- before anything is sent -------------------------------------------------------
    def preflight(self, sync: SyncView, types: Mapping[str, str]) -> list[str]:
        """Config problems found by asking the vendor before anything is sent (``validate``
        and every run's start); ``types``: the source's column kinds. May raise
        ``RequestError``. The base asks nothing (``has_preflight``)."""
        return []

    def has_preflight(self) -> bool:
        """Does this destination ask the vendor anything before sending?"""
        return type(self).preflight is not ContactDestination.preflight

    def validate_warnings(self, sync: SyncView) -> list[str]:
        """What ``validate`` should tell about this sync that runs would do silently (a NULL
        the vendor cannot clear...). The base has nothing to say."""
        return []

    # -- rows ----------------------------------------------------------------------------
    def check(self, contact: Contact) -> str | None:
        """Why this row can never be imported (a local reject), or None."""
        return None

    @abstractmethod
    def encode(self, contact: Contact) -> bytes:
        """The profile payload of one row (JSON text)."""

    def too_big(self, payload: bytes) -> str | None:
        """Why one profile payload is over the vendor's per-profile limit, or None."""
        return None

    # -- jobs ----------------------------------------------------------------------------
    def job_overhead(self) -> int:
        """Bytes of a job's body besides its profiles."""
        return 512

    @abstractmethod
    def job_request(self, rows: list[JobRow]) -> tuple[str, bytes]:
        """The path and body of the import job these rows would make (``preview``)."""

    @abstractmethod
    def submit(self, rows: list[JobRow]) -> str:
        """Start an import job; returns the vendor's job id."""

    @abstractmethod
    def poll(self, job_id: str) -> bool:
        """One status request: True when the job finished (raise when it failed)."""

    @abstractmethod
    def result(self, job_id: str, rows: list[JobRow]) -> JobResult:
        """Per-row errors of a finished job, matched to the job's rows."""

    def after_confirm(self, rows: list[JobRow], contacts: list[Contact]) -> dict[int, str]:
        """Follow-up requests for confirmed rows (e.g. clearing fields); row → error."""
        return {}

    # -- removed rows ----------------------------------------------------------------------
    def unlist(self, rows: list[Gone]) -> dict[int, str]:
        """Remove these contacts from the sync's list(s) (``on_removed: unlist``; Omnisend:
        remove the sync's tag, ``untag``): never
        unsubscribe, never delete. Returns row index → reason for the rows the vendor
        refused; raises ``RequestError`` when the request itself failed. At most
        ``max_unlist_per_request`` rows per call. The base has no lists."""
        raise ConfigError(
            f"{self.type} has no list to take contacts off: set options.on_removed: keep"
        )


def email_change_warning(sync: SyncView, stable: tuple[str, ...], vendor: str) -> list[str]:
    """``validate``: a sync that maps an e-mail but none of the ``stable`` identifiers (the
    ones the vendor resolves a profile by before the e-mail: Klaviyo ``external_id``/``id``,
    Brevo ``ext_id``; Omnisend has none) makes a new profile when a row's e-mail changes."""
    idents = sync.mapping.identifiers
    if "email" not in idents or any(name in idents for name in stable):
        return []
    how = (
        f"map {' or '.join(stable)} from the primary key so {vendor} updates the same profile"
        if stable
        else f"{vendor} finds contacts by e-mail (or phone) only, so change the address in "
        f"{vendor} first if the old contact should keep the history"
    )
    return [
        f"{sync.source_path or sync.name}: a row whose e-mail changes (same key) makes a new "
        f"{vendor} profile with the new address, and the old profile keeps its values: {how} "
        "(docs/contacts.md, 'A row whose e-mail changes')"
    ]


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def identifier_problem(
    identifiers: Mapping[str, str], fields: tuple[str, ...], none: str, phone: str | None = None
) -> str | None:
    """Why a row's identifiers can never be imported, or None: every one of ``fields`` empty
    (``none`` says so), an ``email`` that is not an address, a ``phone`` field not in E.164."""
    if not any(identifiers.get(f) for f in fields):
        return none
    email = identifiers.get("email")
    if email and not EMAIL.match(email):
        return "email is not an email address"
    number = identifiers.get(phone) if phone else None
    if number and not E164.match(number):
        return f"{phone} is not E.164 (e.g. +15005550006)"
    return None


def join_body(head: bytes, items: list[bytes], tail: bytes) -> bytes:
    """``head + b",".join(items) + tail`` in one copy: a job body is up to 8 MiB, and each
    ``+`` of the obvious form copies all of it once more (a transient peak of 2-3 bodies)."""
    if not items:
        return head + tail
    parts = [b","] * (2 * len(items) + 1)
    parts[0], parts[-1] = head, tail
    parts[1:-1:2] = items
    return b"".join(parts)


def match_errors(
    rows: list[JobRow], reported: list[tuple[dict[str, Any], str]], fields: tuple[str, ...]
) -> JobResult:
    """Match errors the vendor reports with the identifiers of the profile it refused (no row
    index) to the job's rows. An error matching no row leaves the whole job unconfirmed: which
    row failed is then unknown, and a row is never confirmed on a guess."""
    index: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        for name in fields:
            value = row.identifiers.get(name)
            if value is not None:
                index.setdefault((name, value.lower() if name == "email" else value), i)
    out = JobResult()
    unmatched = 0
    for ident, reason in reported:
        hit = None
        for name in fields:
            value = ident.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                text = str(value)
                hit = index.get((name, text.lower() if name == "email" else text))
                if hit is not None:
                    break
        if hit is None:
            unmatched += 1
        else:
            out.errors.setdefault(hit, reason)
    if unmatched:
        out.unknown = (
            f"{unmatched} per-profile error(s) name no profile of the job; its rows stay "
            "unconfirmed and are sent again by the next run"
        )
    return out


def hide(text: str, values: tuple[str, ...]) -> str:
    """``text`` with each of ``values`` (as written, lower-cased or percent-encoded) replaced
    by ``<identifier>``: a vendor's answer to a lookup may quote the e-mail address asked
    for, which must reach no message, log or stored run error."""
    for value in sorted(values, key=len, reverse=True):
        if not value:
            continue
        for form in {value, value.lower(), quote(value, safe=""), quote(value.lower(), safe="")}:
            text = text.replace(form, "<identifier>")
    return text


def request_error(what: str, resp: httpx.Response, hidden: tuple[str, ...] = ()) -> RequestError:
    """A refusal of the whole request: the run fails, no row is confirmed or rejected.
    ``what`` names the request without its data ("GET /v3/contacts/{identifier}");
    ``hidden``: identifier values the answer must not carry into the message."""
    text = hide(resp.text[:500].replace("\n", " "), hidden)
    return RequestError(f"{what} answered {resp.status_code}: {text}")


def json_object(resp: httpx.Response, what: str) -> dict[str, Any]:
    """A response's JSON object ({} for another JSON value); a body that is not JSON fails
    the run, named by ``what`` (never by the request's path: it may hold an identifier)."""
    try:
        doc = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        raise RequestError(
            f"{what} answered {resp.status_code} with a body that is not JSON"
        ) from None
    return doc if isinstance(doc, dict) else {}
