"""Real parts for tests: a DuckDB file, a throwaway PostgreSQL server, the sandbox on loopback.

PostgreSQL: ``TEST_PG_URL`` if set; otherwise a cluster made with ``initdb`` in a temp dir and
started on a free loopback port (as the ``postgres`` user when running as root — the server
refuses to run as root). The binaries come from PATH or /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.config.sync_file import SyncConfig, parse_sync
from connector.deliver.delivery import Runtime
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from connector.warehouses import release_engine

SANDBOX_KEYS = {
    "KLAVIYO_API_KEY": "pk_sandbox",
    "BREVO_API_KEY": "sandbox-brevo-key",
    "BREVO_MA_KEY": "sandbox-ma-key",
    "OMNISEND_TOKEN": "sandbox-omnisend-token",
    "OMNISEND_API_KEY": "sandbox-omnisend-key",
}


@pytest.fixture(autouse=True)
def _sandbox_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SANDBOX_KEYS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("CONNECTOR_STATE_URL", raising=False)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL binary {name} not found; install Debian's postgresql")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server (database ``postgres``) for the whole test session."""
    if os.environ.get("TEST_PG_URL"):
        yield os.environ["TEST_PG_URL"]
        return
    root = Path(tempfile.mkdtemp(prefix="connector-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [
            *as_postgres,
            _pg_bin("initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_postgres,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-w",
            "-l",
            str(root / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh database per test on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        sa.create_engine(url).dispose()
        release_engine(url, servers=True)
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --------------------------------------------------------------------------- warehouses


class Warehouse:
    """A real warehouse (DuckDB file or PostgreSQL database) that tests fill with SQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = "duckdb" if url.startswith("duckdb") else "postgresql"
        # DuckDB: no pooled connection left open between statements, so the connector can
        # open the file read-only in this same process (DuckDB refuses two configurations).
        pool = {"poolclass": sa.pool.NullPool} if self.kind == "duckdb" else {}
        self.engine = sa.create_engine(url, **pool)

    def run(self, *statements: str) -> None:
        with self.engine.begin() as c:
            for stmt in statements:
                c.exec_driver_sql(stmt)

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        placeholders = ", ".join(f":{c}" for c in cols)
        with self.engine.begin() as c:
            c.execute(
                sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders})"), rows
            )

    def timestamptz(self) -> str:
        return "TIMESTAMPTZ" if self.kind == "duckdb" else "timestamptz"

    def json_type(self) -> str:
        return "JSON" if self.kind == "duckdb" else "jsonb"

    def dispose(self) -> None:
        self.engine.dispose()
        release_engine(self.url, servers=True)


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Warehouse]:
    wh = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    yield wh
    wh.dispose()


@pytest.fixture
def pg(pg_url: str) -> Iterator[Warehouse]:
    wh = Warehouse(pg_url)
    yield wh
    wh.dispose()


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    """Each test using this runs on both warehouses."""
    return request.getfixturevalue("duck" if request.param == "duckdb" else "pg")


# --------------------------------------------------------------------------- sandbox, state


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(), host="127.0.0.1", port=0) as sb:
        yield sb


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


class FakeSleep:
    """Records the waits the connector asks for, advancing a fake clock instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def runtime(fake_time: FakeSleep) -> Runtime:
    return Runtime(clock=fake_time.clock, sleep=fake_time.sleep, random=lambda: 0.5)


def make_sync(yaml_text: str, where: str = "syncs/test.yaml") -> SyncConfig:
    return parse_sync(textwrap.dedent(yaml_text), where)
