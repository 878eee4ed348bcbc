"""The type rules of a sync's columns, given the source's column kinds (``Reader.column_types``).

One function, used by ``validate`` and by every run before it reads a row, so both refuse the
same columns with the same message.
"""

from __future__ import annotations

from ..config.sections import ColumnRef
from ..config.sync_file import SyncConfig

CURSOR_KINDS = frozenset({"timestamptz", "timestamp", "date", "integer", "number"})
EVENT_TIME_KINDS = frozenset({"timestamptz", "timestamp", "date"})
_CURSOR_WHY = {
    "string": "text orders '10' before '9', so rows after a checkpoint would be skipped",
    "float": "a float cannot hold every value exactly, so a checkpoint may land between rows",
    "boolean": "two values cannot order the rows",
}


def type_problems(
    sync: SyncConfig, types: dict[str, str], warnings: list[str] | None = None
) -> list[str]:
    """The type rules of the configured columns, given the source's column kinds: one
    function, used by ``validate`` and by every run before it reads a row (``check_columns``),
    so both refuse the same columns with the same message. Columns missing from ``types``
    and kinds this module does not know (``other``) are not judged here. Columns whose rows
    may not all fit their field (text for a number or a time: each row that does not parse
    is a reject) are ``warnings``, which ``validate`` prints."""
    where = sync.source_path or sync.name
    src, m = sync.source, sync.mapping
    problems: list[str] = []
    kind = types.get(src.cursor) if src.cursor else None  # contact syncs: optional
    if kind is not None and kind != "other" and kind not in CURSOR_KINDS:
        why = _CURSOR_WHY.get(kind)
        problems.append(
            f"{where}: source.cursor must be a timestamp, date, integer or decimal column "
            f"({src.cursor} is {kind}" + (f": {why})" if why else ")")
        )
    kind = types.get(m.event_time) if m.event_time else None
    if kind == "string":
        if warnings is not None:
            warnings.append(
                f"{where}: mapping.event_time: column {m.event_time} is text; rows whose text "
                "is not an ISO 8601 time become rejects"
            )
    elif kind is not None and kind != "other" and kind not in EVENT_TIME_KINDS:
        problems.append(
            f"{where}: mapping.event_time must be a timestamp or date column "
            f"({m.event_time} is {kind})"
        )
    for field, col in m.identifiers.items():
        kind = types.get(col)
        if kind in {"timestamptz", "timestamp", "date", "json", "boolean"}:
            problems.append(
                f"{where}: mapping.identifiers.{field}: column {col} is {kind}; "
                "identifiers must be text or integer"
            )
    return problems + _fit_problems(sync, types, where, warnings)


def _fit_problems(
    sync: SyncConfig, types: dict[str, str], where: str, warnings: list[str] | None
) -> list[str]:
    """Columns whose type cannot fit their field: every row would be a reject (a problem), or
    some rows may be (a warning)."""
    m = sync.mapping
    problems: list[str] = []
    texts = {f"identifiers.{f}": c for f, c in m.identifiers.items()}
    if isinstance(m.event_name, ColumnRef):
        texts["event_name"] = m.event_name.column
    if isinstance(m.value_currency, ColumnRef):
        texts["value_currency"] = m.value_currency.column
    for field, col in texts.items():
        if types.get(col) == "nested":
            problems.append(
                f"{where}: mapping.{field}: column {col} is a struct/list/map, which has no "
                "text form; map a text column"
            )
    kind = types.get(m.value) if m.value else None
    if kind == "string":
        if warnings is not None:
            warnings.append(
                f"{where}: mapping.value: column {m.value} is text; rows whose text is not a "
                "number (like 18.99) become rejects"
            )
    elif kind in {"timestamptz", "timestamp", "date", "json", "boolean", "nested"}:
        problems.append(
            f"{where}: mapping.value: column {m.value} is {kind}; value needs a numeric column"
        )
    return problems
