"""The ``connector`` command line (``cli.main``): exit codes (2 for config and usage errors, 1
for a failed run), validate, preview, sync, state, rejects and schema from one config dir, the
installed entry point, ``connector sandbox``'s options.

What each command imports (start-up time is imports): checked by module, not timed (the timing
is benchmarks/bench_startup.py, figures in docs/performance.md); the command keeps pandas out
of its process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.cli import main as cli
from connector.config.sync_file import json_schema, load_sync
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.config.test_sync_file import GOOD
from tests.conftest import Warehouse
from tests.helpers import create_events_table, event_rows, insert_events
from tests.sandbox.test_brevo_contacts import BREVO, _one, process, start_import

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


# --------------------------------------------------------------------------- CLI


def _write(tmp_path: Path, text: str, name: str = "videos") -> Path:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    (syncs / f"{name}.yaml").write_text(text)
    return tmp_path / "config"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_config_error_exits_2_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path, GOOD.replace("identifiers: {email: email}", "identifiers: {emial: email}")
    )
    code, _, err = _run(["--config-dir", str(config), "sync", "videos"], capsys)
    assert code == 2
    assert "mapping.identifiers.emial: unknown identifier" in err
    code, _, err = _run(["--config-dir", str(config), "sync", "nope"], capsys)
    assert code == 2 and "no sync named 'nope'" in err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sync"])
    assert exit_.value.code == 2


def _project(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, rows: list[dict[str, Any]]
) -> list[str]:
    """The events table with ``rows``, the GOOD sync against it and the sandbox, a state file;
    returns the CLI's leading options."""
    create_events_table(duck)
    insert_events(duck, rows)
    text = GOOD.replace("URL", duck.url).replace("http://sandbox.invalid", sandbox.url)
    config = _write(tmp_path, text)
    return ["--config-dir", str(config), "--state-url", f"sqlite:///{tmp_path / 'state.db'}"]


def test_cli_sync_state_rejects_preview_and_validate(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = event_rows(0, 30)
    rows[4]["email"] = None
    base = _project(tmp_path, duck, sandbox, rows)
    state = base[-1]

    code, out, err = _run([*base, "validate"], capsys)
    assert code == 0 and "ok   videos" in out

    code, out, _ = _run([*base, "preview", "videos", "--limit", "2"], capsys)
    assert code == 0
    assert "Authorization: Klaviyo-API-Key ****" in out and "pk_sandbox" not in out
    assert '"unique_id": "videos:0"' in out
    assert sandbox.stats()["requests"] == 0 and StateStore(state).checkpoint("videos") is None

    code, out, err = _run([*base, "sync", "videos"], capsys)
    assert code == 0
    assert "delivered           29" in out and "rejected            1" in out
    assert "rows/s" in err  # progress on stderr
    assert "is partitioned" not in err

    code, out, _ = _run([*base, "sync", "videos"], capsys)
    assert code == 0 and "delivered           0" in out

    code, out, _ = _run([*base, "rejects", "videos"], capsys)
    assert code == 0 and out.startswith("1 open rejects (videos)\nkey\treason")
    assert out.splitlines()[2].startswith("4\tno profile identifier")

    code, out, _ = _run([*base, "state", "show", "videos"], capsys)
    assert code == 0 and "videos [incremental]: 2026-11-01 00:00:09+00:00 / key 29" in out

    code, out, _ = _run([*base, "state", "reset", "videos"], capsys)
    assert code == 0 and StateStore(state).checkpoint("videos") is None


def test_cli_validate_reports_missing_columns_and_bad_types(
    tmp_path: Path,
    duck: Warehouse,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_events_table(duck)
    text = (
        GOOD.replace("URL", duck.url)
        .replace("http://sandbox.invalid", "http://127.0.0.1:9")
        .replace("title: title", "title: titel")
        .replace("cursor: occurred_at", "cursor: email")
    )
    config = _write(tmp_path, text)
    code, _, err = _run(["--config-dir", str(config), "validate"], capsys)
    assert code == 2
    assert "column 'titel' is not in the source" in err
    assert (
        "source.cursor must be a timestamp, date, integer or decimal column (email is string: "
        "text orders '10' before '9'" in err
    )


def test_cli_run_failure_exits_1(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 3))
    # Nothing listens on port 9: connection refused, retried, then the run fails.
    text = (
        GOOD.replace("URL", duck.url)
        .replace("http://sandbox.invalid", "http://127.0.0.1:9")
        .replace(
            'base_url: "http://127.0.0.1:9"}',
            'base_url: "http://127.0.0.1:9", options: {max_retries: 0}}',
        )
    )
    config = _write(tmp_path, text)
    code, _, err = _run(
        [
            "--config-dir",
            str(config),
            "--state-url",
            f"sqlite:///{tmp_path / 's.db'}",
            "sync",
            "videos",
        ],
        capsys,
    )
    assert code == 1
    assert "ConnectError" in err and "checkpoint stays at the last delivered row" in err


def test_cli_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["schema"], capsys)
    assert code == 0 and json.loads(out) == json_schema()


