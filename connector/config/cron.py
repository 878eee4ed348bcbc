"""Checking a 5-field cron expression field by field, so a bad schedule fails ``validate``
naming the field and its range instead of at Dagster's load (or never)."""

from __future__ import annotations

import re

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names allowed instead of numbers)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_PART = re.compile(r"^(\*|(?P<a>\w+)(-(?P<b>\w+))?)(/(?P<step>\d+))?$")


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a valid cron expression (None: it is)."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() in _MACROS:
            return None
        return f"{text!r} is not a cron macro; use one of {', '.join(sorted(_MACROS))}"
    fields = text.split()
    if len(fields) != 5:
        return "must be a 5-field cron expression like '0 * * * *'"
    for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for part in value.split(","):
            why = _part_problem(part, low, high, names)
            if why:
                allowed = f"{low}-{high}, '*', lists, ranges and steps"
                return f"{name} field {value!r}: {why} (allowed: {allowed})"
    return None


def _number(token: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    if token.isdigit():
        n = int(token)
        return n if low <= n <= high else None
    lowered = token.lower()
    if lowered in names:
        return names.index(lowered) + (1 if low == 1 else 0)
    return None


def _part_problem(part: str, low: int, high: int, names: tuple[str, ...]) -> str:
    m = _PART.match(part)
    if m is None:
        return f"{part!r} is not a value, range or step"
    if m.group("step") is not None and int(m.group("step")) == 0:
        return "a step of 0"
    for token in (m.group("a"), m.group("b")):
        if token is not None and _number(token, low, high, names) is None:
            return f"{token!r} is out of range"
    a, b = m.group("a"), m.group("b")
    first = _number(a, low, high, names) if a is not None else None
    last = _number(b, low, high, names) if b is not None else None
    if first is not None and last is not None and first > last:
        return f"the range {a}-{b} runs backwards"
    return ""
