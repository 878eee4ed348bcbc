"""The circuit breaker of every run: event runs judge each settled batch
(``events.EventRun._judge``), contact runs each finished import job (``contacts.ContactRun``).

Options (``destination.options``): ``max_reject_ratio`` (0.5) and ``reject_ratio_min_rows``
(100). Each unit the API answered for (a batch, a job) counts its rows and the rows it refused.
A unit without refusals is released at once; one with refusals is held, unreleased, until at
least ``reject_ratio_min_rows`` rows were answered. Then, past ``max_reject_ratio``, the
breaker trips: the held units are dropped, never released (the caller leaves their rows to be
sent again by the next run); under it, they are released.

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


@dataclass(frozen=True)
class Trip:
    """Why the breaker tripped: the counts so far, the most common refusal, and the units
    (and their refused rows) dropped unreleased."""

    answered: int
    refused: int
    common: str
    units: int
    dropped_rows: int


class RejectRatio(Generic[T]):
    """Counts answered and refused rows unit by unit; ``release`` settles one held unit."""

    def __init__(self, options: CommonOptions, release: Callable[[T], None]) -> None:
        self.ratio = options.max_reject_ratio
        self.min_rows = options.reject_ratio_min_rows
        self.release_one = release
        self.answered = 0
        self.refused = 0
        self.held: list[tuple[T, list[str]]] = []

    def judge(self, answered: int, reasons: list[str], unit: T) -> Trip | None:
        """One unit: ``answered`` rows, of which one refused per entry of ``reasons`` (the
        API's reason). Releases, holds, or trips (returned)."""
        self.answered += answered
        self.refused += len(reasons)
        if reasons:
            self.held.append((unit, reasons))
        else:
            self.release_one(unit)
        if self.answered < self.min_rows:
            return None
        if self.refused > self.ratio * self.answered:
            counts = Counter(r for _, rs in self.held for r in rs)
            common = counts.most_common(1)[0][0] if counts else ""
            trip = Trip(
                self.answered,
                self.refused,
                common,
                len(self.held),
                sum(len(rs) for _, rs in self.held),
            )
            self.held = []
            return trip
        self.release()
        return None

    def release(self) -> None:
        """Release every held unit (the breaker did not trip on them)."""
        held, self.held = self.held, []
        for unit, _ in held:
            self.release_one(unit)


class Breaker(Generic[T]):
    """``RejectRatio`` with its trip: ``judge`` returns the run's error once, when it trips;
    ``message`` words it from the ``Trip`` and the ratio."""

    def __init__(
        self,
        options: CommonOptions,
        release: Callable[[T], None],
        message: Callable[[Trip, float], str],
    ) -> None:
        self.rule: RejectRatio[T] = RejectRatio(options, release)
        self.message = message
        self.tripped: RequestError | None = None

    def judge(self, answered: int, reasons: list[str], unit: T) -> RequestError | None:
        """One unit (see ``RejectRatio.judge``): the run's error when this unit trips the
        breaker, else None. Units after the trip are not judged (the caller decides what
        becomes of them)."""
        if self.tripped is not None:
            return None
        trip = self.rule.judge(answered, reasons, unit)
        if trip is None:
            return None
        # The held units are left unreleased: their rows are sent again by the next run.
        self.tripped = RequestError(self.message(trip, self.rule.ratio), stored_nothing=False)
        return self.tripped

    def release(self) -> None:
        """Release the held units (the breaker did not trip on them; after a trip none are
        held)."""
        self.rule.release()

    def check(self) -> None:
        """Raise the breaker's error once it tripped."""
        if self.tripped is not None:
            raise self.tripped
