"""The HTTP loop, unit by unit with ``httpx.MockTransport``: every wait lands on the fake clock.

Each test scripts the responses (or transport errors) one request meets and checks what the loop
did: the waits it asked the clock for, the attempts it made, what it returned or raised.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextvars import copy_context
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connector.config.sync_file import RateLimit
from connector.core import giveup
from connector.core.errors import AuthError, RetriesExhausted
from connector.deliver.delivery import Runtime, Stats
from connector.deliver.http_loop import (
    MAX_RATE_LIMITED,
    HttpLoop,
    Verdict,
    announced_wait,
    classify,
    make_client,
    tls_context,
    window_state,
)
from connector.deliver.ratelimit import Pacer
from connector.destinations.base import Request
from connector.run.contacts import run_contacts
from connector.store.state import StateStore
from tests.conftest import FakeSleep, Warehouse, make_sync
from tests.contact_fixtures import make_customers
from tests.contacts_fakes import FakeKlaviyo

Step = httpx.Response | Exception


def _script(steps: list[Step]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next step (a response or an error)."""
    seen: list[httpx.Request] = []
    queue: Iterator[Step] = iter(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = next(queue)
        if isinstance(step, Exception):
            raise step
        return step

    return httpx.MockTransport(handler), seen


def _loop(
    fake_time: FakeSleep, steps: list[Step], max_retries: int = 3, max_wait: float = 60.0
) -> tuple[HttpLoop, Stats, list[httpx.Request]]:
    transport, seen = _script(steps)
    runtime = Runtime(fake_time.clock, fake_time.sleep, lambda: 0.5)
    stats = Stats()
    pacer = Pacer(RateLimit(per_second=1000), fake_time.clock, fake_time.sleep)
    client = make_client("http://vendor.test", 5.0, 2, transport)
    loop = HttpLoop("vendor", client, pacer, runtime, stats, max_retries, max_wait)
    return loop, stats, seen


def _request() -> Callable[[], Request]:
    return lambda: Request("/events", b'{"e": 1}', {"content-type": "application/json"}, [])


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"RateLimit-Reset": "12", "RateLimit-Remaining": "0"}, 12.0),
        ({"x-sib-ratelimit-reset": "4000"}, 4.0),  # Brevo accounts reporting milliseconds
        ({"X-Rate-Limit-Reset": "4"}, 4.0),
        ({}, 0.5),  # no hint: the first backoff step, at least half a second
        ({"Retry-After": "600"}, 60.0),  # clamped to max_wait_s
    ],
)
def test_a_429_waits_what_the_vendor_announces_on_the_clock_then_sends_again(
    fake_time: FakeSleep, headers: dict[str, str], wait: float
) -> None:
    loop, stats, seen = _loop(
        fake_time, [httpx.Response(429, headers=headers), httpx.Response(202, json={})]
    )

    answer = loop.exchange(_request())

    assert answer.status == 202 and answer.ambiguous == 0
    assert len(seen) == 2
    # The pause is the account's (every thread waits), plus up to 10% jitter (random=0.5).
    assert fake_time.waits == [pytest.approx(wait * 1.05)]
    assert (stats.requests, stats.rate_limited, stats.retries) == (2, 1, 0)


def test_a_retry_after_date_is_read_against_the_injected_wall_clock(fake_time: FakeSleep) -> None:
    loop, _, _ = _loop(
        fake_time,
        [
            httpx.Response(429, headers={"Retry-After": "Sun, 22 Nov 2026 10:00:30 GMT"}),
            httpx.Response(202, json={}),
        ],
    )
    loop.rt.wall = lambda: datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC).timestamp()

    loop.exchange(_request())

    assert fake_time.waits == [pytest.approx(30.0 * 1.05)]


def test_too_many_429s_for_one_request_give_up(fake_time: FakeSleep) -> None:
    limited = [httpx.Response(429, headers={"Retry-After": "1"})] * (MAX_RATE_LIMITED + 1)
    loop, stats, seen = _loop(fake_time, list(limited))

    with pytest.raises(RetriesExhausted, match=r"still rate limited \(429\)"):
        loop.exchange(_request())

    assert len(seen) == MAX_RATE_LIMITED + 1
    assert len(fake_time.waits) == MAX_RATE_LIMITED
    assert stats.rate_limited == MAX_RATE_LIMITED + 1


def test_a_5xx_then_a_200_backs_off_once_and_marks_the_exchange_ambiguous(
    fake_time: FakeSleep,
) -> None:
    loop, stats, seen = _loop(fake_time, [httpx.Response(503), httpx.Response(200, json={})])

    answer = loop.exchange(_request())

    assert answer.status == 200
    assert answer.ambiguous == 1  # a 503 may come after the vendor stored the events
    assert fake_time.waits == [0.375]  # the first step, 0.5 s, with jitter 75% (random=0.5)
    assert (stats.requests, stats.retries, stats.statuses) == (2, 1, {503: 1, 200: 1})
    assert seen[0].content == seen[1].content  # the same request again