def test_connector_entry_point_is_installed() -> None:
    exe = Path(sys.executable).with_name("connector")
    proc = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, env={**os.environ}, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("connector ")


def test_cli_sync_of_a_partitioned_sync_says_it_uses_the_incremental_scope(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 3))
    text = GOOD.replace("URL", duck.url) + "partitions: {start: 2026-11-01, period: daily}\n"
    config = _write(tmp_path, text)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    args = ["--config-dir", str(config), "--state-url", state, "sync", "videos", "--dry-run"]
    code, _, err = _run(args, capsys)
    assert code == 0
    assert "note: videos is partitioned; Dagster delivers it per partition" in err


def test_cli_rejects_lists_a_row_rejected_by_every_run_once(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = event_rows(0, 5)
    rows[2]["occurred_at"] = None  # never readable: a reject again on every run
    rows[3]["email"] = None  # rejected once; the checkpoint passes it
    base = _project(tmp_path, duck, sandbox, rows)
    for _ in range(3):
        assert _run([*base, "sync", "videos"], capsys)[0] == 0

    code, out, _ = _run([*base, "rejects", "videos"], capsys)
    assert code == 0
    assert out.startswith("2 open rejects (videos)\n")
    lines = out.splitlines()[2:]  # after the count and the column names
    assert len(lines) == 2, out
    [null_row] = [line for line in lines if line.startswith("2\t")]
    assert "cursor column occurred_at is NULL" in null_row
    [no_email] = [line for line in lines if line.startswith("3\t")]
    assert "no profile identifier" in no_email


def test_cli_sandbox_takes_the_omnisend_version_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """``connector sandbox --omnisend-version ... --omnisend-retired-version ...``: the
    options reach ``SandboxOptions`` (``serve`` is replaced, nothing listens)."""
    import connector.sandbox as sandbox_module

    got: list[SandboxOptions] = []
    monkeypatch.setattr(sandbox_module, "serve", lambda port, host, options: got.append(options))
    argv = ["sandbox", "--port", "0", "--omnisend-version", "2027-01-15"]
    argv += ["--omnisend-retired-version", "2026-03-15", "--omnisend-batch-items", "split"]
    argv += ["--disabled-event-name", "played"]
    assert cli.main(argv) == 0
    (opts,) = got
    assert opts.omnisend_versions == ("2027-01-15",)
    assert opts.omnisend_retired_versions == ("2026-03-15",)
    assert opts.omnisend_batch_items == "split" and opts.disabled_event_names == ("played",)


def test_cli_sandbox_demo_serves_the_accounts_the_demo_syncs_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``connector sandbox --demo``: the Brevo account has the attributes the demo's contact
    sync maps besides the default ones (so the Dagster demo's ``customers_to_brevo`` runs);
    ``--brevo-attribute`` adds to them. Without ``--demo`` the defaults stand."""
    import connector.sandbox as sandbox_module
    from connector.sandbox.options import DEFAULT_BREVO_ATTRIBUTES

    got: list[SandboxOptions] = []
    monkeypatch.setattr(sandbox_module, "serve", lambda port, host, options: got.append(options))
    assert cli.main(["sandbox", "--port", "0", "--demo"]) == 0
    assert cli.main(["sandbox", "--port", "0", "--demo", "--brevo-attribute", "TIER:text"]) == 0
    assert cli.main(["sandbox", "--port", "0"]) == 0
    demo, more, plain = (dict(o.brevo_attributes) for o in got)
    assert demo == {**DEFAULT_BREVO_ATTRIBUTES, "PLAN": "text", "LTV": "float"}
    assert more == {**demo, "TIER": "text"}
    assert plain == dict(DEFAULT_BREVO_ATTRIBUTES)
    sync = load_sync("customers_to_brevo", ROOT / "config")
    assert set(sync.mapping.contact_properties) <= set(demo)


# --------------------------------------------------------------------------- connector sandbox


def test_cli_sandbox_takes_job_polls_and_brevo_attributes() -> None:
    """`connector sandbox --job-polls 0 --brevo-attribute PLAN:text` in its own process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "connector.cli", "sandbox", "--port", str(port)]
    bad = subprocess.run([*cmd, "--brevo-attribute", "PLAN"], capture_output=True, text=True)
    assert bad.returncode == 2 and "NAME:TYPE" in bad.stderr
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*cmd, "--job-polls", "0", "--brevo-attribute", "PLAN:text"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and "Sandbox listening" in proc.stdout.readline()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            listed = client.get("/v3/contacts/attributes", headers=BREVO).json()["attributes"]
            assert listed == [{"name": "PLAN", "category": "normal", "type": "text"}]
            process_id = start_import(client, _one("a@example.com", PLAN="pro"))
            assert process(client, process_id)["status"] == "completed"  # no running poll
            stored = client.get("/_sandbox/contacts/brevo_contacts").json()
            assert [c["attributes"] for c in stored] == [{"PLAN": "pro"}]
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
