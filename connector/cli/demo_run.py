"""``connector demo``: demo warehouse + local sandbox + every demo sync, end to end."""

from __future__ import annotations

import os
import sys

from ..config.sync_file import load_syncs
from ..core.errors import ConnectorError
from ..destinations import DESTINATIONS
from ..read.source import DEMO_WAREHOUSE
from ..report.summary import print_summary
from ..run.sync import run_sync
from ..sandbox.options import DEFAULT_BREVO_ATTRIBUTES
from ..store.state import StateStore
from .demo import build_demo_warehouse

# The sandbox's documented demo credentials (not secrets; the sandbox is local).
DEMO_KEYS = {
    "KLAVIYO_API_KEY": "pk_sandbox",
    "BREVO_API_KEY": "sandbox-brevo-key",
    "BREVO_MA_KEY": "sandbox-ma-key",
    "OMNISEND_TOKEN": "sandbox-omnisend-token",
    "OMNISEND_API_KEY": "sandbox-omnisend-key",
}

# The demo Brevo account: Brevo's default attributes plus the ones customers_to_brevo maps
# (brevo_contacts checks them before sending).
DEMO_BREVO_ATTRIBUTES = {**DEFAULT_BREVO_ATTRIBUTES, "PLAN": "text", "LTV": "float"}


# Single-event APIs are paced to the account's documented limit (Brevo 10 req/s, Omnisend
# 400 req/min), so a whole demo table would take minutes: their demo sync files set
# ``destination.max_rows_per_run`` (40), which every run applies (here, ``connector sync`` and
# Dagster alike); the checkpoint is kept, so the next run picks up after the last row sent.


def run_demo(events: int = 5_000, state_url: str | None = None) -> int:
    """Build the demo warehouse, start the sandbox and run every demo sync against it.

    A sync whose file sets ``destination.max_rows_per_run`` sends that many rows a run (the
    checkpoint keeps the rest for the next run). Returns the process exit code: 0 when every
    sync succeeded, 1 when any failed (each failure is printed to stderr).
    """
    from ..sandbox import SandboxOptions, SandboxServer

    path = build_demo_warehouse(DEMO_WAREHOUSE, events=events)
    print(f"demo warehouse: {path} ({events:,} video events, orders, contacts)")
    os.environ.pop("WAREHOUSE_URL", None)
    os.environ.update(DEMO_KEYS)
    failed = 0
    options = SandboxOptions(brevo_attributes=DEMO_BREVO_ATTRIBUTES)
    with SandboxServer(options, host="127.0.0.1", port=0) as sandbox:
        os.environ["SANDBOX_URL"] = sandbox.url
        print(f"sandbox API: {sandbox.url}\n")
        loaded = load_syncs()
        for where, err in loaded.errors.items():
            print(f"skipping {where}:\n{err}", file=sys.stderr)
        store = StateStore.open(state_url)
        for name, sync in sorted(loaded.syncs.items()):
            cap = sync.destination.max_rows_per_run
            if cap is not None:
                print(
                    f"{name}: at most {cap:,} rows a run (destination.max_rows_per_run); "
                    f"continue with: connector sync {name}"
                )
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
        for dtype, cls in DESTINATIONS.items():
            events = cls.kind == "events"
            try:
                got = sandbox.events(dtype) if events else sandbox.contacts(dtype)
            except KeyError:  # a destination the sandbox does not imitate
                continue
            if got and events:
                print(f"  {dtype}: {len(got):,} events; first: {got[0]}")
            elif got:
                print(f"  {dtype}: {len(got):,} profiles stored by this run's import jobs")
        statuses = stats.get("by_status") or {}
        if statuses:
            print(f"  responses by status: {statuses}")
    print(
        "\nRun `connector demo` again: the checkpoints are kept, so the batch syncs send "
        "nothing twice, the single-event syncs send their next slice and the contact syncs "
        "send only the customers that changed."
    )
    return 1 if failed else 0
