"""``connector`` command line.

Exit codes: 0 every row delivered or rejected with a recorded reason; 1 the run failed (the
checkpoint stays at the last delivered row); 2 config or usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core import logcontext
from ..core.errors import ConfigError, ConnectorError, SourceError, StateError
from ..core.process import keep_httpx_cli_out, keep_pandas_out

# Everything else is imported by the command that needs it: ``connector --help`` and the
# state commands then start without pyarrow, httpx or the destinations (docs/performance.md,
# "Start-up"; tests/test_cli_imports.py checks it).
if TYPE_CHECKING:
    from ..config.sync_file import SyncConfig
    from ..run.run_plan import RunPlan
    from ..store.state import StateStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2, as documented
        self.print_usage(sys.stderr)
        print(f"connector: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    """argparse type of ``--limit``: a whole number ≥ 1 (a negative limit used to be taken)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number; use 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="connector", description="Warehouse rows → marketing events.")
    p.add_argument("--version", action="version", version=f"connector {__version__}")
    p.add_argument(
        "--config-dir", help="config directory (default $CONNECTOR_CONFIG_DIR or ./config)"
    )
    p.add_argument(
        "--state-url",
        help="state store URL (default $CONNECTOR_STATE_URL or sqlite:///.connector/state.db)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log retries and waits")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("sync", help="run one sync incrementally")
    s.add_argument("sync", help="sync name or path to its YAML file")
    s.add_argument(
        "--full-refresh", action="store_true", help="ignore the checkpoint; re-send everything"
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="read, map, validate and batch; send nothing, change no state",
    )
    s.add_argument("--limit", type=_positive_int, help="read at most N rows")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument(
        "--retry-rejects",
        action="store_true",
        help="re-read the open rejects from the source and send those that pass now; "
        "the checkpoint does not move",
    )

    pl = sub.add_parser("plan", help="rows pending, requests and the least time the next run needs")
    pl.add_argument("sync")
    pl.add_argument("--full-refresh", action="store_true", help="plan a run from the start")
    pl.add_argument("--json", action="store_true", help="print the figures as JSON")

    v = sub.add_parser("validate", help="check config files and the warehouse columns")
    v.add_argument("syncs", nargs="*", help="sync names (default: all)")

    pr = sub.add_parser("preview", help="print the exact requests for the first rows")
    pr.add_argument("sync")
    pr.add_argument("--limit", type=_positive_int, default=3)

    st = sub.add_parser("state", help="show or reset a sync's checkpoint")
    st.add_argument("action", choices=["show", "reset"])
    st.add_argument("sync", nargs="?")
    st.add_argument("--scope", help="only this scope (incremental or partition:<key>)")
    st.add_argument(
        "--broken-store",
        action="store_true",
        help="reset: replace an unreadable state store by an empty one (a SQLite file is kept "
        "as <name>.broken-<time>; PostgreSQL's connector tables are dropped); every sync then "
        "sends all its rows again",
    )

    r = sub.add_parser("rejects", help="list the open rejects (key, reason, when) or export them")
    r.add_argument("sync")
    r.add_argument("--limit", type=_positive_int, help="at most N, newest first (default: all)")
    r.add_argument(
        "--format",
        choices=["table", "json", "csv"],
        default="table",
        help="json/csv: export key, reason, payload and rejected_at to stdout",
    )
    r.add_argument("--all", action="store_true", help="include closed rejects")
    r.add_argument("--scope", help="only this scope (incremental or partition:<key>)")

    sc = sub.add_parser("schema", help="print the JSON Schema of a sync file")
    sc.add_argument("--output", help="write to this file instead of stdout")

    sb = sub.add_parser("sandbox", help="run the local fake of the vendor APIs")
    sb.add_argument("--port", type=int, default=8089)
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    sb.add_argument("--no-rate-limits", action="store_true")
    sb.add_argument("--sink", action="store_true", help="count events only (benchmarks)")
    sb.add_argument(
        "--job-polls", type=int, default=1, help="polls a contact job stays running (default 1)"
    )
    sb.add_argument(
        "--brevo-attribute",
        action="append",
        default=[],
        metavar="NAME:TYPE",
        help="a Brevo account attribute (repeatable; replaces the default set)",
    )

    d = sub.add_parser(
        "demo", help="build the demo warehouse, start the sandbox, run the demo syncs"
    )
    d.add_argument("--events", type=int, default=5_000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe fails here, where it can be handled
        return code
    except BrokenPipeError:
        # The reader left (`connector state show x | head`): stop quietly like other Unix
        # tools; stdout goes to devnull so the interpreter's final flush cannot fail again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout replaced by something without a descriptor
            pass
        return EXIT_OK


def _main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        handlers=[logcontext.stamp(logging.StreamHandler(sys.stderr))],
        format=logcontext.FORMAT,
    )
    if args.config_dir:
        os.environ["CONNECTOR_CONFIG_DIR"] = args.config_dir
    try:
        handler = globals()[f"_cmd_{args.command}"]
        return int(handler(args))
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SourceError, StateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ConnectorError as exc:
        print(f"run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; the checkpoint stays at the last delivered row", file=sys.stderr)
        return EXIT_FAILED


