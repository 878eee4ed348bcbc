"""A no-op ``connector sync`` (the checkpoint at the newest row: nothing to send) imports no
HTTP client (issue 22, item 9): the HTTP loop makes its client, and imports httpx, on the first
request; nor Arrow; nor any destination's endpoint module but its own. Checked by module, not
timed (figures: benchmarks/bench_startup.py, docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from connector.sandbox import SandboxServer
from tests.conftest import Warehouse
from tests.helpers import PLAIN_SYNC, create_events_table, event_rows, insert_events

PROBE = """
import contextlib, io, json, sys
import duckdb
from connector.cli.main import entry
db = json.loads(sys.argv[2])
sys.argv = ["connector", *json.loads(sys.argv[1])]
err = io.StringIO()
code = 0
opened = []
real_connect = duckdb.connect
def connect(*a, **k):
    opened.append(str(a[0] if a else k.get("database")))
    return real_connect(*a, **k)
duckdb.connect = connect
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
    try:
        entry()
    except SystemExit as exc:
        code = exc.code
# Released: this process may open the file read-write (DuckDB refuses a second configuration
# of a database this process still has open).
released = None
if db:
    try:
        real_connect(db).close()
        released = True
    except duckdb.Error:
        released = False
print(json.dumps({"code": code, "modules": sorted(sys.modules), "err": err.getvalue(),
                  "opened": opened, "released": released}))
"""


def _sync(tmp_path: Path, db: str = "") -> dict[str, object]:
    """Run ``connector sync noop`` in a probe process; with ``db``, also whether that DuckDB
    file was released when the command ended."""
    env = {
        **os.environ,
        "CONNECTOR_CONFIG_DIR": str(tmp_path / "config"),
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(["sync", "noop"]), json.dumps(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return out


def test_a_no_op_sync_imports_no_http_client(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 20))
    duck.dispose()  # the CLI process opens the DuckDB file itself
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "noop.yaml").write_text(
        PLAIN_SYNC.format(name="noop", url=duck.url, sandbox=sandbox.url)
    )
    first = _sync(tmp_path)  # delivers the 20 rows: sends, so it imports httpx
    assert first["code"] in (0, None), first["err"]
    assert "httpx" in first["modules"]  # type: ignore[operator]
    again = _sync(tmp_path)  # nothing after the checkpoint
    assert again["code"] in (0, None), again["err"]
    modules = set(again["modules"])  # type: ignore[call-overload]
    assert "httpx" not in modules and "httpcore" not in modules


def test_a_no_op_sync_imports_no_arrow(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    """Nothing after the checkpoint and no lookback window to re-read: the run reads no row,
    so it imports neither pyarrow nor numpy (nor pandas); the first run, which reads, does."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 20))
    duck.dispose()
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    sync = PLAIN_SYNC.format(name="noop", url=duck.url, sandbox=sandbox.url)
    sync = sync.replace("primary_key: [event_id],", 'primary_key: [event_id], lookback: "off",')
    assert "lookback" in sync
    (tmp_path / "config" / "syncs" / "noop.yaml").write_text(sync)
    first = _sync(tmp_path)
    assert first["code"] in (0, None), first["err"]
    assert "pyarrow" in first["modules"]  # type: ignore[operator]
    again = _sync(tmp_path)
    assert again["code"] in (0, None), again["err"]
    assert "0 delivered" in str(again["err"]) or "rows read           0" in str(again["err"])
    modules = set(again["modules"])  # type: ignore[call-overload]
    assert not {"pyarrow", "numpy", "pandas", "httpx"} & modules, sorted(
        m for m in modules if m.split(".")[0] in ("pyarrow", "numpy", "pandas", "httpx")
    )
    # Its own destination only: the registry imports the one endpoint module the sync file's
    # type names, so none of another vendor's modules and no other Klaviyo endpoint.
    assert "connector.destinations.klaviyo.bulk" in modules
    others = sorted(
        m
        for m in modules
        if m.startswith(("connector.destinations.brevo", "connector.destinations.omnisend"))
        or m == "connector.destinations.klaviyo.profiles"
    )
    assert others == [], others
    from connector.destinations.registry import DESTINATIONS

    endpoints = {DESTINATIONS.module_of(t) for t in DESTINATIONS}
    assert endpoints & modules == {"connector.destinations.klaviyo.bulk"}


def test_a_sync_opens_the_duckdb_file_once_and_lets_it_go(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    """The plan and the run share one engine and one connection to the warehouse file (no
    spare in-memory database either: duckdb_dialect); the file is released at the end."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 20))
    duck.dispose()
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "noop.yaml").write_text(
        PLAIN_SYNC.format(name="noop", url=duck.url, sandbox=sandbox.url)
    )
    path = duck.url.removeprefix("duckdb:///")
    for _ in range(2):  # the run that sends, then the no-op one
        out = _sync(tmp_path, path)
        assert out["code"] in (0, None), out["err"]
        opened = out["opened"]
        assert [p for p in opened if p != ":memory:"] == [path], opened  # type: ignore[attr-defined]
        # One in-memory database: duckdb_engine's import-time probe of COMMENT support.
        assert opened.count(":memory:") == 1, opened  # type: ignore[attr-defined]
        assert out["released"] is True
