"""``connector state`` and ``connector rejects``: what the state store holds about a sync."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, open_state

if TYPE_CHECKING:
    pass


def unknown_scope(store: Any, sync: str, scope: str | None) -> str | None:
    """Why ``--scope`` names no scope of ``sync`` (None: it does, or none was given): a scope
    is ``incremental`` or ``partition:<key>``; the message lists the scopes the store holds."""
    if scope is None or scope == "incremental":
        return None
    held = set(store.checkpoints_for(sync)) | {r["scope"] for r in store.runs(sync, limit=1000)}
    if scope in held or (scope.startswith("partition:") and len(scope) > len("partition:")):
        return None
    known = ", ".join(sorted(held | {"incremental"}))
    return (
        f"unknown scope {scope!r} for {sync}: a scope is 'incremental' or "
        f"'partition:<key>'; {sync} has: {known}"
    )


def cmd_state(args: argparse.Namespace) -> int:
    """`connector state show|reset`: a sync's checkpoints, runs and leases, or reset them."""
    from ..config.sync_file import load_sync
    from ..report.summary import fmt_position
    from ..store.state import reset_broken_store

    if args.broken_store:
        if args.action != "reset" or args.sync or args.scope:
            print(
                "connector: error: use --broken-store alone: state reset --broken-store",
                file=sys.stderr,
            )
            return EXIT_USAGE
        print(reset_broken_store(args.state_url))
        return EXIT_OK
    if not args.sync:
        print("connector: error: name the sync: connector state show|reset <sync>", file=sys.stderr)
        return EXIT_USAGE
    sync = load_sync(args.sync, check_env=False)
    store = open_state(args)
    unknown = unknown_scope(store, sync.name, args.scope)
    if unknown:
        print(f"connector: error: {unknown}", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "reset":
        return _reset(store, sync, args.scope)
    cps = store.checkpoints_for(sync.name)
    if not cps:
        print(f"{sync.name}: no checkpoint yet")
    for scope, pos in sorted(cps.items()):
        if args.scope and scope != args.scope:
            continue
        print(f"{sync.name} [{scope}]: {fmt_position(pos)}")
    if sync.is_contact_sync:
        from ..contacts.hashes import HashStore

        n = HashStore(store).count(sync.name)
        print(f"  {n:,} contacts confirmed by the vendor (stored hashes; unchanged rows skip)")
    pending = [e for scope in cps for e in store.ledger(sync.name, scope)]
    if pending:
        print(
            f"  ledger: {len(pending)} batches beyond the checkpoint "
            f"({sum(e.count for e in pending if e.status == 'pending')} events pending)"
        )
    copies = store.copies(sync.name, args.scope)
    if copies.runs:
        print(f"  {copies}")
    for run in store.runs(sync.name, limit=5):
        s = run["summary"] or {}
        if run["status"] == "interrupted":  # a killed run: its error says how far it got
            print(
                f"  run {run['run_id'][:8]} {run['started_at']:%Y-%m-%d %H:%M:%S} "
                f"{run['error']}"  # "interrupted: ..."
            )
            continue
        print(
            f"  run {run['run_id'][:8]} {run['started_at']:%Y-%m-%d %H:%M:%S} "
            f"{run['status']}: {s.get('delivered', 0)} delivered, {s.get('rejected', 0)} "
            f"rejected" + (f" — {run['error']}" if run["error"] else "")
        )
    return EXIT_OK


def _reset(store: Any, sync: Any, scope: str | None) -> int:
    """`connector state reset`: refused while a run of the sync holds its lease."""
    from ..store.lease import live_holders
    from ..store.state import INCREMENTAL

    running = live_holders(store, sync.name, scope)
    if running:
        print(
            f"connector: error: {sync.name} is running ({'; '.join(running)}): a reset "
            "now would be undone by that run's own writes. Reset after it ends",
            file=sys.stderr,
        )
        return EXIT_FAILED
    store.reset(sync.name, scope)
    if sync.is_contact_sync and scope in (None, INCREMENTAL):
        from ..contacts.hashes import HashStore

        HashStore(store).forget(sync.name)  # the next run sends every contact again
    print(
        f"{sync.name}: state reset ({scope or 'all scopes'}); the next run starts from the "
        "beginning"
    )
    return EXIT_OK


def cmd_rejects(args: argparse.Namespace) -> int:
    """`connector rejects NAME`: list or export the open rejects."""
    from ..config.sync_file import load_sync

    sync = load_sync(args.sync, check_env=False)
    store = open_state(args)
    unknown = unknown_scope(store, sync.name, args.scope)
    if unknown:
        print(f"connector: error: {unknown}", file=sys.stderr)
        return EXIT_USAGE
    n_open = store.count_rejects(sync.name, open_only=True, scope=args.scope)
    total = store.count_rejects(sync.name, scope=args.scope) if args.all else n_open
    rows = store.iter_rejects(
        sync.name,
        args.limit,
        include_closed=args.all,
        scope=args.scope,
        payload=args.format != "table",
    )
    try:
        if args.format == "table":
            _print_rejects_table(sync.name, rows, n_open, total, args)
        else:
            # The count goes to stderr: stdout is the export only.
            print(f"{n_open:,} open rejects ({sync.name})", file=sys.stderr)
            (_export_json if args.format == "json" else _export_csv)(rows)
        sys.stdout.flush()
    except BrokenPipeError:
        # `| head` closed the pipe: stop quietly, and keep Python's exit flush from raising.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _print_rejects_table(
    name: str, rows: Any, n_open: int, total: int, args: argparse.Namespace
) -> None:
    closed = f", {total - n_open:,} closed" if args.all else ""
    print(f"{n_open:,} open rejects{closed} ({name})")
    shown = 0
    for r in rows:
        if shown == 0:
            print("key\treason\trejected_at\tscope" + ("\tstatus" if args.all else ""))
        status = "open" if r["closed_at"] is None else f"closed: {r['resolution']}"
        print(
            f"{r['key']}\t{r['reason']}\t{r['created_at']:%Y-%m-%d %H:%M:%S}\t{r['scope']}"
            + (f"\t{status}" if args.all else "")
        )
        shown += 1
    if args.limit and shown < total:
        print(f"(the {shown:,} newest; drop --limit to see all {total:,})")


def _export_record(r: dict[str, Any]) -> dict[str, Any]:
    """One reject as exported: the payload is the JSON the row was mapped to."""
    payload: Any = r["payload"]
    if payload is not None:
        with contextlib.suppress(ValueError):  # cut at 20,000 characters: keep the text
            payload = json.loads(payload)
    return {
        "key": r["key"],
        "reason": r["reason"],
        "rejected_at": r["created_at"].isoformat(),
        "scope": r["scope"],
        "run_id": r["run_id"],
        "status": "open" if r["closed_at"] is None else "closed",
        "closed_at": r["closed_at"].isoformat() if r["closed_at"] else None,
        "resolution": r["resolution"],
        "payload": payload,
    }


def _export_json(rows: Any) -> None:
    """A JSON array, written as it is read (an export can be large)."""
    out = sys.stdout
    out.write("[")
    for i, r in enumerate(rows):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(_export_record(r), ensure_ascii=False, default=str))
    out.write("\n]\n")


def _export_csv(rows: Any) -> None:
    """CSV with a header row; the payload column holds its JSON text."""
    fields = [
        "key",
        "reason",
        "rejected_at",
        "scope",
        "run_id",
        "status",
        "closed_at",
        "resolution",
        "payload",
    ]
    w = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        rec = _export_record(r)
        rec["payload"] = r["payload"]
        w.writerow(rec)
