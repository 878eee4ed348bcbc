"""Reading rows from the warehouse (``read.source``): rows read back by a composite key, with
bound parameters, on every warehouse."""

from __future__ import annotations

from datetime import timedelta

from connector.read.source import Reader
from tests.conftest import Warehouse, make_sync
from tests.helpers import BASE


def test_rows_are_read_back_by_composite_key_with_bound_parameters(warehouse: Warehouse) -> None:
    warehouse.run(
        "DROP TABLE IF EXISTS ck",
        f"CREATE TABLE ck (shop VARCHAR(20), n INTEGER, ts {warehouse.timestamptz()}, "
        "email VARCHAR(50))",
    )
    warehouse.insert(
        "ck",
        [
            {"shop": s, "n": n, "ts": BASE + timedelta(seconds=n), "email": f"{n}@x.io"}
            for s in ("a,b", "c%d", "e')--")
            for n in range(3)
        ],
    )
    sync = make_sync(f"""
        name: ck
        source: {{table: ck, cursor: ts, primary_key: [shop, n], url: "{warehouse.url}"}}
        destination: {{type: klaviyo_bulk_events, api_key: "${{KLAVIYO_API_KEY}}"}}
        mapping: {{event_name: x, event_time: ts, identifiers: {{email: email}}}}
        """)
    keys = ["a%2Cb,1", "c%25d,2", "e')--,0", "a%2Cb,7", "nope", "a%2Cb,x"]
    with Reader(sync) as reader:
        chunks = list(reader.rows_by_keys(keys, batch=2))
    got = sorted((r["shop"], r["n"]) for c in chunks for r in c.table.to_pylist())
    assert got == [("a,b", 1), ("c%d", 2), ("e')--", 0)]
