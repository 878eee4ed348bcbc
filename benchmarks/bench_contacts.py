"""Benchmark: a contact sync of N customers (DuckDB) → Klaviyo profile import or Brevo contact
import (sandbox sink).

    python benchmarks/bench_contacts.py --rows 1000000 [--state-url postgresql+psycopg://...]
        [--vendor brevo] [--audit]

Three runs, each in its own process so each peak RSS is its own:
1. first run: every row is new (all sent as import jobs of 10,000 profiles);
2. 1% of the rows changed (``UPDATE ... WHERE customer_id % 100 = 0``): wall time, peak RSS;
3. nothing changed: the pure diff rate (rows read and compared per second, nothing sent).
The sandbox runs in its own process in sink mode (jobs finish at the first poll, nothing is
stored, no rate limits), so the figures are the connector's own. The state store is a SQLite
file by default or ``--state-url``. ``--audit`` writes the audit tables too (``CONNECTOR_AUDIT=1``:
a DuckDB file beside the table, docs/audit.md).
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
import time
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYNC = """
name: bench_contacts
source: {{table: customers, primary_key: [customer_id], url: "duckdb:///{db}", chunk_size: 10000}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {url}
  options: {{poll_interval_s: 0.05, poll_max_interval_s: 0.2, list_id: BENCH}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name, last_name: last_name, plan: plan,
    ltv: lifetime_value, orders: orders, last_order: last_order_at, location.city: city}}
"""
SYNC_BREVO = """
name: bench_contacts
source: {{table: customers, primary_key: [customer_id], url: "duckdb:///{db}", chunk_size: 10000}}
destination:
  type: brevo_contacts
  api_key: ${{BREVO_API_KEY}}
  base_url: {url}
  options: {{poll_interval_s: 0.05, poll_max_interval_s: 0.2, list_ids: [1]}}
mapping:
  identifiers: {{email: email, ext_id: customer_id}}
  contact_properties: {{FIRSTNAME: first_name, LASTNAME: last_name, PLAN: plan,
    LTV: lifetime_value, ORDERS: orders, LAST_ORDER: last_order_at, CITY: city}}
"""
BREVO_ACCOUNT = (
    "FIRSTNAME:text LASTNAME:text EXT_ID:text PLAN:text LTV:float ORDERS:float "
    "LAST_ORDER:text CITY:text"
)


def make_table(path: Path, rows: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(f"""
        CREATE TABLE customers AS
        SELECT i AS customer_id,
               'customer' || i || '@example.com' AS email,
               (['Ada','Grace','Alan','Edsger','Barbara','Ken'])[1 + i % 6] AS first_name,
               (['Lovelace','Hopper','Turing','Dijkstra','Liskov'])[1 + i % 5] AS last_name,
               (['free','pro','team'])[1 + i % 3] AS plan,
               CAST((i * 37) % 100000 AS DECIMAL(12, 2)) / 7 AS lifetime_value,
               i % 50 AS orders,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i % 10000000) AS last_order_at,
               CASE WHEN i % 9 = 0 THEN NULL ELSE (['Paris','Berlin','Oslo'])[1 + i % 3] END
                   AS city
        FROM range(1, {rows} + 1) t(i)
    """)
    con.close()


def phase(args: argparse.Namespace) -> None:
    """One run in this process; prints its figures as JSON."""
    from connector.core.process import keep_pandas_out, use_lean_memory_pool

    keep_pandas_out()  # what the `connector` command does (before pyarrow's first pa.array)
    use_lean_memory_pool()
    from connector.config.sync_file import parse_sync
    from connector.run.contacts import run_contacts
    from connector.store.state import StateStore

    os.environ["KLAVIYO_API_KEY"] = "pk_sandbox"
    os.environ["BREVO_API_KEY"] = "sandbox-brevo-key"
    text = SYNC_BREVO if args.vendor == "brevo" else SYNC
    sync = parse_sync(text.format(db=args.db, url=args.url), "bench.yaml")
    state = StateStore(args.state_url)
    t0, cpu0 = time.perf_counter(), time.process_time()
    res = run_contacts(sync, state)
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "rows_read": res.rows_read,
                "added": res.added,
                "changed": res.changed,
                "unchanged": res.unchanged,
                "sent": res.sent,
                "delivered": res.delivered,
                "jobs": res.jobs,
                "wall_s": round(wall, 2),
                "cpu_s": round(time.process_time() - cpu0, 2),
                "rows_per_s": round(res.rows_read / wall),
                "peak_rss_mib": peak_rss_mib(),
                "load": _load(),
            }
        )
    )


def peak_rss_mib() -> int:
    """This process's peak RSS: ``VmHWM``, the high-water mark of its own address space.
    ``ru_maxrss`` is not used: on Linux it starts at the parent's RSS at fork and survives the
    exec, so every run reported the parent's 320 MiB after it had built a 10M-row table."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _load() -> str:
    """The load average (1, 5, 15 min): the machine is shared, so rows/s move with it."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--state-url", help="default: a SQLite file in the work dir")
    ap.add_argument("--workdir")
    ap.add_argument("--vendor", choices=["klaviyo", "brevo"], default="klaviyo")
    ap.add_argument("--audit", action="store_true", help="write the audit tables too")
    ap.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        phase(args)
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-contacts-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"customers_{args.rows}.duckdb"
    db.unlink(missing_ok=True)
    db.with_name(f"{db.stem}.audit.duckdb").unlink(missing_ok=True)
    if args.audit:  # inherited by the runs' processes
        os.environ["CONNECTOR_AUDIT"] = "1"
    else:
        os.environ.pop("CONNECTOR_AUDIT", None)
    make_table(db, args.rows)
    state_url = args.state_url or f"sqlite:///{work / 'state.db'}"
    if not args.state_url:
        (work / "state.db").unlink(missing_ok=True)
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
            "--job-polls",
            "0",
            *[f"--brevo-attribute={a}" for a in BREVO_ACCOUNT.split()],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    results = {}
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/_sandbox/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)

        def run(name: str) -> None:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--phase",
                    "--db",
                    str(db),
                    "--url",
                    url,
                    "--state-url",
                    state_url,
                    "--vendor",
                    args.vendor,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode:
                sys.stderr.write(out.stderr[-3000:])
                raise SystemExit(f"{name}: the run exited {out.returncode} (its stderr above)")
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, results[name], flush=True)

        run("first_run")
        con = duckdb.connect(str(db))
        con.execute("UPDATE customers SET plan = 'vip' WHERE customer_id % 100 = 0")
        con.close()
        run("one_percent_changed")
        run("unchanged")
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(10)
        except subprocess.TimeoutExpired:  # a request thread still open: the figures stand
            sandbox.kill()
            sandbox.wait()
    summary = {
        "rows": args.rows,
        "vendor": args.vendor,
        "state": state_url.split(":", 1)[0],
        "audit": args.audit,
        **results,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {_load()}",
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
