"""Benchmark: N generated event rows in DuckDB → a sync → the sandbox (sink mode, own process).

    python benchmarks/bench_sync.py --rows 1000000 [--table mixed|classic] [--dlt]
        [--destination klaviyo_bulk_events] [--audit]

Reports rows/s end to end, CPU seconds and peak RSS of the connector process, then the wall
time of a no-op incremental rerun. The sandbox runs in a separate process in sink mode
(authenticates, parses, counts) with no rate limits and no added latency, so the figure is the
connector's own speed.

``--audit`` writes the audit tables too (``CONNECTOR_AUDIT=1``: a DuckDB file beside the table,
docs/audit.md); compare its CPU seconds and peak RSS with a run without it.

Tables: ``mixed`` (default, issue 11): 12 mapped columns of mixed types: a JSON column, a
DECIMAL(10,2), a naive TIMESTAMP cursor with ~10% ties and a second naive TIMESTAMP, a
nullable VARCHAR with 20% NULLs, booleans, integers. ``classic``: the table of the first
figures in docs/performance.md (strings, decimals, doubles with NaN, booleans, dates, JSON;
4 rows per cursor value; a few NULL cursors).

``--dlt`` also runs dlt on the same table in the same benchmark run: ``sql_table`` with
``backend="pyarrow"`` and an incremental cursor into dlt's local ``filesystem`` destination
(JSON lines by default, the same kind of output the connector makes; ``--dlt-format
parquet`` copies the Arrow pages into Parquet without any JSON step). dlt's dependency pins
conflict with this project's, so the script makes a separate virtual environment for it
(``--dlt-venv``, default ``benchmarks/.dlt-venv``) and installs dlt there with pip on first
use.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.core.process import keep_pandas_out  # noqa: E402

keep_pandas_out()  # like the `connector` command

from connector.config.sync_file import SyncConfig, parse_sync  # noqa: E402
from connector.core.process import use_lean_memory_pool  # noqa: E402
from connector.run.sync import run_sync  # noqa: E402
from connector.store.state import StateStore  # noqa: E402

KEYS = {
    "klaviyo_bulk_events": ("KLAVIYO_API_KEY", "pk_sandbox"),
    "brevo_events_batch": ("BREVO_API_KEY", "sandbox-brevo-key"),
}


def make_mixed_table(path: Path, rows: int, first: int = 0) -> None:
    """12 mapped columns; every 10th row ties its cursor with the row before it. ``first``
    > 0: append rows ``first..first+rows-1`` to the table instead (``--lookback``)."""
    con = duckdb.connect(str(path))
    head = "INSERT INTO events" if first else "CREATE TABLE events AS"
    con.execute(f"""
        {head}
        SELECT i AS event_id,
               TIMESTAMP '2026-01-01 00:00:00' + to_seconds(i - CAST(i % 10 = 9 AS BIGINT))
                   AS occurred_at,
               (['play','pause','seek','complete'])[1 + i % 4] AS action,
               CASE WHEN i % 50 = 3 THEN NULL ELSE 'user' || (i % 200000) || '@example.com'
                   END AS email,
               'ext-' || (i % 200000) AS user_id,
               CAST('{{"device": "web", "v": ' || (i % 5)
                    || ', "screen": {{"w": 1280, "h": 720}}}}' AS JSON) AS context,
               CAST(((i * 37) % 100000) / 100.0 AS DECIMAL(10, 2)) AS price,
               TIMESTAMP '2025-06-01 08:00:00' + to_seconds(i % 86400) AS watched_at,
               CASE WHEN i % 5 = 0 THEN NULL ELSE 'SPRING' || (i % 97) END AS coupon,
               (i % 3 = 0) AS autoplayed,
               CAST(i % 1000 AS INTEGER) AS quantity,
               i * 7 AS position,
               CASE WHEN i % 7 = 0 THEN NULL ELSE (['Ada','Alan','Grace'])[1 + i % 3] END
                   AS first_name
        FROM range({first}, {first + rows}) t(i)
    """)
    con.close()


def append_rows(db: Path, first: int, new: int, late: int) -> None:
    """``new`` rows after the table's last, then ``late`` rows whose cursor lies 30 minutes
    behind it (rows that committed late)."""
    make_mixed_table(db, new + late, first)
    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE events SET occurred_at = (SELECT max(occurred_at) FROM events WHERE event_id < "
        f"{first}) - INTERVAL 30 MINUTE WHERE event_id >= {first + new}"
    )
    con.close()


def lookback_rerun(
    sync: SyncConfig, state: StateStore, db: Path, rows: int, new: int, late: int
) -> dict[str, object]:
    """Append ``new`` and ``late`` rows, run again: the incremental run with the window's cost
    (rows re-read, late rows caught, state size)."""
    append_rows(db, rows, new, late)
    t0 = time.perf_counter()
    res = run_sync(sync, state=state)
    wall = time.perf_counter() - t0
    return {
        "rerun_new_rows": new,
        "rerun_late_rows": late,
        "rerun_wall_s": round(wall, 3),
        "rerun_rows_read": res.rows_read,
        "rerun_delivered": res.delivered,
        "rerun_late_caught": res.late_rows,
        "rerun_window_reread": res.window_reread,
        "window_table_rows": state.window_size("bench"),
    }


def make_table(path: Path, rows: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(f"""
        CREATE TABLE events AS
        SELECT i AS event_id,
               CASE WHEN i % 100003 = 7 THEN NULL
                    ELSE TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i // 4) END
                   AS occurred_at,
               CASE WHEN i % 50 = 3 THEN NULL ELSE 'user' || (i % 200000) || '@example.com'
                   END AS email,
               'ext-' || (i % 200000) AS user_id,
               (['play','pause','seek','complete'])[1 + i % 4] AS action,
               'Video title number ' || (i % 997) AS title,
               CAST((i * 37) % 6000 AS DECIMAL(10, 1)) AS duration_s,
               CASE WHEN i % 10 = 0 THEN 'nan'::DOUBLE ELSE (i % 1000) / 7.0 END AS score,
               (i % 3 = 0) AS autoplayed,
               DATE '2025-01-01' + CAST(i % 365 AS INTEGER) AS upload_date,
               CASE WHEN i % 7 = 0 THEN NULL ELSE (['Ada','Alan','Grace'])[1 + i % 3] END
                   AS first_name,
               CAST('{{"device": "web", "v": ' || (i % 5) || '}}' AS JSON) AS context
        FROM range({rows}) t(i)
    """)
    con.close()


MIXED_PROPS = """    context: context
    price: price
    watched_at: watched_at
    coupon: coupon
    autoplayed: autoplayed
    quantity: quantity
    position: position
