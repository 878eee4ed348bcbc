"""Real parts for tests: a DuckDB file, a throwaway PostgreSQL server, the sandbox on loopback.

PostgreSQL: ``TEST_PG_URL`` if set; otherwise a cluster made with ``initdb`` in a temp dir and
started on a free loopback port (as the ``postgres`` user when running as root — the server
refuses to run as root). The binaries come from PATH or /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from connector.config.sync_file import SyncConfig, parse_sync
from connector.deliver.delivery import Runtime
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from connector.warehouses import release_engine, warehouse_for

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


# --------------------------------------------------------------------------- MariaDB


def _mdb_bin(name: str) -> str:
    for found in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if found and os.path.exists(found):
            return found
    raise RuntimeError(f"MariaDB binary {name} not found; install Debian's mariadb-server")


def _mdb_ready(proc: subprocess.Popen[bytes], notify: socket.socket, sock: Path) -> bool:
    """Wait for mariadbd's systemd-style READY=1 on ``notify`` (Debian's build sends it when
    it accepts connections); a build without it: until its socket accepts a connection."""
    try:
        while True:
            if "READY=1" in notify.recv(4096).decode(errors="replace").split("\n"):
                return True
    except TimeoutError:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[str]:
    """URL (no database) of a MariaDB server for the whole test session: ``TEST_MYSQL_URL`` if
    set, else a throwaway one (datadir in a temp dir, a free loopback port, the session in
    UTC, utf8mb4 with a case-insensitive collation; as the ``mysql`` user when root)."""
    if os.environ.get("TEST_MYSQL_URL"):
        yield os.environ["TEST_MYSQL_URL"]
        return
    root = Path(tempfile.mkdtemp(prefix="connector-mdb-"))
    sock, notify_path = root / "mysqld.sock", root / "notify.sock"
    user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "mysql", "mysql")
        user = ["--user=mysql"]
    common = [
        "--no-defaults",  # not /etc/mysql/*.cnf (Debian's points at /run/mysqld, /var/lib/mysql)
        f"--datadir={root / 'data'}",
        "--innodb-log-file-size=8M",
        "--innodb-buffer-pool-size=64M",
        *user,
    ]
    subprocess.run(
        [_mdb_bin("mariadb-install-db"), *common, "--auth-root-authentication-method=normal"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    os.chmod(notify_path, 0o777)  # mariadbd runs as mysql
    notify.settimeout(30)
    proc = subprocess.Popen(
        [
            _mdb_bin("mariadbd"),
            *common,
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            f"--log-error={root / 'err.log'}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not _mdb_ready(proc, notify, sock):
            raise RuntimeError((root / "err.log").read_text(errors="replace")[-3000:])
        sql = (
            "CREATE USER 'ci'@'127.0.0.1' IDENTIFIED BY 'ci'; GRANT ALL ON *.* TO 'ci'@'127.0.0.1'"
        )
        mdb = [_mdb_bin("mariadb"), "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql]
        subprocess.run(mdb, check=True, capture_output=True)
        yield f"mysql+pymysql://ci:ci@127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        notify.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mysql_url(mysql_server: str) -> Iterator[str]:
    """A fresh database per test on the session's MariaDB server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    # The throwaway server has no TLS: without ssl_disabled, PyMySQL builds a TLS context for
    # each connection (loading the CA bundle, ~25 ms of CPU) to try it first.
    query = "charset=utf8mb4" + ("" if os.environ.get("TEST_MYSQL_URL") else "&ssl_disabled=1")
    admin = sa.create_engine(f"{mysql_server}/?{query}")
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = f"{mysql_server}/{name}?{query}"
    try:
        yield url
    finally:
        release_engine(url, servers=True)
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


# --------------------------------------------------------------------------- warehouses


_UTC_LITERAL = re.compile(r"'(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?)\+00(?::00)?'")
_PG_CAST_TZ = re.compile(r"CAST\(('[^']*') AS TIMESTAMP WITH TIME ZONE\)")


