"""``connector state`` and ``connector rejects`` (``cli.records``).

``connector state reset``: refused while a run of the sync holds its lease, and on a contact
sync it also forgets the stored hashes (the next run sends every contact again).

Rejects are a working list: ``connector rejects`` lists every open one with the count (the
newest first under ``--limit``, closed ones only with ``--all``), exports them as JSON or CSV,
and stops quietly when piped into ``head``."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.cli.main import main
from connector.contacts.hashes import HashStore
from connector.sandbox import SandboxServer
from connector.store.lease import Lease
from connector.store.state import CLOSED_DELIVERED, CLOSED_GONE, INCREMENTAL, Reject, StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import KlaviyoCli as Cli
from tests.contact_fixtures import make_customers


def test_reset_refused_while_running_then_forgets_contact_hashes(
    tmp_path: Path,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(warehouse, 30)
    cli = Cli(tmp_path, warehouse, sandbox)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0 and first["delivered"] == 30
    store = StateStore.open(cli.state_url)
    assert HashStore(store).count("customers_to_klaviyo") == 30
    assert main(["state", "show", "customers_to_klaviyo"]) == 0
    assert "  30 contacts confirmed by the vendor" in capsys.readouterr().out

    # A run holds the lease (this process: alive, not expired): reset refuses, changes nothing.
    with Lease(store, "customers_to_klaviyo", INCREMENTAL, ttl_s=60):
        code = main(["state", "reset", "customers_to_klaviyo"])
        _, err = capsys.readouterr()
        assert code == 1
        assert "customers_to_klaviyo is running (incremental: pid " in err
        assert "Reset after it ends" in err
    assert HashStore(store).count("customers_to_klaviyo") == 30

    # The run ended: reset works and forgets the hashes, so every contact is sent again.
    code = main(["state", "reset", "customers_to_klaviyo"])
    out, _ = capsys.readouterr()
    assert code == 0 and "state reset" in out
    assert HashStore(store).count("customers_to_klaviyo") == 0
    code, again = cli.sync(monkeypatch, capsys)
    assert code == 0 and (again["added"], again["sent"], again["delivered"]) == (30, 30, 30)


def test_reset_ignores_a_dead_runs_lease(
    tmp_path: Path,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(warehouse, 3)
    cli = Cli(tmp_path, warehouse, sandbox)
    assert cli.sync(monkeypatch, capsys)[0] == 0
    store = StateStore.open(cli.state_url)
    lease = Lease(store, "customers_to_klaviyo", INCREMENTAL, ttl_s=60)
    lease.acquire()  # never released: as if the run was killed ...
    expired = lease.expires
    assert expired is not None
    monkeypatch.setattr(store, "clock", lambda: expired)  # ... and its TTL has passed
    assert main(["state", "reset", "customers_to_klaviyo"]) == 0
    assert HashStore(store).count("customers_to_klaviyo") == 0


LISTED = """
name: videos
source: {table: ev, cursor: occurred_at, primary_key: event_id, url: "duckdb:///unused.duckdb"}
destination: {type: klaviyo_bulk_events, api_key: "${KLAVIYO_API_KEY}", base_url: "http://x.invalid"}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {email: email}
"""


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def listed(tmp_path: Path) -> Path:
    path = tmp_path / "videos.yaml"
    path.write_text(LISTED)
    return path


def _add(state: StateStore, n: int, scope: str = INCREMENTAL, reason: str = "bad row") -> None:
    payload = json.dumps({"name": "video_played", "identifiers": {"email": None}})
    state.add_rejects(
        "videos", scope, "run-1", [Reject(str(i), f"{reason} {i}", payload) for i in range(n)]
    )


# --------------------------------------------------------------------------- listing


def test_rejects_lists_every_open_reject_with_the_count(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 150)

    code, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed))

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "150 open rejects (videos)"
    assert lines[1].split("\t") == ["key", "reason", "rejected_at", "scope"]
    rows = [line.split("\t") for line in lines[2:]]
    assert sorted(int(r[0]) for r in rows) == list(range(150))
    assert all(r[1] == f"bad row {r[0]}" and r[3] == INCREMENTAL for r in rows)


def test_rejects_limit_shows_the_newest_and_says_how_many_there_are(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 12)

    _, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed), "--limit", "5")

    lines = out.splitlines()
    assert lines[0] == "12 open rejects (videos)"
    assert len(lines) == 2 + 5 + 1
    assert lines[-1] == "(the 5 newest; drop --limit to see all 12)"


def test_closed_rejects_are_left_out_unless_all_is_asked(
    capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 4)
    assert state.close_rejects("videos", INCREMENTAL, ["1", "2"], "run-2", CLOSED_DELIVERED) == 2
    assert state.close_rejects("videos", INCREMENTAL, ["2", "3"], "run-2", CLOSED_GONE) == 1

    _, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed))
    assert out.splitlines()[0] == "1 open rejects (videos)"
    assert [line.split("\t")[0] for line in out.splitlines()[2:]] == ["0"]

    _, out, _ = _cli(capsys, "--state-url", state.url, "rejects", str(listed), "--all")
    lines = out.splitlines()
    assert lines[0] == "1 open rejects, 3 closed (videos)"
    status = {line.split("\t")[0]: line.split("\t")[4] for line in lines[2:]}
    assert status == {
        "0": "open",
        "1": "closed: delivered",
        "2": "closed: delivered",
        "3": "closed: source row gone",
    }
    assert state.count_rejects("videos") == 4  # every recorded reject, as before
    assert state.count_rejects("videos", open_only=True) == 1


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_rejects_export_key_reason_payload_and_when(
    fmt: str, capsys: pytest.CaptureFixture[str], listed: Path, state: StateStore
) -> None:
    _add(state, 130, reason='bad, "quoted"\nrow')

    code, out, err = _cli(capsys, "--state-url", state.url, "rejects", str(listed), "--format", fmt)

    assert code == 0
    assert "130 open rejects" in err  # the count on stderr: stdout is the export only
    if fmt == "json":
        records = json.loads(out)
        payloads = [r["payload"] for r in records]
    else:
        records = list(csv.DictReader(io.StringIO(out)))
        payloads = [json.loads(r["payload"]) for r in records]
    assert len(records) == 130
    by_key = {r["key"]: r for r in records}
    assert sorted(map(int, by_key)) == list(range(130))
    assert by_key["7"]["reason"] == 'bad, "quoted"\nrow 7'
    assert by_key["7"]["status"] == "open"
    assert all(p == {"name": "video_played", "identifiers": {"email": None}} for p in payloads)
    for r in records:
        when = r["rejected_at"]
        assert when.startswith("20") and "T" in when  # ISO 8601


def test_rejects_piped_into_head_stops_quietly(listed: Path, state: StateStore) -> None:
    _add(state, 3000, reason="x" * 80)  # far more than a pipe buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "--state-url", state.url, "rejects", str(listed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert first.decode().startswith("3,000 open rejects")
    assert "Traceback" not in err and "BrokenPipe" not in err
