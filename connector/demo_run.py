"""``connector demo``: demo warehouse + local sandbox + every demo sync, end to end."""

from __future__ import annotations

import os
import sys

from .config import load_syncs
from .demo import build_demo_warehouse
from .errors import ConnectorError
from .source import DEMO_WAREHOUSE
from .state import StateStore
from .sync import run_sync

# The sandbox's documented demo credentials (not secrets; the sandbox is local).
DEMO_KEYS = {
    "KLAVIYO_API_KEY": "pk_sandbox",
    "BREVO_API_KEY": "sandbox-brevo-key",
    "BREVO_MA_KEY": "sandbox-ma-key",
    "OMNISEND_TOKEN": "sandbox-omnisend-token",
    "OMNISEND_API_KEY": "sandbox-omnisend-key",
}


def run_demo(events: int = 5_000, state_url: str | None = None) -> int:
    from .cli import print_summary
    from .sandbox import SandboxOptions, SandboxServer

    path = build_demo_warehouse(DEMO_WAREHOUSE, events=events)
    print(f"demo warehouse: {path} ({events:,} video events, orders, contacts)")
    os.environ.pop("WAREHOUSE_URL", None)
    os.environ.update(DEMO_KEYS)
    failed = 0
    with SandboxServer(SandboxOptions(), host="127.0.0.1", port=0) as sandbox:
        os.environ["SANDBOX_URL"] = sandbox.url
        print(f"sandbox API: {sandbox.url}\n")
        loaded = load_syncs()
        for where, err in loaded.errors.items():
            print(f"skipping {where}:\n{err}", file=sys.stderr)
        store = StateStore.open(state_url)
        for name, sync in sorted(loaded.syncs.items()):
            try:
                result = run_sync(sync, state=store)
            except ConnectorError as exc:
                print(f"{name}: run failed: {exc}", file=sys.stderr)
                failed += 1
                continue
            print_summary(result)
            print()
        stats = sandbox.stats()
        print("the sandbox accepted:")
        for kind in (
            "klaviyo_bulk_events",
            "brevo_events_batch",
            "brevo_event",
            "brevo_tracker",
            "omnisend_track",
            "omnisend_events",
        ):
            got = sandbox.events(kind)
            if got:
                print(f"  {kind}: {len(got):,} events; first: {got[0]}")
        print(f"  requests by status: {stats.get('by_status')}")
    print("\nRun `connector demo` again: the checkpoints are kept, so nothing is sent twice.")
    return 1 if failed else 0
