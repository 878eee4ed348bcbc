"""Benchmark: the single-event destinations at their documented rate limits, real time.

    python benchmarks/bench_single.py [--rows 200] [--latency-ms 100] [--only brevo_event]

N rows in a DuckDB file → a sync → the sandbox (in this process, validating, with its default
vendor rate limits and ``latency_ms`` added to every request). Reports events/s sustained (the
delivered events over the run's wall time) and the number of 429s the sandbox answered.
Targets: brevo_event (10 req/s) ≥ 9.5 events/s with zero 429s; omnisend_events (400 req/min)
≥ 6.3 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.config.sync_file import parse_sync  # noqa: E402
from connector.run.sync import run_sync  # noqa: E402
from connector.sandbox import SandboxOptions, SandboxServer  # noqa: E402
from connector.store.state import StateStore  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "brevo_event": {
        "env": ("BREVO_API_KEY", "sandbox-brevo-key"),
        "identifiers": {"email_id": "email", "ext_id": "user_id"},
        "contact": {"FIRSTNAME": "first_name"},
        "target": 9.5,
        "limit": "10 req/s",
    },
    "omnisend_events": {
        "env": ("OMNISEND_API_KEY", "sandbox-omnisend-key"),
        "identifiers": {"email": "email"},
        "contact": {"firstName": "first_name"},
        "target": 6.3,
        "limit": "400 req/min",
    },
}


def make_table(path: Path, rows: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(f"""
        CREATE OR REPLACE TABLE events AS
        SELECT i AS event_id,
               TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i // 3) AS occurred_at,
               'user' || i || '@example.com' AS email,
               'ext-' || i AS user_id,
               'Video ' || (i % 97) AS title,
               CAST((i * 37) % 600 AS DECIMAL(10, 1)) AS duration_s,
               (i % 3 = 0) AS autoplayed,
               (['Ada','Alan','Grace'])[1 + i % 3] AS first_name
        FROM range({rows}) t(i)
    """)
    con.close()


def sync_for(dest: str, db: Path, url: str) -> Any:
    case = CASES[dest]
    doc = {
        "name": f"bench_{dest}",
        "source": {
            "table": "events",
            "cursor": "occurred_at",
            "primary_key": ["event_id"],
            "url": f"duckdb:///{db}",
        },
        "destination": {"type": dest, "api_key": "${" + case["env"][0] + "}", "base_url": url},
        "mapping": {
            "event_name": "video_played",
            "event_time": "occurred_at",
            "identifiers": case["identifiers"],
            "event_properties": {
                "title": "title",
                "duration": "duration_s",
                "autoplayed": "autoplayed",
            },
            "contact_properties": case["contact"],
        },
    }
    return parse_sync(yaml.safe_dump(doc), "bench.yaml")


def bench(dest: str, db: Path, work: Path, latency_s: float) -> dict[str, Any]:
    os.environ.setdefault(*CASES[dest]["env"])
    with SandboxServer(SandboxOptions(latency_s=latency_s)) as sb:
        sync = sync_for(dest, db, sb.url)
        state = StateStore(f"sqlite:///{work / f'state_{dest}.db'}")
        state.reset(sync.name)
        t0 = time.perf_counter()
        res = run_sync(sync, state=state)
        wall = time.perf_counter() - t0
        stats = sb.stats()
    return {
        "destination": dest,
        "limit": CASES[dest]["limit"],
        "rows": res.rows_read,
        "delivered": res.delivered,
        "stored_by_sandbox": stats["events"][dest],
        "wall_s": round(wall, 2),
        "events_per_s": round(res.delivered / wall, 2),
        "target_events_per_s": CASES[dest]["target"],
        "http_429": stats["status_429"],
        "retries": res.retries,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--only", choices=sorted(CASES))
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-single-"))
    db = work / "events.duckdb"
    make_table(db, args.rows)
    results = []
    for dest in [args.only] if args.only else list(CASES):
        r = bench(dest, db, work, args.latency_ms / 1000.0)
        results.append(r)
        ok = r["events_per_s"] >= r["target_events_per_s"] and r["http_429"] == 0
        print(
            f"{dest:16} {r['limit']:>12}: {r['delivered']} events in {r['wall_s']}s = "
            f"{r['events_per_s']} events/s (target ≥ {r['target_events_per_s']}), "
            f"{r['http_429']} x 429  {'OK' if ok else 'BELOW TARGET'}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