"""
CLASSIC_PROPS = """    title: title
    duration: duration_s
    score: score
    autoplayed: autoplayed
    upload_date: upload_date
    context: context
"""

SYNC = """
name: bench
source:
  table: events
  cursor: occurred_at
  primary_key: [event_id]
  url: duckdb:///{db}
{chunk_size}{lookback}destination:
  type: {dest}
  api_key: ${{{key_env}}}
  base_url: {url}
  options:
    rate_limit: {{per_second: 100000}}
mapping:
  event_name: {{column: action}}
  event_time: occurred_at
  identifiers: {idents}
  event_properties:
{props}  contact_properties: {{{contact}: first_name}}
"""


DLT_SCRIPT = """
import json, resource, sys, time
import dlt
import duckdb_engine
from dlt.sources.sql_database import sql_table

# SQLAlchemy's table reflection of constraints and indexes fails on DuckDB 2 (its PostgreSQL
# catalog queries cast to REGCLASS); columns reflect fine. The table has none of them.
for what in ("pk_constraint", "foreign_keys", "indexes", "unique_constraints",
             "check_constraints", "table_comment"):
    setattr(duckdb_engine.Dialect, "get_multi_" + what, lambda *a, **k: [])

db, out, rows, fmt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
pipe = dlt.pipeline(
    pipeline_name="bench_dlt",
    pipelines_dir=out + "/pipelines",
    destination=dlt.destinations.filesystem(bucket_url="file://" + out + "/data"),
    dataset_name="bench",
)
src = sql_table(
    credentials="duckdb:///" + db,
    table="events",
    backend="pyarrow",
    chunk_size=50000,
    incremental=dlt.sources.incremental("occurred_at"),
)
t0 = time.perf_counter()
info = pipe.run(src, loader_file_format=fmt)
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "rows_per_s": rows / wall, "peak_rss_mib": rss,
                  "version": dlt.__version__}))
