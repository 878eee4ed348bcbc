"""Contact syncs end to end: the CLI, a real warehouse (DuckDB, PostgreSQL), the sandbox's
Klaviyo profile bulk import over HTTP, a SQLite state store."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path

import pytest

from connector.contacts.hashes import HashStore
from connector.sandbox import Fault, JobFault, SandboxServer
from connector.store.lease import Lease
from connector.store.state import INCREMENTAL, StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import KlaviyoCli as Cli
from tests.contact_fixtures import make_customers
from tests.helpers import connector_process


def test_unchanged_sends_nothing_one_changed_sends_one(
    tmp_path: Path,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(warehouse, 1200)
    cli = Cli(tmp_path, warehouse, sandbox)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (first["added"], first["sent"], first["delivered"], first["jobs"]) == (
        1200,
        1200,
        1200,
        1,
    )
    assert first["polls"] == 2  # the sandbox answers "processing" once, then "complete"
    stored = sandbox.contact("klaviyo_profiles", "c7@example.com")
    assert stored is not None and stored["properties"]["plan"] == "pro"
    assert stored["location"]["city"] == "Paris"

    code, second = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (second["unchanged"], second["sent"], second["jobs"]) == (1200, 0, 0)
    assert cli.profiles() == 1200

    warehouse.run("UPDATE customers SET plan = 'vip' WHERE customer_id = 7")
    code, third = cli.sync(monkeypatch, capsys)
    assert (third["changed"], third["sent"], third["delivered"]) == (1, 1, 1)
    assert cli.profiles() == 1201
    stored = sandbox.contact("klaviyo_profiles", "c7@example.com")
    assert stored is not None and stored["properties"]["plan"] == "vip"


def test_row_the_vendor_refuses_is_sent_again_next_run(
    tmp_path: Path,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(warehouse, 300)
    # Klaviyo refuses an email without a dot in its domain (an import error, no row index).
    warehouse.run("UPDATE customers SET email = 'broken@localhost' WHERE customer_id = 77")
    cli = Cli(tmp_path, warehouse, sandbox)
    code, first = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (first["sent"], first["delivered"], first["rejected"]) == (300, 299, 1)
    assert first["sample_rejects"][0][0] == "77"
    rejects = StateStore(cli.state_url).rejects("customers_to_klaviyo")
    assert [r["key"] for r in rejects] == ["77"]

    code, again = cli.sync(monkeypatch, capsys)
    assert (again["unchanged"], again["sent"], again["rejected"]) == (299, 1, 1)

    warehouse.run("UPDATE customers SET email = 'fixed@example.com' WHERE customer_id = 77")
    code, fixed = cli.sync(monkeypatch, capsys)
    assert (fixed["sent"], fixed["delivered"], fixed["rejected"]) == (1, 1, 0)
    assert StateStore(cli.state_url).rejects("customers_to_klaviyo") == []


@pytest.mark.slow
def test_breaker_stops_a_run_whose_jobs_the_vendor_mostly_refuses(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 10_500)  # two jobs: 10,000 + 500
    # A broken mapping: Klaviyo refuses 9 of 10 emails (no dot in the domain), listed by its
    # import-errors endpoint.
    duck.run(
        "UPDATE customers SET email = 'c' || customer_id || '@localhost' "
        "WHERE customer_id % 10 <> 0"
    )
    cli = Cli(tmp_path, duck, sandbox)
    cli.write(options=", jobs_in_flight: 1")
    code, out = cli.sync(monkeypatch, capsys)
    assert code == 1
    assert "refused 9000 of the 10000 contacts" in out["stderr"]
    assert (
        "max_reject_ratio (0.5)" in out["stderr"] and "before its next import job" in out["stderr"]
    )
    assert sandbox.stats()["contacts"]["klaviyo_profiles"]["jobs"] == 1  # the second never sent
    assert cli.confirmed() == 1_000  # only what Klaviyo confirmed
    assert StateStore(cli.state_url).rejects("customers_to_klaviyo") == []

    duck.run("UPDATE customers SET email = 'c' || customer_id || '@example.com'")
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["unchanged"], res["sent"], res["delivered"], res["rejected"]) == (
        1_000,
        9_500,
        9_500,
        0,
    )
    assert cli.confirmed() == 10_500


def test_mapping_change_resends_every_row(
    tmp_path: Path,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(warehouse, 200)
    cli = Cli(tmp_path, warehouse, sandbox)
    assert cli.sync(monkeypatch, capsys)[1]["sent"] == 200
    cli.write(extra=", nickname: first_name")
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["changed"], res["sent"], res["delivered"]) == (200, 200, 200)
    stored = sandbox.contact("klaviyo_profiles", "c3@example.com")
    assert stored is not None and stored["properties"]["nickname"] == "Name3"


def test_job_still_processing_across_polls_and_failing_polls(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 50)
    sandbox.inject_job(JobFault("klaviyo_profiles", polls=4))
    sandbox.inject(Fault("/api/profile-bulk-import-jobs/*", status=503, times=2))
    cli = Cli(tmp_path, duck, sandbox)
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0
    assert (res["delivered"], res["polls"], res["retries"]) == (50, 5, 2)


def test_cancelled_job_fails_the_run_and_confirms_nothing(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 20)
    sandbox.inject_job(JobFault("klaviyo_profiles", fail=True))
    cli = Cli(tmp_path, duck, sandbox)
    code, failed = cli.sync(monkeypatch, capsys)
    assert code == 1
    assert "ended 'cancelled'" in failed["stderr"]
    assert cli.confirmed() == 0
    code, res = cli.sync(monkeypatch, capsys)
    assert (code, res["sent"], res["delivered"]) == (0, 20, 20)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_kill_9_during_a_job_resends_unconfirmed_rows_none_lost(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    make_customers(duck, 25_000)  # three jobs of at most 10,000 profiles
    duck.dispose()
    state_url = request.getfixturevalue("pg_url") if store == "postgresql" else None
    cli = Cli(tmp_path, duck, sandbox, state_url=state_url)
    # The second job never finishes while the first run lives: it is killed polling it.
    sandbox.inject_job(
        JobFault("klaviyo_profiles", polls=0), JobFault("klaviyo_profiles", polls=10_000)
    )
    args = ("sync", "customers_to_klaviyo", "--json")
    proc = connector_process(cli.config, cli.state_url, *args)
    hashes = HashStore(StateStore(cli.state_url))
    try:
        # Wait (bounded by the test timeout) until the first job is confirmed and the second
        # has been polled: the kill lands while a job is in flight.
        while not (
            hashes.count("customers_to_klaviyo") >= 10_000
            and sandbox.stats()["contacts"]["klaviyo_profiles"]["jobs"] >= 2
        ):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            proc_wait(proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    confirmed = hashes.count("customers_to_klaviyo")
    assert 10_000 <= confirmed < 25_000
    sent_before = cli.profiles()  # profiles the sandbox received from the killed run
    rerun = connector_process(cli.config, cli.state_url, *args)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    res = json.loads(out)
    assert res["unchanged"] == confirmed
    assert res["sent"] == 25_000 - confirmed and res["delivered"] == 25_000 - confirmed
    assert hashes.count("customers_to_klaviyo") == 25_000
    # Counted at the sandbox: the rerun sent exactly the unconfirmed rows, and every
    # customer is there once.
    assert cli.profiles() == sent_before + 25_000 - confirmed
    assert len(sandbox.contacts("klaviyo_profiles")) == 25_000
    for i in (1, 12_345, 25_000):
        assert sandbox.contact("klaviyo_profiles", f"c{i}@example.com") is not None


def proc_wait(proc: subprocess.Popen[str]) -> None:
    """Wait for the process a moment (a poll step of the loop above, not a timing sleep)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.05)


def test_a_second_run_of_a_contact_sync_exits_1_and_sends_nothing(
    tmp_path: Path,
    warehouse: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(warehouse, 50)
    cli = Cli(tmp_path, warehouse, sandbox)
    held = Lease(StateStore(cli.state_url), "customers_to_klaviyo", INCREMENTAL, ttl_s=60)
    held.acquire()  # another run of the same sync, e.g. on a Dagster worker
    code, out = cli.sync(monkeypatch, capsys)
    assert code == 1
    assert "customers_to_klaviyo [incremental] is already running since" in out["stderr"]
    assert sandbox.stats()["requests"] == 0 and cli.profiles() == 0

    held.release()
    code, done = cli.sync(monkeypatch, capsys)
    assert code == 0 and done["sent"] == 50 and cli.profiles() == 50
