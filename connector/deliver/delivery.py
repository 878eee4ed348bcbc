"""Sending batches: ``Sender`` joins the HTTP loop and the outcome queue.

- ``http_loop``: one request on the wire — pacing, retries with backoff, 429 waits honouring the
  vendor's headers, transport errors; every wait on the injected ``Runtime``;
- ``outcomes``: what the answers mean for a batch — split halves, re-send, per-item outcomes,
  the "every single event refused alike" rule, possibly duplicated counts.

A batch's items each end delivered or rejected, or ``send`` raises: ``AuthError`` (401/403),
``RetriesExhausted`` (transient failures or 429s that persist) or ``RequestError`` (the request
itself was refused: no row of it becomes a reject); its ``stored_nothing`` says whether the
vendor may hold any of the batch. "Possibly duplicated" counts copies, not rows (see
``outcomes``): a settled batch's travel in its ``BatchOutcome``, a failed batch's are added to
``Stats.possibly_duplicated``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ..core.errors import DeliveryError, mask_url
from ..core.logcontext import get_logger
from ..core.options import DestinationSettings
from ..destinations.base import Destination, Item
from ..destinations.contact_endpoint import ContactDestination, JobRow
from ..destinations.event_endpoint import EventDestination
from .http_loop import (
    MAX_RATE_LIMITED,
    USER_AGENT,
    Answer,
    HttpLoop,
    Runtime,
    Stats,
    Verdict,
    announced_wait,
    classify,
    connect,
    window_state,
)
from .outcomes import BatchOutcome, OutcomeQueue, read
from .ratelimit import Pacer

if TYPE_CHECKING:
    import httpx  # annotations only: httpx is imported when a client is made

log = get_logger("connector.delivery")

__all__ = [
    "MAX_RATE_LIMITED",
    "USER_AGENT",
    "Answer",
    "BatchOutcome",
    "HttpLoop",
    "Runtime",
    "Sender",
    "Stats",
    "Verdict",
    "announced_wait",
    "classify",
    "connect",
    "job_preview",
    "post_preview",
    "window_state",
]


class Sender:
    """Sends batches for one event destination; thread-safe (one httpx client, shared pool)."""

    def __init__(
        self,
        dest: EventDestination[DestinationSettings],
        pacer: Pacer,
        runtime: Runtime,
        stats: Stats,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.dest = dest
        self.stats = stats
        self.http = connect(dest, pacer, runtime, stats, transport)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def send(self, items: list[Item]) -> BatchOutcome:
        """Deliver ``items``: every item ends delivered or rejected, or this raises a
        ``DeliveryError`` whose ``stored_nothing`` says whether the vendor may hold any of it.
        The copies of a settled batch travel in its outcome; a failed batch's go to
        ``Stats.possibly_duplicated`` (the batch never settles)."""
        dest = self.dest
        queue = OutcomeQueue(dest.type, items, dedup=dest.limits.dedup)
        try:
            while (nxt := queue.next_part()) is not None:
                part, variant = nxt
                answer = self.http.exchange(partial(dest.build, part, variant))
                outcome = dest.interpret(answer.request, answer.status, answer.headers, answer.body)
                kept = queue.settle(
                    part, read(outcome), ambiguous=answer.ambiguous, variant=variant
                )
                if kept:
                    log.warning(
                        "%s: %d event(s) refused on a retry after an attempt that may have "
                        "stored them (e.g. key %s: %s); counted as delivered, not rejected",
                        dest.type,
                        len(kept),
                        kept[0][0].key,
                        kept[0][1][:200],
                    )
            return queue.result()
        except DeliveryError as exc:
            queue.fail(exc.maybe_processed)
            exc.stored_nothing = not queue.maybe_stored
            if queue.possibly_duplicated:
                self.stats.add(possibly_duplicated=queue.possibly_duplicated)
            raise


def post_preview(dest: EventDestination[DestinationSettings], items: list[Item]) -> dict[str, Any]:
    """The exact request a batch would become (secrets masked), for ``connector preview``."""
    req = dest.build(items)
    return _preview(dest, req.path, req.headers, req.body)


def job_preview(
    dest: ContactDestination[DestinationSettings], rows: list[JobRow]
) -> dict[str, Any]:
    """The import job these rows would become (secrets masked), for ``connector preview``."""
    path, body = dest.job_request(rows)
    return _preview(dest, path, dest.auth_headers(), body)


def _preview(
    dest: Destination[DestinationSettings], path: str, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": mask_url(dest.base_url + path),
        "headers": dest.masked_headers(headers),
        "body": body,
    }