"""


def run_dlt(venv: Path, db: Path, work: Path, rows: int, fmt: str) -> dict[str, object]:
    """dlt in its own virtual environment (its pins conflict with ours), same table."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making a separate virtual environment for dlt in {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "dlt[duckdb,filesystem,parquet]",
                "sqlalchemy>=2.0,<2.1",  # 2.1 reflects DuckDB with pg_collation
                "duckdb-engine",
                "pyarrow",
            ],
            check=True,
        )
    out = work / "dlt"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    proc = subprocess.run(
        [str(python), "-c", DLT_SCRIPT, str(db), str(out), str(rows), fmt],
        capture_output=True,
        text=True,
        cwd=work,
    )
    if proc.returncode != 0:
        raise SystemExit(f"dlt run failed:\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = round(float(result["rows_per_s"]))  # type: ignore[arg-type]
    result["peak_rss_mib"] = round(float(result["peak_rss_mib"]), 1)  # type: ignore[arg-type]
    return result


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def table(out: dict[str, object]) -> str:
    """The clean results table (markdown), one line per run."""
    dlt = out["dlt_rows_per_s"]
    cells = [
        f"{out['rows']:,}",
        out["table"],
        out["destination"],
        f"{out['rows_per_s']:,}",
        f"{out['cpu_s']:.1f}",
        f"{out['peak_rss_mib']:.0f} MiB",
        f"{out['noop_rerun_wall_s']:.2f} s",
        f"{dlt:,}" if dlt else "—",
        f"{out['ratio_vs_dlt']:.2f}x" if dlt else "—",
        out["load"],
    ]
    head = "| rows | table | destination | rows/s | CPU s | peak RSS | no-op rerun "
    head += "| dlt rows/s | ratio | load (1/5/15 min) |"
    return "\n".join(
        [head, "|" + "---|" * len(cells), "| " + " | ".join(str(c) for c in cells) + " |"]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--destination", default="klaviyo_bulk_events", choices=sorted(KEYS))
    ap.add_argument("--table", default="mixed", choices=["mixed", "classic"])
    ap.add_argument("--dlt", action="store_true", help="also run dlt on the same table")
    ap.add_argument("--dlt-venv", default=str(ROOT / "benchmarks" / ".dlt-venv"))
    ap.add_argument(
        "--dlt-format",
        default="jsonl",
        choices=["jsonl", "parquet"],
        help="dlt's file format: jsonl (default) writes JSON text like the connector does; "
        "parquet copies the Arrow pages without a JSON step",
    )
    ap.add_argument("--workdir", help="keep files here (default: a temp dir)")
    ap.add_argument("--audit", action="store_true", help="write the audit tables too")
    ap.add_argument("--json", help="also write the result as JSON to this file")
    ap.add_argument("--profile", help="write a cProfile of the measured run to this file")
    ap.add_argument("--chunk-size", type=int, help="source.chunk_size (default: the config's)")
    ap.add_argument(
        "--lookback",
        help="source.lookback (default: the config's, 1h; off disables); with --table mixed "
        "also appends 10,000 new and 100 late rows after the no-op rerun and runs again",
    )
    ap.add_argument(
        "--duckdb-settings",
        default="",
        help="DuckDB settings as URL query parameters, e.g. 'memory_limit=64MB&threads=1'",
    )
    args = ap.parse_args()
    pool = use_lean_memory_pool()  # what the `connector` command does
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"events_{args.table}_{args.rows}.duckdb"
    if not db.exists():
        t0 = time.perf_counter()
        # In a process of its own: DuckDB building a 10M-row table would otherwise set this
        # process's peak RSS (ru_maxrss) before the run is measured.
        maker = make_mixed_table if args.table == "mixed" else make_table
        proc = multiprocessing.get_context("spawn").Process(target=maker, args=(db, args.rows))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"generating the table failed (exit {proc.exitcode})")
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f}s", flush=True)

    port = free_port()
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector.cli",
            "sandbox",
            "--port",
            str(port),
            "--sink",
            "--no-rate-limits",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/_sandbox/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        key_env, key = KEYS[args.destination]
        os.environ[key_env] = key
        klaviyo = args.destination == "klaviyo_bulk_events"
        sync = parse_sync(
            SYNC.format(
                db=f"{db}?{args.duckdb_settings}" if args.duckdb_settings else db,
                chunk_size=f"  chunk_size: {args.chunk_size}\n" if args.chunk_size else "",
                lookback=f"  lookback: {args.lookback}\n" if args.lookback else "",
                dest=args.destination,
                key_env=key_env,
                url=url,
                idents="{email: email, external_id: user_id}"
                if klaviyo
                else "{email_id: email, ext_id: user_id}",
                contact="first_name" if klaviyo else "FIRSTNAME",
                props=MIXED_PROPS if args.table == "mixed" else CLASSIC_PROPS,
            ),
            "bench.yaml",
        )
        state = StateStore(f"sqlite:///{work / 'state.db'}")
        state.reset("bench")
        audit_file = db.with_name(f"{db.stem}.audit.duckdb")
        audit_file.unlink(missing_ok=True)  # every run writes its audit rows from scratch
        if args.audit:
            os.environ["CONNECTOR_AUDIT"] = "1"
        else:
            os.environ.pop("CONNECTOR_AUDIT", None)

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if args.profile:
            import cProfile

            with cProfile.Profile() as prof:
                res = run_sync(sync, state=state)
            prof.dump_stats(args.profile)
        else:
            res = run_sync(sync, state=state)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        t1 = time.perf_counter()
        noop = run_sync(sync, state=state)
        noop_wall = time.perf_counter() - t1
        window: dict[str, object] = {"window_table_rows_after_run": state.window_size("bench")}
        if args.lookback and args.table == "mixed":
            window |= lookback_rerun(sync, state, db, args.rows, 10_000, 100)
            db.unlink()  # the appended rows would change the next run's table
        stats = httpx.get(f"{url}/_sandbox/stats", timeout=5).json()
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    dlt = run_dlt(Path(args.dlt_venv), db, work, args.rows, args.dlt_format) if args.dlt else None
    out = {
        "destination": args.destination,
        "table": args.table,
        "rows": args.rows,
        "rows_read": res.rows_read,
        "delivered": res.delivered,
        "rejected": res.rejected,
        "requests": res.requests,
        "sandbox_events": stats.get("events", {}).get(args.destination),
        "wall_s": round(wall, 2),
        "rows_per_s": round(res.rows_read / wall),
        "cpu_s": round(cpu, 2),
        "peak_rss_mib": round(rss_mib, 1),
        "noop_rerun_wall_s": round(noop_wall, 3),
        "noop_rerun_rows": noop.rows_read,
        "noop_rerun_window_reread": noop.window_reread,
        "lookback": res.lookback,
        **window,
        "state_db_bytes": (work / "state.db").stat().st_size,
        "audit": args.audit,
        "arrow_pool": pool,
        "dlt_rows_per_s": dlt["rows_per_s"] if dlt else None,
        "dlt_peak_rss_mib": dlt["peak_rss_mib"] if dlt else None,
        "dlt_version": dlt["version"] if dlt else None,
        "dlt_format": args.dlt_format if dlt else None,
        "ratio_vs_dlt": round(res.rows_read / wall / float(dlt["rows_per_s"]), 2)  # type: ignore[arg-type]
        if dlt
        else None,
        "load": load_average(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
    }
    print(
        textwrap.dedent(f"""
        {args.destination}: {args.rows:,} rows
          delivered {res.delivered:,}, rejected {res.rejected:,}, {res.requests:,} requests
          wall {wall:.2f}s → {out["rows_per_s"]:,} rows/s; CPU {cpu:.2f}s; peak RSS \
{rss_mib:.0f} MiB (Arrow pool: {pool})
          no-op incremental rerun: {noop_wall:.3f}s ({noop.rows_read} rows)
    """)
    )
    print(table(out))
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
