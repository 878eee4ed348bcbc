"""``connector plan`` and ``connector preview``: what the next run would read and send."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, open_state

if TYPE_CHECKING:
    from ..run.run_plan import ContactPlan, RunPlan


def cmd_plan(args: argparse.Namespace) -> int:
    """`connector plan NAME`: print the plan of the next run (or its JSON)."""
    from ..config.sync_file import load_sync
    from ..core.process import use_lean_memory_pool
    from ..run.run_plan import plan_sync

    use_lean_memory_pool()
    sync = load_sync(args.sync, check_env=False)
    plan = plan_sync(sync, open_state(args), full_refresh=args.full_refresh)
    if args.json:
        print(json.dumps(plan.to_dict(), default=str, indent=2, ensure_ascii=False))
    else:
        print_plan(plan)
    return EXIT_OK


def print_plan(plan: RunPlan | ContactPlan, out: Any = None) -> None:
    """Print the plan of a run as ``connector plan`` shows it (to ``out``, default stdout):
    rows pending, events a request, requests, the destination's rate and the least duration;
    for a contact sync, the rows it compares and the contacts the vendor confirmed."""
    from ..report.summary import fmt_position
    from ..run.run_plan import ContactPlan, format_duration

    out = out or sys.stdout
    if isinstance(plan, ContactPlan):
        _print_contact_plan(plan, out)
        return
    after = "full refresh" if plan.full_refresh else f"after {fmt_position(plan.checkpoint)}"
    size = f", ~{plan.event_bytes:,} bytes an event" if plan.event_bytes else ""
    print(f"{plan.sync} [{plan.scope}], {after}", file=out)
    print(f"  rows pending        {plan.rows:,}", file=out)
    if plan.lookback is not None:
        print(
            f"  late rows           {plan.late_rows:,}  (inside the lookback window, "
            f"source.lookback {plan.lookback}; counted in rows pending)",
            file=out,
        )
    if plan.max_rows_per_run is not None:
        print(
            f"  this run            {plan.rows_this_run:,} "
            f"(destination.max_rows_per_run {plan.max_rows_per_run:,})",
            file=out,
        )
    print(
        f"  per request         {plan.per_request:,} events (limit {plan.max_events:,}{size})",
        file=out,
    )
    print(f"  requests            {plan.requests:,}", file=out)
    print(f"  rate                {plan.rate or 'no documented limit'}", file=out)
    if plan.duration_s is not None:
        print(f"  duration            ≥ {format_duration(plan.duration_s)}", file=out)
    print(plan.line(), file=out)


def _print_contact_plan(plan: ContactPlan, out: Any) -> None:
    from ..report.summary import fmt_position

    if plan.full_refresh:
        read = "full refresh: every row is sent"
    elif plan.checkpoint is not None:
        read = f"after {fmt_position(plan.checkpoint)}"
    else:
        read = "the whole table"
    print(f"{plan.sync} [{plan.scope}], {read}", file=out)
    label = "rows to send" if plan.full_refresh else "rows to compare"
    print(f"  {label:<19} {plan.rows:,}", file=out)
    if plan.retried:
        print(f"  open rejects        {plan.retried:,}  (read again; in rows to compare)", file=out)
    if not plan.full_refresh:
        print(
            f"  confirmed contacts  {plan.confirmed:,}  (stored hashes: an unchanged row is not "
            "sent)",
            file=out,
        )
    print(plan.line(), file=out)


def cmd_preview(args: argparse.Namespace) -> int:
    """`connector preview NAME`: print the exact requests for the first rows, sending nothing."""
    from ..config.sync_file import load_sync
    from ..core.process import use_lean_memory_pool
    from ..run.run_plan import plan_sync
    from ..run.sync import preview

    use_lean_memory_pool()
    sync = load_sync(args.sync, check_env=False)
    print_plan(plan_sync(sync, open_state(args)))
    print()
    out = preview(sync, limit=args.limit)
    for req in out["requests"]:
        print(f"{req['method']} {req['url']}")
        for k, v in req["headers"].items():
            print(f"{k}: {v}")
        print()
        print(pretty_json(req["body"]))
        print()
    for key, reason in out["rejects"]:
        print(f"reject {key}: {reason}")
    if "counts" in out:  # a contact sync: what the diff found in these rows
        print(", ".join(f"{n} {k}" for k, n in out["counts"].items()) + " (of the rows read)")
    return EXIT_OK


def pretty_json(body: bytes | str) -> str:
    """A JSON body indented for reading, every number printed with the digits the body holds
    (``json.dumps`` would print 12345678901234567.89 as a float)."""

    def fmt(value: Any, pad: str) -> str:
        inner = pad + "  "
        if isinstance(value, dict) and value:
            members = (
                f"{inner}{json.dumps(k, ensure_ascii=False)}: {fmt(v, inner)}"
                for k, v in value.items()
            )
            return "{\n" + ",\n".join(members) + "\n" + pad + "}"
        if isinstance(value, list) and value:
            return "[\n" + ",\n".join(inner + fmt(v, inner) for v in value) + "\n" + pad + "]"
        if isinstance(value, Decimal):
            return str(value)
        return json.dumps(value, ensure_ascii=False)

    return fmt(json.loads(body, parse_float=Decimal, parse_int=Decimal), "")
