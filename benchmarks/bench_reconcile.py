"""Benchmark: the cost of ``connector reconcile`` (and the ``nothing_missing`` check) on N rows.

    python benchmarks/bench_reconcile.py --rows 10000000

Builds a DuckDB file of N events (a ``TIMESTAMPTZ`` cursor spread over a year), stores a
checkpoint at the last row and the per-period counts a run would have stored (from the same
rows, through ``store.periods.period_keys``), then times:

1. ``reconcile``: the one ``GROUP BY`` on the source plus the comparison (what the check runs);
2. ``period_keys`` of all N cursors in pages of 1,000 (what the settles of a run add).

Wall and CPU time of this process (DuckDB runs in it; its one thread is in the CPU time).

Prints JSON with the times and ``uptime``'s load (the machine is shared: say it with the figure).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from connector.config.sync_file import parse_sync
from connector.run.reconcile import reconcile
from connector.store.periods import PeriodCounts, apply_periods
from connector.store.state import StateStore

SYNC = """
name: bench
source: {{table: ev, cursor: occurred_at, primary_key: [event_id], url: "duckdb:///{db}"}}
destination: {{type: klaviyo_bulk_events, api_key: "${{BENCH_KEY}}", base_url: "http://127.0.0.1:9"}}
mapping:
  event_name: played
  event_time: occurred_at
  identifiers: {{email: email}}
"""


def main() -> None:
    """Build, store, time, print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    n = args.rows
    tmp = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    db = tmp / "wh.duckdb"
    con = duckdb.connect(str(db))
    con.sql(
        "CREATE TABLE ev AS SELECT i AS event_id, "
        "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * (31536000000000 // $n)) "
        "AS occurred_at, 'u' || i || '@example.com' AS email FROM range($n) t(i)",
        params={"n": n},
    )
    last = con.sql("SELECT max(occurred_at), max(event_id) FROM ev").fetchall()[0]
    assert last is not None
    state = StateStore(f"sqlite:///{tmp / 'state.db'}")
    t0, c0 = time.perf_counter(), time.process_time()
    counts = PeriodCounts("incremental")
    table = con.sql("SELECT occurred_at FROM ev ORDER BY event_id").to_arrow_table()
    for batch in table.to_batches(1000):
        counts.add(batch.column(0), rejected=False)
    keys_s, keys_cpu = time.perf_counter() - t0, time.process_time() - c0
    con.close()
    with state.engine.begin() as c:
        apply_periods(c, "bench", counts)
    state.set_checkpoint("bench", "incremental", (last[0], last[1]), "bench")
    sync = parse_sync(SYNC.format(db=db), "syncs/bench.yaml", check_env=False)
    t0, c0 = time.perf_counter(), time.process_time()
    report = reconcile(sync, state)
    reconcile_s, reconcile_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert report.missing == 0 and report.gone == 0, report.as_dict()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(
        json.dumps(
            {
                "rows": n,
                "periods_stored": len(counts.delivered),
                "reconcile_wall_s": round(reconcile_s, 3),
                "reconcile_cpu_s": round(reconcile_cpu, 3),
                "period_keys_all_rows_wall_s": round(keys_s, 3),
                "period_keys_all_rows_cpu_s": round(keys_cpu, 3),
                "period_keys_per_million_cpu_s": round(keys_cpu / n * 1e6, 3),
                "uptime": uptime,
                "pyarrow": pa.__version__,
                "duckdb": duckdb.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
