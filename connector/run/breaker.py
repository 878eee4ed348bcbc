"""The circuit breaker of every run: event runs judge each settled batch
(``events.EventRun._judge``), contact runs each finished import job (``contacts.ContactRun``).

Options (``destination.options``): ``max_reject_ratio`` (0.5) and ``reject_ratio_min_rows``
(100). Each unit the API answered for (a batch, a job) counts its rows and the rows it refused.
A unit without refusals is released at once; one with refusals is held, unreleased, until at
least ``reject_ratio_min_rows`` rows were answered. Then, past ``max_reject_ratio``, the
breaker trips: the held units are dropped, never released (the caller leaves their rows to be
sent again by the next run); under it, they are released.

"Refused alike" (event runs, ``alike_min_rows=ALIKE_MIN_ROWS``): when every row the API
answered for in the run was refused, all with one and the same reason, and there were at
least ``ALIKE_MIN_ROWS`` (2) of them, the answer is about the account or the request (an
event name the account has not enabled, a version, a header), not the rows: the breaker
trips, at the end of the run (``release``) or once ``reject_ratio_min_rows`` were answered,
whatever ``max_reject_ratio`` says and however small the run — Brevo's
``{"errors":[{"eventIndex":[0,1,2,3],"message":"event_name is not enabled on this
account"}]}`` and Klaviyo's pointer per event with one detail alike. Its held units are
dropped (``drop``: they stored nothing, every row of them was refused) and nothing is
recorded as a reject. Two rows is the least that can show "alike": one refused row is a row
refused, and a rule that failed a one-row run would block a sync on one bad row forever
(the next run reads that row again, alone). Two rows that share one real defect fail the
run until the source is fixed or a good row arrives (then the rule no longer holds and they
become rejects). Contact runs do not apply it: a contact run sends only changed rows, so two
bad rows would fail every later run alike; their rejects go through the ratio alone.

``Breaker`` is the rule with its trip: the run's ``RequestError``, worded by the strategy (what
a unit is, what happens to its rows), after which no unit is judged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..core.errors import RequestError
from ..core.options import CommonOptions

T = TypeVar("T")

#: The fewest rows, all refused with one reason, that fail an event run as "refused alike".
ALIKE_MIN_ROWS = 2


@dataclass(frozen=True)
class Trip:
    """Why the breaker tripped: the counts so far, the most common refusal, and the units
    (and their refused rows) dropped unreleased."""

    answered: int
    refused: int
    common: str
    units: int
    dropped_rows: int
    alike: bool = False  # every answered row refused with the one reason ``common``


class RejectRatio(Generic[T]):
    """Counts answered and refused rows unit by unit; ``release`` settles one held unit."""

    def __init__(
        self,
        options: CommonOptions,
        release: Callable[[T], None],
        *,
        alike_min_rows: int | None = None,
    ) -> None:
        self.ratio = options.max_reject_ratio
        self.min_rows = options.reject_ratio_min_rows
        self.alike_min_rows = alike_min_rows
        self.release_one = release
        self.answered = 0
        self.refused = 0
        self.reasons: Counter[str] = Counter()  # every API-side refusal of the run
        self.held: list[tuple[T, list[str]]] = []
        self.held_at_trip: list[tuple[T, list[str]]] = []  # the units the trip dropped

    def judge(self, answered: int, reasons: list[str], unit: T) -> Trip | None:
        """One unit: ``answered`` rows, of which one refused per entry of ``reasons`` (the
        API's reason). Releases, holds, or trips (returned)."""
        self.answered += answered
        self.refused += len(reasons)
        self.reasons.update(reasons)
        if reasons:
            self.held.append((unit, reasons))
        else:
            self.release_one(unit)
        if self.answered < self.min_rows:
            return None
        if self.alike() or self.refused > self.ratio * self.answered:
            return self._trip()
        self.release()
        return None

    def alike(self) -> bool:
        """Every row answered so far was refused, all with one reason, and enough of them."""
        return (
            self.alike_min_rows is not None
            and self.answered >= self.alike_min_rows
            and self.refused == self.answered
            and len(self.reasons) == 1
        )

    def finish(self) -> Trip | None:
        """The run's last unit was judged: trip if its rows were refused alike, else release
        every held unit."""
        if self.alike():
            return self._trip()
        self.release()
        return None

    def _trip(self) -> Trip:
        counts = Counter(r for _, rs in self.held for r in rs)
        common = counts.most_common(1)[0][0] if counts else ""
        trip = Trip(
            self.answered,
            self.refused,
            common,
            len(self.held),
            sum(len(rs) for _, rs in self.held),
            alike=self.alike(),
        )
        self.held_at_trip, self.held = self.held, []
        return trip

    def release(self) -> None:
        """Release every held unit (the breaker did not trip on them)."""
        held, self.held = self.held, []
        for unit, _ in held:
            self.release_one(unit)


class Breaker(Generic[T]):
    """``RejectRatio`` with its trip: ``judge`` returns the run's error once, when it trips;
    ``message`` words it from the ``Trip`` and the ratio. ``alike_min_rows`` turns on the
    "refused alike" rule; ``drop`` is told of each unit dropped by it (stored nothing)."""

    def __init__(
        self,
        options: CommonOptions,
        release: Callable[[T], None],
        message: Callable[[Trip, float], str],
        *,
        alike_min_rows: int | None = None,
        drop: Callable[[T], None] | None = None,
    ) -> None:
        self.rule: RejectRatio[T] = RejectRatio(options, release, alike_min_rows=alike_min_rows)
        self.message = message
        self.drop = drop
        self.tripped: RequestError | None = None

    def judge(self, answered: int, reasons: list[str], unit: T) -> RequestError | None:
        """One unit (see ``RejectRatio.judge``): the run's error when this unit trips the
        breaker, else None. Units after the trip are not judged (the caller decides what
        becomes of them)."""
        if self.tripped is not None:
            return None
        return self._tripped(self.rule.judge(answered, reasons, unit))

    def _tripped(self, trip: Trip | None) -> RequestError | None:
        if trip is None:
            return None
        if trip.alike:
            # Every row refused alike: nothing was stored, nothing is a reject.
            for unit, _ in self.rule.held_at_trip:
                if self.drop is not None:
                    self.drop(unit)
            self.tripped = RequestError(alike_message(trip), stored_nothing=True)
            return self.tripped
        # The held units are left unreleased: their rows are sent again by the next run.
        self.tripped = RequestError(self.message(trip, self.rule.ratio), stored_nothing=False)
        return self.tripped

    def release(self, *, alike: bool = True) -> None:
        """The run's last unit was judged: release the held units, or raise the run's error
        when its rows were refused alike (after a trip none are held). ``alike=False``: the
        run failed otherwise, its own error stands; the held units are released."""
        if self.tripped is not None:
            return
        if not alike:
            self.rule.release()
            return
        error = self._tripped(self.rule.finish())
        if error is not None:
            raise error

    def check(self) -> None:
        """Raise the breaker's error once it tripped."""
        if self.tripped is not None:
            raise self.tripped


def alike_message(trip: Trip) -> str:
    """The run's error when every row the API answered for was refused with one reason."""
    return (
        f"the API refused every one of the {trip.answered} rows it answered for, all with the "
        f"same reason: {trip.common[:300]!r}. An answer that refuses everything alike is about "
        "the account or the request (an event name the account has not enabled, the API "
        "version, a header), not the rows: nothing was recorded as a reject and the "
        "checkpoint stays before them. Fix the account or the destination options (or the "
        "data, if every row really shares this defect), then run again"
    )
