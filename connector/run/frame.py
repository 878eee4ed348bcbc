"""A pandas view of what a sync would send, for notebooks: one row per event.

pandas is imported only when a frame is built, so the CLI and the Dagster code location never
load it. Like ``connector preview`` this reads the first rows and plans them with the run's
chunk planner (mapping, the destination's rules, the in-run duplicate-key check, the encoder's
size rules); it sends nothing, writes nothing and needs no API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config.sync_file import SyncConfig
from ..deliver.factory import make_event_destination
from ..map.mapper import Mapper
from ..model.events import Events, Props, to_python
from ..plan.planner import ChunkPlanner
from ..read.source import Reader

if TYPE_CHECKING:
    import pandas as pd


class _SeenKeys:
    """The duplicate-key check of a preview: a set is enough for its few rows."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def duplicates(self, keys: list[str]) -> list[int]:
        """Indexes into ``keys`` of the keys seen before, in order."""
        out = []
        for i, key in enumerate(keys):
            if key in self.seen:
                out.append(i)
            self.seen.add(key)
        return out


def preview_frame(
    sync: SyncConfig, limit: int = 5, warehouse_url: str | None = None
) -> pd.DataFrame:
    """The first ``limit`` source rows as the events a run would send, one row per event.

    Columns: ``key`` (primary key text), ``dedup_id``, ``event_name``, ``event_time`` (RFC 3339
    text as sent), ``identifiers.<name>``, ``value`` / ``value_currency`` when mapped,
    ``event_properties.<name>`` and ``contact_properties.<name>`` (dotted names as mapped), and
    ``reject``: why the row would be rejected instead of sent (None when it would be sent).

    Every column has dtype ``object`` and holds the values the connector sends, exactly:
    DECIMAL and JSON numbers as ``Decimal``, integers of any width as ``int``, times as text;
    a NULL (an omitted property) is None. Convert explicitly if you want floats.

    Raises ``SourceError`` when the warehouse cannot be read, ``ImportError`` without pandas.
    """
    import pandas as pd

    planner = ChunkPlanner(make_event_destination(sync, resolve_secret=False), _SeenKeys())
    mapper = Mapper(sync)
    columns: dict[str, list[Any]] = {}
    with Reader(sync, warehouse_url) as reader:
        for chunk in reader.pages(None, None, limit):
            events = mapper.map(chunk)
            _append(columns, _event_columns(events, planner.plan(events).reasons))
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})


def _event_columns(events: Events, reasons: dict[int, str]) -> dict[str, list[Any]]:
    """One chunk's events as named columns of Python values (row i of each is event i)."""
    cols: dict[str, list[Any]] = {
        "key": list(events.keys),
        "dedup_id": list(events.dedup_ids),
        "event_name": events.names.to_pylist(),
        "event_time": events.times.to_pylist(),
    }
    for name, arr in events.identifiers.items():
        cols[f"identifiers.{name}"] = arr.to_pylist()
    if events.value is not None:
        cols["value"] = events.value.to_pylist()
    if events.value_currency is not None:
        cols["value_currency"] = events.value_currency.to_pylist()
    cols.update(_prop_columns("event_properties", events.event_props))
    cols.update(_prop_columns("contact_properties", events.contact_props))
    cols["reject"] = [reasons.get(i) for i in range(events.n)]
    return cols


def _prop_columns(prefix: str, props: Props) -> dict[str, list[Any]]:
    return {
        f"{prefix}.{name}": to_python(
            arr, props.zone, is_json=name in props.json_columns, column=name, reasons={}
        )
        for name, arr in props.columns.items()
    }


def _append(into: dict[str, list[Any]], chunk: dict[str, list[Any]]) -> None:
    """Add a chunk's columns; every chunk of a sync has the same columns in the same order."""
    for name, values in chunk.items():
        into.setdefault(name, []).extend(values)