def _utc_wall_time(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, str) and _UTC_LITERAL.fullmatch(f"'{value}'"):
        return value.rsplit("+", 1)[0]
    return value


_PLAIN = (int, float, str, bool, Decimal, date, bytes)


def _arrow_plain(rows: list[dict[str, Any]]) -> frozenset[str] | None:
    """The columns that hold instants (times with a zone) when every value converts to Arrow
    as DuckDB would bind it (scalars, times with or without a zone); None when a value keeps
    the driver's own binding (a time of day, a nested value)."""
    instants: set[str] = set()
    for row in rows:
        for k, v in row.items():
            if v is None or (isinstance(v, _PLAIN) and not isinstance(v, datetime)):
                continue
            if not isinstance(v, datetime):
                return None
            if v.tzinfo is not None:
                instants.add(k)
    return frozenset(instants)


def _json_text(value: Any) -> Any:
    """A row's value as JSON carries it to ``Warehouse.insert_json``: times and dates in ISO
    form (with their offsets), decimals as their digits."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    return str(value)


@functools.cache
def _duckdb_host() -> Any:
    """This process's one in-memory DuckDB, which the tests' DuckDB files attach to."""
    import duckdb

    return duckdb.connect(":memory:")


def _attaching_engine(file: Path) -> sa.Engine:
    """An engine whose every connection attaches the DuckDB ``file`` to this process's one
    in-memory DuckDB (``_duckdb_host``) and detaches it when closed: no connection holds
    the file between statements, so the connector can open it read-only in this same process
    (DuckDB refuses a second configuration of an open file) or in another one. A new DuckDB
    instance per statement took ~23 ms of CPU (its catalog of built-in functions), an
    attachment takes ~3 ms."""
    import duckdb_engine

    host = _duckdb_host()
    path = "'" + str(file).replace("'", "''") + "'"  # a SQL string literal
    engine = sa.create_engine(
        "duckdb:///:memory:",
        poolclass=sa.pool.NullPool,
        creator=lambda: duckdb_engine.ConnectionWrapper(host.cursor()),
    )

    @sa.event.listens_for(engine, "connect")
    def attach(dbapi_connection: Any, record: Any) -> None:
        record.info["alias"] = alias = f"w_{uuid.uuid4().hex}"
        dbapi_connection.execute(f"ATTACH {path} AS {alias}")
        dbapi_connection.execute(f"USE {alias}")

    @sa.event.listens_for(engine, "close")
    def detach(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("USE memory")
        dbapi_connection.execute(f"DETACH {record.info['alias']}")

    return engine


class Warehouse:
    """A real warehouse (DuckDB file, PostgreSQL or MariaDB database, Snowflake emulated by
    fakesnow) that tests fill with SQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        seam, parsed = warehouse_for(url), sa.engine.make_url(url)
        self.kind = str(seam.name)
        file = seam.file(parsed) if self.kind == "duckdb" and not parsed.query else None
        if file is not None:
            self.engine = _attaching_engine(file)
            return
        # DuckDB in memory or with URL settings: no pooled connection left open between
        # statements, for the same reason as ``_attaching_engine``.
        pool: dict[str, Any] = {"poolclass": sa.pool.NullPool} if self.kind == "duckdb" else {}
        target: Any = url
        if self.kind == "snowflake":  # the emulator's host and port are connect arguments
            target, pool["connect_args"] = seam.connect_args(parsed, {})
        self.engine = sa.create_engine(target, **pool)

    def run(self, *statements: str) -> None:
        with self.engine.begin() as c:
            for stmt in statements:
                c.exec_driver_sql(self.sql(stmt))

    def sql(self, stmt: str) -> str:
        """Test SQL written for DuckDB and PostgreSQL, in MariaDB's words (a time literal
        with an offset is the session's UTC wall time, ``double precision`` a DOUBLE) and
        Snowflake's (no collations)."""
        if self.kind == "snowflake":  # no collation: code point order, as "C"
            return stmt.replace(' COLLATE "C"', "").replace(" COLLATE NOCASE", "")
        if self.kind != "mysql":
            return stmt
        stmt = _PG_CAST_TZ.sub(r"\1", stmt)
        stmt = stmt.replace('COLLATE "C"', "COLLATE utf8mb4_bin")
        stmt = stmt.replace("COLLATE NOCASE", "COLLATE utf8mb4_unicode_ci")
        return _UTC_LITERAL.sub(r"'\1'", stmt).replace("double precision", "DOUBLE")

    def naive_timestamp(self) -> str:
        """A time without a zone (MariaDB's TIMESTAMP is an instant)."""
        return "DATETIME(6)" if self.kind == "mysql" else "TIMESTAMP"

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows as this warehouse's driver must bind them: MariaDB's TIMESTAMP takes the
        session's (UTC) wall time, PyMySQL drops an offset."""
        if self.kind != "mysql":
            return rows
        return [{k: _utc_wall_time(v) for k, v in row.items()} for row in rows]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        instants = _arrow_plain(rows) if self.kind == "duckdb" else None
        if instants is not None and self._insert_arrow(table, cols, rows, instants):
            return
        if self.kind == "snowflake":
            self.insert_json(table, rows)
            return
        placeholders = ", ".join(f":{c}" for c in cols)
        with self.engine.begin() as c:
            c.execute(
                sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders})"),
                self.rows(rows),
            )

    def insert_json(
        self, table: str, rows: list[dict[str, Any]], parsed: Collection[str] = ()
    ) -> None:
        """Snowflake (the emulator): the rows as one JSON array bound as one value, spread
        into the table by one ``INSERT … SELECT`` over ``FLATTEN``, each field cast to its
        column's type; the ``parsed`` columns (VARIANT) take their JSON text parsed, as
        ``PARSE_JSON(:c)`` binds it. fakesnow translates every statement with sqlglot, whose
        cost grows with each literal: 5,000 rows as the driver's multi-row INSERT take ~14 s
        of CPU, as one JSON text well under a second, and land the same values (times with
        their offsets, exact decimals, NULLs)."""
        if not rows:
            return
        cols = list(rows[0])
        declared = {
            col["name"].lower(): col["type"].compile(dialect=self.engine.dialect)
            for col in sa.inspect(self.engine).get_columns(table)
        }
        fields = ", ".join(
            f"PARSE_JSON(value:{c}::VARCHAR)"
            if c in parsed
            else f"value:{c}::{declared[c.lower()]}"
            for c in cols
        )
        blob = json.dumps([{c: _json_text(row[c]) for c in cols} for row in rows])
        with self.engine.begin() as c:
            c.execute(
                sa.text(
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT {fields} "
                    "FROM TABLE(FLATTEN(INPUT => PARSE_JSON(:rows)))"
                ),
                {"rows": blob},
            )

    def _insert_arrow(
        self, table: str, cols: list[str], rows: list[dict[str, Any]], instants: Collection[str]
    ) -> bool:
        """DuckDB: the rows as one Arrow table, inserted in one statement (binding them one
        by one costs seconds for the 10,000-row fixtures); DuckDB casts each column to its
        declared type as the driver's binding does. Instants (``instants``: times with a
        zone) go this way only into TIMESTAMPTZ columns, where Arrow's UTC instant is the
        value the driver binds. False when a column mixes Python types Arrow cannot hold
        together, or holds instants for another type (the caller binds those rows one by
        one)."""
        import pyarrow as pa

        try:
            frame = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        name = f"_rows_{uuid.uuid4().hex}"
        with self.engine.begin() as c:
            if instants:
                declared: dict[str, str] = dict(
                    c.exec_driver_sql(
                        "SELECT lower(column_name), data_type FROM information_schema.columns"
                        f" WHERE table_name = '{table}' AND table_catalog = current_database()"
                    ).all()
                )
                if any(declared.get(k.lower()) != "TIMESTAMP WITH TIME ZONE" for k in instants):
                    return False
            raw: Any = c.connection.driver_connection
            raw.register(name, frame)
            try:
                listed = ", ".join(cols)
                raw.execute(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {name}")
            finally:
                raw.unregister(name)
        return True

    def timestamptz(self) -> str:
        return {
            "duckdb": "TIMESTAMPTZ",
            "mysql": "TIMESTAMP(6) NULL",
            "snowflake": "TIMESTAMP_TZ",
        }.get(self.kind, "timestamptz")

    def json_type(self) -> str:
        return {"postgresql": "jsonb", "snowflake": "VARIANT"}.get(self.kind, "JSON")

    def json_param(self, name: str) -> str:
        """A bound JSON text as a value of ``json_type()``."""
        return {"mysql": f":{name}", "snowflake": f"PARSE_JSON(:{name})"}.get(
            self.kind, f"CAST(:{name} AS JSON)"
        )

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


@pytest.fixture
def mysql(mysql_url: str) -> Iterator[Warehouse]:
    wh = Warehouse(mysql_url)
    yield wh
    wh.dispose()


@pytest.fixture(scope="session")
def snowflake_server() -> Iterator[str]:
    """URL template (``{db}``) of fakesnow, a Snowflake emulator over DuckDB, serving
    Snowflake's HTTP protocol on loopback for the whole session (its own environment:
    .ci/run). A subprocess: in this process a connection collected by the garbage collector
    on the server's thread would send its ROLLBACK to itself and wait forever."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakesnow", "-s", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    timer = threading.Timer(60, proc.kill)  # bounds the wait for the line below
    timer.start()
    log: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            raise RuntimeError("fakesnow did not start:\n" + "".join(log[-30:]))
    finally:
        timer.cancel()
    threading.Thread(target=lambda: log.extend(proc.stderr or ()), daemon=True).start()
    try:
        # Timeouts: a statement the emulator mishandles fails in a minute and a half, not in
        # the driver's minutes of retries (a loaded CI machine needs more than 30 s at times).
        yield (
            f"snowflake://fake:snow@fakesnow/{{db}}/PUBLIC?host=127.0.0.1&port={port}"
            "&protocol=http&network_timeout=90&socket_timeout=90"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def snow(snowflake_server: str) -> Iterator[Warehouse]:
    """A fresh database per test on the session's emulated Snowflake."""
    wh = Warehouse(snowflake_server.format(db=f"T_{uuid.uuid4().hex[:12].upper()}"))
    yield wh
    wh.dispose()


WAREHOUSE_FIXTURES = {"duckdb": "duck", "postgresql": "pg", "mysql": "mysql"}
if importlib.util.find_spec("fakesnow") is not None:  # the Snowflake environment
    WAREHOUSE_FIXTURES["snowflake"] = "snow"


@pytest.fixture(params=list(WAREHOUSE_FIXTURES))
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    """Each test using this runs on every warehouse of this environment (Snowflake's run in
    their own, see tests/e2e/test_snowflake.py)."""
    return request.getfixturevalue(WAREHOUSE_FIXTURES[request.param])


# --------------------------------------------------------------------------- sandbox, state


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(), host="127.0.0.1", port=0) as sb:
        yield sb


