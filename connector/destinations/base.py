"""The destination family, and the shapes the framework passes around.

``Destination`` is the abstract base of every endpoint module: its config ``type`` and model,
its ``Vendor``, its base URL, identifiers, request headers, documented ``Limits`` and the rate
it is paced at. Two kinds derive from it (``kind``, which the registry, config, the demo,
``validate`` and Dagster read):

- ``event_endpoint.EventDestination``: a row is an occurrence; the destination declares its
  limits, turns canonical events into request bodies and a response into per-event outcomes
  (``Item``, ``Request``, ``Outcome``, ``Learned`` below); batching, retries and pacing are the
  framework's (``plan``, ``deliver``);
- ``contact_endpoint.ContactDestination``: a row is a state; the destination turns a changed
  row into a profile payload and drives the vendor's import jobs through the one HTTP client
  it is given (``deliver.http_loop.HttpLoop``: pacing, retries and 429 waits are its).

A destination never batches, retries or paces on its own.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import orjson

from ..core.options import CommonOptions, DestinationSettings, RateLimit
from ..model.events import Events
from ..model.jsonfrag import json_default

JSON_OPTS = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
# A destination class is generic over its config model (covariant: a registry of
# ``type[Destination[DestinationSettings]]`` holds every one of them).
ConfigT = TypeVar("ConfigT", bound=DestinationSettings, covariant=True)


def dumps(value: Any) -> bytes:
    """orjson, copied into an exact-size bytes object: orjson's own result keeps a ~4 KB
    buffer alive per call, which would make memory grow 20x with events in flight."""
    return bytes(memoryview(orjson.dumps(value, default=json_default, option=JSON_OPTS)))


@dataclass(frozen=True)
class Vendor:
    """The company behind an API: one per vendor module (``brevo``, ``omnisend``, ``klaviyo``).

    ``name`` is the Dagster group, kind (icon) and the first part of the concurrency pool of
    every sync sending to this vendor; ``title`` names it in messages."""

    name: str
    title: str


# What a destination writes: events (a row is an occurrence) or contacts (a row is a state).
DestinationKind = Literal["events", "contacts"]


@dataclass(frozen=True)
class Limits:
    """Documented limits of one endpoint (each destination cites its source)."""

    max_items: int  # events per request, or profiles per import job
    max_bytes: int  # encoded request body (of an import job: the whole job)
    rate: RateLimit  # documented pacing
    concurrency: int = 1  # requests in flight by default
    dedup: bool = False  # the destination drops a re-sent event (so retries cannot duplicate)


class Item:
    """One event, encoded and ready to batch; remembers the source row it came from.

    ``payload`` is the event's JSON; ``group`` the JSON of what the event is grouped under in
    a request body (Klaviyo: its profile), else empty; ``lesson`` what the destination account
    learns if this event is delivered (Omnisend v4: its property types), for ``interpret`` to
    hand back in the ``Outcome``."""

    __slots__ = ("events", "group", "lesson", "payload", "row", "size")

    def __init__(
        self,
        events: Events,
        row: int,
        payload: bytes,
        size: int,
        *,
        group: bytes = b"",
        lesson: Learned | None = None,
    ) -> None:
        self.events = events
        self.row = row
        self.payload = payload
        self.size = size
        self.group = group
        self.lesson = lesson

    @property
    def key(self) -> str:
        """The row's primary key as text (the reject and ledger key)."""
        return self.events.keys[self.row]

    @property
    def dedup_id(self) -> str:
        """The row's dedup id, ``<sync>:<primary key>``, sent to destinations that dedup."""
        return self.events.dedup_ids[self.row]

    def position(self) -> tuple[Any, ...]:
        """Checkpoint position ``(cursor, *pk)`` of the row this item was encoded from."""
        return self.events.position(self.row)


@dataclass
class Request:
    """An HTTP request for a list of items; ``groups`` maps body positions back to items."""

    path: str
    body: bytes
    headers: dict[str, str]
    items: list[Item]
    groups: list[list[int]] = field(default_factory=list)
    variant: str = ""  # which body form was built (Brevo batch: "object" or "array")
    # The variant was asked for by an Outcome (``resend_variant``), not the run's default.
    forced: bool = False


