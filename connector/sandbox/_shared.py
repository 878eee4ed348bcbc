"""Helpers shared by the vendor modules: the reply type, JSON bodies and RFC 3339 parsing."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

JSON = "application/json"


@dataclass(slots=True)
class Reply:
    """What a vendor handler decided: the HTTP answer plus the events it accepted.

    ``events`` are stored by the server (after cross-request dedup by ``dedup_keys`` when that
    list is given, one key or None per event); ``sink_count`` counts events accepted in sink
    mode, where nothing is stored. ``event_count`` is how many events the request carried.
    """

    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    dedup_keys: list[Hashable | None] | None = None
    event_count: int = 0
    sink_count: int = 0
    throttled: bool = False


class Rejected(Exception):
    """Raised inside a handler to answer early with ``reply``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def json_reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(obj), JSON, dict(headers or {}))


def empty_reply(status: int) -> Reply:
    return Reply(status, b"", None)


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def parse_json(
    body: bytes,
    content_type: str | None,
    accepted_types: tuple[str, ...],
    on_bad_type: Callable[[str], Reply],
    on_bad_json: Callable[[], Reply],
) -> Any:
    """Check the media type, then decode the body; raise :class:`Rejected` on either failure."""
    kind = media_type(content_type)
    if kind not in accepted_types:
        raise Rejected(on_bad_type(kind))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected(on_bad_json()) from None


def json_type(value: Any) -> str:
    """The JSON type word Go's encoding/json uses in its error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(value: Any) -> datetime | None:
    """An aware datetime for an RFC 3339 date-time with offset (``Z`` or ``±HH:MM``), else None."""
    if not isinstance(value, str):
        return None
    m = _RFC3339.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, sign, off_h, off_m = m.groups()
    tz = UTC
    try:
        if sign is not None:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            if offset >= timedelta(hours=24):
                return None
            tz = timezone(offset if sign == "+" else -offset)
        micro = int((frac or "0")[:6].ljust(6, "0"))
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        return None
