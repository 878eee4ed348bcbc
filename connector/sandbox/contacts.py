"""What the contact endpoints keep between requests: stored profiles per vendor, the async
jobs (Klaviyo import jobs, Brevo processes, Omnisend batches) and the planned job faults.

A job advances only when it is polled, so tests are deterministic: the first ``polls`` GETs
see it running, the next one finishes it. Finishing applies the job's profiles to the store
(a failed/cancelled job applies nothing), so "stored" means "the vendor processed it".
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.sandbox.faults import CONTACT_KINDS, JobFault

__all__ = ["CONTACT_KINDS", "ContactStore", "Job", "ProfileBook"]

RUNNING, DONE, FAILED = "running", "done", "failed"


@dataclass
class Job:
    """One asynchronous import. ``apply`` runs once, under the store lock, when it finishes."""

    id: str
    kind: str
    created_at: datetime
    total: int
    polls_needed: int
    fail: bool
    apply: Callable[[ProfileBook], None]
    errors: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    state: str = RUNNING
    finished_at: datetime | None = None


def _norm(key: str, value: Any) -> str:
    """An identifier as the vendors match it: e-mail addresses without case."""
    return str(value).lower() if key == "email" else str(value)


class ProfileBook:
    """Stored profiles of one vendor, found by any of their identifiers (e-mail addresses
    without case, as the vendors match them)."""

    def __init__(self, identifiers: tuple[str, ...]) -> None:
        self.identifiers = identifiers
        self._records: dict[str, dict[str, Any]] = {}
        self._index: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)
        self.created = 0
        self.updated = 0
        self.ignored = 0  # identifiers ignored because another profile holds them
        self.welcomed = 0  # identifiers added with a welcome message (Omnisend)
        self.touched: set[str] = set()  # records written since the store last stamped them

    def find(self, idents: dict[str, Any]) -> str | None:
        """The record id of the first identifier (in ``identifiers`` order) already known."""
        for key in self.identifiers:
            value = idents.get(key)
            if value is not None:
                found = self._index.get((key, _norm(key, value)))
                if found is not None:
                    return found
        return None

    def get(self, record_id: str) -> dict[str, Any]:
        """The stored record with id ``record_id`` (``KeyError`` if there is none)."""
        return self._records[record_id]

    def new(self) -> tuple[str, dict[str, Any]]:
        """A new empty record with the next id, stored and counted as created; returns ``(id,
        record)``."""
        record_id = f"sb{next(self._ids):08d}"
        record: dict[str, Any] = {"id": record_id}
        self._records[record_id] = record
        self.created += 1
        return record_id, record

    def reindex(self, record_id: str) -> None:
        """Point every identifier the record now holds at it (an identifier moves, never
        duplicates: the newest holder wins)."""
        record = self._records[record_id]
        self.touched.add(record_id)
        attributes = record.get("attributes") or {}
        for key in self.identifiers:
            value = record.get(key, attributes.get(key))
            if value is not None:
                self._index[(key, _norm(key, value))] = record_id

    def reindex_many(self, record_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Index explicit (identifier type, value) pairs (a contact with several phones)."""
        self.touched.add(record_id)
        for key, value in pairs:
            self._index[(key, _norm(key, value))] = record_id

    def lookup(self, value: str) -> dict[str, Any] | None:
        """The record holding identifier value ``value`` under any identifier type, or None."""
        for key in self.identifiers:
            found = self._index.get((key, _norm(key, value)))
            if found is not None:
                return self._records[found]
        return None

    def remove(self, record_id: str) -> None:
        """Forget a record and every identifier pointing at it (``ContactStore.edit``)."""
        self._records.pop(record_id, None)
        self._index = {k: v for k, v in self._index.items() if v != record_id}
        self.touched.discard(record_id)

    def stamp(self, names: tuple[str, str] | None, text: str) -> None:
        """Set ``names`` (created, last changed) of the touched records to ``text`` (created
        only when unset), and start a new set of touched records."""
        if names is not None:
            created, changed = names
            for record_id in self.touched:
                record = self._records.get(record_id)
                if record is not None:
                    record.setdefault(created, text)
                    record[changed] = text
        self.touched.clear()

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, in creation order."""
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)


_IDENTIFIERS = {
    # Klaviyo matches a profile by id, email, phone_number or external_id.
    "klaviyo_profiles": ("email", "phone_number", "external_id"),
    # Brevo: email and the identifier attributes EXT_ID and SMS are unique per contact.
    "brevo_contacts": ("email", "EXT_ID", "SMS"),
    # Omnisend: email or phone ("There is no external-id identifier").
    "omnisend_contacts": ("email", "phone"),
}


#: The read-only creation and last-change times each vendor's read endpoint returns, set when
#: a write touches a record: Klaviyo profile ``created`` / ``updated`` (ISO 8601, get_profiles),
#: Brevo ``createdAt`` / ``modifiedAt`` ("UTC date-time ... YYYY-MM-DDTHH:mm:ss.SSSZ",
#: get-contact-info). Omnisend's ``createdAt`` / ``updatedAt`` are set by its own upsert.
_STAMPS = {
    "klaviyo_profiles": ("created", "updated"),
    "brevo_contacts": ("createdAt", "modifiedAt"),
}


def _stamp_text(kind: str, when: datetime) -> str:
    when = when.astimezone(UTC)
    if kind == "brevo_contacts":
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    return when.isoformat(timespec="seconds")


#: Vendor-specific counters a finished job may add (``Job.info["counts"]``).
_EXTRA_COUNTS = {
    # Brevo: "Any contact attribute that doesn't exist in your account will be ignored";
    # values of the wrong type are ignored too; rows with a bad email or a repeated
    # identifier are left out and listed in the process's CSV reports.
    "brevo_contacts": ("ignored_attributes", "ignored_values", "skipped_rows"),
}


class ContactStore:
    """Thread-safe profiles, jobs and job plans of all three vendors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The vendors' clock for the stamps of writes outside a job (the server sets it to
        #: ``SandboxOptions.wall_clock``).
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._init()

    def _init(self) -> None:
        self._books = {kind: ProfileBook(_IDENTIFIERS[kind]) for kind in CONTACT_KINDS}
        self._jobs: dict[str, Job] = {}
        self._plans: dict[str, deque[list[Any]]] = {kind: deque() for kind in CONTACT_KINDS}
        self._counters: Counter[str] = Counter()
        self._seq = itertools.count(1)
        self._attributes: dict[str, str] | None = None
        # Lists named by an import (Klaviyo ``relationships.lists``, Brevo ``listIds``): the
        # lists the list endpoints know (text ids).
        self._lists: dict[str, set[str]] = {kind: set() for kind in CONTACT_KINDS}

    # -- Brevo account attributes ------------------------------------------------------------

    def brevo_attributes(self, seed: Mapping[str, str]) -> dict[str, str]:
        """The account's attributes (NAME → type): ``seed`` until one is created."""
        with self._lock:
            if self._attributes is None:
                self._attributes = dict(seed)
            return dict(self._attributes)

    def add_brevo_attribute(self, seed: Mapping[str, str], name: str, kind: str) -> bool:
        """False when the name exists already."""
        with self._lock:
            if self._attributes is None:
                self._attributes = dict(seed)
            if name in self._attributes:
                return False
            self._attributes[name] = kind
            return True

    # -- lists ---------------------------------------------------------------------------------

    def note_lists(self, kind: str, list_ids: Iterable[Any]) -> None:
        """Remember lists an import of ``kind`` named (they exist from then on)."""
        with self._lock:
            self._lists[kind].update(str(i) for i in list_ids)

    def has_list(self, kind: str, list_id: str) -> bool:
        """Did an import of ``kind`` name this list?"""
        with self._lock:
            return str(list_id) in self._lists[kind]

    def list_members(self, kind: str, list_id: str) -> list[dict[str, Any]]:
        """Copies of the stored contacts of ``kind`` in list ``list_id`` (Klaviyo ``lists``,
        Brevo ``listIds``), in creation order."""
        field_name = "listIds" if kind == "brevo_contacts" else "lists"
        with self._lock:
            return [
                dict(r)
                for r in self._books[kind].records()
                if str(list_id) in {str(x) for x in r.get(field_name) or ()}
            ]

    # -- plans (job faults) ------------------------------------------------------------------

    def plan(self, *faults: JobFault) -> None:
        """Queue job faults (slow or failing jobs) for the next jobs of their kind."""
        with self._lock:
            for fault in faults:
                self._plans[fault.kind].append([fault, fault.times])

    def _take_plan(self, kind: str) -> JobFault | None:
        queue = self._plans[kind]
        if not queue:
            return None
        entry = queue[0]
        entry[1] -= 1
        if entry[1] <= 0:
            queue.popleft()
        fault: JobFault = entry[0]
        return fault

    # -- jobs --------------------------------------------------------------------------------

    def next_number(self) -> int:
        """A process-wide increasing number (Brevo process ids are integers)."""
        with self._lock:
            return next(self._seq)

    def create_job(
        self,
        job_id: str,
        kind: str,
        created_at: datetime,
        total: int,
        default_polls: int,
        apply: Callable[[ProfileBook], None],
        errors: Iterable[dict[str, Any]] = (),
        info: dict[str, Any] | None = None,
    ) -> Job:
        """Register a job of ``kind``; a planned fault of that kind sets its polls or makes it fail.
        ``apply`` writes its rows to the kind's book when the job finishes."""
        with self._lock:
            plan = self._take_plan(kind)
            polls = default_polls
            fail = False
            if plan is not None:
                polls = plan.polls if plan.polls is not None else default_polls
                fail = plan.fail
            job = Job(job_id, kind, created_at, total, polls, fail, apply, list(errors), info or {})
            self._jobs[job_id] = job
            self._counters[f"{kind}.jobs"] += 1
            return job

    def poll(self, job_id: str, now: datetime) -> Job | None:
        """Count one poll; the poll after ``polls_needed`` finishes the job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state == RUNNING:
                job.polls += 1
                if job.polls > job.polls_needed:
                    self._finish(job, now)
            return job

    def peek(self, job_id: str) -> Job | None:
        """The job with id ``job_id`` without counting a poll, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def _finish(self, job: Job, now: datetime) -> None:
        job.finished_at = now
        if job.fail:
            job.state = FAILED
            self._counters[f"{job.kind}.jobs_failed"] += 1
            return
        job.state = DONE
        job.apply(self._books[job.kind])
        self._stamp(job.kind, now)
        self._counters[f"{job.kind}.import_errors"] += len(job.errors)
        for name, n in job.info.get("counts", {}).items():
            self._counters[f"{job.kind}.{name}"] += n

    def apply_now(self, kind: str, apply: Callable[[ProfileBook], Any]) -> Any:
        """Synchronous writes (Omnisend ``POST /api/contacts``)."""
        with self._lock:
            out = apply(self._books[kind])
            self._stamp(kind, self.clock())
            return out

    def _stamp(self, kind: str, now: datetime) -> None:
        """Set the creation and last-change times of the records a write touched."""
        names = _STAMPS.get(kind)
        self._books[kind].stamp(names, _stamp_text(kind, now) if names else "")

    def edit(
        self,
        kind: str,
        identifier: str,
        changes: Mapping[str, Any] | None = None,
        *,
        delete: bool = False,
        at: datetime | None = None,
    ) -> dict[str, Any] | None:
        """Change a stored contact "at the vendor" (a marketer's edit in the vendor's UI, a
        form fill): merge ``changes`` into it (a mapping value is merged one level deep:
        ``{"properties": {"plan": "x"}}``) and stamp its last-change time ``at`` (default now);
        or ``delete`` it. Returns a copy of the record as it is now ({} when deleted), None when
        no contact holds ``identifier``."""
        with self._lock:
            book = self._books[kind]
            record = book.lookup(identifier)
            if record is None:
                return None
            if delete:
                book.remove(record["id"])
                return {}
            for name, value in (changes or {}).items():
                if isinstance(value, Mapping) and isinstance(record.get(name), dict):
                    record[name].update(value)
                else:
                    record[name] = value
            when = at or self.clock()
            if kind == "omnisend_contacts":
                record["updatedAt"] = when.isoformat()
            else:
                book.touched.add(record["id"])
                self._stamp(kind, when)
            return dict(record)

    # -- inspection --------------------------------------------------------------------------

    def contacts(self, kind: str) -> list[dict[str, Any]]:
        """Copies of the stored contacts of ``kind``; ``KeyError`` for an unknown kind."""
        if kind not in self._books:
            raise KeyError(f"unknown contact kind {kind!r}; known: {list(CONTACT_KINDS)}")
        with self._lock:
            return [dict(r) for r in self._books[kind].records()]

    def find(self, kind: str, identifier: str) -> dict[str, Any] | None:
        """A copy of the contact of ``kind`` holding ``identifier``, or None."""
        with self._lock:
            record = self._books[kind].lookup(identifier)
            return None if record is None else dict(record)

    def jobs(self, kind: str | None = None) -> list[Job]:
        """Every job, or those of ``kind``, in creation order."""
        with self._lock:
            return [j for j in self._jobs.values() if kind is None or j.kind == kind]

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready counters per kind: stored, created, updated, jobs by state, errors."""
        with self._lock:
            out: dict[str, Any] = {}
            for kind in CONTACT_KINDS:
                book = self._books[kind]
                states = Counter(j.state for j in self._jobs.values() if j.kind == kind)
                out[kind] = {
                    "stored": len(book),
                    "created": book.created,
                    "updated": book.updated,
                    "jobs": self._counters[f"{kind}.jobs"],
                    "jobs_running": states.get(RUNNING, 0),
                    "jobs_done": states.get(DONE, 0),
                    "jobs_failed": states.get(FAILED, 0),
                    "item_errors": self._counters[f"{kind}.import_errors"],
                    "plans_pending": len(self._plans[kind]),
                }
                for name in _EXTRA_COUNTS.get(kind, ()):
                    out[kind][name] = self._counters[f"{kind}.{name}"]
                if kind == "omnisend_contacts":
                    out[kind]["identifiers_ignored"] = book.ignored
                    out[kind]["welcome_messages"] = book.welcomed
            return out

    def clear(self) -> None:
        """Forget every contact, job, plan, attribute and counter."""
        with self._lock:
            self._init()
