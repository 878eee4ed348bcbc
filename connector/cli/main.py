"""``connector`` command line.

Exit codes: 0 every row delivered or rejected with a recorded reason; 1 the run failed (the
checkpoint stays at the last delivered row); 2 config or usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..core import logcontext
from ..core.errors import ConfigError, ConnectorError, SourceError, StateError
from ..core.process import (
    keep_httpx_cli_out,
    keep_pandas_out,
    skip_pydantic_plugins,
    skip_the_last_collection,
)
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, open_state

# Everything else is imported by the command that needs it: ``connector --help`` and the
# state commands then start without pyarrow, httpx or the destinations (docs/performance.md,
# "Start-up"; tests/cli/test_main.py checks it).
if TYPE_CHECKING:
    from ..config.sync_file import SyncConfig


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
    sb.add_argument(
        "--demo",
        action="store_true",
        help="the demo's accounts: the Brevo attributes its contact sync maps (PLAN, LTV) "
        "besides the default set",
    )
    # Fault options (issue 19): answers a client must read right.
    sb.add_argument(
        "--omnisend-batch-items",
        choices=("all", "split"),
        default="all",
        help="split: Omnisend batch items list refused items only under errors[]",
    )
    sb.add_argument(
        "--omnisend-version",
        action="append",
        default=[],
        help="an Omnisend-Version the dated API serves (repeatable; default 2026-03-15)",
    )
    sb.add_argument(
        "--omnisend-retired-version",
        action="append",
        default=[],
        help="an Omnisend-Version answered 410 Gone (repeatable)",
    )
    sb.add_argument(
        "--disabled-event-name",
        action="append",
        default=[],
        help="an event name the account has not enabled: Brevo batch and Klaviyo bulk refuse "
        "each such event (repeatable)",
    )

    d = sub.add_parser(
        "demo", help="build the demo warehouse, start the sandbox, run the demo syncs"
    )
    d.add_argument("--events", type=int, default=5_000)

    rc = sub.add_parser(
        "reconcile",
        help="compare the source's rows per period with the rows the sync handled; exit 1 "
        "when rows are missing",
    )
    rc.add_argument("sync")
    rc.add_argument("--scope", help="only this scope (incremental or partition:<key>)")
    rc.add_argument("--period", choices=["day", "hour", "month"], help="default: day")
    rc.add_argument("--json", action="store_true", help="print the report as JSON")
    rc.add_argument(
        "--send-missing",
        action="store_true",
        help="re-send every row of the periods with missing rows, with their dedup ids "
        "(destinations that deduplicate only, unless --accept-duplicates)",
    )
    rc.add_argument(
        "--accept-duplicates",
        action="store_true",
        help="with --send-missing: also to a destination that does not deduplicate (the "
        "already delivered rows of those periods are sent again)",
    )
    ve = sub.add_parser(
        "verify", help="read a sample of confirmed contacts back from the vendor and compare"
    )
    ve.add_argument("sync")
    ve.add_argument(
        "--sample",
        type=_positive_int,
        help="contacts to read back (default: the sync file's verify.sample, else 100)",
    )
    ve.add_argument("--json", action="store_true", help="print the report as JSON")
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
        return int(_handler(args.command)(args))
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


# Commands that live in their own module: imported only when they run.
_ELSEWHERE = {
    "plan": ("planning", "cmd_plan"),
    "preview": ("planning", "cmd_preview"),
    "state": ("records", "cmd_state"),
    "rejects": ("records", "cmd_rejects"),
    "reconcile": ("reconcile", "cmd_reconcile"),
    "verify": ("verify", "cmd_verify"),
}


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    if command in _ELSEWHERE:
        module, name = _ELSEWHERE[command]
        return getattr(importlib.import_module(f".{module}", __package__), name)
    return globals()[f"_cmd_{command}"]


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
    try:
        sync = load_sync(args.sync)
    except ConfigError as exc:
        if args.json:
            print(json.dumps({"sync": args.sync, "status": "failed", "error": str(exc)}))
        raise
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
            state=open_state(args),
            full_refresh=args.full_refresh,
            dry_run=args.dry_run,
            limit=args.limit,
            progress=ProgressLine(total, stream=sys.stderr),
            retry_rejects=args.retry_rejects,
        )
    except ConfigError as exc:  # found once the warehouse is open (a missing column): exit 2
        if args.json:
            _failed_json(sync.name, exc, args)
        raise
    except ConnectorError as exc:
        print(f"{sync.name}: run failed: {exc}", file=sys.stderr)
        if args.json:
            _failed_json(sync.name, exc, args)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(res.to_dict(), default=str, indent=2))
    else:
        print_summary(res)
    return EXIT_OK


def _failed_json(name: str, exc: BaseException, args: argparse.Namespace) -> None:
    """``--json`` of a run that failed: status, error, and the counts its run record holds."""
    out: dict[str, Any] = {}
    try:
        last = open_state(args).runs(name, limit=1)
        if last and last[0]["status"] == "failed":
            out.update(last[0]["summary"] or {})
    except ConnectorError:  # the store itself failed: the error says so
        pass
    out.update(sync=name, status="failed", error=str(exc))
    print(json.dumps(out, default=str, indent=2))


def _plan_total(sync: SyncConfig, args: argparse.Namespace) -> int | None:
    """Print the run's plan; the rows it will read (None: a retry, or the plan failed — the
    run then meets the same problem and records it as the run's error)."""
    if args.retry_rejects:
        return None
    from ..run.run_plan import plan_sync, planned_rows

    try:
        # The run that follows opens the same engine: the plan leaves it to the run to release.
        plan = plan_sync(
            sync, open_state(args), full_refresh=args.full_refresh, limit=args.limit, release=False
        )
    except ConnectorError:
        return None
    print(f"plan: {plan.line()}", file=sys.stderr, flush=True)
    return planned_rows(plan, args.limit)


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
                try:
                    loaded.get(name)
                except ConfigError as exc:  # no such sync, or a file declaring it is broken
                    problems += [] if name in loaded.declared else exc.problems
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
    from ..contacts.external_ids import external_id_overlaps  # issue 19: shared Klaviyo ids

    for warning in external_id_overlaps([loaded.syncs[n] for n in names if n in loaded.syncs]):
        print(f"warning: {warning}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    if not names and loaded.missing_dir is not None:
        what = "is not a directory" if loaded.missing_dir.exists() else "does not exist"
        print(f"the config directory {loaded.missing_dir} {what}", file=sys.stderr)
        return EXIT_USAGE
    if not names:
        print(
            "no sync files found under",
            os.environ.get("CONNECTOR_CONFIG_DIR", "config"),
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


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
        attributes: dict[str, str] = {}
        if args.demo:
            from .demo_run import DEMO_BREVO_ATTRIBUTES

            attributes.update(DEMO_BREVO_ATTRIBUTES)
        attributes.update(parse_brevo_attributes(args.brevo_attribute))
        if attributes:  # else the sandbox's default account
            extra["brevo_attributes"] = attributes
        if args.omnisend_version:
            extra["omnisend_versions"] = tuple(args.omnisend_version)
        opts = SandboxOptions(
            latency_s=args.latency_ms / 1000.0,
            rate_limits_enabled=not args.no_rate_limits,
            validate=not args.sink,
            contact_job_polls=args.job_polls,
            omnisend_batch_items=args.omnisend_batch_items,
            omnisend_retired_versions=tuple(args.omnisend_retired_version),
            disabled_event_names=tuple(args.disabled_event_name),
            **extra,
        )
    except ValueError as exc:
        print(f"connector sandbox: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        serve(args.port, host=args.host, options=opts)
    except (OSError, OverflowError) as exc:
        import errno
        import socket

        code = getattr(exc, "errno", None)
        why = {
            errno.EADDRINUSE: "the port is already in use (another sandbox or server listens "
            "there); pick another with --port (--port 0 takes a free one)",
            errno.EACCES: "this user may not use the port (ports below 1024 need privileges); "
            "pick another with --port (--port 0 takes a free one)",
            errno.EADDRNOTAVAIL: "the host is not an address of this machine; use --host "
            "127.0.0.1 (or 0.0.0.0 for every interface)",
        }.get(code or 0)
        if isinstance(exc, OverflowError):
            why = "a port is a number from 0 to 65535 (0 takes a free one)"
        elif isinstance(exc, socket.gaierror):
            why = f"the host name does not resolve ({exc.strerror}); use --host 127.0.0.1"
        if why is None:
            raise
        where = f"{args.host}:{args.port}"
        print(f"connector sandbox: cannot listen on {where}: {why}", file=sys.stderr)
        return EXIT_USAGE
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
    skip_pydantic_plugins()
    try:
        return main()
    finally:
        skip_the_last_collection()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(entry())
