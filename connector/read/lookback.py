"""The lookback window: how far behind the checkpoint an incremental run reads again.

A cursor the database fills (``DEFAULT now()``, a ``bigserial``, a load time set before the
loading transaction commits) gets its value when the row is written, but the row becomes
visible only when its transaction commits: a row can appear *behind* a checkpoint that already
passed it. Each incremental run therefore also reads the rows whose cursor lies in
``(checkpoint − window, checkpoint]`` and sends only those not delivered (or rejected) before;
the run's ``plan.ledger.Ledger`` knows which by their ``row_hash`` (``store.window``).

The window by cursor kind (``source.lookback``): a duration for a timestamp cursor (default
1 h), whole days for a date cursor (default 1 day), a count of cursor values for an integer or
decimal cursor (default 10,000); ``0`` or ``off`` turns it off.

A row inside the window is known by its cursor value *and* primary key (``row_hash``): a row
updated or deleted and re-inserted with a new cursor value inside the window is a new row and
is sent; the same key with the same cursor value is the row already handled.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..config.sections import LOOKBACK_DURATION
from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError

DEFAULT_TIME = "1h"
DEFAULT_DAYS = 1
DEFAULT_COUNT = 10_000
#: A late row whose cursor lies in this oldest share of the window warns: a row a little
#: later still would have been missed.
EDGE_SHARE = 0.1

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_KINDS = frozenset({"timestamptz", "timestamp"})
_COUNT_KINDS = frozenset({"integer", "number"})


@dataclass(frozen=True)
class Lookback:
    """The window of one sync's cursor: ``span`` behind the checkpoint's cursor value."""

    kind: str  # the cursor's kind: timestamptz, timestamp, date, integer or number
    span: timedelta | int  # a duration (time and date cursors) or a count of cursor values
    text: str  # as configured or defaulted, for messages: "1h", "10000", "1 day"

    def floor(self, cursor: Any) -> Any:
        """The window's far edge for a checkpoint at ``cursor``: rows with a cursor above it
        are read again (the edge itself is not)."""
        if isinstance(self.span, timedelta):
            return cursor - self.span
        if isinstance(cursor, Decimal):
            return cursor - Decimal(self.span)
        return cursor - self.span

    def number(self, value: Any) -> int:
        """``value`` as an integer that orders as the cursor does (microseconds, days or the
        value rounded down): what the window table prunes by."""
        return cursor_number(value)

    def near_edge(self, value: Any, checkpoint: Any) -> bool:
        """Whether a late row at cursor ``value`` lies in the oldest ``EDGE_SHARE`` of the
        window behind ``checkpoint`` (the window may be too short)."""
        lo = cursor_number(self.floor(checkpoint))
        hi = cursor_number(checkpoint)
        return cursor_number(value) - lo <= EDGE_SHARE * (hi - lo)


def cursor_number(value: Any) -> int:
    """A cursor value as an integer in the same order: microseconds since the epoch for a
    timestamp (naive ones as written), the day number of a date, an integer as it is, a
    decimal rounded down."""
    if isinstance(value, datetime):
        base = _EPOCH_UTC if value.tzinfo is not None else _EPOCH
        delta = value - base
        return int(delta // timedelta(microseconds=1))
    if isinstance(value, date):
        return value.toordinal()
    if isinstance(value, Decimal):
        return math.floor(value)
    return int(value)


def fits(number: int) -> bool:
    """Whether a cursor number fits the window table's 64-bit column. A cursor beyond it (a
    HUGEINT, a decimal of more than 18 digits) has no window: ``KeysetSQL.widen`` reads after
    the checkpoint as without one."""
    return -(2**63) <= number < 2**63


def _seconds(text: str) -> int:
    match = LOOKBACK_DURATION.fullmatch(text)
    assert match is not None  # the config model checked the form
    return int(match.group(1)) * _UNITS[match.group(2)]


def lookback_for(sync: SyncConfig, kind: str) -> Lookback | None:
    """The sync's window for a cursor of ``kind``, or None when it is off (``lookback: 0``)
    or the cursor kind has no window. Raises ``ConfigError`` when the configured value does
    not fit the cursor (a count for a timestamp, a duration for an integer)."""
    value = sync.source.lookback
    if value == 0:
        return None
    where = f"{sync.source_path or sync.name}: source.lookback"
    col = sync.source.cursor
    if kind in _TIME_KINDS:
        if isinstance(value, int):
            raise ConfigError(
                f"{where}: {value} is a count, but the cursor {col} is a {kind}: write a "
                "duration like 1h or 30m (or off)"
            )
        text = value or DEFAULT_TIME
        return Lookback(kind, timedelta(seconds=_seconds(text)), text)
    if kind == "date":
        if value is None:
            return Lookback(kind, timedelta(days=DEFAULT_DAYS), f"{DEFAULT_DAYS}d")
        seconds = value * 86400 if isinstance(value, int) else _seconds(value)
        if seconds % 86400:
            raise ConfigError(
                f"{where}: {value!r} is not whole days, but the cursor {col} is a date: "
                "write days like 1d or 2 (or off)"
            )
        return Lookback(kind, timedelta(seconds=seconds), str(value))
    if kind in _COUNT_KINDS:
        if isinstance(value, str):
            raise ConfigError(
                f"{where}: {value!r} is a duration, but the cursor {col} is {kind}: write a "
                "count of cursor values like 10000 (or off)"
            )
        count = DEFAULT_COUNT if value is None else value
        return Lookback(kind, count, str(count))
    return None


def row_hash(pos: tuple[Any, ...]) -> int:
    """A signed 64-bit hash of a row's ``(cursor, *primary key)`` values: how the window
    table knows a row it handled (two rows share one with odds of about 2⁻⁶⁴ a pair)."""
    text = "\x1f".join("\x00" if v is None else str(v) for v in pos)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
