"""What every destination module provides, and the shapes the framework passes around.

A destination declares its limits and turns canonical events into request bodies, and a
response into per-event outcomes. The framework (``batching``, ``delivery``, ``sync``) enforces
the limits and owns batching, retries and pacing; a destination never re-implements them.
"""

from __future__ import annotations

import builtins
import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from typing_extensions import override

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

    max_events: int  # events per request
    max_bytes: int  # encoded request body
    concurrency: int  # requests in flight by default
    rate: RateLimit  # documented pacing
    dedup: bool  # the destination drops a re-sent event (so retries cannot duplicate)


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


class Verdict(enum.Enum):
    """What a response means for the request as a whole (``Outcome.verdict``)."""

    PER_ITEM = "per_item"  # delivered / rejected / resend say it per item
    SPLIT = "split"  # refused whole without per-item detail: send the halves separately
    FATAL = "fatal"  # the request itself was refused: fail the run


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
    def verdict(self) -> Verdict:
        """What the sender does next: fail the run (``FATAL``), send the halves separately
        (``SPLIT``), or settle item by item (``PER_ITEM``)."""
        if self.fatal is not None:
            return Verdict.FATAL
        return Verdict.SPLIT if self.split else Verdict.PER_ITEM

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
    """Base class: subclasses set the class attributes and implement the abstract methods.

    A destination module declares, next to its class: its options model, its config model
    (``type: Literal[...]``, the ``config_model`` here), its vendor, its limits and its
    capabilities; one line in ``registry`` makes it known to config, CLI, demo and Dagster.

    Threads: ``validate``, ``encode``, ``learn`` and ``attach`` run on the run's own thread;
    ``build`` and ``interpret`` on sender threads, so they only read the destination (the
    run's settings and what ``learn`` recorded) and return everything else as data.
    """

    type: ClassVar[str]
    config_model: ClassVar[builtins.type[DestinationSettings]]
    vendor: ClassVar[Vendor]
    kind: ClassVar[DestinationKind] = "events"
    identifier_fields: ClassVar[tuple[str, ...]]
    default_base_url: ClassVar[str]
    path: ClassVar[str]
    limits: ClassVar[Limits]
    supports_object: ClassVar[bool] = False
    supports_value: ClassVar[bool] = False
    secret_headers: ClassVar[tuple[str, ...]] = ()
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

    def attach(self, memory: AccountMemory | None, account: str) -> None:
        """Called once per run before any request: what earlier runs learned about the
        account (read-only) and the account id (no secret in it)."""

    def learn(self, learned: Learned) -> None:
        """The run settled a batch whose responses taught ``learned`` (already persisted):
        use it for the rest of the run. Called on the run's thread."""

    # -- config-time checks -------------------------------------------------------------
    @classmethod
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with a (raw) mapping block that only this destination can see."""
        return []

    # -- per chunk ----------------------------------------------------------------------
    @abstractmethod
    def validate(self, events: Events) -> dict[int, str]:
        """Rows that break a documented rule → reason. The rest go on."""

    @abstractmethod
    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        """Encode valid rows; size rules that need the encoded bytes may still reject."""

    # -- per request --------------------------------------------------------------------
    def request_overhead(self, count: int) -> int:
        """Bytes a request adds around ``count`` items (for the byte limit)."""
        return 64 + count

    @abstractmethod
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        """One request for ``items``; ``variant`` is a body form an ``Outcome`` asked for."""

    @abstractmethod
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        """Turn a non-transient response (2xx, 400, 413, other 4xx) into per-item outcomes.
        Pure: reads the request, the response and the destination, changes nothing."""

    @abstractmethod
    def auth_headers(self) -> dict[str, str]:
        """The request headers, the API key among them."""

    def masked_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with secrets masked, for preview output."""
        return {
            k: (_mask(v) if k.lower() in self.secret_headers else v) for k, v in headers.items()
        }


def _mask(value: str) -> str:
    scheme, _, _token = value.rpartition(" ")
    return f"{scheme} ****" if scheme else "****"


# --------------------------------------------------------------------------- shared checks


