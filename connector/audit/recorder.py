"""What one run hands to the audit: every row it settles, column-wise (``Recorder``).

The run shell calls ``delivered``/``rejected``/``handled`` as rows settle; the rows collect as
Arrow arrays (an event batch's keys are taken from the chunk's Arrow columns, no
Python object per row) until the unit settles: ``take`` hands them to the settle transaction
as one outbox row (an Arrow IPC stream), ``commit`` writes them in a transaction of their own.
At the end (``finish``) the outbox goes to the warehouse (``writer``); a failure there is a
warning, never a failed run.
"""

from __future__ import annotations

import array
import itertools
import operator
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from ..config.sync_file import SyncConfig
from ..core.errors import mask_url
from ..core.logcontext import get_logger
from ..store.rejects import Reject
from ..store.state import StateStore
from . import outbox
from .settings import AuditSettings, audit_settings, dagster_run_id
from .tables import (
    CONTACT_CHANGED,
    DELIVERED,
    EVENT_SENT,
    HELD,
    REJECTED,
    unit_schema,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    from ..core.lazy import pa, pc


log = get_logger("connector.audit")

COMMIT_ROWS = 50_000  # rows collected outside a settle before they go to the outbox anyway
# "Brevo 400: ...", "Klaviyo answered 409: ...", "HTTP 413": the vendor's status of a reject.
_STATUS = r"^(?:[A-Za-z]+ )?(?:answered )?(?:HTTP )?(?P<status>[1-5][0-9]{2})\b"


class Recorder:
    """The audit rows of one run of ``sync`` in ``scope`` (see the module docstring)."""

    def __init__(
        self, settings: AuditSettings, state: StateStore, sync: SyncConfig, scope: str
    ) -> None:
        self.settings = settings
        self.state = state
        self.sync = sync.name
        self.scope = scope
        self.kind = "contacts" if sync.is_contact_sync else "events"
        self.destination = sync.destination.type
        self.default_op = CONTACT_CHANGED if sync.is_contact_sync else EVENT_SENT
        self.run_id = ""
        self.parts: list[pa.Table] = []
        self.rows = 0
        #: Contact rows sent and not settled yet → their operation (added or changed).
        self.ops: dict[str, str] = {}
        self.written = True  # whether the last ``finish`` wrote everything

    # -- the run -------------------------------------------------------------------------
    def start(self, run_id: str) -> None:
        """The run started: remember it in the outbox (the runs table gets its row even if
        the process is killed; the next run writes it, marked interrupted)."""
        self.run_id = run_id
        body = orjson.dumps(
            {
                "kind": self.kind,
                "destination_type": self.destination,
                "dagster_run_id": dagster_run_id.get(),
            }
        )
        outbox.add(self.state, outbox.insert(self.sync, self.scope, run_id, outbox.RUN, body, 0))

    def note(self, key: str, operation: str) -> None:
        """A contact row about to be sent is ``operation`` (added or changed)."""
        self.ops[key] = operation

    def delivered(self, keys: Sequence[str], result: str = DELIVERED) -> None:
        """Rows the destination took (``result``: delivered or possibly duplicated)."""
        if not len(keys):
            return
        items = getattr(keys, "items", None)
        if items is not None and hasattr(items[0], "events"):
            key_arr = _item_keys(items)  # their dedup ids are derived when written
            n = len(key_arr)
            self._add(key_arr, _const(EVENT_SENT, n), _const(result, n), None, None)
            return
        ops = self._ops(keys)
        self._add(pa.array(list(keys), pa.string()), ops, _const(result, len(keys)), None, None)

    def rejected(self, rejects: Sequence[Reject], operation: str | None = None) -> None:
        """Rows refused, with their reasons."""
        if not rejects:
            return
        keys = [r.key for r in rejects]
        ops = _const(operation, len(keys)) if operation else self._ops(keys)
        reasons = pa.array([r.reason for r in rejects], pa.string())
        self._add(pa.array(keys, pa.string()), ops, _const(REJECTED, len(keys)), reasons, None)

    def handled(self, keys: Sequence[str], operation: str, result: str = DELIVERED) -> None:
        """Rows handled that are neither sent nor refused rows (unlisted, removed)."""
        if keys:
            n = len(keys)
            arr = pa.array(list(keys), pa.string())
            self._add(arr, _const(operation, n), _const(result, n), None, None)

    def _ops(self, keys: Sequence[str]) -> pa.Array:
        if not self.ops:
            return _const(self.default_op, len(keys))
        pop, default = self.ops.pop, self.default_op
        return pa.array([pop(k, default) for k in keys], pa.string())

    def _add(
        self,
        keys: pa.Array,
        ops: pa.Array,
        results: pa.Array,
        reasons: pa.Array | None,
        dedup: pa.Array | None,
    ) -> None:
        n = len(keys)
        status = None
        if reasons is not None:
            found = pc.extract_regex(reasons, _STATUS).field("status")
            status = pc.cast(pc.if_else(pc.equal(found, ""), None, found), pa.int32())
        self.parts.append(
            pa.Table.from_arrays(
                [
                    keys,
                    ops,
                    results,
                    reasons if reasons is not None else pa.nulls(n, pa.string()),
                    status if status is not None else pa.nulls(n, pa.int32()),
                    dedup if dedup is not None else pa.nulls(n, pa.string()),
                ],
                schema=unit_schema(),
            )
        )
        self.rows += n

    # -- into the outbox -------------------------------------------------------------------
    def take(self) -> Callable[[sa.Connection], None] | None:
        """The rows collected so far as one outbox insert for the caller's settle
        transaction (None: nothing collected)."""
        if not self.parts or not self.run_id:
            return None
        table = pa.concat_tables(self.parts)
        self.parts, self.rows = [], 0
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, unit_schema(), options=_ipc_options()) as writer:
            writer.write_table(table)
        body = sink.getvalue().to_pybytes()
        return outbox.insert(self.sync, self.scope, self.run_id, outbox.ROWS, body, len(table))

    def commit(self, *, full: bool = False) -> None:
        """Write the rows collected so far to the outbox now (``full``: only past
        ``COMMIT_ROWS``)."""
        if full and self.rows < COMMIT_ROWS:
            return
        write = self.take()
        if write is not None:
            outbox.add(self.state, write)

    def finish(self, error: str | None) -> None:
        """The run ended: rows sent and never settled are ``held``; everything goes to the
        outbox, then the outbox to the warehouse. A failure to write the warehouse is logged
        as a warning: the rows stay in the outbox for the next run."""
        if self.ops:
            keys = list(self.ops)
            ops = pa.array(list(self.ops.values()), pa.string())
            self.ops = {}
            reason = error or "sent, not confirmed by the vendor in this run"
            n = len(keys)
            self._add(pa.array(keys, pa.string()), ops, _const(HELD, n), _const(reason, n), None)
        self.commit()
        from .writer import flush  # the warehouse side, only for runs that audit

        try:
            defaults = {"kind": self.kind, "destination_type": self.destination}
            flush(self.settings, self.state, self.sync, self.scope, defaults=defaults)
            self.written = True
        except Exception as exc:  # noqa: BLE001 — an audit failure never fails a delivery
            self.written = False
            log.warning(
                "%s: could not write the audit tables to %s (%s); the run's audit rows stay in "
                "the state store and the next run writes them",
                self.sync,
                mask_url(self.settings.url),
                _first_line(exc),
            )


