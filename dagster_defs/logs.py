"""The connector's log records in the step's Dagster log, with the sync name and run id.

While a sync asset runs, ``step_logs`` forwards what the connector logs (from the run's thread
and its sender threads, at the level the process's logging lets through: WARNING by default)
to ``context.log`` as ``[<sync> run <run id>] <message>``. Only records of this asset's sync
are forwarded, so assets running side by side in one process do not see each other's lines.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import dagster as dg

from connector.core.logcontext import stamp


class _StepLog(logging.Handler):
    def __init__(self, target: logging.Logger, sync_name: str) -> None:
        super().__init__()
        self.target = target
        self.sync_name = sync_name

    def emit(self, record: logging.LogRecord) -> None:
        sync_name = getattr(record, "sync_name", "-")
        if sync_name != self.sync_name:
            return
        run_id = getattr(record, "run_id", "-")
        self.target.log(record.levelno, f"[{sync_name} run {run_id}] {record.getMessage()}")


@contextlib.contextmanager
def step_logs(context: dg.AssetExecutionContext, sync_name: str) -> Iterator[None]:
    """Forward the connector's records of ``sync_name`` to the step's log while inside."""
    handler = stamp(_StepLog(context.log, sync_name))
    logger = logging.getLogger("connector")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