def _state(args: argparse.Namespace) -> StateStore:
    from ..store.state import StateStore

    return StateStore.open(args.state_url)


def _cmd_sync(args: argparse.Namespace) -> int:
    from ..config.sync_file import load_sync
    from ..core.process import use_lean_memory_pool
    from ..report.progress import ProgressLine
    from ..report.summary import print_summary
    from ..run.sync import run_sync

    use_lean_memory_pool()
    if args.retry_rejects and args.full_refresh:
        print(
            "connector: error: retry_rejects and full_refresh cannot be combined", file=sys.stderr
        )
        return EXIT_USAGE
    sync = load_sync(args.sync)
    if sync.partitions is not None:
        print(
            f"note: {sync.name} is partitioned; Dagster delivers it per partition. This run "
            "uses the incremental scope, which does not know what the partitions delivered: "
            "rows sent by partition runs are sent again.",
            file=sys.stderr,
        )
    try:
        total = _plan_total(sync, args)
        res = run_sync(
            sync,
            state=_state(args),
            full_refresh=args.full_refresh,
            dry_run=args.dry_run,
            limit=args.limit,
            progress=ProgressLine(total, stream=sys.stderr),
            retry_rejects=args.retry_rejects,
        )
    except ConfigError:  # found once the warehouse is open (a missing column or file): exit 2
        raise
    except ConnectorError as exc:
        print(f"{sync.name}: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(res.to_dict(), default=str, indent=2))
    else:
        print_summary(res)
    return EXIT_OK


def _plan_total(sync: SyncConfig, args: argparse.Namespace) -> int | None:
    """Print the run's plan; the rows it will read (None: a retry, or the plan failed — the
    run then meets the same problem and records it as the run's error)."""
    if args.retry_rejects or sync.is_contact_sync:  # a contact run's work is its diff
        return None
    from ..run.run_plan import plan_run

    try:
        plan = plan_run(sync, _state(args), full_refresh=args.full_refresh)
    except ConnectorError:
        return None
    print(f"plan: {plan.line()}", file=sys.stderr, flush=True)
    return plan.rows if args.limit is None else min(plan.rows, args.limit)


def _validate_one(sync: SyncConfig, warnings: list[str] | None = None) -> list[str]:
    """Problems (the sync cannot run as written) of one sync against its warehouse columns;
    columns whose rows may not all convert for their field go to ``warnings``."""
    from ..read.source import Reader, type_problems

    where = sync.source_path or sync.name
    problems: list[str] = []
    with Reader(sync) as reader:
        types = reader.column_types()
    cursor = sync.source.cursor
    for col in sorted(
        {*([cursor] if cursor else []), *sync.source.primary_key, *sync.mapping.columns()}
    ):
        if col not in types:
            problems.append(
                f"{where}: column {col!r} is not in the source; it has: " + ", ".join(sorted(types))
            )
    problems += type_problems(sync, types, warnings)
    if sync.is_contact_sync and not problems:
        from ..run.contacts import contact_problems

        problems += contact_problems(sync, types, warnings)
    return problems


def _cmd_validate(args: argparse.Namespace) -> int:
    from ..config.sync_file import load_syncs
    from ..destinations import DESTINATIONS

    loaded = load_syncs()
    problems: list[str] = []
    for err in loaded.errors.values():
        problems += err.problems
    names = args.syncs or sorted(loaded.syncs)
    for name in names:
        if name not in loaded.syncs:
            if name not in loaded.duplicates and not any(
                Path(p).stem == name for p in loaded.errors
            ):
                problems.append(f"no sync named {name!r}")
            continue
        sync = loaded.syncs[name]
        warnings: list[str] = []
        try:
            found = _validate_one(sync, warnings)
        except ConfigError as exc:  # e.g. no such warehouse file: report it, check the rest
            found = exc.problems
        except SourceError as exc:
            found = [str(exc)]
        problems += found
        print(f"{'ok  ' if not found else 'FAIL'} {name} ({sync.destination.type})")
        for warning in warnings:
            print(f"     warning: {warning}")
        dest_cls = DESTINATIONS.get(sync.destination.type)  # either kind
        deprecation = dest_cls.deprecation if dest_cls is not None else None
        if deprecation:
            print(f"     deprecated: {deprecation}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    if not names:
        print(
            "no sync files found under",
            os.environ.get("CONNECTOR_CONFIG_DIR", "config"),
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    from ..config.sync_file import load_sync
    from ..core.process import use_lean_memory_pool
    from ..run.run_plan import plan_run

    use_lean_memory_pool()
    sync = load_sync(args.sync, check_env=False)
    plan = plan_run(sync, _state(args), full_refresh=args.full_refresh)
    if args.json:
        print(json.dumps(plan.to_dict(), default=str, indent=2, ensure_ascii=False))
    else:
        print_plan(plan)
    return EXIT_OK


def print_plan(plan: RunPlan, out: Any = None) -> None:
    """Print the plan of a run as ``connector plan`` shows it (to ``out``, default stdout):
    rows pending, events a request, requests, the destination's rate and the least duration."""
    from ..report.summary import fmt_position
    from ..run.run_plan import format_duration

    out = out or sys.stdout
    after = "full refresh" if plan.full_refresh else f"after {fmt_position(plan.checkpoint)}"
    size = f", ~{plan.event_bytes:,} bytes an event" if plan.event_bytes else ""
    print(f"{plan.sync} [{plan.scope}], {after}", file=out)
    print(f"  rows pending        {plan.rows:,}", file=out)
    print(
        f"  per request         {plan.per_request:,} events (limit {plan.max_events:,}{size})",
        file=out,
    )
    print(f"  requests            {plan.requests:,}", file=out)
    print(f"  rate                {plan.rate or 'no documented limit'}", file=out)
    if plan.duration_s is not None:
        print(f"  duration            ≥ {format_duration(plan.duration_s)}", file=out)
    print(plan.line(), file=out)


def _cmd_preview(args: argparse.Namespace) -> int:
    from ..config.sync_file import load_sync
    from ..core.process import use_lean_memory_pool
    from ..run.run_plan import plan_run
    from ..run.sync import preview

    use_lean_memory_pool()
    sync = load_sync(args.sync, check_env=False)
    if not sync.is_contact_sync:  # a contact run's size depends on the diff, not a count
        print_plan(plan_run(sync, _state(args)))
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


def _cmd_state(args: argparse.Namespace) -> int:
    from ..config.sync_file import load_sync
    from ..report.summary import fmt_position
    from ..store.lease import live_holders
    from ..store.state import INCREMENTAL, reset_broken_store

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
    store = _state(args)
    if args.action == "reset":
        running = live_holders(store, sync.name, args.scope)
        if running:
            print(
                f"connector: error: {sync.name} is running ({'; '.join(running)}): a reset "
                "now would be undone by that run's own writes. Reset after it ends",
                file=sys.stderr,
            )
            return EXIT_FAILED
        store.reset(sync.name, args.scope)
        if sync.is_contact_sync and args.scope in (None, INCREMENTAL):
            from ..contacts.hashes import HashStore

            HashStore(store).forget(sync.name)  # the next run sends every contact again
        print(
            f"{sync.name}: state reset ({args.scope or 'all scopes'}); the next run starts "
            "from the beginning"
        )
        return EXIT_OK
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


def _cmd_rejects(args: argparse.Namespace) -> int:
    from ..config.sync_file import load_sync

    sync = load_sync(args.sync, check_env=False)
    store = _state(args)
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
    import csv

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


def _cmd_schema(args: argparse.Namespace) -> int:
    from ..config.sync_file import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from ..sandbox import SandboxOptions, serve
    from ..sandbox.options import parse_brevo_attributes

    try:
        extra: dict[str, Any] = {}
        if args.brevo_attribute:
            extra["brevo_attributes"] = parse_brevo_attributes(args.brevo_attribute)
        opts = SandboxOptions(
            latency_s=args.latency_ms / 1000.0,
            rate_limits_enabled=not args.no_rate_limits,
            validate=not args.sink,
            contact_job_polls=args.job_polls,
            **extra,
        )
    except ValueError as exc:
        print(f"connector sandbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve(args.port, host=args.host, options=opts)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..core.process import use_lean_memory_pool
    from .demo_run import run_demo

    use_lean_memory_pool()
    return run_demo(events=args.events, state_url=args.state_url)


def entry() -> int:
    """The ``connector`` command: a process of its own (see ``process.keep_pandas_out``)."""
    keep_pandas_out()
    keep_httpx_cli_out()
    return main()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(entry())