@pytest.fixture(scope="session")
def new_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new SQLite state store, made once per test process (its migrations take ~12 ms of
    CPU, a copy ~1 ms)."""
    path = tmp_path_factory.mktemp("new-state") / "state.db"
    StateStore(f"sqlite:///{path}").engine.dispose()  # disposed: no WAL left beside it
    return path


@pytest.fixture
def state(tmp_path: Path, new_state_file: Path) -> StateStore:
    """A new SQLite state store of this test: a copy of ``new_state_file``."""
    shutil.copyfile(new_state_file, tmp_path / "state.db")
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


# --------------------------------------------------------------------------- Snowflake run

# The Snowflake cases need snowflake-sqlalchemy 1.x, fakesnow and SQLAlchemy < 2.1: their own
# environment (.venv-snowflake, made by .ci/run). tests/e2e/test_snowflake.py runs them there and
# reports their results; they start as soon as collection finds that test, so they run on the
# second core while this session runs the rest.
SNOWFLAKE_PYTHON = Path(__file__).resolve().parents[1] / ".venv-snowflake" / "bin" / "python"
SNOWFLAKE_ENV = "snowflake" in WAREHOUSE_FIXTURES
# At least this many Snowflake cases run from the whole tree (a collection problem in their
# environment must not pass as success).
MIN_SNOWFLAKE_CASES = 60
SNOWFLAKE_CASES = Path(__file__).resolve().parent / "warehouses" / "test_snowflake.py"
collect_ignore = [] if SNOWFLAKE_ENV else ["warehouses/test_snowflake.py"]


class SnowflakeRun:
    """The Snowflake cases running in their environment, a subprocess of this session.

    Under pytest-xdist every worker collects every test, but only the first worker (``gw0``)
    starts the run; the test that reports it may land on any worker, so the run writes its
    results and its exit status into a directory named by the test run's id, which every
    worker of that run computes alike.
    """

    def __init__(self) -> None:
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
        self.dir = Path(tempfile.gettempdir()) / f"connector-snowflake-run-{run_id}"
        self.junit = self.dir / "results.xml"
        self.log = self.dir / "output.txt"
        self.status = self.dir / "status"
        self.expected = self.dir / "expected"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def available(self) -> bool:
        """Whether the Snowflake environment exists (``.ci/snowflake-env`` builds it)."""
        return SNOWFLAKE_PYTHON.exists()

    def start(self, files: Collection[str] = (), expected: int = 0) -> None:
        """Start the cases; their exit status lands in ``status`` when they end. ``files``:
        the test files that hold them (collecting only those spares the emulator's run ~10 s
        of importing the rest of the tree), ``expected`` how many cases they hold at least;
        none, the whole tree and at least ``MIN_SNOWFLAKE_CASES``."""
        if not self.available:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.expected.write_text(str(expected if files else MIN_SNOWFLAKE_CASES))
        pytest_args = [
            str(SNOWFLAKE_PYTHON),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-k",
            "snowflake",
            "--ignore=tests/e2e/test_snowflake.py",
            "--ignore=tests/warehouses/test_warehouses.py",
            f"--junitxml={self.junit}",
            *(sorted(files) or ["tests"]),
        ]
        script = '"$@"; echo $? > "$STATUS.tmp" && mv "$STATUS.tmp" "$STATUS"'
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["sh", "-c", script, "sh", *pytest_args],
                cwd=SNOWFLAKE_PYTHON.parents[2],
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
                    "STATUS": str(self.status),
                    # The emulator runs on no cloud: the driver's platform detection at each
                    # login (a boto3 client, metadata requests) is ~10% of the run's CPU.
                    "SNOWFLAKE_DISABLE_PLATFORM_DETECTION": "true",
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait(self, timeout: float) -> int:
        """The cases' exit status, waiting for them to end (whichever worker started them)."""
        deadline = time.monotonic() + timeout
        while not self.status.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Snowflake cases did not end within {timeout:.0f} s")
            time.sleep(0.2)  # waiting on the status file of another process, not timing
        return int(self.status.read_text().strip())


