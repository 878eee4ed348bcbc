"""What the three contact destinations share: the ``Contact`` a row becomes, the job
interface the engine drives, and one HTTP client with pacing and retries.

Each destination module declares its config model (``type: Literal[...]``), its documented
limits (profiles and bytes per job, rate) with the source link, and how a row becomes a
profile payload, how a job is submitted and how its outcome reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..core.errors import RequestError
from ..core.options import CommonOptions

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
    on_removed: Literal["keep", "unlist"] = Field(
        "keep",
        description="Rows that vanish from the source: keep (do nothing) or unlist (remove "
        "their profiles from the sync's list(s)). Never unsubscribes or deletes anyone.",
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


@dataclass
class JobStats:
    """Counters of one run's vendor traffic, shared by the destination and its ``JobHTTP``:
    ``requests`` sent (retries included), ``retries`` after a timeout, transport error or
    5xx, and ``rate_limited`` (429) answers waited out."""

    jobs: int = 0
    polls: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0


class ContactDestination:
    """One vendor's contact import. Subclasses fill the class attributes and the methods."""

    type: ClassVar[str]
    vendor: ClassVar[str]
    default_base_url: ClassVar[str]
    identifier_fields: ClassVar[tuple[str, ...]]
    max_per_job: ClassVar[int]
    max_job_bytes: ClassVar[int]
    rate_per_second: ClassVar[float | None] = None
    rate_per_minute: ClassVar[float | None] = None
    # The event destination type whose rate budget this one spends (one documented limit for
    # both: ``contacts.pacing``); None: its own.
    rate_account: ClassVar[str | None] = None
    config_model: ClassVar[Any]  # the pydantic model of its ``destination:`` block

    def __init__(self, config: Any, api_key: str, sync_name: str, http: Any) -> None:
        # ``http``: a ``contacts.http.JobHTTP`` (not imported here: it imports delivery).
        self.config = config
        self.options = config.options
        self.api_key = api_key
        self.sync_name = sync_name
        self.http = http

    @classmethod
    def mapping_problems(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Config errors the mapping alone shows (names, nesting)."""
        return []

    def preflight(self, sync: Any, types: Mapping[str, str]) -> list[str]:
        """Config problems found by asking the vendor before anything is sent (``validate``
        and every run's start); ``types``: the source's column kinds. May raise
        ``RequestError``. The base asks nothing (``has_preflight``)."""
        return []

    @classmethod
    def validate_warnings(cls, sync: Any) -> list[str]:
        """What ``validate`` should tell about this sync that runs would do silently (a NULL
        the vendor cannot clear...). The base has nothing to say."""
        return []

    @classmethod
    def has_preflight(cls) -> bool:
        """Does this destination ask the vendor anything before sending?"""
        return cls.preflight is not ContactDestination.preflight

    def check(self, contact: Contact) -> str | None:
        """Why this row can never be imported (a local reject), or None."""
        return None

    def encode(self, contact: Contact) -> bytes:
        """The profile payload of one row (JSON text)."""
        raise NotImplementedError

    def too_big(self, payload: bytes) -> str | None:
        """Why one profile payload is over the vendor's per-profile limit, or None."""
        return None

    def after_confirm(self, rows: list[JobRow], contacts: list[Contact]) -> dict[int, str]:
        """Follow-up requests for confirmed rows (e.g. clearing fields); row → error."""
        return {}

    def headers(self) -> dict[str, str]:
        """The headers every request of this destination carries (authentication, API
        version, content type); set on the HTTP client once, masked in ``preview``."""
        return {}

    max_unlist_per_request: ClassVar[int] = 100

    def unlist(self, rows: list[Gone]) -> dict[int, str]:
        """Remove these contacts from the sync's list(s) (``on_removed: unlist``): never
        unsubscribe, never delete. Returns row index → reason for the rows the vendor
        refused; raises ``RequestError`` when the request itself failed. At most
        ``max_unlist_per_request`` rows per call."""
        raise NotImplementedError

    def job_overhead(self) -> int:
        """Bytes of a job's body besides its profiles."""
        return 512

    def job_request(self, rows: list[JobRow]) -> tuple[str, bytes]:
        """The path and body of the import job these rows would make (``preview``)."""
        raise NotImplementedError

    def submit(self, rows: list[JobRow]) -> str:
        """Start an import job; returns the vendor's job id."""
        raise NotImplementedError

    def poll(self, job_id: str) -> bool:
        """One status request: True when the job finished (raise when it failed)."""
        raise NotImplementedError

    def result(self, job_id: str, rows: list[JobRow]) -> JobResult:
        """Per-row errors of a finished job, matched to the job's rows."""
        raise NotImplementedError


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


def request_error(what: str, resp: httpx.Response) -> RequestError:
    """A refusal of the whole request: the run fails, no row is confirmed or rejected."""
    text = resp.text[:500].replace("\n", " ")
    return RequestError(f"{what} answered {resp.status_code}: {text}")
