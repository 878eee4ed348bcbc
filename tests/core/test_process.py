"""core/process: the connector process's memory pool, and what it skips at start."""

from __future__ import annotations

import pyarrow as pa
import pytest


def test_the_connector_process_uses_jemalloc_unless_the_arrow_variable_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.core.process import use_lean_memory_pool

    before = pa.default_memory_pool()
    try:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        assert use_lean_memory_pool() == before.backend_name  # the user's choice stands
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
        assert use_lean_memory_pool() == "jemalloc"
    finally:
        pa.set_memory_pool(before)


SCAN_PROBE = """
import importlib.metadata as md, json, os, sys
calls = []
for name in ("distributions", "entry_points"):
    real = getattr(md, name)
    def counted(*a, _real=real, _name=name, **k):
        calls.append(_name)
        return _real(*a, **k)
    setattr(md, name, counted)
from connector.core.process import skip_pydantic_plugins
skipped = skip_pydantic_plugins()
from connector.config.sync_file import SyncConfig  # pydantic's first models
from connector.warehouses import engine_for
with engine_for("duckdb:///:memory:").connect() as c:  # the DuckDB dialect by name
    c.exec_driver_sql("SELECT 1")
print(json.dumps({"skipped": skipped, "calls": calls,
                  "env": os.environ.get("PYDANTIC_DISABLE_PLUGINS")}))
"""


def _scan_probe(**env: str) -> dict[str, object]:
    import json
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-c", SCAN_PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_the_connector_process_reads_no_distribution_metadata_at_start() -> None:
    """Pydantic's plugin lookup (the entry points of every installed distribution) is skipped
    in the connector's process, and SQLAlchemy finds the DuckDB dialect by its registered name,
    not by the entry points: no distribution's metadata is read to parse a sync file and open
    DuckDB. ``PYDANTIC_DISABLE_PLUGINS`` set (empty: keep the plugins) is left as it is."""
    lean = _scan_probe()
    assert lean == {"skipped": True, "calls": [], "env": "__all__"}
    kept = _scan_probe(PYDANTIC_DISABLE_PLUGINS="")
    assert kept["skipped"] is False and kept["env"] == ""
    assert "distributions" in str(kept["calls"])  # pydantic's plugin lookup: what the probe sees


GC_PROBE = """
import gc, json, sys
from connector.cli.main import entry
before = gc.get_freeze_count()
sys.argv = ["connector", "schema"]
code = entry()
sys.stdout.flush()
print(json.dumps({"code": code, "before": before, "threshold": gc.get_threshold()[0],
                  "frozen": gc.get_freeze_count()}), file=sys.stderr)
"""


def test_the_command_skips_the_collectors_pass_at_exit_and_keeps_its_threshold() -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", GC_PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert seen["code"] == 0 and seen["before"] == 0
    assert seen["frozen"] > 10_000  # what the command loaded, out of the last pass's reach
    # Python's default threshold: a larger one cost a 1M-row run ~35 MiB of peak memory.
    assert seen["threshold"] == 700
    assert json.loads(proc.stdout)["title"]  # the command's own output is whole
