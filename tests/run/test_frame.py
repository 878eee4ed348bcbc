"""connector.preview_frame: one DataFrame row per event, values exactly as sent; the connector
itself never needs pandas."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pandas as pd

from connector import preview_frame
from connector.run.sync import preview
from tests.conftest import Warehouse, make_sync

SYNC = """
name: orders
source: {{table: orders, cursor: occurred_at, primary_key: id, url: "{url}"}}
destination:
  type: klaviyo_bulk_events
  api_key: "${{KLAVIYO_API_KEY}}"
  base_url: "http://sandbox.invalid"
mapping:
  event_name: order_placed
  event_time: occurred_at
  identifiers: {{email: email}}
  value: total
  event_properties: {{total: total, big: big, note: note, item.sku: sku}}
  contact_properties: {{first_name: first}}
"""


def _orders(wh: Warehouse) -> None:
    wh.run(
        """CREATE TABLE orders (
            id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, total DECIMAL(38, 2),
            big HUGEINT, note JSON, sku VARCHAR, first VARCHAR)""",
        """INSERT INTO orders VALUES
            (1, '2026-11-01 10:00:00.123+00', 'a@example.com', 12345678901234567.89,
             123456789012345678901234567890, '{"rate": 0.1000000000000000055511}', 'S-1', 'Ann'),
            (2, '2026-11-01 11:00:00+00', NULL, 5.00, -1, NULL, NULL, NULL),
            (3, '2026-11-01 12:00:00+00', 'c@example.com', 0.01, 7, '[1, 2]', 'S-3', NULL)""",
    )


def test_preview_frame_has_one_row_per_event_with_exact_values(duck: Warehouse) -> None:
    _orders(duck)
    sync = make_sync(SYNC.format(url=duck.url))

    frame = preview_frame(sync, limit=10)

    assert list(frame.columns) == [
        "key",
        "dedup_id",
        "event_name",
        "event_time",
        "identifiers.email",
        "value",
        "event_properties.total",
        "event_properties.big",
        "event_properties.note",
        "event_properties.item.sku",
        "contact_properties.first_name",
        "reject",
    ]
    assert [str(dtype) for dtype in frame.dtypes] == ["object"] * len(frame.columns)
    assert frame["key"].tolist() == ["1", "2", "3"]
    assert frame["dedup_id"].tolist() == ["orders:1", "orders:2", "orders:3"]
    first = frame.iloc[0]
    assert first["event_time"] == "2026-11-01T10:00:00.123+00:00"
    assert first["event_properties.total"] == Decimal("12345678901234567.89")
    assert str(first["value"]) == "12345678901234567.89"
    assert first["event_properties.big"] == 123456789012345678901234567890
    assert first["event_properties.note"] == {"rate": Decimal("0.1000000000000000055511")}
    assert first["event_properties.item.sku"] == "S-1"
    assert first["contact_properties.first_name"] == "Ann"
    # DECIMAL(38,2) keeps its scale: 5.00, not 5 or 5.0.
    assert str(frame.iloc[1]["event_properties.total"]) == "5.00"
    # NULLs stay None (omitted from the payload), not NaN; the row without an identifier says
    # why it would be rejected.
    assert frame.iloc[1]["event_properties.note"] is None
    assert frame.iloc[1]["reject"] is not None and "identifier" in frame.iloc[1]["reject"]
    assert frame["reject"].tolist()[0] is None and frame["reject"].tolist()[2] is None

    # The same rows the request preview would send, and the same rejects.
    sent = preview(sync, limit=10)
    assert [k for k, _ in sent["rejects"]] == frame.loc[frame["reject"].notna(), "key"].tolist()


def test_preview_frame_limit_reads_only_the_first_rows(duck: Warehouse) -> None:
    _orders(duck)
    frame = preview_frame(make_sync(SYNC.format(url=duck.url)), limit=2)
    assert frame["key"].tolist() == ["1", "2"]
    assert isinstance(frame, pd.DataFrame)


def test_the_cli_runs_without_pandas(tmp_path: Path) -> None:
    """pandas is imported only inside ``preview_frame``: with pandas made unimportable the CLI
    still works, and only the frame says what is missing. (pyarrow itself imports pandas when
    it is installed, so 'not in sys.modules' cannot be the test.)"""
    code = textwrap.dedent(
        """
        import sys

        class NoPandas:  # as if pandas were not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pandas":
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, NoPandas())
        from connector import preview_frame
        from connector.cli import main as cli
        assert cli.main(["schema"]) == 0
        try:
            preview_frame(None, 1)
        except ImportError:
            print("frame needs pandas")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.rstrip().endswith("frame needs pandas")
    assert '"$defs"' in out.stdout  # the schema was printed