_SNOWFLAKE_RUN: list[SnowflakeRun] = []


# The subprocesses of a session (the CLI, Dagster's step processes, the Snowflake run) keep
# the modules they compile (``__pycache__``, ignored by git) even where the environment says
# not to (``PYTHONDONTWRITEBYTECODE``): otherwise each of them compiles the package again as
# it starts, ~0.15 s of CPU each.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# A test session imports Dagster, SQLAlchemy, DuckDB and pydantic, and at Python's default
# threshold (a collection every 700 new objects) the cyclic collector walks those objects
# again and again (~10% of a worker's CPU): the test processes collect less often. (Not the
# ``connector`` command: there it cost a 1M-row run ~35 MiB of peak memory, docs/performance.md.)
gc.set_threshold(10_000, *gc.get_threshold()[1:])


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook (the Snowflake run has no xdist)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the machine has cores. Many tests wait (on a
    lease, a paced rate, a subprocess, the Snowflake run) and leave their core to the others:
    on two cores three workers took the suite from ~4 min 20 s to ~3 min 20 s."""
    return (os.cpu_count() or 1) + 1


_T = TypeVar("_T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each worker starts with its share of the ``slow`` tests and the short ones fill the
    end, so that the workers end together; the Snowflake report comes last (it waits for
    the cases that started beside the workers at collection). See ``worksteal_order``."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    items[:] = worksteal_order(
        items,
        workers,
        slow=lambda i: i.get_closest_marker("slow") is not None,
        last=lambda i: i.nodeid.startswith("tests/e2e/test_snowflake.py"),
    )


def worksteal_order(
    items: list[_T], workers: int, slow: Callable[[_T], bool], last: Callable[[_T], bool]
) -> list[_T]:
    """``items`` ordered for ``--dist worksteal`` over ``workers``: it first hands worker
    *i* of *k* the *i*-th of *k* consecutive sections of the list (``n // k`` items, then
    ``rest // (k - 1)``, ...), and later moves tests from the end of a busy worker's queue
    to an idle one. The slow items go round robin to the heads of the sections, the others
    follow in their order, the ``last`` ones end the list. Every worker computes the same
    order (xdist checks that the collections agree)."""
    at_end = [i for i in items if last(i)]
    heavy = [i for i in items if slow(i) and not last(i)]
    rest = [i for i in items if not slow(i) and not last(i)]
    heads = [heavy[w::workers] for w in range(workers)]
    ordered: list[_T] = []
    left = len(items)
    for w in range(workers):
        size = left // (workers - w)
        left -= size
        take = max(size - len(heads[w]) - (len(at_end) if w == workers - 1 else 0), 0)
        ordered += heads[w] + rest[:take]
        del rest[:take]
    return ordered + rest + at_end


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection loaded lives to the end of the session: out of the collector's reach.
    gc.freeze()
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0" or session.config.option.collectonly:
        return
    if not SNOWFLAKE_ENV and any(
        i.nodeid.startswith("tests/e2e/test_snowflake.py") for i in session.items
    ):
        run = SnowflakeRun()
        run.start(*snowflake_selection(session.items))
        _SNOWFLAKE_RUN.append(run)


def snowflake_selection(items: Collection[pytest.Item]) -> tuple[set[str], int]:
    """The files that hold the Snowflake cases of this session's tests, and how many of them
    at least: each test that takes a warehouse (directly or through a fixture of its own)
    runs once per warehouse, Snowflake's run included, and Snowflake's own cases run there
    too. No such test selected (``pytest tests/e2e/test_snowflake.py``): the whole tree."""
    root = SNOWFLAKE_PYTHON.parents[2]
    files: set[str] = set()
    twins = 0
    for item in items:
        if "warehouse" in getattr(item, "fixturenames", ()):
            files.add(str(item.path.relative_to(root)))
            callspec = getattr(item, "callspec", None)
            twins += callspec is not None and callspec.params.get("warehouse") == "duckdb"
    if not files:
        return set(), 0
    return {*files, str(SNOWFLAKE_CASES.relative_to(root))}, twins + 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    # The worker that started the cases outlives them: another worker may be waiting for them.
    for run in _SNOWFLAKE_RUN:
        if run.proc is not None:
            run.proc.wait()


@pytest.fixture(scope="session")
def snowflake_run() -> Iterator[SnowflakeRun]:
    run = _SNOWFLAKE_RUN[0] if _SNOWFLAKE_RUN else SnowflakeRun()
    if not _SNOWFLAKE_RUN and os.environ.get("PYTEST_XDIST_WORKER") is None:
        run.start()  # selected some other way than at collection: start it now
    yield run
    shutil.rmtree(run.dir, ignore_errors=True)
