"""The HTTP client of contact jobs (kept apart from ``vendor``: ``connector.config`` imports
the destination modules, and this one imports ``connector.delivery``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from ..core.errors import AuthError, RetriesExhausted
from ..core.logcontext import get_logger
from ..destinations.contact_base import ContactOptions, JobStats
from .delivery import MAX_RATE_LIMITED, USER_AGENT, Verdict, announced_wait, classify

log = get_logger("connector.contacts")


class JobHTTP:
    """httpx with the delivery rules of ``connector.delivery``: pacing per account, retries
    with backoff and jitter on 429/5xx/timeouts, the vendor's announced waits honoured,
    401/403 at once. Request errors (other 4xx) are returned to the destination to read."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        options: ContactOptions,
        acquire: Callable[[], float],
        stats: JobStats,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] | None = None,
        transport: httpx.BaseTransport | None = None,
        pause: Callable[[float], None] | None = None,
        name: str = "contacts",
    ) -> None:
        import random as _random

        self.name = name  # in log lines: the destination type, as event runs log theirs
        self.options = options
        self.acquire = acquire
        # The pacer's pause: a 429's wait holds every run of the account (with a shared
        # pacer, every process); without one, only this client sleeps.
        self.pause = pause
        self.stats = stats
        self.sleep = sleep
        self.random = random or _random.random
        self.client = httpx.Client(
            base_url=base_url,
            headers={**headers, "user-agent": USER_AGENT},
            timeout=httpx.Timeout(options.timeout_s, connect=min(10.0, options.timeout_s)),
            transport=transport,
        )

    def close(self) -> None:
        """Close the underlying httpx client and its connection pool."""
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request, paced, and retry it until it is answered for good.

        Returns the response of a success or of a final refusal (a 4xx other than 401, 403, 408
        and 429), for the caller to read. Timeouts, transport errors, 408 and 5xx (and a
        Cloudflare challenge answered 403) are retried with
        exponential backoff and jitter up to ``options.max_retries``; 429 waits what the vendor
        announces (at most ``options.max_wait_s``), up to ``MAX_RATE_LIMITED`` times.

        Raises:
            AuthError: the vendor answered 401 or 403 (the API key or its scopes).
            RetriesExhausted: the retries or the rate-limited waits ran out.
        """
        attempts = limited = 0
        while True:
            self.acquire()  # blocks (sleeps) until the account's pace allows a request
            self.stats.requests += 1
            try:
                resp = self.client.request(method, path, content=body, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                attempts += 1
                self._retry_or_raise(attempts, f"{method} {path}: {type(exc).__name__}")
                self._wait_retry(attempts, f"{method}: {type(exc).__name__}")
                continue
            kind = classify(resp.status_code, resp.headers)
            if kind is Verdict.ANSWERED:
                return resp
            if kind is Verdict.AUTH:
                raise AuthError(
                    f"{method} {path} answered {resp.status_code}: check the API key and its "
                    "scopes (destination.api_key)"
                )
            if kind is Verdict.RATE_LIMITED:
                limited += 1
                self.stats.rate_limited += 1
                if limited > MAX_RATE_LIMITED:
                    raise RetriesExhausted(f"{method} {path}: rate limited {limited} times")
                wait = announced_wait(resp.headers, resp.content, time.time)
                wait = min(self.options.max_wait_s, wait if wait is not None else 1.0)
                log.info("%s: %s answered 429, waiting %.1fs", self.name, method, wait)
                (self.pause or self.sleep)(wait)  # a pause: the next acquire() waits it out
                continue
            attempts += 1
            self._retry_or_raise(attempts, f"{method} {path} answered {resp.status_code}")
            self._wait_retry(attempts, f"{method} answered {resp.status_code}")

    def _wait_retry(self, attempt: int, what: str) -> None:
        """Log and sleep the backoff before retry ``attempt`` (no path in the line: a Brevo
        contact lookup's path holds an e-mail address)."""
        wait = self._backoff(attempt)
        log.info("%s: %s, retry %d in %.1fs", self.name, what, attempt, wait)
        self.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        base = min(self.options.max_wait_s, 0.5 * (2 ** (attempt - 1)))
        return float(base * (0.5 + self.random() / 2))

    def _retry_or_raise(self, attempts: int, what: str) -> None:
        if attempts > self.options.max_retries:
            raise RetriesExhausted(f"{what}; gave up after {attempts} attempts")
        self.stats.retries += 1
