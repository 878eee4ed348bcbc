"""What a sandbox endpoint is and what its handlers may use: :class:`Endpoint` and
:class:`Context` (a leaf, so ``routes`` and ``contact_routes`` can both import it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus

from connector.sandbox._shared import Reply
from connector.sandbox.contacts import ContactStore
from connector.sandbox.omnisend import SchemaRegistry
from connector.sandbox.options import SandboxOptions
from connector.sandbox.ratelimit import Decision


@dataclass
class Context:
    """What handlers may use besides the request: options, the Omnisend v4 schemas and the
    contact endpoints' stored profiles and jobs."""

    options: SandboxOptions
    schemas: SchemaRegistry
    contacts: ContactStore = field(default_factory=ContactStore)


@dataclass(frozen=True)
class Endpoint:
    """One vendor endpoint the sandbox serves: how it authenticates, handles a body, reports rate
    limits and shapes error bodies."""

    kind: str
    authenticate: Callable[[Message, SandboxOptions], Reply | None]
    handle: Callable[[bytes, Message, Context], Reply]
    rate_headers: Callable[[Decision], dict[str, str]]
    throttled: Callable[[Decision], Reply]
    fault_body: Callable[[int, str], tuple[bytes, str]]

    def fault_reply(self, status: int) -> Reply:
        """The vendor-shaped body for an injected status without its own body."""
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        body, content_type = self.fault_body(status, reason)
        return Reply(status, body, content_type)
