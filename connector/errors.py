"""Errors, grouped by what the caller should do.

    ConnectorError
    ├── ConfigError        fix the config file or the environment (CLI exit 2)
    ├── SourceError        fix the warehouse query/table or its connection
    ├── DeliveryError      the run failed; the checkpoint stays at the last delivered row (exit 1)
    │   ├── AuthError      the destination refused the credentials (401/403): fix the key
    │   ├── RequestError   the destination refused the request itself (a header, the API
    │   │                  version, the body shape) or too many rows: fix the config, rerun
    │   └── RetriesExhausted  a transient failure outlived its retries: run again later
    └── StateError         the state store is unreachable or inconsistent

Messages never contain secrets or whole rows.
"""

from __future__ import annotations


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
    """Delivery failed; nothing past the last delivered row was checkpointed."""


class AuthError(DeliveryError):
    """The destination rejected the credentials (HTTP 401/403)."""


class RequestError(DeliveryError):
    """The destination refused the request itself, not its items (a header such as Klaviyo's
    revision, the API version, the body shape, the same answer for every event alone), or the
    run's API-side rejects passed the circuit breaker's ratio. No row of the refused requests
    is recorded as a reject and the checkpoint stays before them.

    ``stored_nothing`` is True when the vendor kept nothing of the failed batch (a 4xx before
    any part of it was accepted), so the run may forget that batch instead of counting its
    rows as possibly duplicated on the next run.
    """

    def __init__(self, message: str, stored_nothing: bool = True) -> None:
        super().__init__(message)
        self.stored_nothing = stored_nothing


class RetriesExhausted(DeliveryError):
    """A transient failure (429, 5xx, timeout, reset) persisted past the retry budget."""


class StateError(ConnectorError):
    """The state store could not be read or written."""
