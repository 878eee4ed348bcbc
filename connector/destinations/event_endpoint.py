"""What an event endpoint module provides: ``EventDestination`` (a row is an occurrence).

An event destination declares its limits, turns canonical events into request bodies and a
response into per-event outcomes (``base.Item``, ``Request``, ``Outcome``, ``Learned``). The
framework (``plan.batching``, ``deliver.delivery``, ``run.sync``) enforces the limits and owns
batching, retries and pacing. ``SingleEventDestination`` is the shape of the endpoints that
take one event per request; ``request_problem`` / ``single_outcome`` read vendor errors.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from typing_extensions import override

from ..model.events import Events
from .answers import REQUEST_STATUSES, About, judge
from .answers import request_problem as request_problem  # re-exported
from .base import AccountMemory, ConfigT, Destination, Item, Learned, Outcome, Request


class EventDestination(Destination[ConfigT]):
    """Base class of event endpoints: subclasses set the class attributes and implement the
    abstract methods (docs/adding-a-destination.md).

    Threads: ``validate``, ``encode``, ``learn`` and ``attach`` run on the run's own thread;
    ``build`` and ``interpret`` on sender threads, so they only read the destination (the
    run's settings and what ``learn`` recorded) and return everything else as data.
    """

    kind = "events"
    path: ClassVar[str]
    supports_object: ClassVar[bool] = False
    supports_value: ClassVar[bool] = False

    def attach(self, memory: AccountMemory | None, account: str) -> None:
        """Called once per run before any request: what earlier runs learned about the
        account (read-only) and the account id (no secret in it)."""

    def learn(self, learned: Learned) -> None:
        """The run settled a batch whose responses taught ``learned`` (already persisted):
        use it for the rest of the run. Called on the run's thread."""

    # -- per chunk ----------------------------------------------------------------------
    @abstractmethod
    def validate(self, events: Events) -> dict[int, str]:
        """Rows that break a documented rule → reason. The rest go on."""

    @abstractmethod
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        """Encode valid rows; size rules that need the encoded bytes may still reject."""

    # -- per request --------------------------------------------------------------------
    def request_overhead(self, count: int) -> int:
        """Bytes a request adds around ``count`` items (for the byte limit)."""
        return 64 + count

    @abstractmethod
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        """One request for ``items``; ``variant`` is a body form an ``Outcome`` asked for."""

    @abstractmethod
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        """Turn a non-transient response (2xx, 400, 413, other 4xx) into per-item outcomes.
        Pure: reads the request, the response and the destination, changes nothing."""


def request_fix(vendor: str, message: str, fix: str | None = None) -> str:
    """The run-failure text for a refused request: the vendor's words and what to change."""
    fix = fix or (
        "fix the destination options (API version/revision, headers, body shape) or the endpoint"
    )
    return (
        f"{vendor} refused the request itself, not its events: {message[:300]!r}. Nothing was "
        f"recorded as a reject and the checkpoint stays at the last delivered row: {fix}, "
        "then run again"
    )


def single_outcome(
    vendor: str, status: int, message: str, *, about_request: bool | None = None
) -> Outcome:
    """The response to a one-event request: 2xx delivered; 400/413/422 reject that event (the
    content is at fault and nothing was stored) unless the error is about the request itself
    (``about_request``, by default read from the message); any other final status fails the
    run."""
    if 200 <= status < 300:
        return Outcome(delivered=[0])
    if about_request is None:
        about_request = (
            judge(status, message, item_detail=False, detail_format=False) is About.REQUEST
        )
    if status in (400, 413, 422) and not about_request:
        return Outcome(rejected={0: f"{vendor} {status}: {message}"[:500]})
    if status in (400, 422) or status in REQUEST_STATUSES:  # 410: a retired API version
        return Outcome(fatal=request_fix(f"{vendor} ({status})", message))
    return Outcome(fatal=f"{vendor} answered {status}: {message}"[:500])


class SingleEventDestination(EventDestination[ConfigT]):
    """An endpoint that takes one event per request (``limits.max_items == 1``)."""

    api_name: ClassVar[str]  # names the API in reject reasons and errors

    @abstractmethod
    def message(self, status: int, body: bytes) -> str:
        """The vendor's error text from a response body."""

    def about_request(self, status: int, body: bytes, message: str) -> bool:
        """Whether an error answer is about the request rather than the event in it
        (``answers.judge``). By default the vendor's error format has no place for a field
        of the event, so its wording decides; a vendor whose format has one overrides this."""
        return judge(status, message, item_detail=False, detail_format=False) is About.REQUEST

    @override
    def request_overhead(self, count: int) -> int:
        return 0

    @override
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        return Request(self.path, items[0].payload, self.auth_headers(), items)

    @override
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        message = self.message(status, body)
        if 200 <= status < 300:
            return single_outcome(self.api_name, status, message, about_request=False)
        return single_outcome(
            self.api_name, status, message, about_request=self.about_request(status, body, message)
        )
