"""Checkpoint and ledger positions as text: ``(cursor, primary key...)`` with every digit kept.

A nanosecond timestamp (a ``pandas.Timestamp``, as Arrow hands out ``timestamp[ns]``) keeps its
nanoseconds, a decimal its text, an integer past 64 bits its digits. A checkpoint that lost a
digit would re-read its last tie group forever.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

Position = tuple[Any, ...]

_FRACTION = re.compile(r"\.(\d{7,})")


def _tag(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"dt": v.isoformat()}  # pandas.Timestamp writes its nanoseconds here
    if isinstance(v, date):
        return {"d": v.isoformat()}
    if isinstance(v, Decimal):
        return {"dec": str(v)}
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        return {"int": str(v)}  # JSON numbers past 64 bits are not portable
    return v


def _untag(v: Any) -> Any:
    if isinstance(v, dict):
        if "dt" in v:
            return _parse_datetime(v["dt"])
        if "d" in v:
            return date.fromisoformat(v["d"])
        if "dec" in v:
            return Decimal(v["dec"])
        if "int" in v:
            return int(v["int"])
    return v


def _parse_datetime(text: str) -> datetime:
    """ISO text back to a datetime; more than 6 fractional digits need a ``pandas.Timestamp``
    (``datetime.fromisoformat`` would drop them)."""
    if _FRACTION.search(text):
        import pandas as pd

        ts: datetime = pd.Timestamp(text)
        return ts
    return datetime.fromisoformat(text)


def encode_position(pos: Sequence[Any]) -> str:
    """A position as JSON text, every value tagged with its type and full precision."""
    return orjson.dumps([_tag(v) for v in pos]).decode()


def decode_position(text: str) -> Position:
    """The position ``encode_position`` wrote, with the same types and digits."""
    return tuple(_untag(v) for v in orjson.loads(text))
