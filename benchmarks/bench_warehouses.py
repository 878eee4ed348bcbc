"""Read rate of each warehouse: 1M rows through ``Reader.pages()`` (what a run reads, no sending).

    python benchmarks/bench_warehouses.py URL [--rows 1000000] [--chunk-size 5000]

URL is a DuckDB file (created), or a PostgreSQL, MariaDB or Snowflake (fakesnow) database the
script may write a table ``bench_read`` into. The table: an integer key, an instant cursor with
ties, an e-mail, an exact decimal and a JSON column; it is filled by the warehouse itself
(range / generate_series / a sequence table / GENERATOR). Prints rows, seconds and rows/s.
The Snowflake figure is the emulator's (DuckDB behind HTTP), not Snowflake's.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import sqlalchemy as sa

from connector.config.sync_file import parse_sync
from connector.read.source import Reader
from connector.warehouses import warehouse_for

FILL = {
    "duckdb": [
        "CREATE OR REPLACE TABLE bench_read AS SELECT i AS id, "
        "TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i // 3) AS occurred_at, "
        "'user' || i || '@example.com' AS email, "
        "CAST(mod(i, 10000) AS DECIMAL(12, 2)) / 100 AS amount, "
        "CAST('{{\"n\": ' || i || '}}' AS JSON) AS props FROM range({rows}) t(i)",
    ],
    "postgresql": [
        "DROP TABLE IF EXISTS bench_read",
        "CREATE TABLE bench_read AS SELECT i AS id, "
        "TIMESTAMPTZ '2026-11-01 00:00:00+00' + (i / 3) * INTERVAL '1 second' AS occurred_at, "
        "'user' || i || '@example.com' AS email, mod(i, 10000)::numeric(12, 2) / 100 AS amount, "
        "('{{\"n\": ' || i || '}}')::json AS props FROM generate_series(0, {rows} - 1) i",
        "CREATE INDEX ON bench_read (occurred_at, id)",
        "ANALYZE bench_read",
    ],
    "mysql": [
        "DROP TABLE IF EXISTS bench_read",
        "CREATE TABLE bench_read (id BIGINT, occurred_at TIMESTAMP(6) NULL, email VARCHAR(100), "
        "amount DECIMAL(12, 2), props JSON, INDEX (occurred_at, id))",
        "INSERT INTO bench_read SELECT seq, TIMESTAMP '2026-11-01 00:00:00' + "
        "INTERVAL (seq DIV 3) SECOND, CONCAT('user', seq, '@example.com'), (seq MOD 10000) / 100, "
        "CONCAT('{{\"n\": ', seq, '}}') FROM seq_0_to_{last}",
    ],
    "snowflake": [
        "CREATE OR REPLACE TABLE bench_read AS SELECT SEQ8() AS id, "
        "DATEADD(second, FLOOR(SEQ8() / 3), '2026-11-01 00:00:00 +00:00'::TIMESTAMP_TZ) "
        "AS occurred_at, 'user' || SEQ8() || '@example.com' AS email, "
        "MOD(SEQ8(), 10000)::NUMBER(12, 2) / 100 AS amount, "
        "PARSE_JSON('{{\"n\": ' || SEQ8() || '}}') AS props "
        "FROM TABLE(GENERATOR(ROWCOUNT => {rows}))",
    ],
}

SYNC = """
name: bench
source: {{table: bench_read, cursor: occurred_at, primary_key: id, url: "{url}",
          chunk_size: {chunk}}}
destination: {{type: klaviyo_bulk_events, api_key: "${{BENCH_KEY:-x}}", base_url: "http://127.0.0.1:9"}}
mapping:
  event_name: read
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{amount: amount, props: props}}
"""


def fill(url: str, rows: int) -> None:
    wh = warehouse_for(url)
    target: Any = url
    args: dict[str, Any] = {}
    if wh.name == "snowflake":
        target, args = wh.connect_args(sa.engine.make_url(url), {})
    engine = sa.create_engine(target, connect_args=args)
    with engine.begin() as conn:
        for stmt in FILL[wh.name]:
            conn.exec_driver_sql(stmt.format(rows=rows, last=rows - 1))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--no-fill", action="store_true")
    opts = parser.parse_args()
    if not opts.no_fill:
        fill(opts.url, opts.rows)
    sync = parse_sync(SYNC.format(url=opts.url, chunk=opts.chunk_size), "bench.yaml")
    start = time.perf_counter()
    n = 0
    with Reader(sync) as reader:
        for chunk in reader.pages():
            n += chunk.table.num_rows
    took = time.perf_counter() - start
    print(f"{warehouse_for(opts.url).name}: {n:,} rows in {took:.1f} s = {n / took:,.0f} rows/s")


if __name__ == "__main__":
    main()
