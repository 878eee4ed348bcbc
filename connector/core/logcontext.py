"""The sync name and run id on every log record of a run, from any thread.

A run sets them once (``run_context``); ``RunContextFilter`` copies them onto each record as
``record.sync_name`` and ``record.run_id`` (``"-"`` outside a run), so a handler's format can
show them (the CLI's does: ``[videos run 3f2a…]``). The values live in a ``ContextVar``: sender
threads see them because the run submits its work with ``contextvars.copy_context()``.

The filter sits on the connector's loggers (``get_logger``), so records carry the fields
whatever handler receives them — the CLI's, pytest's ``caplog``, or Dagster's managed
``connector`` logger (``python_logs: managed_python_loggers: [connector]``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar

# (sync name, the run id once the state store has started the run)
_RUN: ContextVar[tuple[str, Callable[[], str | None]] | None] = ContextVar(
    "connector_run", default=None
)

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(sync_name)s run %(run_id)s]: %(message)s"


class RunContextFilter(logging.Filter):
    """Adds ``sync_name`` and ``run_id`` to a record (keeps values already there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record; never drops one."""
        run = _RUN.get()
        if not hasattr(record, "sync_name"):
            record.sync_name = run[0] if run else "-"
        if not hasattr(record, "run_id"):
            record.run_id = (run[1]() or "-") if run else "-"
        return True


_FILTER = RunContextFilter()


def get_logger(name: str) -> logging.Logger:
    """A logger whose records carry the current run's sync name and run id."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def stamp(handler: logging.Handler) -> logging.Handler:
    """Give a handler the filter too, so records from other loggers can use ``FORMAT``."""
    if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)
    return handler


@contextlib.contextmanager
def run_context(sync_name: str, run_id: Callable[[], str | None]) -> Iterator[None]:
    """Records logged inside (in this thread, or in work submitted with a copied context)
    carry ``sync_name`` and ``run_id()`` (read per record: the id is known once the state
    store has started the run)."""
    token = _RUN.set((sync_name, run_id))
    try:
        yield
    finally:
        _RUN.reset(token)
