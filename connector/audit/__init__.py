"""Audit tables in the warehouse: what each run did, run by run and row by row (docs/audit.md).

Opt-in per sync (an ``audit:`` block) or for every sync (env ``CONNECTOR_AUDIT``). The run
shell records every row it settles in a ``Recorder`` (``recorder``); the rows of a settled unit
go to the state store's outbox in the transaction that settles the unit (``outbox``), and at
the end of the run the outbox is written to the warehouse's ``runs``, ``changelog`` and
``contact_snapshot`` tables in bulk (``snapshot`` is a view over them) and deleted
(``writer``), then the retention is applied. A failed write fails nothing: the rows stay in
the outbox and the next run writes them.
"""

from __future__ import annotations

from .recorder import Recorder, recorder_for
from .settings import AUDIT_ENV, AuditSettings, audit_settings, audited, dagster_run_id
from .writer import table_counts

__all__ = [
    "AUDIT_ENV",
    "AuditSettings",
    "Recorder",
    "audit_settings",
    "audited",
    "dagster_run_id",
    "recorder_for",
    "table_counts",
]