@dataclass(frozen=True)
class Learned:
    """What responses taught about the destination account (the Brevo batch body shape it
    accepts, the Omnisend v4 property types it froze). ``interpret`` returns it as data; the
    run persists it in the transaction that settles the batch and then hands it to the
    destination's ``learn`` on the run's own thread (never from a sender thread)."""

    settings: Mapping[str, str] = field(default_factory=dict)  # account setting -> value
    # event name -> property -> type
    property_types: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.settings or self.property_types)

    def merge(self, other: Learned | None) -> Learned:
        """Both lessons; for one setting or property, ``other`` (the later one) wins."""
        if not other:
            return self
        types = {name: dict(props) for name, props in self.property_types.items()}
        for name, props in other.property_types.items():
            types.setdefault(name, {}).update(props)
        return Learned({**self.settings, **other.settings}, types)


@dataclass
class Outcome:
    """What a response means for each item of the request (indices into ``request.items``)."""

    delivered: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    resend: list[int] = field(default_factory=list)  # send again in a new request
    split: bool = False  # no per-item detail: send the halves separately
    fatal: str | None = None  # the request itself was refused: fail the run with this message
    # Build the re-sent items as this body variant (Brevo batch: the other shape).
    resend_variant: str | None = None
    learned: Learned | None = None  # what the response taught; persisted at settle

    @property
    def switch_shape(self) -> bool:
        """Brevo batch: the re-send uses the other body shape."""
        return self.resend_variant is not None


class AccountMemory(Protocol):
    """The part of the state store a destination may read: what earlier runs learned about
    its account (``StateStore`` provides it). Writing is the run's job (``Learned``)."""

    def account_setting(self, account: str, name: str) -> str | None:
        """The value an earlier run confirmed for setting ``name`` of this account, or None."""

    def property_types(self, account: str, event_name: str) -> dict[str, str]:
        """Property name → type the vendor froze for ``event_name`` on this account (or empty)."""


class Destination(ABC, Generic[ConfigT]):
    """The base of every destination: what the registry, config, pacing, ``validate`` and
    Dagster read, for either kind. Subclass ``EventDestination`` or ``ContactDestination``,
    not this class.

    A destination module declares, next to its class: its options model, its config model
    (``type: Literal[...]``, the ``config_model`` here), its vendor, its limits and its
    capabilities; one line in ``registry`` makes it known to config, CLI, demo and Dagster.
    """

    type: ClassVar[str]
    config_model: ClassVar[builtins.type[DestinationSettings]]
    vendor: ClassVar[Vendor]
    kind: ClassVar[DestinationKind]
    identifier_fields: ClassVar[tuple[str, ...]]
    default_base_url: ClassVar[str]
    limits: ClassVar[Limits]
    # The destination type whose rate budget this one spends, where the vendor documents one
    # limit for several endpoints (Omnisend: 400/min per store); None: its own.
    rate_account: ClassVar[str | None] = None
    secret_headers: ClassVar[tuple[str, ...]] = ()  # masked in previews
    deprecation: ClassVar[str | None] = None  # shown by `connector validate` when set
    # Mapping blocks whose values must be scalars: a dotted name (which nests) is a config error.
    flat_blocks: ClassVar[tuple[str, ...]] = ()
    # Set where event-property dots flatten into this separator instead of nesting.
    flatten_separator: ClassVar[str | None] = None

    def __init__(self, config: ConfigT, api_key: str, sync_name: str) -> None:
        self.config = config
        self.options: CommonOptions = config.options
        self.api_key = api_key
        self.sync_name = sync_name
        self.base_url: str = config.base_url or self.default_base_url

    @classmethod
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with a (raw) mapping block that only this destination can see."""
        return []

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """The request headers, the API key among them."""

    def masked_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with secrets masked, for preview output."""
        return {
            k: (_mask(v) if k.lower() in self.secret_headers else v) for k, v in headers.items()
        }

    def rate(self) -> RateLimit:
        """The pace of this destination's requests: ``options.rate_limit``, else the
        documented one (``limits.rate``)."""
        return self.options.rate_limit or self.limits.rate


def _mask(value: str) -> str:
    scheme, _, _token = value.rpartition(" ")
    return f"{scheme} ****" if scheme else "****"
