"""Sending requests: httpx with keep-alive and timeouts, retries, pacing, per-item outcomes.

Retry policy (a pure classifier over the status code, see ``classify``):
- 2xx, 207, 400, 413 and other 4xx → the destination interprets the body (per-item outcomes);
- 429 → wait what the vendor says (``Retry-After``, ``RateLimit-Reset``,
  ``x-sib-ratelimit-reset``, ``X-Rate-Limit-Reset`` or Klaviyo's "Expected available in N
  second(s)"), clamped, with jitter, pausing every request of the account; then re-send;
- 5xx, 408, timeouts, connection errors, Cloudflare HTML challenges → exponential backoff with
  jitter, up to ``max_retries``; a failure after the request may have been processed makes the
  re-sent events "possibly duplicated" where the destination has no dedup key;
- 401/403 → the run fails at once (``AuthError``);
- an answer about the request itself (the destination's ``interpret`` says ``fatal``), or a
  batch refused whole whose every single-event split is refused with the same words → the run
  fails (``RequestError``): such an error is about the request, not its rows, so no row of it
  becomes a reject.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .destinations.base import Destination, Item, Learned
from .errors import AuthError, DeliveryError, RequestError, RetriesExhausted, mask_url
from .ratelimit import Pacer

log = logging.getLogger("connector.delivery")

USER_AGENT = "warehouse-events-connector/0.1"
_EXPECTED = re.compile(rb"available in (\d+(?:\.\d+)?) second")
MAX_RATE_LIMITED = 50  # 429s tolerated for one request before the run gives up


@dataclass
class Runtime:
    """Clock, sleep and randomness, injectable so tests never wait."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random


@dataclass
class Stats:
    """Counters of one run, updated from sender threads. ``possibly_duplicated`` holds only
    the copies of batches that failed; a settled batch's travel in its ``BatchOutcome``."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    possibly_duplicated: int = 0
    waited_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def status(self, code: int) -> None:
        with self.lock:
            self.statuses[code] = self.statuses.get(code, 0) + 1


@dataclass
class BatchOutcome:
    """Every item of a batch, delivered or rejected, and the copies beyond one the vendor may
    hold of the delivered ones (retries after attempts that may have been processed)."""

    delivered: list[Item]
    rejected: list[tuple[Item, str]]
    possibly_duplicated: int = 0
    learned: Learned | None = None  # what the responses taught; the run persists it at settle


def classify(status: int, headers: Mapping[str, str]) -> str:
    """ok | rate_limited | auth | transient | final — what the caller should do."""
    if status == 429:
        return "rate_limited"
    if status == 403 and (
        "cf-mitigated" in headers or "text/html" in headers.get("content-type", "")
    ):
        return "transient"  # Cloudflare challenge page, not a permission answer
    if status in (401, 403):
        return "auth"
    if status >= 500 or status == 408:
        return "transient"
    if 200 <= status < 300:
        return "ok"
    return "final"


def _num(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def announced_wait(
    headers: Mapping[str, str], body: bytes, wall: Callable[[], float]
) -> float | None:
    """Seconds the vendor asks us to wait, from any of the header styles we know."""
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        secs = _num(retry_after)
        if secs is None:
            try:
                secs = parsedate_to_datetime(retry_after).timestamp() - wall()
            except (TypeError, ValueError):
                secs = None
        if secs is not None:
            return secs
    for name in ("ratelimit-reset", "x-rate-limit-reset"):
        secs = _num(headers.get(name))
        if secs is not None:
            return secs
    sib = _num(headers.get("x-sib-ratelimit-reset"))
    if sib is not None:
        # Documented in seconds; some accounts report milliseconds (contracts.md §1.1).
        return sib / 1000.0 if sib > 3600 else sib
    m = _EXPECTED.search(body[:2000])
    if m:
        return float(m.group(1))
    return None


def window_state(headers: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(remaining, reset seconds) from whichever rate-limit header family is present."""
    for prefix in ("ratelimit-", "x-rate-limit-", "x-sib-ratelimit-"):
        remaining = _num(headers.get(prefix + "remaining"))
        if remaining is not None:
            reset = _num(headers.get(prefix + "reset"))
            if reset is not None and prefix == "x-sib-ratelimit-" and reset > 3600:
                reset /= 1000.0
            return remaining, reset
    return None, None