def test_backoff_doubles_per_attempt_until_max_retries_then_raises(fake_time: FakeSleep) -> None:
    loop, stats, seen = _loop(fake_time, [httpx.Response(500)] * 4, max_retries=3, max_wait=1.5)

    with pytest.raises(RetriesExhausted, match="HTTP 500 persisted after 3 retries") as err:
        loop.exchange(_request())

    assert err.value.maybe_processed == 4  # every 500 may have come after storing

    assert len(seen) == 4  # the first try and three retries
    assert stats.retries == 4
    assert fake_time.waits == [0.375, 0.75, 1.125]  # 0.5, 1, 2→1.5 (max_wait), each at 75%


def _in_a_run(event: threading.Event, call: Callable[[], Any]) -> Any:
    """``call()`` as a sender thread of an event run makes it: giving up with ``event``."""
    context = copy_context()
    context.run(giveup.watch, event)
    return context.run(call)


def test_a_run_that_failed_on_another_request_stops_this_ones_retries(
    fake_time: FakeSleep,
) -> None:
    """A 500 that came back after the run failed elsewhere is not retried: no wait, no more
    attempts, and the attempt counts as one that may have been stored."""
    failed = threading.Event()
    loop, _, seen = _loop(fake_time, [httpx.Response(500)] * 4, max_retries=3)
    loop.client.event_hooks["response"].append(lambda r: failed.set())  # meanwhile, elsewhere

    with pytest.raises(RetriesExhausted, match="not tried again: the run failed") as err:
        _in_a_run(failed, lambda: loop.exchange(_request()))

    assert len(seen) == 1 and fake_time.waits == []
    assert err.value.maybe_processed == 1
    assert "/events" not in str(err.value)  # no path in a message


def test_a_run_that_fails_during_the_wait_sends_no_more_attempts(fake_time: FakeSleep) -> None:
    failed = threading.Event()
    transport, seen = _script([httpx.Response(503)] * 4)

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        failed.set()  # another request ran out of retries while this one waited

    runtime = Runtime(fake_time.clock, sleep, lambda: 0.5)
    pacer = Pacer(RateLimit(per_second=1000), fake_time.clock, fake_time.sleep)
    client = make_client("http://vendor.test", 5.0, 2, transport)
    loop = HttpLoop("vendor", client, pacer, runtime, Stats(), 3, 60.0)

    with pytest.raises(RetriesExhausted, match="not tried again"):
        _in_a_run(failed, lambda: loop.exchange(_request()))
    assert len(seen) == 1 and fake_time.waits == [0.375]

    # Outside a run that watches (contact jobs, lookups) the same answers run their retries.
    transport2, seen2 = _script([httpx.Response(503)] * 4)
    client2 = make_client("http://vendor.test", 5.0, 2, transport2)
    loop2 = HttpLoop("vendor", client2, pacer, runtime, Stats(), 3, 60.0)
    with pytest.raises(RetriesExhausted, match="persisted after 3 retries"):
        loop2.exchange(_request())
    assert len(seen2) == 4


def test_a_transport_error_after_the_request_went_out_is_ambiguous(fake_time: FakeSleep) -> None:
    loop, _, _ = _loop(
        fake_time, [httpx.ReadError("connection reset"), httpx.Response(202, json={})]
    )

    assert loop.exchange(_request()).ambiguous == 1


def test_a_connection_never_made_is_not_ambiguous(fake_time: FakeSleep) -> None:
    loop, _, _ = _loop(fake_time, [httpx.ConnectError("refused"), httpx.Response(202, json={})])

    answer = loop.exchange(_request())

    assert answer.status == 202 and answer.ambiguous == 0
    assert fake_time.waits == [0.375]


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_at_once(fake_time: FakeSleep, status: int) -> None:
    loop, _, seen = _loop(fake_time, [httpx.Response(status, text="invalid key")])

    with pytest.raises(AuthError, match=f"HTTP {status}.*invalid key"):
        loop.exchange(_request())

    assert len(seen) == 1 and fake_time.waits == []


def test_a_cloudflare_challenge_is_retried_not_an_auth_error(fake_time: FakeSleep) -> None:
    challenge = httpx.Response(403, headers={"content-type": "text/html"}, text="<html>")
    loop, _, _ = _loop(fake_time, [challenge, httpx.Response(202, json={})])

    assert loop.exchange(_request()).status == 202


def test_timeouts_and_5xx_count_each_attempt_refused_connections_none(
    fake_time: FakeSleep,
) -> None:
    loop, _, _ = _loop(
        fake_time,
        [
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(503),
            httpx.Response(202, json={}),
        ],
    )

    assert loop.exchange(_request()).ambiguous == 2


def test_a_401_after_a_timeout_reports_the_attempt_that_may_have_stored(
    fake_time: FakeSleep,
) -> None:
    loop, _, _ = _loop(fake_time, [httpx.ReadTimeout("timed out"), httpx.Response(401)])

    with pytest.raises(AuthError) as err:
        loop.exchange(_request())

    assert err.value.maybe_processed == 1


# --------------------------------------------------------------------------- contact requests
# A contact run's jobs, polls and lookups take the same loop (end to end through the run, with
# an in-memory Klaviyo behind ``httpx.MockTransport``): the same 429 floor and jitter, the
# injected clocks, and failed attempts that may have been processed counted.

