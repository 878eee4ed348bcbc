"""Benchmark: N generated event rows in DuckDB → a sync → the sandbox (sink mode, own process).

    python benchmarks/bench_sync.py --rows 1000000 [--destination klaviyo_bulk_events]

Reports rows/s end to end, CPU seconds and peak RSS of the connector process, then the wall
time of a no-op incremental rerun. The data has mixed types (strings, decimals, doubles with
NaN, booleans, dates, JSON), cursor ties (4 rows per second) and NULLs (identifiers, properties,
some NULL cursors). The sandbox runs in a separate process in sink mode (authenticates, parses,
counts) with no rate limits and no added latency, so the figure is the connector's own speed.
"""

from __future__ import annotations

import argparse
import json
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

from connector.config import parse_sync  # noqa: E402
from connector.process import use_lean_memory_pool  # noqa: E402
from connector.state import StateStore  # noqa: E402
from connector.sync import run_sync  # noqa: E402

KEYS = {
    "klaviyo_bulk_events": ("KLAVIYO_API_KEY", "pk_sandbox"),
    "brevo_events_batch": ("BREVO_API_KEY", "sandbox-brevo-key"),
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


SYNC = """
name: bench
source:
  table: events
  cursor: occurred_at
  primary_key: [event_id]
  url: duckdb:///{db}
{chunk_size}destination:
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
    title: title
    duration: duration_s
    score: score
    autoplayed: autoplayed
    upload_date: upload_date
    context: context
  contact_properties: {{{contact}: first_name}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--destination", default="klaviyo_bulk_events", choices=sorted(KEYS))
    ap.add_argument("--workdir", help="keep files here (default: a temp dir)")
    ap.add_argument("--json", help="also write the result as JSON to this file")
    ap.add_argument("--chunk-size", type=int, help="source.chunk_size (default: the config's)")
    ap.add_argument(
        "--duckdb-settings",
        default="",
        help="DuckDB settings as URL query parameters, e.g. 'memory_limit=64MB&threads=1'",
    )
    args = ap.parse_args()
    pool = use_lean_memory_pool()  # what the `connector` command does
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"events_{args.rows}.duckdb"
    if not db.exists():
        t0 = time.perf_counter()
        make_table(db, args.rows)
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
                dest=args.destination,
                key_env=key_env,
                url=url,
                idents="{email: email, external_id: user_id}"
                if klaviyo
                else "{email_id: email, ext_id: user_id}",
                contact="first_name" if klaviyo else "FIRSTNAME",
            ),
            "bench.yaml",
        )
        state = StateStore(f"sqlite:///{work / 'state.db'}")
        state.reset("bench")

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        res = run_sync(sync, state=state)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        t1 = time.perf_counter()
        noop = run_sync(sync, state=state)
        noop_wall = time.perf_counter() - t1
        stats = httpx.get(f"{url}/_sandbox/stats", timeout=5).json()
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    out = {
        "destination": args.destination,
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
        "arrow_pool": pool,
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
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
