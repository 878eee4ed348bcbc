"""Benchmark: how long ``connector`` commands take as whole processes (start-up dominated).

    python benchmarks/bench_startup.py [--rows 10000000] [--runs 7] [--workdir DIR]

Times, as separate processes, ``connector --help``, ``state show``, ``rejects``, ``validate``
and a no-op ``connector sync`` of a ``--rows``-row DuckDB table whose checkpoint is already at
its newest row and ``lookback: off`` (the run reads nothing: what a frequent schedule mostly
does; with the default 1 h window it would re-read the last hour's 3,600 rows). Each command runs
once to warm the file cache, then ``--runs`` times; the medians of wall time and of CPU time
(user + sys of the child) are printed as a table, with the load average. On a shared machine
quote the CPU medians and compare wall medians taken in the same benchmark run. The commands
run without ``PYTHONDONTWRITEBYTECODE`` (the warm-up run writes the connector's ``.pyc`` files,
as an installed copy has them): with it set and no ``.pyc`` yet, every run compiles the ~90
connector modules it imports from source, ~0.1-0.2 s of CPU that is not start-up.

Setup (cached in ``--workdir``, default ``benchmarks/.startup``): the table is created with
only its newest row, one real ``connector sync`` delivers it to the sandbox (run in this
process, in sink mode), then the older rows are added; so the checkpoint is a real one.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = str(Path(sys.executable).with_name("connector"))
SYNC = """\
name: startup_noop
source:
  table: events
  cursor: occurred_at
  primary_key: [event_id]
  lookback: "off"
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {base_url}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{title: title}}
"""


def _table(first: int, last: int) -> str:
    return (
        f"SELECT i AS event_id, TIMESTAMP '2026-01-01' + to_seconds(i) AS occurred_at, "
        f"'user' || (i % 200000) || '@example.com' AS email, 'Video ' || i AS title "
        f"FROM range({first}, {last}) t(i)"
    )


def prepare(work: Path, rows: int, env: dict[str, str]) -> None:
    """The table, the sync file and a checkpoint at the newest row (see the module doc)."""
    from connector.sandbox import SandboxOptions, SandboxServer

    db = work / f"startup_{rows}.duckdb"
    marker = work / f"startup_{rows}.ready"
    if marker.exists():
        return
    for stale in (db, work / "state.db"):
        stale.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE events AS {_table(rows - 1, rows)}")
    con.close()
    with SandboxServer(SandboxOptions(validate=False), port=0) as sandbox:
        (work / "syncs").mkdir(exist_ok=True)
        (work / "syncs" / "startup_noop.yaml").write_text(SYNC.format(base_url=sandbox.url))
        subprocess.run([CONNECTOR, "sync", "startup_noop"], env=env, check=True)
    con = duckdb.connect(str(db))
    t0 = time.perf_counter()
    con.execute(f"INSERT INTO events {_table(0, rows - 1)}")
    con.close()
    print(f"added {rows - 1:,} older rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    marker.touch()


def timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``cmd`` as a process (after one warm-up run)."""
    walls, cpus = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0,):
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        if i:  # the first run warms the file cache
            walls.append(wall)
            cpus.append(
                after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
            )
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".startup"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "CONNECTOR_CONFIG_DIR": str(work),
        "CONNECTOR_STATE_URL": f"sqlite:///{work / 'state.db'}",
        "WAREHOUSE_URL": f"duckdb:///{work / f'startup_{args.rows}.duckdb'}",
        "KLAVIYO_API_KEY": "pk_sandbox",
    }
    prepare(work, args.rows, env)
    commands = {
        "connector --help": [CONNECTOR, "--help"],
        "connector state show": [CONNECTOR, "state", "show", "startup_noop"],
        "connector rejects": [CONNECTOR, "rejects", "startup_noop"],
        "connector validate": [CONNECTOR, "validate", "startup_noop"],
        f"connector sync (no-op, {args.rows:,} rows)": [CONNECTOR, "sync", "startup_noop"],
    }
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    print("| command | wall s (median) | CPU s (median) |")
    print("|---|---|---|")
    for label, cmd in commands.items():
        wall, cpu = timed(cmd, env, args.runs)
        print(f"| `{label}` | {wall:.3f} | {cpu:.3f} |", flush=True)
    print(f"load average (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
