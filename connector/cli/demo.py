"""The demo warehouse: a DuckDB file with realistic events and contacts, made by SQL.

``analytics.contacts``   one row per person (email, phone, names, plan)
``analytics.video_events`` video plays with ties on ``occurred_at``, a JSON column, decimals,
                           dates, and a few bad rows (no identifier, NULL cursor) so the demo
                           shows rejects
``analytics.orders``      orders with value and currency
``analytics.customers``   the customer table of the contact syncs (plan, lifetime value, city);
                          made once and then kept, so a change made to it between two demo
                          runs is what the next run sends
"""

from __future__ import annotations

from pathlib import Path

import duckdb

CONTACTS = 500


def build_demo_warehouse(path: str | Path, events: int = 5_000, orders: int = 1_000) -> Path:
    """(Re)create the demo tables in ``path``; deterministic for a given size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        con.execute(f"""
            CREATE OR REPLACE TABLE analytics.contacts AS
            SELECT i AS contact_id,
                   'user' || i || '@example.com' AS email,
                   '+1500555' || lpad(CAST(i % 10000 AS VARCHAR), 4, '0') AS phone,
                   'u-' || i AS user_id,
                   (['Ada','Grace','Alan','Edsger','Barbara','Ken','Margaret','Linus'])
                       [1 + i % 8] AS first_name,
                   (['Lovelace','Hopper','Turing','Dijkstra','Liskov','Thompson'])
                       [1 + i % 6] AS last_name,
                   (['free','pro','team'])[1 + i % 3] AS plan
            FROM range({CONTACTS}) t(i)
        """)
        con.execute(f"""
            CREATE OR REPLACE TABLE analytics.video_events AS
            SELECT i AS event_id,
                   -- 3 events share each second: ties on the cursor are the norm here
                   CASE WHEN i = 17 THEN NULL
                        ELSE TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i // 3) END
                       AS occurred_at,
                   CASE WHEN i % 997 = 5 THEN NULL ELSE c.email END AS email,
                   CASE WHEN i % 997 = 5 THEN NULL ELSE c.user_id END AS user_id,
                   c.phone,
                   c.first_name,
                   c.plan,
                   (['Intro to DuckDB','Reverse ETL 101','Dagster in practice',
                     'Incremental syncs'])[1 + i % 4] AS title,
                   CAST(30 + (i * 37) % 600 AS DECIMAL(10, 1)) AS duration_s,
                   (i % 5 = 0) AS autoplayed,
                   DATE '2026-01-01' + CAST(i % 300 AS INTEGER) AS upload_date,
                   CAST('{{"device": "' || (['web','ios','android'])[1 + i % 3]
                        || '", "quality": ' || (360 + (i % 3) * 360) || '}}' AS JSON) AS context
            FROM range({events}) t(i)
            JOIN analytics.contacts c ON c.contact_id = i % {CONTACTS}
        """)
        con.execute(f"""
            CREATE OR REPLACE TABLE analytics.orders AS
            SELECT 'ord-' || lpad(CAST(i AS VARCHAR), 6, '0') AS order_id,
                   TIMESTAMP '2026-11-01 00:00:00' + to_seconds(i * 7) AS created_at,
                   c.email, c.user_id, c.first_name, c.last_name,
                   CAST(5 + (i * 13) % 200 AS DECIMAL(12, 2)) + 0.99 AS amount,
                   'EUR' AS currency,
                   1 + i % 4 AS items
            FROM range({orders}) t(i)
            JOIN analytics.contacts c ON c.contact_id = (i * 7) % {CONTACTS}
        """)
        con.execute(f"""
            CREATE TABLE IF NOT EXISTS analytics.customers AS
            SELECT c.contact_id AS customer_id, c.email, c.first_name, c.last_name, c.plan,
                   CAST((c.contact_id * 37) % 2000 AS DECIMAL(12, 2)) + 0.50 AS lifetime_value,
                   (['Paris','Berlin','Lisbon','Oslo'])[1 + c.contact_id % 4] AS city,
                   TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(c.contact_id) AS updated_at
            FROM analytics.contacts c
            WHERE c.contact_id < {CONTACTS}
        """)
    finally:
        con.close()
    return path
