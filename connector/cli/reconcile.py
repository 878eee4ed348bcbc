"""``connector reconcile NAME``: does the source hold rows the sync never handled?

Exit codes: 0 nothing is missing (periods with rows deleted at the source are reported, not
failed); 1 rows are missing (after ``--send-missing``: still missing once the re-sends ran), or
the warehouse or state store could not be read; 2 config or usage error.
"""

from __future__ import annotations

import argparse
import json

from .common import EXIT_FAILED, EXIT_OK, open_state


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Compare per period, print the report (or its JSON), optionally re-send the missing."""
    from ..config.sync_file import load_sync
    from ..core.errors import ConfigError
    from ..core.process import use_lean_memory_pool
    from ..run.reconcile import describe, reconcile, send_missing

    use_lean_memory_pool()
    if args.accept_duplicates and not args.send_missing:
        raise ConfigError("--accept-duplicates goes with --send-missing")
    sync = load_sync(args.sync, check_env=args.send_missing)  # keys: to send only
    state = open_state(args)
    report = reconcile(sync, state, scope=args.scope, unit=args.period)
    sent = []
    if args.send_missing and report.missing:
        if not args.json:
            print("\n".join(describe(report)))
        sent = send_missing(sync, state, report, accept_duplicates=args.accept_duplicates)
        report = reconcile(sync, state, scope=args.scope, unit=args.period)
    if args.json:
        data = report.as_dict()
        if args.send_missing:
            data["sent"] = [
                {
                    "scope": scope,
                    "period": period,
                    "run_id": r.run_id,
                    "rows_read": r.rows_read,
                    "delivered": r.delivered,
                    "rejected": r.rejected,
                }
                for scope, period, r in sent
            ]
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for scope, period, r in sent:
            print(
                f"re-sent {period} ({scope}): {r.rows_read} rows read, {r.delivered} delivered, "
                f"{r.rejected} rejected (run {r.run_id})"
            )
        print("\n".join(describe(report)))
    return EXIT_FAILED if report.missing else EXIT_OK
