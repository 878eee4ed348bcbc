"""Schema drift: a stored checkpoint whose values no longer fit the source's key columns.

A checkpoint holds the ``(cursor, primary key...)`` values of the last delivered row, typed
(``store.positions``). When the cursor is switched to a column of another type (an integer id
for a timestamp) or a key column's type changes (int → varchar), the next run would compare
the old values with the new column and fail with the warehouse's own error (DuckDB: "Binder
Error: Cannot compare BIGINT and TIMESTAMP") — on every run, with no word on what to do.
``drift_problems`` compares the kinds before any query uses the checkpoint, so the run stops
with a config error (exit 2) naming the column, both types and the two ways out.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

_TIMES = frozenset({"timestamptz", "timestamp", "date"})
_NUMBERS = frozenset({"integer", "number", "float"})


def value_kind(value: Any) -> str | None:
    """The kind of column a stored position value came from (None: not judged)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    if isinstance(value, int | Decimal | float):
        return "integer" if isinstance(value, int) else "number"
    if isinstance(value, str):
        return "string"
    return None


def _fits(stored: str, column: str) -> bool:
    """Whether a value of kind ``stored`` compares with a column of kind ``column``."""
    if column in {"other", "json", "nested"}:
        return True  # kinds this module does not know (uuid, ...): the warehouse decides
    if stored in {"timestamp", "date"}:
        return column in _TIMES
    if stored in {"integer", "number"}:
        return column in _NUMBERS
    return stored == column


_LABEL = {
    "timestamp": "a timestamp",
    "date": "a date",
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "boolean": "a boolean",
}


def drift_problems(
    where: str,
    sync: str,
    scope: str,
    columns: list[tuple[str, str]],
    types: dict[str, str],
    position: tuple[Any, ...],
) -> list[str]:
    """One message per key column whose type no longer fits the value the checkpoint of
    ``(sync, scope)`` holds for it. ``columns``: (config field, column) of the cursor and
    each primary key column, in position order; ``types``: the source's column kinds."""
    problems = []
    for (field, col), value in zip(columns, position, strict=False):
        stored, kind = value_kind(value), types.get(col)
        if stored is None or kind is None or _fits(stored, kind):
            continue
        reset = f"connector state reset {sync}" + (
            "" if scope == "incremental" else f" --scope {scope}"
        )
        problems.append(
            f"{where}: {field}: column {col} is {kind} now, but the checkpoint of scope "
            f"{scope!r} holds {_LABEL.get(stored, stored)} ({value!s:.60}) from when it was "
            f"{stored}: the column's type changed (or {field} names another column) since "
            f"the last run. Either cast the column back to its old type in source.query "
            f"(e.g. CAST({col} AS <old type>) AS {col}), or start the sync over with "
            f"`{reset}` (the next run reads, and sends, every row again)"
        )
    return problems
