"""A destination that is down or refuses the key is not silent (issue 22, item 5).

Every retry is logged at WARNING with its wait and the host (``base_url``'s scheme, host and
port, never a path or a query); a connection error that outlives its retries names the host and
the setting (``destination.base_url``); a 401 names the environment variable that holds the key.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from connector.config.sync_file import RateLimit
from connector.core.errors import AuthError, RetriesExhausted
from connector.deliver.http_loop import HttpLoop, Runtime, Stats, env_var, make_client, origin
from connector.deliver.ratelimit import Pacer
from tests.conftest import FakeSleep

SECRET_PATH = "/v3/contacts/attributes?email=someone@example.com"


def _loop(
    fake_time: FakeSleep, handler: httpx.MockTransport, key_var: str | None = None
) -> HttpLoop:
    runtime = Runtime(fake_time.clock, fake_time.sleep, lambda: 0.5)
    pacer = Pacer(RateLimit(per_second=1000), fake_time.clock, fake_time.sleep)
    client = make_client("https://api.vendor.test:8443/api", 5.0, 2, handler)
    return HttpLoop("omnisend_contacts", client, pacer, runtime, Stats(), 3, 60.0, key_var=key_var)


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_each_retry_is_a_warning_with_wait_and_host(
    fake_time: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    loop = _loop(fake_time, httpx.MockTransport(_refused))
    with (
        caplog.at_level(logging.INFO, logger="connector.delivery"),
        pytest.raises(RetriesExhausted) as err,
    ):
        loop.request("GET", SECRET_PATH)
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3
    assert all(r.levelno == logging.WARNING for r in retries)
    for n, (rec, wait) in enumerate(zip(retries, fake_time.waits, strict=True), start=1):
        text = rec.getMessage()
        assert "https://api.vendor.test:8443" in text
        assert f"retry {n} of 3 in {wait:.1f}s" in text
        assert "/v3/contacts" not in text and "example.com" not in text
    message = str(err.value)
    assert "https://api.vendor.test:8443" in message
    assert "destination.base_url" in message
    assert "/v3/contacts" not in message and "someone" not in message and ":8443/api" not in message


def test_401_names_the_variable_and_the_host_without_a_double_period(
    fake_time: FakeSleep,
) -> None:
    body = b'{"error": "Invalid API key."}'
    loop = _loop(
        fake_time,
        httpx.MockTransport(lambda r: httpx.Response(401, content=body)),
        key_var="OMNISEND_API_KEY",
    )
    with pytest.raises(AuthError) as err:
        loop.request("GET", SECRET_PATH)
    message = str(err.value)
    assert "OMNISEND_API_KEY" in message and "destination.api_key" in message
    assert "https://api.vendor.test:8443" in message
    assert ".." not in message.replace("...", "")
    assert not message.endswith("..")
    assert "someone" not in message


def test_a_server_error_that_persists_names_the_host_not_the_setting(
    fake_time: FakeSleep,
) -> None:
    loop = _loop(fake_time, httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(RetriesExhausted) as err:
        loop.request("GET", SECRET_PATH)
    assert "HTTP 503 persisted after 3 retries (https://api.vendor.test:8443)" in str(err.value)


def test_helpers_keep_names_and_hosts_only() -> None:
    assert env_var("${OMNISEND_API_KEY}") == "OMNISEND_API_KEY"
    assert env_var("${KEY:-x}") == "KEY"
    assert env_var("literal") is None
    assert origin("http://user:pw@127.0.0.1:8089/path?q=1") == "http://127.0.0.1:8089"
    assert origin("https://a.klaviyo.com") == "https://a.klaviyo.com"
