"""One request on the wire: pacing, retries with backoff, 429 waits, transport errors — for
every request of either kind of destination.

``HttpLoop.exchange`` posts an event batch's request until the API gives an answer about it,
and returns that answer for the destination to interpret; ``HttpLoop.request`` sends a contact
destination's request (a job, a poll, a lookup, a list removal) the same way and returns the
response. Every wait goes through the injected ``Runtime`` (clock, sleep, randomness, the wall
clock a ``Retry-After`` date is read against) and the account's ``Pacer``, so tests never
sleep; ``transport`` lets a test answer with ``httpx.MockTransport``. ``connect`` builds the
loop of one destination.

Retry policy (a pure classifier over the status code, see ``classify``):
- 2xx, 207, 400, 413 and other 4xx → ``Verdict.ANSWERED``: returned for ``interpret``;
- 429 → ``Verdict.RATE_LIMITED``: wait what the vendor says (``Retry-After``,
  ``RateLimit-Reset``, ``x-sib-ratelimit-reset``, ``X-Rate-Limit-Reset`` or Klaviyo's "Expected
  available in N second(s)"), at least 0.5 s and at most ``max_wait_s``, plus up to 10 %
  jitter, pausing every request of the account; then re-send (at most ``MAX_RATE_LIMITED``
  times);
- 5xx, 408, timeouts, connection errors, Cloudflare HTML challenges → ``Verdict.RETRY``:
  exponential backoff with jitter, up to ``max_retries`` (then ``RetriesExhausted``); a failure
  after the request may have been processed counts in the answer's ``ambiguous`` (or the
  error's ``maybe_processed``);
- 401/403 → ``Verdict.AUTH``: the run fails at once (``AuthError``).
"""

from __future__ import annotations

import enum
import functools
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..core import fence, giveup
from ..core.errors import AuthError, DeliveryError, GaveUp, RetriesExhausted
from ..core.logcontext import get_logger
from ..core.options import DestinationSettings
from ..destinations.base import Destination, Request
from .ratelimit import Pacer

if TYPE_CHECKING:
    # Imported when the first client is made (``make_client``): a run that sends nothing (a
    # no-op incremental run, a dry run) never imports httpx.
    import ssl

    import httpx

log = get_logger("connector.delivery")

USER_AGENT = "warehouse-events-connector/0.1"
_EXPECTED = re.compile(rb"available in (\d+(?:\.\d+)?) second")
MAX_RATE_LIMITED = 50  # 429s tolerated for one request before the run gives up


class Verdict(enum.Enum):
    """What the sender does with one response (or one failed attempt).

    The HTTP loop decides the first four from the status alone (``classify``); the outcome
    queue decides the rest from the destination's reading of an answered response."""

    ANSWERED = "answered"  # the API answered about the items: the destination interprets it
    RETRY = "retry"  # transient (5xx, 408, timeout, connection): same request after backoff
    RATE_LIMITED = "rate_limited"  # 429: wait what the vendor says, then the same request
    AUTH = "auth"  # 401/403: the credentials are refused, the run fails
    DELIVERED = "delivered"  # every item of the part was stored
    REJECTED = "rejected"  # some items refused for their own reasons (the rest stored)
    RESEND = "resend"  # some items go again in a new request
    SPLIT = "split"  # refused whole without per-item detail: send the halves
    SWITCH_SHAPE = "switch_shape"  # the body shape was refused: send again in the other shape
    FATAL = "fatal"  # the request itself was refused: the run fails


def classify(status: int, headers: Mapping[str, str]) -> Verdict:
    """ANSWERED | RATE_LIMITED | AUTH | RETRY — what the loop does with a status."""
    if status == 429:
        return Verdict.RATE_LIMITED
    if status == 403 and (
        "cf-mitigated" in headers or "text/html" in headers.get("content-type", "")
    ):
        return Verdict.RETRY  # Cloudflare challenge page, not a permission answer
    if status in (401, 403):
        return Verdict.AUTH
    if status >= 500 or status == 408:
        return Verdict.RETRY
    return Verdict.ANSWERED


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


