"""Run history (``connector_runs``): a row per run, ``running`` from its start, its counts so
far recorded while it runs (at most once a second, ``run.shell``), and its final status,
counts and error at its end.

A run killed without a trace (``kill -9``) stays ``running`` only until the next run of the
same sync and scope starts: ``start_run`` marks it ``interrupted`` first, with when it noticed,
the checkpoint the killed run had reached, its counts as last recorded and how many events it
had in flight (its pending ledger rows).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from .base import Tables, now
from .positions import decode_position
from .schema import batches, checkpoints, rejects, runs


def mark_interrupted(c: sa.Connection, sync: str, scope: str) -> None:
    """Mark the runs of ``(sync, scope)`` still ``running`` as ``interrupted`` (their process
    ended without recording their end), with how far each got, inside the caller's
    transaction."""
    stale = c.execute(
        sa.select(runs.c.run_id, runs.c.summary).where(
            runs.c.sync == sync, runs.c.scope == scope, runs.c.status == "running"
        )
    ).all()
    noticed = now()
    for run_id, recorded in stale:
        last = orjson.loads(recorded) if recorded else {}
        pos = c.execute(
            sa.select(checkpoints.c.position).where(
                checkpoints.c.sync == sync,
                checkpoints.c.scope == scope,
                checkpoints.c.run_id == run_id,
            )
        ).scalar()
        ledger = {
            status: int(n or 0)
            for status, n in c.execute(
                sa.select(batches.c.status, sa.func.sum(batches.c.count))
                .where(batches.c.run_id == run_id)
                .group_by(batches.c.status)
            ).all()
        }
        rejected = c.execute(
            sa.select(sa.func.count()).select_from(rejects).where(rejects.c.run_id == run_id)
        ).scalar()
        hwm = decode_position(pos) if pos else None
        summary = {
            **last,  # counts at its last progress record (at most a second old)
            "status": "interrupted",
            "hwm_after": list(hwm) if hwm else None,
            "rejected": max(int(rejected or 0), int(last.get("rejected") or 0)),
            "in_flight": ledger.get("pending", 0),
            "interrupted_noticed_at": noticed.isoformat(),
        }
        reached = (
            "it had moved the checkpoint to " + ", ".join(str(v) for v in hwm)
            if hwm
            else "it had not moved the checkpoint"
        )
        counts = (
            f"at its last progress record {last.get('rows_read', 0)} rows read, "
            f"{last.get('delivered', 0)} delivered, {last.get('rejected', 0)} rejected; "
            if last
            else ""
        )
        error = (
            f"interrupted: the process ended without recording the end of the run "
            f"(killed?); noticed at {noticed:%Y-%m-%d %H:%M:%S} UTC by the next run; "
            f"{reached}; {counts}{summary['in_flight']} events were in flight (sent "
            f"again with the same dedup ids by the next run)"
        )
        c.execute(
            runs.update()
            .where(runs.c.run_id == run_id, runs.c.status == "running")
            .values(
                status="interrupted",
                finished_at=noticed,
                summary=orjson.dumps(summary).decode(),
                error=error,
            )
        )


@dataclass(frozen=True)
class Copies:
    """Copies of events the vendor may have received more than once ("possibly duplicated"),
    from the stored run summaries of one sync: over every run (``total``, killed runs
    included: their summary holds the counts they last recorded, and the copies a run counts
    are recorded at once), and the newest run's (``last``)."""

    total: int
    last: int
    runs: int  # stored runs summed over

    def __str__(self) -> str:
        return (
            f"{self.total:,} possibly duplicated copies over the sync's {self.runs:,} stored "
            f"runs ({self.last:,} in the last run)"
        )


class RunStore(Tables):
    """Recording runs: start, progress, end; reading the history."""

    def start_run(self, sync: str, scope: str) -> str:
        """Record a new run; earlier runs of this sync and scope still marked running (their
        process was killed) are marked interrupted first, with how far they got."""
        run_id = uuid.uuid4().hex
        with self._tx() as c:
            mark_interrupted(c, sync, scope)
            c.execute(
                runs.insert().values(
                    run_id=run_id, sync=sync, scope=scope, started_at=now(), status="running"
                )
            )
        return run_id

    def record_progress(self, run_id: str, summary: dict[str, Any]) -> None:
        """The counts so far of a running run (what ``mark_interrupted`` reports if it is
        killed)."""
        with self._tx() as c:
            c.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.status == "running")
                .values(summary=orjson.dumps(summary, default=str).decode())
            )

    def finish_run(
        self, run_id: str, status: str, summary: dict[str, Any], error: str | None = None
    ) -> None:
        """Mark the run finished: its final ``status``, its counts (``summary``) and the error
        message of a failed run."""
        with self._tx() as c:
            c.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(
                    finished_at=now(),
                    status=status,
                    summary=orjson.dumps(summary, default=str).decode(),
                    error=error,
                )
            )

    def runs(self, sync: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sync's latest ``limit`` runs, newest first, each with its summary decoded."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(runs)
                .where(runs.c.sync == sync)
                .order_by(runs.c.started_at.desc())
                .limit(limit)
            ).all()
        out = []
        for r in rows:
            d = dict(r._mapping)
            d["summary"] = orjson.loads(d["summary"]) if d["summary"] else None
            out.append(d)
        return out

    def copies(self, sync: str, scope: str | None = None) -> Copies:
        """The sync's possibly duplicated copies over all its stored runs and in the newest
        (of ``scope``, or of every scope)."""
        query = sa.select(runs.c.summary).where(runs.c.sync == sync)
        if scope is not None:
            query = query.where(runs.c.scope == scope)
        with self.engine.connect() as c:
            summaries = c.execute(query.order_by(runs.c.started_at.desc())).scalars().all()
        counts = [_copies(s) for s in summaries]
        return Copies(sum(counts), counts[0] if counts else 0, len(counts))


def _copies(summary: str | None) -> int:
    if not summary:
        return 0
    try:
        value = orjson.loads(summary).get("possibly_duplicated")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