class Sender:
    """Sends batches for one destination; thread-safe (one httpx client, shared pool)."""

    def __init__(self, dest: Destination, pacer: Pacer, runtime: Runtime, stats: Stats) -> None:
        opts = dest.options
        self.dest = dest
        self.pacer = pacer
        self.rt = runtime
        self.stats = stats
        self.max_retries: int = opts.max_retries
        self.max_wait: float = opts.max_wait_s
        concurrency = opts.concurrency or dest.limits.concurrency
        self.client = httpx.Client(
            base_url=dest.base_url,
            timeout=httpx.Timeout(opts.timeout_s, connect=min(10.0, opts.timeout_s)),
            limits=httpx.Limits(
                max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2
            ),
            headers={"user-agent": USER_AGENT},
        )

    def close(self) -> None:
        self.client.close()

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_wait, 0.5 * (2 ** (attempt - 1)))
        return base * (0.5 + self.rt.random() / 2)  # jitter: 50-100% of the step

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.add(waited_s=seconds)
            self.rt.sleep(seconds)

    def send(self, items: list[Item]) -> BatchOutcome:
        """Deliver ``items``: every item ends delivered or rejected, or this raises a
        ``DeliveryError`` whose ``stored_nothing`` says whether the vendor may hold any of it.

        Copies are counted, not rows: each attempt that may have been processed (a timeout
        or 5xx after the request went out) may have stored one copy of its items, and the
        parts a refused request is split or re-sent into inherit those copies."""
        copies = _Copies(dedup=self.dest.limits.dedup)
        try:
            return self._send(items, copies)  # its copies travel in the outcome
        except DeliveryError as exc:
            copies.failed()
            exc.stored_nothing = not copies.maybe_stored
            if copies.duplicated:  # the batch never settles: the run counts them at its end
                self.stats.add(possibly_duplicated=copies.duplicated)
            raise

    def _send(self, items: list[Item], copies: _Copies) -> BatchOutcome:
        delivered: list[Item] = []
        rejected: list[tuple[Item, str]] = []
        learned: Learned | None = None
        queue = copies.queue
        # [part, attempts of it (or of its parent) that may have stored it, the body variant an
        # Outcome asked for (None: the default)]
        queue.append([items, 0, None])
        split = False  # the batch was refused whole without per-item detail
        alike: dict[str, int] = {}  # reasons of single events isolated by splitting
        while queue:
            entry = queue[0]
            part, variant = entry[0], entry[2]
            if not part:
                queue.pop(0)
                continue
            attempts = 0
            limited = 0
            while True:
                req = self.dest.build(part, variant)
                self.pacer.acquire()
                self.stats.add(requests=1)
                try:
                    resp = self.client.post(req.path, content=req.body, headers=req.headers)
                except httpx.HTTPError as exc:
                    if not isinstance(exc, httpx.TransportError):
                        raise DeliveryError(f"{self.dest.type}: request failed: {exc}") from None
                    sent = not isinstance(
                        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
                    )
                    entry[1] += 1 if sent else 0
                    attempts += 1
                    self._retry_or_raise(attempts, f"{type(exc).__name__}: {exc}")
                    continue
                status = resp.status_code
                self.stats.status(status)
                headers = resp.headers
                kind = classify(status, headers)
                if kind == "rate_limited":
                    limited += 1
                    self.stats.add(rate_limited=1)
                    if limited > MAX_RATE_LIMITED:
                        raise RetriesExhausted(
                            f"{self.dest.type}: still rate limited (429) after {limited} tries; "
                            "lower destination.options.rate_limit or run later"
                        )
                    wait = announced_wait(headers, resp.content, time.time)
                    if wait is None:
                        wait = self._backoff(limited)
                    wait = min(max(wait, 0.5), self.max_wait) * (1 + self.rt.random() * 0.1)
                    log.info("%s: 429, waiting %.1fs", self.dest.type, wait)
                    self.pacer.pause(wait)
                    continue
                if kind == "auth":
                    raise AuthError(
                        f"{self.dest.type}: the API refused the credentials (HTTP {status}): "
                        f"{_excerpt(resp.content)}. Check destination.api_key's environment "
                        "variable and the key's scopes."
                    )
                if kind == "transient":
                    entry[1] += 1
                    attempts += 1
                    self._retry_or_raise(attempts, f"HTTP {status}")
                    continue
                remaining, reset = window_state(headers)
                self.pacer.observe(remaining, reset)
                outcome = self.dest.interpret(req, status, headers, resp.content)
                if outcome.fatal:
                    raise RequestError(outcome.fatal)
                if split and len(part) == 1 and outcome.rejected:
                    reason = next(iter(outcome.rejected.values()))
                    alike[reason] = alike.get(reason, 0) + 1
                split = split or outcome.split
                learned = (learned or Learned()).merge(outcome.learned)
                ambiguous: int = entry[1]
                queue.pop(0)
                ok = [part[i] for i in outcome.delivered]
                refused = [(part[i], why) for i, why in outcome.rejected.items()]
                if ambiguous and refused:
                    # Refused now, but an attempt that timed out may have stored them: a
                    # reject would invite sending them again.
                    log.warning(
                        "%s: %d event(s) refused on a retry after an attempt that may have "
                        "stored them (e.g. key %s: %s); counted as delivered, not rejected",
                        self.dest.type,
                        len(refused),
                        refused[0][0].key,
                        refused[0][1][:200],
                    )
                    copies.stored(len(refused), ambiguous - 1)
                    delivered.extend(item for item, _ in refused)
                    refused = []
                copies.stored(len(ok), ambiguous)
                delivered.extend(ok)
                rejected.extend(refused)
                if outcome.split:
                    half = len(part) // 2
                    queue[:0] = [
                        [part[:half], ambiguous, variant],
                        [part[half:], ambiguous, variant],
                    ]
                elif outcome.resend:
                    again = [part[i] for i in outcome.resend]
                    queue.insert(0, [again, ambiguous, outcome.resend_variant or variant])
                break
        if len(alike) == 1 and sum(alike.values()) == len(items) > 1:
            # Every event alone got the same answer as the whole: the request is at fault
            # (a header, the version, the body), not the rows; rejecting them would lose them.
            (reason,) = alike
            raise RequestError(
                f"{self.dest.type}: every one of {len(items)} events, sent alone, was refused "
                f"with the same error, so the error is about the request, not the rows: "
                f"{reason[:300]!r}. Nothing was recorded as a reject and the checkpoint stays "
                "at the last delivered row: fix the destination options (API version, "
                "headers, body shape), then run again"
            )
        return BatchOutcome(delivered, rejected, copies.duplicated, learned or None)

    def _retry_or_raise(self, attempts: int, what: str) -> None:
        self.stats.add(retries=1)
        if attempts > self.max_retries:
            raise RetriesExhausted(
                f"{self.dest.type}: {what} persisted after {self.max_retries} retries; the "
                "checkpoint stays at the last delivered row — run again later"
            )
        wait = self._backoff(attempts)
        log.info("%s: %s, retry %d in %.1fs", self.dest.type, what, attempts, wait)
        self._sleep(wait)


