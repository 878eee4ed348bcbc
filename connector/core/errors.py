"""Errors, grouped by what the caller should do.

    ConnectorError
    ├── ConfigError        fix the config file or the environment (CLI exit 2)
    ├── SourceError        fix the warehouse query/table or its connection
    ├── DeliveryError      the run failed; the checkpoint stays at the last delivered row (exit 1)
    │   ├── AuthError      the destination refused the credentials (401/403): fix the key
    │   ├── RequestError   the destination refused the request itself (a header, the API
    │   │                  version, the body shape) or too many rows: fix the config, rerun
    │   └── RetriesExhausted  a transient failure outlived its retries: run again later
    └── StateError         the state store is unreachable, locked, unwritable (exit 1)
        ├── LeaseHeld      another run of the same sync and scope holds its lease (exit 1)
        └── BrokenStoreError (connector.migrate) the store exists but cannot be read:
                           restore a backup or `connector state reset --broken-store` (exit 1)

Messages never contain secrets or whole rows.
"""

from __future__ import annotations

import re
from urllib.parse import unquote


class ConnectorError(Exception):
    """Base class of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """A sync config (or the environment it references) is invalid.

    ``problems`` lists every problem found, each already prefixed with the file and field.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SourceError(ConnectorError):
    """The warehouse query failed or returned columns that do not fit the mapping."""


class DeliveryError(ConnectorError):
    """Delivery failed; nothing past the last delivered row was checkpointed.

    ``stored_nothing`` is True when the vendor kept nothing of the failed batch (no part of it
    was accepted and no attempt may have been processed: a 401/403, a 4xx about the request,
    429s or refused connections only), so the run forgets that batch instead of leaving it
    for the next run to count as possibly duplicated.
    """

    stored_nothing: bool = False
    maybe_processed: int = 0  # (HTTP loop) failed attempts that may have been processed


class AuthError(DeliveryError):
    """The destination rejected the credentials (HTTP 401/403)."""


class RequestError(DeliveryError):
    """The destination refused the request itself, not its items (a header such as Klaviyo's
    revision, the API version, the body shape, the same answer for every event alone), or the
    run's API-side rejects passed the circuit breaker's ratio. No row of the refused requests
    is recorded as a reject and the checkpoint stays before them.
    """

    def __init__(self, message: str, *, stored_nothing: bool = True) -> None:
        super().__init__(message)
        self.stored_nothing = stored_nothing


class RetriesExhausted(DeliveryError):
    """A transient failure (429, 5xx, timeout, reset) persisted past the retry budget."""


class GaveUp(RetriesExhausted):
    """A transient failure not retried because the run had already failed on another request
    (``core.giveup``): a consequence, never the run's error when that other one is known."""


class StateError(ConnectorError):
    """The state store could not be read or written."""


class LeaseHeld(StateError):
    """Another run of the same sync and scope is running (it holds the lease), or this run
    lost its lease; this run sends nothing more."""


# Query parameters that carry credentials (?password=, ?token=, ?api_key=, ?sig=...).
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|key|auth|credential|signature|^sig$|session|cookie", re.IGNORECASE
)
_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^?#]*@)?(?P<rest>.*)$", re.S
)
MASK = "***"


def mask_url(url: str) -> str:
    """A URL safe to show or store: the password of the userinfo (the whole userinfo of an
    http(s) URL) and every credential-bearing query parameter replaced by ``***``."""
    m = _URL.match(url)
    if m is None:
        return url
    out = m["scheme"]
    if m["userinfo"]:
        user, colon, _password = m["userinfo"][:-1].partition(":")
        if colon:
            out += f"{user}:{MASK}@"
        elif m["scheme"].lower().startswith("http"):
            out += f"{MASK}@"  # a lone http userinfo is a token
        else:
            out += f"{user}@"
    rest = m["rest"]
    base, q, query = rest.partition("?")
    if not q:
        return out + rest
    query, hash_, fragment = query.partition("#")
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        parts.append(f"{name}={MASK}" if eq and _SECRET_PARAM.search(unquote(name)) else part)
    return out + base + "?" + "&".join(parts) + hash_ + fragment


def url_secrets(url: str) -> list[str]:
    """The credential values in a URL (raw and percent-decoded), to scrub from driver
    messages that may quote them."""
    found: list[str] = []
    if mask_url(url) == url:
        return found
    m = _URL.match(url)
    assert m is not None
    if m["userinfo"]:
        user, colon, password = m["userinfo"][:-1].partition(":")
        found.append(password if colon else user)
    _base, _q, query = m["rest"].partition("?")
    for part in query.partition("#")[0].split("&"):
        name, eq, value = part.partition("=")
        if eq and _SECRET_PARAM.search(unquote(name)):
            found.append(value)
    return [v for s in found if s for v in {s, unquote(s)}]


def scrub(text: str, url: str) -> str:
    """``text`` with every credential of ``url`` replaced by ``***``."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
