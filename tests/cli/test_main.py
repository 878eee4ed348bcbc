"""The ``connector`` command line (``cli.main``).

What each command imports (start-up time is imports): checked by module, not timed (the timing
is benchmarks/bench_startup.py, figures in docs/performance.md); the command keeps pandas out
of its process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import contextlib, io, json, sys
from connector.cli.main import entry
sys.argv = ["connector", *json.loads(sys.argv[1])]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        entry()
    except SystemExit:
        pass
print(json.dumps(sorted(sys.modules)))
"""


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    env = {
        **os.environ,
        "CONNECTOR_CONFIG_DIR": str(ROOT / "config"),
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {m.split(".")[0] for m in json.loads(proc.stdout)} | set(json.loads(proc.stdout))


def test_help_imports_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    mods = _imported(["--help"], tmp_path)
    heavy = {"pyarrow", "pandas", "httpx", "pydantic", "sqlalchemy", "duckdb", "numpy"}
    assert not mods & heavy, mods & heavy
    assert not {m for m in mods if m.startswith("connector.destinations")}


@pytest.mark.parametrize(
    "args",
    [["state", "show", "video_played"], ["rejects", "video_played"], ["validate", "nothing"]],
)
def test_state_commands_import_no_http_client_and_no_pandas(
    args: list[str], tmp_path: Path
) -> None:
    mods = _imported(args, tmp_path)
    assert not mods & {"httpx", "pandas", "rich", "pygments"}, mods & {"httpx", "pandas"}


def test_the_connector_command_keeps_pandas_out_of_its_process(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from connector.cli.main import entry\n"
        "sys.argv = ['connector', 'schema']\n"
        "assert entry() == 0\n"
        "import pyarrow as pa\n"
        "pa.array([1, 2]); pa.scalar('x')\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"title"' in proc.stdout  # the schema was printed