@cache
def _ipc_options() -> pa.ipc.IpcWriteOptions:
    """lz4 (constant columns shrink to nothing), on this thread: Arrow's thread pool costs
    more CPU than compressing a unit's few buffers (2.5x the write's CPU, measured)."""
    return pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


_CONSTS: dict[str, pa.Array] = {}


def _const(value: str, n: int) -> pa.Array:
    """``n`` times ``value``: a zero-copy slice of one array per value, grown as needed (a
    unit's operation and result columns cost no work per row)."""
    arr = _CONSTS.get(value)
    if arr is None or len(arr) < n:
        arr = pc.fill_null(pa.nulls(max(n, 4096), pa.string()), value)
        if len(_CONSTS) < 64:  # operations, results; a held run's reason is one-off
            _CONSTS[value] = arr
    return arr.slice(0, n)


_EVENTS, _ROW = operator.attrgetter("events"), operator.attrgetter("row")


def _item_keys(items: Sequence[Any]) -> pa.Array:
    """The keys of encoded items, taken from their chunks' Arrow columns (the attribute
    reads are ``map`` calls: no Python frame per item)."""
    chunks = list(map(_EVENTS, items))
    # The row numbers straight into an Arrow buffer: ``pa.array`` of a list of Python ints
    # costs ~2 ms per 1,000 items in a run (measured; 40x this), most of the audit's cost.
    numbers = array.array("q", map(_ROW, items))
    rows = pa.Array.from_buffers(pa.int64(), len(numbers), [None, pa.py_buffer(numbers)])
    if len(set(map(id, chunks))) == 1:  # a batch of one chunk: one take
        return _concat([chunks[0].key_array.take(rows)])
    keys: list[pa.Array] = []
    start = 0
    for _, group in itertools.groupby(chunks, key=id):
        n = len(list(group))
        keys.append(chunks[start].key_array.take(rows.slice(start, n)))
        start += n
    return _concat(keys)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    if len(arrays) == 1:
        return arrays[0].cast(pa.string())
    return pa.concat_arrays([a.cast(pa.string()) for a in arrays])


def recorder_for(
    sync: SyncConfig, state: StateStore, scope: str, warehouse: str | None, *, dry_run: bool
) -> Recorder | None:
    """The run's recorder, or None when the sync writes no audit tables (or does not run)."""
    if dry_run:
        return None
    settings = audit_settings(sync, warehouse)
    return None if settings is None else Recorder(settings, state, sync, scope)