@dataclass
class Runtime:
    """Clock, sleep and randomness, injectable so tests never wait; ``wall`` reads an
    HTTP-date ``Retry-After``; ``transport`` (tests only) answers the requests instead of the
    network."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random
    transport: httpx.BaseTransport | None = None
    wall: Callable[[], float] = time.time


@dataclass
class Stats:
    """Counters of one run, updated from sender threads."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    possibly_duplicated: int = 0
    maybe_processed: int = 0  # failed attempts that may have been processed (stored)
    waited_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        """Add to counters by name, atomically."""
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def status(self, code: int) -> None:
        """Count one response status."""
        with self.lock:
            self.statuses[code] = self.statuses.get(code, 0) + 1


@dataclass(frozen=True)
class Answer:
    """A response the API gave about a request's items, for the destination to interpret."""

    request: Request  # as built for the attempt that was answered
    status: int
    headers: httpx.Headers
    body: bytes
    ambiguous: int  # earlier attempts that failed after they may have been processed


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context, made as httpx makes its default (``SSL_CERT_FILE``,
    ``SSL_CERT_DIR`` or certifi's bundle), on the first client. httpx makes a new one for each
    client by default, loading the whole CA bundle each time (~25 ms of CPU with Debian's): a
    Dagster process or a CLI command with several runs pays it once. A change of those
    variables after the first client is not seen by later clients of the process."""
    import httpx

    return httpx.create_ssl_context()


def make_client(
    base_url: str, timeout_s: float, concurrency: int, transport: httpx.BaseTransport | None
) -> httpx.Client:
    """One keep-alive client per run, with room for every request in flight."""
    import httpx

    return httpx.Client(
        verify=tls_context(),
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        limits=httpx.Limits(
            max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2
        ),
        headers={"user-agent": USER_AGENT},
        transport=transport,
    )


class HttpLoop:
    """Sends the requests of one destination until they are answered; thread-safe. Event
    batches (``exchange``) and contact jobs, polls, lookups and list removals (``request``)
    take the same loop: one retry, 429 and transport policy, on the injected ``Runtime``.

    Its messages (logs and errors) name the destination, the method, the status or the
    transport error, never a path, a query string or a body: a Brevo contact lookup's path
    and a Klaviyo profile filter hold e-mail addresses."""

    def __init__(
        self,
        name: str,
        client: httpx.Client | Callable[[], httpx.Client],
        pacer: Pacer,
        runtime: Runtime,
        stats: Stats,
        max_retries: int,
        max_wait: float,
        *,
        key_var: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.name = name
        # A client, or how to make one on the first request (``base_url`` then names its host).
        self._client = None if callable(client) else client
        self._make = client if callable(client) else None
        self._making = threading.Lock()  # sender threads may send their first requests at once
        self.pacer = pacer
        self.rt = runtime
        self.stats = stats
        self.max_retries = max_retries
        self.max_wait = max_wait
        # scheme://host[:port]: never a path or a query
        self.host = origin(base_url if base_url is not None else str(self.client.base_url))
        self.key_var = key_var  # the environment variable destination.api_key names

    @property
    def client(self) -> httpx.Client:
        """The keep-alive client, made on first use."""
        if self._client is None:
            with self._making:
                if self._client is None:
                    assert self._make is not None
                    self._client = self._make()
        return self._client

    def close(self) -> None:
        """Close the connection pool (if a request made one)."""
        if self._client is not None:
            self._client.close()

    def exchange(self, build: Callable[[], Request]) -> Answer:
        """Post ``build()`` (rebuilt per attempt: the body shape may change meanwhile) until
        the API answers about it; raises ``AuthError``, ``RetriesExhausted`` or
        ``DeliveryError``, whose ``maybe_processed`` counts the attempts that failed after
        they may have been processed (as ``Answer.ambiguous`` does for an answer)."""
        sent: list[Request] = []

        def attempt() -> httpx.Response:
            sent[:] = [build()]
            req = sent[0]
            return self.client.post(req.path, content=req.body, headers=req.headers)

        resp, ambiguous = self._until_answered("POST", attempt)
        return Answer(sent[0], resp.status_code, resp.headers, resp.content, ambiguous)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (``url``: a path under the base URL, or an absolute URL) until it
        is answered for good, and return the answer: a success or a final refusal (a 4xx
        other than 401, 403, 408 and 429) for the caller to read. Raises as ``exchange``;
        attempts that may have been processed count in ``Stats.maybe_processed``."""

        def attempt() -> httpx.Response:
            # params=None, not {}: an empty mapping would drop the query of a next-page URL.
            return self.client.request(method, url, content=body, params=params, headers=headers)

        resp, _ = self._until_answered(method, attempt)
        return resp

    def _until_answered(
        self, method: str, attempt: Callable[[], httpx.Response]
    ) -> tuple[httpx.Response, int]:
        """``attempt()`` paced and retried until the API answers about it: (the answer,
        attempts that failed after they may have been processed)."""
        tally = [0]
        try:
            resp = self._loop(method, attempt, tally)
        except DeliveryError as exc:
            exc.maybe_processed = tally[0]
            self.stats.add(maybe_processed=tally[0])
            raise
        self.stats.add(maybe_processed=tally[0])
        return resp, tally[0]

    def _loop(
        self, method: str, attempt: Callable[[], httpx.Response], tally: list[int]
    ) -> httpx.Response:
        import httpx

        _ = self.client  # made (httpx imported) before the first slot of the pace is taken
        attempts = 0
        limited = 0
        while True:
            if attempts:
                self._unless_given_up(method)  # the run failed during the wait: no more tries
            self.pacer.acquire()
            fence.check(maybe_sent=tally[0] > 0)  # a run that lost its lease sends no more
            self.stats.add(requests=1)
            try:
                resp = attempt()
            except httpx.HTTPError as exc:
                what = f"{method}: {type(exc).__name__}: {_text(exc)}"
                if not isinstance(exc, httpx.TransportError):
                    raise DeliveryError(
                        f"{self.name}: request to {self.host} failed: {what}"
                    ) from None
                tally[0] += 1 if _maybe_processed(exc) else 0
                attempts += 1
                self._retry_or_raise(attempts, what, connection=True)
                continue
            status = resp.status_code
            self.stats.status(status)
            verdict = classify(status, resp.headers)
            if verdict is Verdict.RATE_LIMITED:
                limited += 1
                self._rate_limited(limited, method, resp)
                continue
            if verdict is Verdict.AUTH:
                raise AuthError(self._auth_message(method, status, resp.content))
            if verdict is Verdict.RETRY:
                tally[0] += 1  # a 5xx/408 may come after the vendor stored the request
                attempts += 1
                self._retry_or_raise(attempts, f"{method}: HTTP {status}")
                continue
            self.pacer.observe(*window_state(resp.headers))
            return resp

    def _auth_message(self, method: str, status: int, body: bytes) -> str:
        """A 401/403: the host, the vendor's words and the variable holding the key."""
        var = f"the environment variable {self.key_var}" if self.key_var else "its variable"
        return (
            f"{self.name}: {self.host} refused the credentials ({method}: HTTP {status}): "
            f"{excerpt(body).rstrip('. ')}. Check the API key in {var} (destination.api_key) "
            "and the key's scopes"
        )

    def _rate_limited(self, limited: int, method: str, resp: httpx.Response) -> None:
        self.stats.add(rate_limited=1)
        if limited > MAX_RATE_LIMITED:
            raise RetriesExhausted(
                f"{self.name}: still rate limited (429) after {limited} tries; "
                "lower destination.options.rate_limit or run later"
            )
        wait = announced_wait(resp.headers, resp.content, self.rt.wall)
        if wait is None:
            wait = self._backoff(limited)
        wait = min(max(wait, 0.5), self.max_wait)  # a floor: "retry after 0" is no spin
        jitter = wait * self.rt.random() * 0.1  # runs told the same wait do not return at once
        log.info(
            "%s: %s answered 429, waiting %.1fs + %.2fs jitter", self.name, method, wait, jitter
        )
        self.pacer.pause(wait + jitter)  # every request of the account waits it out

    def _unless_given_up(self, what: str) -> None:
        """Raise ``GaveUp`` (a ``RetriesExhausted``) when the run failed on another request
        (``giveup``): this one is not tried again."""
        if giveup.given_up():
            raise GaveUp(
                f"{self.name}: {what} ({self.host}); not tried again: the run failed on another "
                "request — the checkpoint stays at the last delivered row"
            )

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_wait, 0.5 * (2 ** (attempt - 1)))
        return base * (0.5 + self.rt.random() / 2)  # jitter: 50-100% of the step

    def _retry_or_raise(self, attempts: int, what: str, *, connection: bool = False) -> None:
        """Wait before the next attempt (logged at WARNING: a destination that is down is
        not silent), or raise ``RetriesExhausted`` naming the host, and for a transport error
        the setting that names it."""
        self._unless_given_up(what)
        self.stats.add(retries=1)
        if attempts > self.max_retries:
            fix = (
                f"check destination.base_url ({self.host}) and that the host is reachable; "
                if connection
                else ""
            )
            raise RetriesExhausted(
                f"{self.name}: {what} persisted after {self.max_retries} retries "
                f"({self.host}); {fix}the checkpoint stays at the last delivered row — run "
                "again later"
            )
        wait = self._backoff(attempts)
        log.warning(
            "%s: %s (%s), retry %d of %d in %.1fs",
            self.name,
            what,
            self.host,
            attempts,
            self.max_retries,
            wait,
        )
        if wait > 0:
            self.stats.add(waited_s=wait)
            self.rt.sleep(wait)


def connect(
    dest: Destination[DestinationSettings],
    pacer: Pacer,
    runtime: Runtime,
    stats: Stats,
    transport: httpx.BaseTransport | None = None,
) -> HttpLoop:
    """The HTTP loop of one destination's run, of either kind: one keep-alive client on its
    base URL with room for its requests in flight, its options' timeout and retries, paced by
    ``pacer``."""
    opts = dest.options
    concurrency = opts.concurrency or dest.limits.concurrency
    transport = transport or runtime.transport
    return HttpLoop(
        dest.type,
        lambda: make_client(dest.base_url, opts.timeout_s, concurrency, transport),
        pacer,
        runtime,
        stats,
        opts.max_retries,
        opts.max_wait_s,
        key_var=env_var(dest.config.api_key),
        base_url=dest.base_url,
    )


def env_var(reference: str) -> str | None:
    """``${OMNISEND_API_KEY}`` → ``OMNISEND_API_KEY`` (the name, never the value)."""
    m = re.match(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)", reference or "")
    return m.group(1) if m else None


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, without user info, path or query."""
    u = urlsplit(url)
    try:
        port = f":{u.port}" if u.port else ""
    except ValueError:  # a port that is not a number
        port = ""
    host = u.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{u.scheme}://{host}{port}" if host else "(no base URL)"


def _text(exc: httpx.HTTPError) -> str:
    """A transport error's own words, without the request's URL, path or query should the
    error quote them (the socket's and httpcore's texts do not)."""
    text = str(exc)
    try:
        url = exc.request.url
    except RuntimeError:  # raised without a request (tests)
        return text[:200]
    for part in sorted({str(url), url.raw_path.decode("ascii", "replace"), url.path}, key=len)[
        ::-1
    ]:
        if part and part != "/":
            text = text.replace(part, "<url>")
    return text[:200]


def _maybe_processed(exc: httpx.TransportError) -> bool:
    """False only when the request never reached the server (no connection was made)."""
    import httpx

    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def excerpt(body: bytes) -> str:
    """The start of a response body, on one line, for an error message."""
    text = body[:300].decode("utf-8", "replace").replace("\n", " ")
    return text or "(empty body)"
