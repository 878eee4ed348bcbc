"""The circuit breaker of contact runs: the event syncs' rule (``connector.breaker``) per
finished import job.

Options (``destination.options``, shared with event syncs): ``max_reject_ratio`` (0.5) and
``reject_ratio_min_rows`` (100). Only the vendor's per-row errors count (rows the run rejected
itself — a missing identifier, an identifier conflict inside a job — do not), against every
row of the finished jobs (confirmed + refused by the vendor). A job with vendor rejects is held
back, its rejects unrecorded, until ``reject_ratio_min_rows`` rows were answered; past
``max_reject_ratio`` the run stops before its next job with a ``RequestError``: the held jobs'
rejects are never recorded (their rows, like every unconfirmed row, are sent again by the next
run). The rows the vendor confirmed are confirmed as always: the breaker never confirms a row.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.errors import RequestError
from ..core.options import CommonOptions
from .breaker import RejectRatio

# (row key, the vendor's reason, the payload sent): one vendor reject of a finished job.
VendorReject = tuple[str, str, bytes]


class ContactBreaker:
    """The rule of ``connector.breaker`` per finished job (see the module docstring):
    ``record`` is called for each reject that may be recorded now."""

    def __init__(
        self, dest_type: str, options: CommonOptions, record: Callable[[str, str, bytes], None]
    ) -> None:
        self.dest_type = dest_type
        self.record = record
        self.rule: RejectRatio[list[VendorReject]] = RejectRatio(options, self._record)
        self.tripped: RequestError | None = None

    def _record(self, rejects: list[VendorReject]) -> None:
        for key, reason, payload in rejects:
            self.record(key, reason, payload)

    def judge(self, answered: int, rejects: list[VendorReject]) -> None:
        """One finished job: ``answered`` rows (confirmed + ``rejects``). Records, holds or
        trips; ``check`` raises once tripped."""
        if self.tripped is not None:
            return
        trip = self.rule.judge(answered, [reason for _, reason, _ in rejects], rejects)
        if trip is None:
            return
        self.tripped = RequestError(
            f"{self.dest_type}: the vendor refused {trip.refused} of the {trip.answered} "
            "contacts it answered for, more than destination.options.max_reject_ratio "
            f"({self.rule.ratio:g}); the run stopped before its next import job. Most common "
            f"reason: {trip.common[:300]!r}. The {trip.dropped_rows} refused rows of the "
            f"last {trip.units} job(s) were not recorded as rejects; they and every "
            "other unconfirmed row are sent again by the next run: fix the mapping, the "
            "data or the destination options (or raise max_reject_ratio), then run again",
            stored_nothing=False,
        )

    def release(self) -> None:
        """Record the held rejects (the breaker did not trip on them)."""
        self.rule.release()

    def check(self) -> None:
        """Raise the breaker's error once it tripped."""
        if self.tripped is not None:
            raise self.tripped
