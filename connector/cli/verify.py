"""``connector verify NAME [--sample N] [--json]``: read a sample of a contact sync's confirmed
contacts back from the vendor and compare them with the warehouse (docs/verify.md).

Exit codes: 0 every contact read back holds what the warehouse says (100%); 1 a difference, a
contact that never landed, nothing to compare (no confirmed contact, or none readable) or a
failed read; 2 a config or usage error, or a destination that cannot be verified (events).
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, open_state


def cmd_verify(args: argparse.Namespace) -> int:
    """Run one verify and print its report."""
    from ..config.sync_file import load_sync
    from ..verify.run import DEFAULT_SAMPLE, verify_sync
    from ..verify.share import DEFAULT_SHARE

    sync = load_sync(args.sync)
    cfg = sync.verify
    sample = args.sample or (cfg.sample if cfg is not None else DEFAULT_SAMPLE)
    share = cfg.read_share if cfg is not None else DEFAULT_SHARE
    report = verify_sync(sync, open_state(args), sample=sample, share=share)
    if args.json:
        print(json.dumps(report.to_dict(), default=str, indent=2))
    else:
        report.print(sys.stdout)
    if report.cannot:
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_FAILED