CONTACT_SYNC = """
name: customers_k
source: {table: customers, primary_key: [customer_id], url: "URL"}
destination:
  type: klaviyo_profiles
  api_key: ${KLAVIYO_API_KEY}
  base_url: http://klaviyo.test
  options: {poll_interval_s: 1, max_retries: 1}
mapping:
  identifiers: {email: email}
  contact_properties: {first_name: first_name}
"""


def _contact_run(
    duck: Warehouse,
    state: StateStore,
    runtime: Runtime,
    first_answers: list[httpx.Response],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """A contact run of 3 customers whose first job submissions get ``first_answers``."""
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_test")
    make_customers(duck, 3)
    fake = FakeKlaviyo()  # a job completes at its second poll, one poll interval later

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and first_answers:
            return first_answers.pop(0)
        return fake.handle(request)

    sync = make_sync(CONTACT_SYNC.replace("URL", duck.url))
    return run_contacts(sync, state, runtime=runtime, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "0"}, 0.5),  # a floor: "retry after 0" is no spin
        ({}, 0.5),  # no hint: the first backoff step, at least half a second
        ({"Retry-After": "Sun, 22 Nov 2026 10:00:30 GMT"}, 30.0),  # on the injected wall clock
    ],
    ids=["retry-after-0", "no-hint", "retry-after-date"],
)
def test_a_contact_requests_429_waits_on_the_injected_clocks_with_a_floor_and_jitter(
    duck: Warehouse,
    state: StateStore,
    fake_time: FakeSleep,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str],
    wait: float,
) -> None:
    runtime.wall = lambda: datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC).timestamp()
    limited = httpx.Response(429, headers=headers)

    res = _contact_run(duck, state, runtime, [limited], monkeypatch)

    assert res.delivered == 3 and res.rate_limited == 1
    # The 429's pause (+5% jitter at random=0.5), then the poll interval: every wait on the
    # injected clock.
    assert fake_time.waits == [pytest.approx(wait * 1.05), 1.0]


def test_a_contact_request_that_runs_out_of_retries_counts_attempts_that_may_have_stored(
    duck: Warehouse,
    state: StateStore,
    fake_time: FakeSleep,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [httpx.Response(503), httpx.Response(503)]  # max_retries: 1

    with pytest.raises(RetriesExhausted, match="HTTP 503 persisted after 1 retries") as err:
        _contact_run(duck, state, runtime, answers, monkeypatch)

    assert err.value.maybe_processed == 2  # each 503 may have come after the job was created
    assert fake_time.waits == [0.375]  # one backoff step, on the injected sleep


# --------------------------------------------------------------------------- status and wait rules


@pytest.mark.parametrize(
    "headers,body,expected",
    [
        ({"retry-after": "12"}, b"", 12.0),
        ({"ratelimit-reset": "30"}, b"", 30.0),
        ({"x-sib-ratelimit-reset": "4"}, b"", 4.0),
        ({"x-sib-ratelimit-reset": "4000"}, b"", 4.0),  # reported in ms by some accounts
        ({"x-rate-limit-reset": "9"}, b"", 9.0),
        (
            {},
            b'{"errors":[{"detail":"Request was throttled. Expected available in 3 seconds."}]}',
            3.0,
        ),
        ({}, b"", None),
    ],
)
def test_announced_wait_reads_every_vendor_style(
    headers: dict[str, str], body: bytes, expected: float | None
) -> None:
    assert announced_wait(httpx.Headers(headers), body, lambda: 0.0) == expected


def test_retry_after_as_http_date() -> None:
    headers = httpx.Headers({"retry-after": "Sun, 22 Nov 2026 10:00:30 GMT"})
    now = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC).timestamp()
    assert announced_wait(headers, b"", lambda: now) == pytest.approx(30.0)


def test_classify_status_codes() -> None:
    h = httpx.Headers({})
    codes = (202, 207, 400, 401, 403, 404, 408, 413, 429, 500, 503)
    assert [classify(s, h).value for s in codes] == [
        "answered",
        "answered",
        "answered",
        "auth",
        "auth",
        "answered",
        "retry",
        "answered",
        "rate_limited",
        "retry",
        "retry",
    ]
    assert classify(403, httpx.Headers({"cf-mitigated": "challenge"})) is Verdict.RETRY
    assert window_state(httpx.Headers({"RateLimit-Remaining": "0", "RateLimit-Reset": "5"})) == (
        0.0,
        5.0,
    )


def test_clients_share_one_verifying_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx loads the whole CA bundle for each client by default (~25 ms of CPU): the
    process's clients take one context, made once, and it still verifies."""
    made: list[ssl.SSLContext] = []
    real = httpx.create_ssl_context

    def counting(*a: Any, **k: Any) -> ssl.SSLContext:
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    tls_context.cache_clear()
    try:
        for _ in range(3):
            make_client("https://a.example", 5.0, 2, None).close()
        assert len(made) == 1 and tls_context() is made[0]
        assert made[0].verify_mode == ssl.CERT_REQUIRED and made[0].check_hostname
    finally:
        tls_context.cache_clear()
