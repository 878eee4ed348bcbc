"""The import jobs of a contact run: rows packed into jobs, submitted, polled and confirmed.

Rows go into a job up to the vendor's limits (rows, bytes) and never above ``ROWS_PER_JOB``
(identifier conflicts are screened before, ``contacts.conflicts``). At most
``options.jobs_in_flight`` jobs wait for confirmation at once. A finished job's per-row errors
are rejects (judged by the circuit breaker first); every other row is confirmed: its hash
stored (with the identifiers it owns) and any open reject of its key closed. A job the vendor
cannot account for leaves its rows unconfirmed (sent again by the next run).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..contacts.conflicts import Conflicts
from ..contacts.hashes import HashStore
from ..core.errors import RequestError
from ..core.logcontext import get_logger
from ..core.options import DestinationSettings
from ..deliver.delivery import Runtime, job_preview
from ..destinations.contact_endpoint import Contact, ContactDestination, JobRow
from ..store.state import CLOSED_DELIVERED, INCREMENTAL, Reject, StateStore
from .breaker import Breaker, Trip
from .result import ContactResult
from .shell import RunShell

log = get_logger("connector.contacts")

# Rows of one job at most, whatever the vendor allows: the run holds every row of its open and
# in-flight jobs (``jobs_in_flight`` + 1) until the vendor confirms them, ~0.8 KB each. A limit
# by bytes alone (Brevo's 8 MiB) let a job of short contacts hold 40,000 rows and more.
ROWS_PER_JOB = 10_000
# Hashes stored per statement: the parameters of 10,000 rows peaked at ~6 MiB (measured).
CONFIRM_ROWS = 2_000

# (row key, the vendor's reason, the payload sent): one vendor reject of a finished job.
VendorReject = tuple[str, str, bytes]


@dataclass
class _Job:
    """One import job: its rows (all a confirmation needs), the ``Contact`` of each row only
    when the destination's ``after_confirm`` needs it, its size, and which of its rows had no
    stored hash (``fresh``: no stored identifiers to replace)."""

    rows: list[JobRow] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    size: int = 0
    fresh: set[str] = field(default_factory=set)
    job_id: str | None = None
    started: float = 0.0


def compact_payload(payload: bytes) -> bytes:
    """A right-sized copy of a payload the job keeps until the vendor confirms it. orjson
    (3.12+) returns ``bytes`` whose buffer stays at its initial 4 KiB however short the JSON
    is: 10,000 kept profiles of ~450 bytes held 40 MiB instead of 5 (measured)."""
    return bytes(memoryview(payload))


def reject(key: str, reason: str, payload: bytes | None = None) -> Reject:
    """A contact row's reject (its payload as text, when one was encoded)."""
    return Reject(key, reason, payload.decode() if payload else None)


