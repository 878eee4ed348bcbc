"""The circuit breaker of contact runs: the event syncs' rule (``sync._Run._judge``) per
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

from collections import Counter
from collections.abc import Callable

from ..errors import RequestError
from ..options import CommonOptions

# (row key, the vendor's reason, the payload sent): one vendor reject of a finished job.
VendorReject = tuple[str, str, bytes]


class ContactBreaker:
    """Counts the rows the vendor answered for and refused, job by job (see the module
    docstring). ``record`` is called for each reject that may be recorded now."""

    def __init__(
        self, dest_type: str, options: CommonOptions, record: Callable[[str, str, bytes], None]
    ) -> None:
        self.dest_type = dest_type
        self.ratio = options.max_reject_ratio
        self.min_rows = options.reject_ratio_min_rows
        self.record = record
        self.answered = 0
        self.refused = 0
        self.held: list[list[VendorReject]] = []  # per job, not yet recorded
        self.tripped: RequestError | None = None

    def judge(self, answered: int, rejects: list[VendorReject]) -> None:
        """One finished job: ``answered`` rows (confirmed + ``rejects``). Records, holds or
        trips; ``check`` raises once tripped."""
        if self.tripped is not None:
            return
        self.answered += answered
        self.refused += len(rejects)
        if rejects:
            self.held.append(rejects)
        if self.answered < self.min_rows:
            return
        if self.refused > self.ratio * self.answered:
            reasons = Counter(reason for job in self.held for _, reason, _ in job)
            common = reasons.most_common(1)[0][0] if reasons else ""
            self.tripped = RequestError(
                f"{self.dest_type}: the vendor refused {self.refused} of the {self.answered} "
                "contacts it answered for, more than destination.options.max_reject_ratio "
                f"({self.ratio:g}); the run stopped before its next import job. Most common "
                f"reason: {common[:300]!r}. The {sum(map(len, self.held))} refused rows of the "
                f"last {len(self.held)} job(s) were not recorded as rejects; they and every "
                "other unconfirmed row are sent again by the next run: fix the mapping, the "
                "data or the destination options (or raise max_reject_ratio), then run again",
                stored_nothing=False,
            )
            self.held = []
            return
        self.release()

    def release(self) -> None:
        """Record the held rejects (the breaker did not trip on them)."""
        held, self.held = self.held, []
        for job in held:
            for key, reason, payload in job:
                self.record(key, reason, payload)

    def check(self) -> None:
        """Raise the breaker's error once it tripped."""
        if self.tripped is not None:
            raise self.tripped