@dataclass
class _Copies:
    """What one batch may have left at the vendor: ``maybe_stored`` once any attempt may have
    been processed, and ``duplicated`` — copies beyond one (never counted where the vendor
    drops repeats by dedup id). ``queue`` holds the parts not yet answered, each with the
    attempts that may have stored it."""

    dedup: bool
    duplicated: int = 0
    maybe_stored: bool = False
    queue: list[list[Any]] = field(default_factory=list)

    def stored(self, items: int, extra: int) -> None:
        """``items`` are at the vendor now, each possibly ``extra`` times more than once."""
        self.maybe_stored = self.maybe_stored or items > 0
        if extra > 0 and not self.dedup:
            self.duplicated += items * extra

    def failed(self) -> None:
        """The batch failed: its unanswered parts stay pending and the next run sends them
        again, counting one copy for the pending entry; copies beyond that one are counted
        here."""
        for part, ambiguous, _variant in self.queue:
            if ambiguous:
                self.maybe_stored = True
                if not self.dedup:
                    self.duplicated += len(part) * (ambiguous - 1)


def _excerpt(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").replace("\n", " ")
    return text or "(empty body)"


def post_preview(dest: Destination, items: list[Item]) -> dict[str, Any]:
    """The exact request a batch would become (secrets masked), for ``connector preview``."""
    req = dest.build(items)
    return {
        "method": "POST",
        "url": mask_url(dest.base_url + req.path),
        "headers": dest.masked_headers(req.headers),
        "body": req.body,
    }