class Jobs:
    """The jobs of one contact run (see the module docstring): ``add`` a row, ``flush`` the
    job filling, ``finish`` every job out. ``previews`` (a preview) collects each job's
    request instead of sending it (with ``dry_run``)."""

    def __init__(
        self,
        shell: RunShell,
        dest: ContactDestination[DestinationSettings],
        hashes: HashStore,
        state: StateStore,
        result: ContactResult,
        runtime: Runtime,
        *,
        dry_run: bool,
        previews: list[dict[str, Any]] | None,
        conflicts: Conflicts | None = None,
    ) -> None:
        self.shell = shell
        self.conflicts = conflicts or Conflicts(result.sync, hashes, ())
        self.dest = dest
        self.hashes = hashes
        self.state = state
        self.res = result
        self.rt = runtime
        self.dry_run = dry_run
        self.previews = previews
        self.job = _Job()
        self.outstanding: deque[_Job] = deque()
        self.keep_contacts = getattr(dest.options, "null_standard_fields", "keep") == "clear"
        # Only the vendor's per-row errors count (not the run's own rejects), against every
        # row of the finished jobs; held jobs' rejects are recorded when released.
        self.breaker: Breaker[list[VendorReject]] = Breaker(
            dest.options,
            lambda held: shell.rejected([reject(*r) for r in held]),
            self._trip_message,
        )

    def add(self, row: JobRow, contact: Contact | None, *, new: bool = False) -> None:
        """Put a row in the job filling (submitting it first when the row does not fit);
        its payload right-sized (``compact_payload``); ``contact`` when ``keep_contacts``;
        ``new``: the row has no stored hash. Conflicts are screened before
        (``Conflicts.screen``)."""
        dest = self.dest
        if (
            len(self.job.rows) >= min(dest.limits.max_items, ROWS_PER_JOB)
            or self.job.size + len(row.payload) + 1 + dest.job_overhead() > dest.limits.max_bytes
        ):
            self.flush()
        self.job.rows.append(row)
        if new:
            self.job.fresh.add(row.key)
        if self.keep_contacts and contact is not None:
            self.job.contacts.append(contact)
        self.job.size += len(row.payload) + 1
        self.res.sent += 1

    def flush(self) -> None:
        """Submit the job filling (a preview records its request; a dry run sends nothing)
        and finish the oldest jobs while ``jobs_in_flight`` are out."""
        job, self.job = self.job, _Job()
        if job.rows and self.previews is not None:
            self.previews.append(job_preview(self.dest, job.rows))
        if not job.rows or self.dry_run:
            self.conflicts.settle([r.key for r in job.rows])
            return
        self.shell.check_lease()
        job.job_id = self.dest.submit(job.rows)
        job.started = self.rt.clock()
        self.shell.sending(len(job.rows))  # pending (the progress line) until the job is done
        self.res.jobs += 1
        self.res.batches = self.res.jobs
        self.outstanding.append(job)
        while len(self.outstanding) >= self.dest.options.jobs_in_flight:
            self._finish_job(self.outstanding.popleft())

    def finish(self) -> None:
        """Submit the last job and wait for every job out; then the breaker's held jobs'
        rejects are recorded (it did not trip on them)."""
        self.flush()
        while self.outstanding:
            self._finish_job(self.outstanding.popleft())
        self.breaker.release()

    def _finish_job(self, job: _Job) -> None:
        assert job.job_id is not None
        self._wait(job)
        result = self.dest.result(job.job_id, job.rows)
        self.shell.settled_sent(len(job.rows))  # confirmed, refused or unaccounted: not pending
        if result.unknown is not None:
            self.res.unconfirmed += len(job.rows)
            self.res.error = result.unknown  # the run's error quotes it
            log.warning("%s: %s", self.res.sync, result.unknown)
            return
        errors = dict(result.errors)
        if job.contacts:
            ok = [i for i in range(len(job.rows)) if i not in errors]
            more = self.dest.after_confirm([job.rows[i] for i in ok], [job.contacts[i] for i in ok])
            errors.update({ok[j]: r for j, r in more.items()})
        refused = [(job.rows[i].key, reason, job.rows[i].payload) for i, reason in errors.items()]
        # Records the refused rows, holds them, or trips (then ``check`` below stops the run).
        self.breaker.judge(len(job.rows), [why for _, why, _ in refused], refused)
        confirmed = [
            (r.key, r.hash, r.identifiers) for i, r in enumerate(job.rows) if i not in errors
        ]
        name = self.res.sync
        keys = [k for k, _, _ in confirmed]
        self.shell.delivered(keys)
        self.shell.audit_commit()  # the audit rows are stored before the rows count as sent
        for start in range(0, len(confirmed), CONFIRM_ROWS):  # bounded statement parameters
            self.hashes.confirm(name, confirmed[start : start + CONFIRM_ROWS], fresh=job.fresh)
        self.conflicts.settle([r.key for r in job.rows])
        if self.res.run_id:
            self.state.close_rejects(name, INCREMENTAL, keys, self.res.run_id, CLOSED_DELIVERED)
        self.shell.tick()
        self.breaker.check()  # tripped: the run stops before its next job

    def _wait(self, job: _Job) -> None:
        """Poll the job until it completes (from ``poll_interval_s``, ×1.5 per poll up to
        ``poll_max_interval_s``); past ``job_timeout_s`` the run fails."""
        assert job.job_id is not None
        opts = self.dest.options
        interval = opts.poll_interval_s
        while True:
            self.res.polls += 1
            if self.dest.poll(job.job_id):
                return
            if self.rt.clock() - job.started > opts.job_timeout_s:
                raise RequestError(
                    f"import job {job.job_id} still running after {opts.job_timeout_s:.0f} s "
                    "(options.job_timeout_s); its rows are sent again by the next run"
                )
            self.rt.sleep(interval)
            interval = min(opts.poll_max_interval_s, interval * 1.5)

    def _trip_message(self, trip: Trip, ratio: float) -> str:
        return (
            f"{self.dest.type}: the vendor refused {trip.refused} of the {trip.answered} "
            "contacts it answered for, more than destination.options.max_reject_ratio "
            f"({ratio:g}); the run stopped before its next import job. Most common "
            f"reason: {trip.common[:300]!r}. The {trip.dropped_rows} refused rows of the "
            f"last {trip.units} job(s) were not recorded as rejects; they and every "
            "other unconfirmed row are sent again by the next run: fix the mapping, the "
            "data or the destination options (or raise max_reject_ratio), then run again"
        )
