"""The outcome queue: what the answers to one batch's requests mean, until every item is
delivered or rejected. Pure: no I/O, no clock; the sender feeds it answers.

- an answer with per-item detail delivers and rejects those items; items to ``resend`` go
  again first, in a new request (a 400 that stored nothing), built as the body variant the
  answer asks for (the other Brevo body shape) or as their part was;
- an answer refusing the request whole without detail (``split``) queues its halves first;
- what the answers taught (``Learned``) is merged into the batch's outcome, for the run to
  persist when it settles the batch;
- the destination saying the request itself is at fault (``fatal``) fails the run;
- a batch refused whole whose every single-event split is refused with the same words fails
  the run too: such an error is about the request (a header, the version, the body), not its
  rows, so no row of it becomes a reject;
- copies, not rows, are counted "possibly duplicated": each attempt that failed after it may
  have been processed may have reached the vendor as one more copy of its part, and the
  halves or re-sent items of that part inherit those attempts; items refused after such an
  attempt count as delivered (it may have stored them), never as rejects. The count is what
  the vendor may have *received* beyond one copy, at every destination: where the
  destination drops repeats by dedup id (``dedup``: Klaviyo ``unique_id``, Omnisend
  ``eventID`` + ``eventTime``) it stores one of them, and the run's summary says so
  (``SyncResult.destination_dedups``) — the same count a crashed run's re-sent batches get
  from the ledger.

``read`` is the one place that reads the destination's ``Outcome``, so a change of its shape
touches one function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import RequestError
from ..destinations.base import Item, Learned, Outcome
from .http_loop import Verdict


@dataclass
class BatchOutcome:
    """Where every item of a batch ended."""

    delivered: list[Item]
    rejected: list[tuple[Item, str]]
    possibly_duplicated: int = 0
    learned: Learned | None = None  # what the responses taught; the run persists it at settle


@dataclass(frozen=True)
class Reading:
    """The destination's reading of one answered request, as the queue consumes it
    (indices into the request's items)."""

    verdict: Verdict
    delivered: tuple[int, ...] = ()
    rejected: tuple[tuple[int, str], ...] = ()
    resend: tuple[int, ...] = ()
    variant: str | None = None  # build the re-sent items as this body variant
    learned: Learned | None = None
    message: str = ""  # FATAL: why the request itself was refused


def read(outcome: Outcome) -> Reading:
    """Adapter from the destination's ``Outcome`` to the queue's ``Reading``."""
    rejected = tuple(outcome.rejected.items())
    delivered, resend = tuple(outcome.delivered), tuple(outcome.resend)
    if outcome.fatal:
        return Reading(Verdict.FATAL, message=outcome.fatal)
    if outcome.split:
        verdict = Verdict.SPLIT
    elif outcome.switch_shape:
        verdict = Verdict.SWITCH_SHAPE
    elif resend:
        verdict = Verdict.RESEND
    elif rejected:
        verdict = Verdict.REJECTED
    else:
        verdict = Verdict.DELIVERED
    return Reading(verdict, delivered, rejected, resend, outcome.resend_variant, outcome.learned)


@dataclass
class OutcomeQueue:
    """The parts of one batch still to send, and what became of the rest.

    Copies are counted, not rows: each attempt that may have been processed (a timeout or
    5xx after the request went out) may have stored one copy of its items, and the parts a
    refused request is split or re-sent into inherit those attempts. ``maybe_stored`` turns
    True once the vendor may hold any item; ``possibly_duplicated`` counts the copies the
    vendor may have received beyond one (where it drops repeats by dedup id, ``dedup``, it
    stores one of them: the summary says so)."""

    name: str  # the destination type, for messages
    items: list[Item]
    dedup: bool  # the destination drops re-sent events: copies are received, not stored
    delivered: list[Item] = field(default_factory=list)
    rejected: list[tuple[Item, str]] = field(default_factory=list)
    possibly_duplicated: int = 0
    maybe_stored: bool = False
    learned: Learned | None = None
    # Parts still to send: [items, attempts (of it or its parent) that may have stored it,
    # the body variant an answer asked for (None: the default)].
    _parts: list[tuple[list[Item], int, str | None]] = field(default_factory=list)
    _current: tuple[list[Item], int, str | None] | None = None  # sent, not yet settled
    _split: bool = False  # the batch was refused whole without per-item detail
    _alike: dict[str, int] = field(default_factory=dict)  # reasons of single events isolated

    def __post_init__(self) -> None:
        self._parts = [(self.items, 0, None)]

    def next_part(self) -> tuple[list[Item], str | None] | None:
        """The items of the next request and their body variant, or None when every item
        has ended."""
        while self._parts:
            part, inherited, variant = self._parts.pop(0)
            if part:
                self._current = (part, inherited, variant)
                return part, variant
        return None

    def _stored(self, items: int, extra: int) -> None:
        """``items`` are at the vendor now, each possibly ``extra`` times more than once."""
        self.maybe_stored = self.maybe_stored or items > 0
        if extra > 0:
            self.possibly_duplicated += items * extra

    def settle(
        self,
        part: list[Item],
        reading: Reading,
        ambiguous: int = 0,
        variant: str | None = None,
    ) -> list[tuple[Item, str]]:
        """Apply the reading of the answer to ``part`` (sent as ``variant`` after
        ``ambiguous`` attempts that may have been processed); raises ``RequestError`` for
        FATAL. Returns the items refused after an attempt that may have stored them: they
        count as delivered (a reject would invite sending them again), for the caller to
        log."""
        inherited = self._current[1] if self._current is not None else 0
        count = inherited + ambiguous
        self._current = (part, count, variant)
        if reading.verdict is Verdict.FATAL:
            raise RequestError(reading.message, stored_nothing=not (self.maybe_stored or count > 0))
        self._current = None
        if self._split and len(part) == 1 and reading.rejected:
            reason = reading.rejected[0][1]
            self._alike[reason] = self._alike.get(reason, 0) + 1
        self._split = self._split or reading.verdict is Verdict.SPLIT
        if reading.learned:
            self.learned = (self.learned or Learned()).merge(reading.learned)
        ok = [part[i] for i in reading.delivered]
        refused = [(part[i], reason) for i, reason in reading.rejected]
        kept: list[tuple[Item, str]] = []
        if count and refused:
            # Refused now, but an attempt that timed out may have stored them.
            self._stored(len(refused), count - 1)
            self.delivered.extend(item for item, _ in refused)
            kept, refused = refused, []
        self._stored(len(ok), count)
        self.delivered.extend(ok)
        self.rejected.extend(refused)
        if reading.verdict is Verdict.SPLIT:
            half = len(part) // 2
            self._parts[:0] = [(part[:half], count, variant), (part[half:], count, variant)]
        elif reading.resend:
            again = [part[i] for i in reading.resend]
            self._parts.insert(0, (again, count, reading.variant or variant))
        return kept

    def fail(self, ambiguous: int = 0) -> None:
        """The batch failed (the current part's exchange after ``ambiguous`` attempts that
        may have been processed, or an answer): its unanswered parts stay pending and the
        next run sends them again, counting one copy; copies beyond that one count here."""
        parts = list(self._parts)
        if self._current is not None:
            part, inherited, variant = self._current
            parts.insert(0, (part, inherited + ambiguous, variant))
            self._current = None
        self._parts = []
        for part, count, _variant in parts:
            if count and part:
                self.maybe_stored = True
                self.possibly_duplicated += len(part) * (count - 1)

    def result(self) -> BatchOutcome:
        """Every item has ended: the batch's outcome, or ``RequestError`` when every single
        event isolated by splitting was refused with the same words."""
        n = len(self.items)
        if len(self._alike) == 1 and sum(self._alike.values()) == n > 1:
            # Every event alone got the same answer as the whole: the request is at fault,
            # not the rows; rejecting them would lose them.
            (reason,) = self._alike
            raise RequestError(
                f"{self.name}: every one of {n} events, sent alone, was refused "
                f"with the same error, so the error is about the request, not the rows: "
                f"{reason[:300]!r}. Nothing was recorded as a reject and the checkpoint stays "
                "at the last delivered row: fix the destination options (API version, "
                "headers, body shape), then run again"
            )
        return BatchOutcome(
            self.delivered, self.rejected, self.possibly_duplicated, self.learned or None
        )