def null_mask(arr: pa.Array) -> list[bool]:
    """True where the value is NULL or an empty string."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pc.fill_null(
            pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0)), True
        ).to_pylist()
    return pc.is_null(arr).to_pylist()


def no_identifier_rows(events: Events, fields: tuple[str, ...]) -> list[int]:
    """Rows where every mapped identifier is NULL/empty."""
    present = [events.identifiers[f] for f in fields if f in events.identifiers]
    if not present:
        return list(range(events.n))
    missing = None
    for arr in present:
        m = _null_or_empty(arr)
        missing = m if missing is None else pc.and_(missing, m)
    assert missing is not None
    return _rows(missing)


def _null_or_empty(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pc.fill_null(pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0)), True)
    return pc.is_null(arr)


def _rows(mask: pa.Array) -> list[int]:
    """Indices where the mask is true (only those become Python values)."""
    rows: list[int] = pc.indices_nonzero(mask).to_pylist()
    return rows


def regex_failures(arr: pa.Array, pattern: str) -> list[int]:
    """Rows whose (non-null) string value does not fully match ``pattern``."""
    ok = pc.match_substring_regex(pc.cast(arr, pa.string()), pattern)
    return _rows(pc.and_(pc.invert(pc.fill_null(ok, True)), pc.is_valid(arr)))


def length_failures(arr: pa.Array, max_chars: int) -> list[int]:
    """Row indexes whose value, as text, is longer than ``max_chars`` characters (NULL is not)."""
    return _rows(
        pc.fill_null(pc.greater(pc.utf8_length(pc.cast(arr, pa.string())), max_chars), False)
    )


def walk_limits(
    value: Any,
    max_string: int | None,
    max_array: int | None,
    max_depth: int | None,
    where: str = "",
    depth: int = 1,
    *,
    in_bytes: bool = False,
) -> str | None:
    """First nested-value rule the value breaks (string length, array size, depth).

    ``in_bytes`` counts string lengths in UTF-8 bytes (Klaviyo's "100 KB") instead of
    characters."""
    if isinstance(value, str):
        if max_string is not None and len(value) > max_string // (4 if in_bytes else 1):
            size = len(value.encode("utf-8", "surrogatepass")) if in_bytes else len(value)
            if size > max_string:
                unit = "bytes" if in_bytes else "characters"
                return f"{where or 'value'} is a string of {size} {unit} (max {max_string})"
        return None
    if isinstance(value, dict):
        if max_depth is not None and depth > max_depth:
            return f"{where or 'value'} nests deeper than {max_depth} levels"
        for k, v in value.items():
            r = walk_limits(
                v,
                max_string,
                max_array,
                max_depth,
                f"{where}.{k}" if where else str(k),
                depth + 1,
                in_bytes=in_bytes,
            )
            if r:
                return r
        return None
    if isinstance(value, list):
        if max_array is not None and len(value) > max_array:
            return f"{where or 'value'} is an array of {len(value)} items (max {max_array})"
        if max_depth is not None and depth > max_depth:
            return f"{where or 'value'} nests deeper than {max_depth} levels"
        for i, v in enumerate(value):
            r = walk_limits(
                v, max_string, max_array, max_depth, f"{where}[{i}]", depth + 1, in_bytes=in_bytes
            )
            if r:
                return r
    return None


_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def static_key_problems(
    mapping: Mapping[str, Any], block: str, pattern: re.Pattern[str], rule: str
) -> list[tuple[str, str]]:
    """Config-time check of property names (each dotted segment) against a key rule."""
    out: list[tuple[str, str]] = []
    props = mapping.get(block)
    if isinstance(props, dict):
        for name in props:
            for part in str(name).split("."):
                if not pattern.match(part):
                    out.append((f"mapping.{block}.{name}", f"property name {part!r} {rule}"))
                    break
    return out


# Words of an error about the request rather than its content: the API version or Klaviyo's
# revision, a header, the media type, auth, a body that is not JSON or not the expected shape
# (Go's "cannot unmarshal X into Go value of type T" names the top-level type; a field of one
# event reads "into Go struct field ...", which is about that event).
_REQUEST_WORDS = re.compile(
    r"\b(?:revision|api[ _-]?version|unsupported version|headers?|content[ -]type|media[ -]type"
    r"|api[ _-]?key|unauthori[sz]ed|authenticat\w*|credentials?|access token"
    r"|json parse|parse error|not valid json|invalid json|malformed"
    r"|cannot unmarshal \w+ into go value of type)\b",
    re.IGNORECASE,
)


def request_problem(message: str) -> bool:
    """True when a vendor's error text is about the request itself (version, header, media
    type, auth, JSON syntax or body shape), which no event of it can cause or fix."""
    return bool(_REQUEST_WORDS.search(message))


def request_fix(vendor: str, message: str, fix: str | None = None) -> str:
    """The run-failure text for a refused request: the vendor's words and what to change."""
    fix = fix or (
        "fix the destination options (API version/revision, headers, body shape) or the endpoint"
    )
    return (
        f"{vendor} refused the request itself, not its events: {message[:300]!r}. Nothing was "
        f"recorded as a reject and the checkpoint stays at the last delivered row: {fix}, "
        "then run again"
    )


def single_outcome(
    vendor: str, status: int, message: str, *, about_request: bool | None = None
) -> Outcome:
    """The response to a one-event request: 2xx delivered; 400/413/422 reject that event (the
    content is at fault and nothing was stored) unless the error is about the request itself
    (``about_request``, by default read from the message); any other final status fails the
    run."""
    if 200 <= status < 300:
        return Outcome(delivered=[0])
    if about_request is None:
        about_request = request_problem(message)
    if status in (400, 413, 422) and not about_request:
        return Outcome(rejected={0: f"{vendor} {status}: {message}"[:500]})
    if status in (400, 422):
        return Outcome(fatal=request_fix(f"{vendor} ({status})", message))
    return Outcome(fatal=f"{vendor} answered {status}: {message}"[:500])


class SingleEventDestination(Destination[ConfigT]):
    """An endpoint that takes one event per request (``limits.max_events == 1``)."""

    api_name: ClassVar[str]  # names the API in reject reasons and errors

    @abstractmethod
    def message(self, status: int, body: bytes) -> str:
        """The vendor's error text from a response body."""

    def about_request(self, status: int, body: bytes, message: str) -> bool:
        """Whether an error answer is about the request rather than the event in it."""
        return request_problem(message)

    @override
    def request_overhead(self, count: int) -> int:
        return 0

    @override
    def build(self, items: list[Item], variant: str | None = None) -> Request:
        return Request(self.path, items[0].payload, self.auth_headers(), items)

    @override
    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        message = self.message(status, body)
        if 200 <= status < 300:
            return single_outcome(self.api_name, status, message, about_request=False)
        return single_outcome(
            self.api_name, status, message, about_request=self.about_request(status, body, message)
        )
