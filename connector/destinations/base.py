"""What every destination module provides, and the shapes the framework passes around.

A destination declares its limits and turns canonical events into request bodies, and a
response into per-event outcomes. The framework (``batching``, ``delivery``, ``sync``) enforces
the limits and owns batching, retries and pacing; a destination never re-implements them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..config import RateLimit
from ..jsonfrag import json_default
from ..mapping import Events

JSON_OPTS = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """orjson, copied into an exact-size bytes object: orjson's own result keeps a ~4 KB
    buffer alive per call, which would make memory grow 20x with events in flight."""
    return bytes(memoryview(orjson.dumps(value, default=json_default, option=JSON_OPTS)))


@dataclass(frozen=True)
class Limits:
    """Documented limits of one endpoint (each destination cites its source)."""

    max_events: int  # events per request
    max_bytes: int  # encoded request body
    concurrency: int  # requests in flight by default
    rate: RateLimit  # documented pacing
    dedup: bool  # the destination drops a re-sent event (so retries cannot duplicate)


class Item:
    """One event, encoded and ready to batch; remembers the source row it came from."""

    __slots__ = ("events", "payload", "row", "size")

    def __init__(self, events: Events, row: int, payload: Any, size: int) -> None:
        self.events = events
        self.row = row
        self.payload = payload
        self.size = size

    @property
    def key(self) -> str:
        return self.events.keys[self.row]

    @property
    def dedup_id(self) -> str:
        return self.events.dedup_ids[self.row]

    def position(self) -> tuple[Any, ...]:
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


@dataclass
class Outcome:
    """What a response means for each item of the request (indices into ``request.items``)."""

    delivered: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    resend: list[int] = field(default_factory=list)  # send again in a new request
    split: bool = False  # no per-item detail: send the halves separately
    fatal: str | None = None  # the request itself was refused: fail the run with this message
    switch_shape: bool = False  # Brevo batch: retry with the other body shape


class Destination:
    """Base class: subclasses set the class attributes and implement the four methods."""

    type: ClassVar[str]
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

    def __init__(self, config: Any, api_key: str, sync_name: str) -> None:
        self.config = config
        self.options = config.options
        self.api_key = api_key
        self.sync_name = sync_name
        self.base_url: str = config.base_url or self.default_base_url

    def attach(self, state: Any, account: str) -> None:
        """Called once per run before any request: the run's state store and an account id
        (no secret in it), for destinations that learn from what they sent (Omnisend v4)."""

    # -- config-time checks -------------------------------------------------------------
    @classmethod
    def check_mapping(cls, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with a (raw) mapping block that only this destination can see."""
        return []

    # -- per chunk ----------------------------------------------------------------------
    def validate(self, events: Events) -> dict[int, str]:
        """Rows that break a documented rule → reason. The rest go on."""
        raise NotImplementedError

    def encode(self, events: Events, rows: list[int]) -> tuple[list[Item], dict[int, str]]:
        """Encode valid rows; size rules that need the encoded bytes may still reject."""
        raise NotImplementedError

    # -- per request --------------------------------------------------------------------
    def request_overhead(self, count: int) -> int:
        """Bytes a request adds around ``count`` items (for the byte limit)."""
        return 64 + count

    def build(self, items: list[Item]) -> Request:
        raise NotImplementedError

    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        """Turn a non-transient response (2xx, 400, 413, other 4xx) into per-item outcomes."""
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def learned(self) -> dict[str, str]:
        """Settings this run confirmed about the account (e.g. the Brevo batch body shape),
        for the run wiring to keep in the state store; read once the run's sending is over."""
        return {}

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
                in_bytes,
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
                v, max_string, max_array, max_depth, f"{where}[{i}]", depth + 1, in_bytes
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
    vendor: str, status: int, message: str, about_request: bool | None = None
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


class SingleEventDestination(Destination):
    """An endpoint that takes one event per request (``limits.max_events == 1``)."""

    vendor: ClassVar[str]  # names the API in reject reasons and errors

    def message(self, status: int, body: bytes) -> str:
        """The vendor's error text from a response body."""
        raise NotImplementedError

    def about_request(self, status: int, body: bytes, message: str) -> bool:
        """Whether an error answer is about the request rather than the event in it."""
        return request_problem(message)

    def request_overhead(self, count: int) -> int:
        return 0

    def build(self, items: list[Item]) -> Request:
        return Request(self.path, items[0].payload, self.auth_headers(), items)

    def interpret(
        self, request: Request, status: int, headers: Mapping[str, str], body: bytes
    ) -> Outcome:
        message = self.message(status, body)
        if 200 <= status < 300:
            return single_outcome(self.vendor, status, message, False)
        return single_outcome(
            self.vendor, status, message, self.about_request(status, body, message)
        )
