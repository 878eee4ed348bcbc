"""Scopes of one asset run and the counts summed over them: shared by the asset body
(``assets``) and the reject-ratio check (``checks``), so neither imports the other."""

from collections.abc import Sequence
from dataclasses import dataclass

from connector import SyncResult, Window


@dataclass(frozen=True)
class Scope:
    """One call of the core: a checkpoint scope and, for partitions, its time window."""

    name: str
    window: Window | None = None
    partition: str | None = None


def totals(results: Sequence[tuple[Scope, SyncResult]]) -> dict[str, int | float]:
    """Counts summed over the scopes of a run. Rows with a NULL cursor or key belong to no
    window: the first scope of the run counts them, the others skip the check."""
    rs = [r for _, r in results]
    null_keys = sum(r.null_key_rows for r in rs)
    duration = round(sum(r.duration_s for r in rs), 3)
    rows_read = sum(r.rows_read for r in rs)
    return {
        "rows_read": rows_read,
        "delivered": sum(r.delivered for r in rs),
        "rejected": sum(r.rejected for r in rs),
        "null_key_rows": null_keys,
        "skipped": sum(r.skipped for r in rs),
        "possibly_duplicated": sum(r.possibly_duplicated for r in rs),
        "batches": sum(r.batches for r in rs),
        "requests": sum(r.requests for r in rs),
        "retries": sum(r.retries for r in rs),
        "rate_limited": sum(r.rate_limited for r in rs),
        "duration_s": duration,
        "rows_per_s": round(rows_read / duration, 1) if duration else 0.0,
    }
