"""``connector state reset``: refused while a run of the sync holds its lease, and on a contact
sync it also forgets the stored hashes (the next run sends every contact again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.cli.main import main
from connector.contacts.hashes import HashStore
from connector.sandbox import SandboxServer
from connector.store.lease import Lease
from connector.store.state import INCREMENTAL, StateStore
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
