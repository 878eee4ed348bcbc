"""Shared parts of the contact-sync tests: the ``customers`` table in a test warehouse and a
config dir + state store driven through the CLI (each test module subclasses ``ContactCli`` with
its sync's YAML template and name, and its vendor-specific readers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import pytest

from connector.cli.main import main
from connector.config.sync_file import RateLimit
from connector.contacts.hashes import HashStore
from connector.core.options import DestinationSettings
from connector.deliver.http_loop import Runtime, Stats, connect
from connector.deliver.ratelimit import Pacer
from connector.destinations.contact_endpoint import ContactDestination
from connector.sandbox import SandboxServer
from connector.store.state import StateStore

from .conftest import Warehouse


def make_customers(wh: Warehouse, n: int, *, phone: bool = False, updated_at: bool = False) -> None:
    """``customers`` with ``n`` rows: ids 1..n, emails ``c{i}@example.com``, odd ids on plan
    ``pro``; ``phone`` adds a phone on every third row, ``updated_at`` a cursor column."""
    cols = ["customer_id INTEGER", "email VARCHAR(200)"]
    cols += ["phone VARCHAR(20)"] if phone else []
    cols += ["first_name VARCHAR(50)", "plan VARCHAR(20)", "ltv NUMERIC(12, 2)", "city VARCHAR(50)"]
    cols += [f"updated_at {wh.timestamptz()}"] if updated_at else []
    wh.run("DROP TABLE IF EXISTS customers", f"CREATE TABLE customers ({', '.join(cols)})")
    rows: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        row: dict[str, Any] = {"customer_id": i, "email": f"c{i}@example.com"}
        if phone:
            row["phone"] = f"+3361000{i:04d}" if i % 3 == 0 else None
        row.update(
            first_name=f"Name{i}", plan="pro" if i % 2 else "free", ltv=f"{i}.10", city="Paris"
        )
        if updated_at:
            row["updated_at"] = "2026-11-01 00:00:00+00"
        rows.append(row)
    wh.insert("customers", rows)


D = TypeVar("D", bound=ContactDestination[DestinationSettings])


def connected(
    dest: D,
    transport: httpx.BaseTransport | None = None,
    runtime: Runtime | None = None,
    pacer: Pacer | None = None,
) -> D:
    """``dest`` connected to an HTTP loop of its own, as ``deliver.factory`` connects it,
    unpaced unless a ``pacer`` is given; ``runtime`` sleeps nowhere by default."""
    rt = runtime or Runtime(sleep=lambda s: None, random=lambda: 0.0)
    pacer = pacer or Pacer(RateLimit(), rt.clock, rt.sleep)  # no window: never waits
    dest.connect(connect(dest, pacer, rt, Stats(), transport))
    return dest


class ContactCli:
    """One contact sync's config dir (``syncs/customers.yaml`` from ``template``, formatted with
    the warehouse url, the sandbox url and ``defaults`` overridden by ``write``'s arguments) and
    its state store (SQLite in ``tmp_path`` unless ``state_url`` is given), run through
    ``connector.cli.main`` in this process."""

    name: ClassVar[str]
    template: ClassVar[str]
    defaults: ClassVar[dict[str, str]] = {}

    def __init__(
        self, tmp_path: Path, wh: Warehouse, sandbox: SandboxServer, state_url: str | None = None
    ) -> None:
        self.config = tmp_path / "config"
        (self.config / "syncs").mkdir(parents=True, exist_ok=True)
        self.state_url = state_url or f"sqlite:///{tmp_path / 'state.db'}"
        self.wh, self.sandbox = wh, sandbox
        self.write()

    def write(self, **fields: str) -> None:
        text = self.template.format(
            url=self.wh.url, sandbox=self.sandbox.url, **{**self.defaults, **fields}
        )
        (self.config / "syncs" / "customers.yaml").write_text(text)

    def env(self) -> dict[str, str]:
        return {"CONNECTOR_CONFIG_DIR": str(self.config), "CONNECTOR_STATE_URL": self.state_url}

    def run(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
    ) -> tuple[int, dict[str, Any]]:
        """``connector <argv>``: the parsed ``--json`` summary of a sync that exited 0, else
        ``{"stdout": ..., "stderr": ...}``."""
        for k, v in self.env().items():
            monkeypatch.setenv(k, v)
        self.wh.dispose()  # DuckDB: the connector opens the file read-only
        code = main(list(argv))
        out, err = capsys.readouterr()
        if code == 0 and argv[0] == "sync" and "--json" in argv:
            return code, json.loads(out)
        return code, {"stdout": out, "stderr": err}

    def sync(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
    ) -> tuple[int, dict[str, Any]]:
        return self.run(monkeypatch, capsys, "sync", self.name, "--json", *args)

    def confirmed(self) -> int:
        """Rows whose hash the state store holds (confirmed by the vendor)."""
        return HashStore(StateStore(self.state_url)).count(self.name)


KLAVIYO_SYNC = """
name: customers_to_klaviyo
source: {{table: customers, primary_key: [customer_id], url: "{url}", chunk_size: 500}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, list_id: LIST1{options}}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name, plan: plan, ltv: ltv, location.city: city{extra}}}
"""


class KlaviyoCli(ContactCli):
    """The Klaviyo profile sync most contact tests run (``write(extra=..., options=...)``
    appends contact properties, destination options)."""

    name = "customers_to_klaviyo"
    template = KLAVIYO_SYNC
    defaults: ClassVar[dict[str, str]] = {"extra": "", "options": ""}

    def profiles(self) -> int:
        return len(self.sandbox.events("klaviyo_profiles"))
