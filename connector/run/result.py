"""What a run did: ``SyncResult`` (every run), ``ContactResult`` (a contact run's counts on
top). A leaf module: the shell and both strategies build on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import ConnectorError

SAMPLE_REJECTS = 20


@dataclass
class SyncResult:
    """What a run did; every count is exact."""

    sync: str
    scope: str
    run_id: str | None
    status: str = "running"  # success | failed | dry_run
    rows_read: int = 0
    delivered: int = 0
    rejected: int = 0
    skipped: int = 0  # delivered by an earlier run that crashed (ledger), not re-sent
    possibly_duplicated: int = 0  # copies the vendor may have received beyond one, this run
    destination_dedups: bool = False  # ... and stores only one of them (dedup id)
    # The sync's possibly duplicated copies over every stored run, this one included (None:
    # not read, e.g. a dry run).
    possibly_duplicated_total: int | None = None
    null_key_rows: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    hwm_before: list[Any] | None = None
    hwm_after: list[Any] | None = None
    duration_s: float = 0.0
    rows_per_s: float = 0.0
    error: str | None = None
    sample_rejects: list[tuple[str, str]] = field(default_factory=list)
    # --retry-rejects only: open rejects looked at, closed because their source row is gone,
    # and left open because the row now sits after the checkpoint (the next run reads it).
    rejects_retried: int = 0
    rejects_gone: int = 0
    rejects_deferred: int = 0
    # The lookback window (``source.lookback``, None: off): rows caught inside it that no
    # earlier run had read (late commits), of those the ones in its oldest tenth, and the
    # rows read again there that were handled before (the window's cost; not in rows_read).
    lookback: str | None = None
    window_reread: int = 0
    late_rows: int = 0
    late_rows_near_edge: int = 0
    # Of ``rejected``: rows refused again unchanged (same key, reason and payload as an open
    # reject, e.g. a NULL cursor): still open and listed, left out of the reject ratio.
    rejects_known: int = 0
    # Rows sent and not yet settled (answered but held by the circuit breaker, or in flight;
    # after a failure: sent, fate unknown until the next run settles the ledger).
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (``connector sync --json``, Dagster metadata)."""
        return asdict(self)


@dataclass
class ContactResult(SyncResult):
    """A contact run's counts (``delivered`` = rows the vendor confirmed)."""

    kind: str = "contacts"
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    sent: int = 0
    jobs: int = 0
    polls: int = 0
    unconfirmed: int = 0
    unlisted: int = 0
    conflicts: int = 0  # rejects: an identifier of another row (``contacts.conflicts``)
    email_changed: int = 0  # sent rows whose e-mail is not the one the vendor confirmed


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"
