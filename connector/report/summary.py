"""The run summary the CLI and the demo print (shared by both, so neither imports the other)."""

from __future__ import annotations

import sys
from typing import Any

from ..run.result import SyncResult


def fmt_position(pos: list[Any] | tuple[Any, ...] | None) -> str:
    """A checkpoint position as ``cursor / key pk`` (``(start)`` before the first run)."""
    if not pos:
        return "(start)"
    cursor, *pk = pos
    return f"{cursor} / key {','.join(str(p) for p in pk)}"


def print_summary(res: SyncResult, out: Any = None) -> None:
    """What a run did, as ``connector sync`` and ``connector demo`` print it."""
    out = out or sys.stdout
    if getattr(res, "kind", None) == "contacts":  # a ContactResult: its own summary
        from ..run.contacts import ContactResult, print_contact_summary

        assert isinstance(res, ContactResult)
        print_contact_summary(res, out)
        return
    verb = "would send" if res.status == "dry_run" else "delivered"
    print(f"{res.sync}: {res.status}", file=out)
    print(f"  rows read           {res.rows_read:,}", file=out)
    print(f"  {verb:<19} {res.delivered:,}", file=out)
    print(
        f"  rejected            {res.rejected:,}"
        + (f"  ({res.null_key_rows:,} with a NULL cursor/key)" if res.null_key_rows else "")
        + (
            f"  ({res.rejects_known:,} known: refused again unchanged, still open)"
            if res.rejects_known
            else ""
        ),
        file=out,
    )
    if res.skipped:
        print(f"  skipped             {res.skipped:,}  (delivered by an interrupted run)", file=out)
    if res.lookback is not None:
        edge = f", {res.late_rows_near_edge:,} near its far edge" if res.late_rows_near_edge else ""
        print(
            f"  late rows caught    {res.late_rows:,}  (lookback {res.lookback}{edge}; "
            f"{res.window_reread:,} rows re-read, already handled)",
            file=out,
        )
    if res.late_rows_near_edge:
        print(
            f"  warning: {res.late_rows_near_edge:,} late rows lay in the oldest tenth of the "
            "lookback window, which may be too short: raise source.lookback",
            file=out,
        )
    dup_note = (
        " copies sent again (the destination drops them by dedup id: it stores one)"
        if res.destination_dedups
        else " copies (no dedup key at this destination: each may be stored)"
    )
    print(
        f"  possibly duplicated {res.possibly_duplicated:,}"
        + (dup_note if res.possibly_duplicated else ""),
        file=out,
    )
    if res.possibly_duplicated_total is not None:
        print(
            f"    over all runs     {res.possibly_duplicated_total:,}  (this sync's stored runs, "
            "this one and killed ones included)",
            file=out,
        )
    print(
        f"  requests            {res.requests:,} in {res.batches:,} batches, "
        f"{res.retries:,} retries, {res.rate_limited:,} rate-limited",
        file=out,
    )
    print(
        f"  checkpoint          {fmt_position(res.hwm_before)} -> {fmt_position(res.hwm_after)}",
        file=out,
    )
    print(f"  duration            {res.duration_s:.2f}s ({res.rows_per_s:,.0f} rows/s)", file=out)
    if res.sample_rejects:
        print("  sample rejects:", file=out)
        for key, reason in res.sample_rejects[:5]:
            print(f"    {key}: {reason}", file=out)
        print(f"  (all of them: connector rejects {res.sync})", file=out)
    if res.rejects_retried:
        print(
            f"  open rejects        {res.rejects_retried:,} retried, {res.rejects_gone:,} "
            f"closed as their source row is gone, {res.rejects_deferred:,} left to the next "
            "run (after the checkpoint)",
            file=out,
        )
    if res.error:
        print(f"  error: {res.error}", file=out)
