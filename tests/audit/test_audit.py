"""Audit tables in the warehouse (connector.audit, docs/audit.md), through the CLI: event and
contact runs on DuckDB (the file beside the read-only warehouse) and PostgreSQL (the warehouse
itself), rejects, removed rows, a killed run and its re-run, the retention, and an audit
database that cannot be reached."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from connector.audit import outbox, table_counts
from connector.audit.settings import AuditSettings, audit_settings, beside
from connector.audit.tables import SNAPSHOT, audit_tables
from connector.audit.writer import flush
from connector.cli.main import main
from connector.config.sync_file import parse_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import (
    TEMPLATES,
    connector_process,
    create_events_table,
    event_rows,
    insert_events,
    wait_until,
)

# "What happened to key X": its every row, with its run, newest first (docs/audit.md).
KEY_HISTORY = """
SELECT c.settled_at, c.operation, c.result, c.reason, c.vendor_status, r.status AS run_status
FROM {s}.changelog c JOIN {s}.runs r ON r.run_id = c.run_id
WHERE c.sync = :sync AND c.key = :key
ORDER BY c.settled_at DESC
"""


class Audit:
    """Reads the audit tables of a run (DuckDB beside the warehouse, or the PostgreSQL one)."""

    def __init__(self, wh: Warehouse, schema: str = "reverse_etl_audit") -> None:
        self.wh = wh
        self.schema = schema

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        sql = sql.replace("{s}", self.schema)
        if self.wh.kind == "duckdb":
            path = beside(Path(sa.engine.make_url(self.wh.url).database or ""))
            with duckdb.connect(str(path), read_only=True) as con:
                cur = con.execute(sql.replace(":sync", "$sync").replace(":key", "$key"), params)
                names = [d[0] for d in cur.description or ()]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        with self.wh.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.text(sql), params)]

    def changelog(self) -> list[dict[str, Any]]:
        rows = self.rows("SELECT * FROM {s}.changelog")  # ``key`` is a reserved word in MySQL
        return sorted(rows, key=lambda r: (r["batch_id"], r["key"]))

    def runs(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM {s}.runs ORDER BY started_at")

    def snapshot(self) -> list[dict[str, Any]]:
        return sorted(self.rows("SELECT * FROM {s}.snapshot"), key=lambda r: r["key"])


def _config(tmp_path: Path, text: str, name: str = "videos") -> Path:
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True, exist_ok=True)
    (config / "syncs" / f"{name}.yaml").write_text(text)
    return config


def _events_sync(wh: Warehouse, sandbox: SandboxServer, audit: str = "audit: {}\n") -> str:
    return (
        TEMPLATES["klaviyo_bulk_events"].format(
            name="videos",
            table="ev",
            url=wh.url,
            sandbox=sandbox.url,
            chunk_size=100,
            options="{}",
        )
        + audit
    )


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    monkeypatch.setenv("CONNECTOR_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.delenv("CONNECTOR_AUDIT", raising=False)

    def run(config: Path, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(config))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("wh_name", ["duck", "pg"])
def test_event_run_writes_runs_changelog_and_snapshot_with_rejects(
    wh_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sandbox: SandboxServer,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    wh: Warehouse = request.getfixturevalue(wh_name)
    create_events_table(wh)
    rows = event_rows(0, 20)
    rows[3]["email"] = rows[3]["user_id"] = None  # no identifier: a local reject
    rows[5]["kind"] = "x" * 200  # an event name too long
    rows[9]["occurred_at"] = None  # a NULL cursor: never readable
    insert_events(wh, rows)
    wh.dispose()
    config = _config(tmp_path, _events_sync(wh, sandbox))

    code, out, err = cli(config, "sync", "videos", "--json")
    assert code == 0, out + err
    result = json.loads(out)
    assert (result["delivered"], result["rejected"]) == (17, 3)

    audit = Audit(wh)
    (run,) = audit.runs()
    assert run["run_id"] == result["run_id"] and run["status"] == "success"
    assert (run["kind"], run["destination_type"], run["scope"]) == (
        "events",
        "klaviyo_bulk_events",
        "incremental",
    )
    assert (run["rows_read"], run["rows_delivered"], run["rows_rejected"]) == (19, 17, 3)
    assert json.loads(run["checkpoint_after"])[1] == 19
    assert run["started_at"] is not None and run["finished_at"] is not None
    changes = audit.changelog()
    assert len(changes) == 20
    assert {c["run_id"] for c in changes} == {result["run_id"]}
    by_key = {c["key"]: c for c in changes}
    assert sorted(by_key, key=int) == [str(i) for i in range(20)]
    rejected = {k for k, c in by_key.items() if c["result"] == "rejected"}
    assert rejected == {"3", "5", "9"}
    assert all(c["operation"] == "event_sent" for c in changes)
    assert "identifier" in by_key["3"]["reason"] and "NULL" in by_key["9"]["reason"]
    assert by_key["0"]["dedup_id"] == "videos:0" and by_key["0"]["reason"] is None
    assert len(audit.snapshot()) == 20

    # One query answers "what happened to key 3".
    (history,) = audit.rows(KEY_HISTORY, sync="videos", key="3")
    assert (history["result"], history["run_status"]) == ("rejected", "success")

    # A second run: one more run row, its rows added, nothing doubled (the row with a NULL
    # cursor is rejected again by every run), and a row committed late behind the checkpoint
    # (caught by the lookback window) counted as late.
    late = event_rows(30, 1)
    late[0]["occurred_at"] = rows[10]["occurred_at"]
    insert_events(wh, event_rows(20, 5) + late)
    wh.dispose()
    code, out, err = cli(config, "sync", "videos", "--json")
    assert code == 0, out + err
    second = json.loads(out)
    assert second["late_rows"] == 1
    runs = {r["run_id"]: r for r in audit.runs()}
    assert len(runs) == 2 and runs[second["run_id"]]["rows_late"] == 1
    changes = audit.changelog()
    assert len(changes) == 27
    assert sorted(c["key"] for c in changes if c["run_id"] == second["run_id"]) == [
        "20",
        "21",
        "22",
        "23",
        "24",
        "30",
        "9",
    ]
    snap = {s["key"]: s for s in audit.snapshot()}
    assert len(snap) == 26  # the view: each event key once, with its latest changelog row
    assert (snap["9"]["result"], snap["9"]["run_id"]) == ("rejected", second["run_id"])
    assert (snap["0"]["result"], snap["0"]["run_id"]) == ("delivered", result["run_id"])
    assert snap["0"]["dedup_id"] == "videos:0" and snap["20"]["run_id"] == second["run_id"]


CUSTOMERS = """
name: customers
source: {{table: customers, primary_key: [customer_id], url: '{url}'}}
destination:
  type: klaviyo_profiles
  api_key: '${{KLAVIYO_API_KEY}}'
  base_url: '{sandbox}'
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, list_id: LIST1,
    on_removed: unlist}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name}}
audit: {{}}
"""


@pytest.mark.parametrize("wh_name", ["duck", "pg"])
def test_contact_runs_record_added_changed_rejected_and_unlisted_rows(
    wh_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sandbox: SandboxServer,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    wh: Warehouse = request.getfixturevalue(wh_name)
    wh.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR(200), first_name VARCHAR(50))",
    )
    people = [
        {"customer_id": i, "email": f"c{i}@example.com", "first_name": f"N{i}"} for i in range(5)
    ]
    people[4]["email"] = "not an address"
    wh.insert("customers", people)
    wh.dispose()
    config = _config(tmp_path, CUSTOMERS.format(url=wh.url, sandbox=sandbox.url), "customers")

    code, out, err = cli(config, "sync", "customers", "--json")
    assert code == 0, out + err
    first = json.loads(out)
    assert (first["added"], first["delivered"], first["rejected"]) == (5, 4, 1)
    wh.run(
        "DELETE FROM customers WHERE customer_id = 3",
        "UPDATE customers SET first_name = 'Changed' WHERE customer_id = 1",
    )
    wh.dispose()
    code, out, err = cli(config, "sync", "customers", "--json")
    assert code == 0, out + err
    second = json.loads(out)
    assert (second["changed"], second["removed"], second["unlisted"]) == (1, 1, 1)

    audit = Audit(wh)
    runs = audit.runs()
    assert [r["run_id"] for r in runs] == [first["run_id"], second["run_id"]]
    assert runs[1]["rows_removed"] == 1 and runs[0]["kind"] == "contacts"
    got = {(c["run_id"], c["key"]): (c["operation"], c["result"]) for c in audit.changelog()}
    one, two = first["run_id"], second["run_id"]
    assert got == {
        **{(one, str(i)): ("contact_added", "delivered") for i in range(4)},
        (one, "4"): ("contact_added", "rejected"),
        (two, "1"): ("contact_changed", "delivered"),
        (two, "4"): ("contact_added", "rejected"),  # never confirmed: added again
        (two, "3"): ("contact_unlisted", "delivered"),
    }
    snap = {s["key"]: (s["operation"], s["result"], s["run_id"]) for s in audit.snapshot()}
    assert snap["3"] == ("contact_unlisted", "delivered", two)
    assert snap["0"] == ("contact_added", "delivered", one)


def test_a_killed_run_and_its_rerun_leave_every_row_once(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer
) -> None:
    batch, rows = 1000, 5000
    create_events_table(duck)
    insert_events(duck, event_rows(0, rows))
    duck.dispose()
    text = _events_sync(duck, sandbox).replace("chunk_size: 100", "chunk_size: 500")
    text = text.replace("options: {}", "options: {concurrency: 1}")
    config = _config(tmp_path, text)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    path = "/api/event-bulk-create-jobs"
    # Two batches are answered; the third is stored by the API, then the reply never comes.
    sandbox.inject(
        Fault(path=path, delay_s=0.001),
        Fault(path=path, delay_s=0.001),
        Fault(path=path, hang=True, after_process=True),
    )
    proc = connector_process(config, state_url, "sync", "videos", env={"CONNECTOR_AUDIT": None})
    assert sandbox.wait_for_hang(timeout=60), proc.communicate(timeout=5)
    store = StateStore(state_url)
    wait_until(lambda: outbox.backlog(store, "videos") == 2 * batch, "two batches in the outbox")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    sandbox.release()

    rerun = connector_process(
        config, state_url, "sync", "videos", "--json", env={"CONNECTOR_AUDIT": None}
    )
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    result = json.loads(out)

    audit = Audit(duck)
    runs = audit.runs()
    assert [r["status"] for r in runs] == ["interrupted", "success"]
    killed = runs[0]["run_id"]
    changes = audit.changelog()
    seen = [(c["run_id"], c["key"], c["operation"]) for c in changes]
    assert len(seen) == len(set(seen))  # no row twice
    assert {int(c["key"]) for c in changes} == set(range(rows))  # none missing
    first = [c for c in changes if c["run_id"] == killed]
    assert len(first) == 2 * batch and {c["result"] for c in first} == {"delivered"}
    again = [c for c in changes if c["run_id"] == result["run_id"]]
    assert len(again) == rows - 2 * batch
    # The batch in flight when the run was killed went twice (Klaviyo keeps one copy).
    assert sum(c["result"] == "possibly_duplicated" for c in again) == batch
    assert outbox.backlog(store, "videos") == 0
    snap = audit.snapshot()
    assert sorted(int(s["key"]) for s in snap) == list(range(rows))  # each key once
    assert {s["run_id"] for s in snap if s["result"] == "possibly_duplicated"} == {result["run_id"]}
    assert sum(s["result"] == "possibly_duplicated" for s in snap) == batch


def test_a_flush_repeated_after_a_crash_writes_no_row_twice(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    cli: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    duck.dispose()
    config = _config(tmp_path, _events_sync(duck, sandbox))
    # The warehouse committed, then the process died before the outbox rows were deleted.
    delete = outbox.delete
    monkeypatch.setattr(outbox, "delete", lambda state, ids: None)
    code, out, err = cli(config, "sync", "videos")
    assert code == 0, out + err
    store = StateStore.open(os.environ["CONNECTOR_STATE_URL"])
    assert outbox.backlog(store, "videos") == 30
    monkeypatch.setattr(outbox, "delete", delete)
    sync = parse_sync((config / "syncs" / "videos.yaml").read_text(), "syncs/videos.yaml")
    settings = audit_settings(sync)
    assert settings is not None
    flush(settings, store, "videos", "incremental", defaults={})
    assert outbox.backlog(store, "videos") == 0
    audit = Audit(duck)
    assert len(audit.changelog()) == 30 and len(audit.snapshot()) == 30
    assert len(audit.runs()) == 1


def test_retention_deletes_old_runs_and_changelog_rows_and_keeps_the_contacts_snapshot(
    tmp_path: Path, pg: Warehouse, sandbox: SandboxServer, cli: Callable[..., tuple[int, str, str]]
) -> None:
    create_events_table(pg)
    insert_events(pg, event_rows(0, 10))
    pg.run(
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR(200), first_name VARCHAR(50))"
    )
    pg.insert(
        "customers",
        [{"customer_id": i, "email": f"c{i}@example.com", "first_name": f"N{i}"} for i in range(3)],
    )
    retention = "audit: {retention_days: 30}\n"
    config = _config(tmp_path, _events_sync(pg, sandbox, retention))
    customers = CUSTOMERS.format(url=pg.url, sandbox=sandbox.url).replace("audit: {}\n", retention)
    _config(tmp_path, customers, "customers")
    for sync in ("videos", "customers"):
        code, out, err = cli(config, "sync", sync)
        assert code == 0, out + err
    pg.run(
        *(
            f"UPDATE reverse_etl_audit.{t} SET {c} = {c} - interval '31 days'"
            for t, c in (
                ("changelog", "settled_at"),
                ("runs", "started_at"),
                ("contact_snapshot", "settled_at"),
            )
        )
    )
    insert_events(pg, event_rows(10, 5))
    code, out, err = cli(config, "sync", "videos", "--json")
    assert code == 0, out + err
    code, out2, err = cli(config, "sync", "customers")  # nothing changed: no changelog row
    assert code == 0, out2 + err
    audit = Audit(pg)
    assert [r["run_id"] for r in audit.runs() if r["sync"] == "videos"] == [
        json.loads(out)["run_id"]
    ]
    assert sorted(int(c["key"]) for c in audit.changelog()) == list(range(10, 15))
    # An event sync's snapshot shows a key while its changelog row is kept; a contact sync's
    # keeps each key's latest result however old.
    snap = audit.snapshot()
    assert sorted(int(s["key"]) for s in snap if s["sync"] == "videos") == list(range(10, 15))
    contacts = [s for s in snap if s["sync"] == "customers"]
    assert sorted(s["key"] for s in contacts) == ["0", "1", "2"]
    assert {(s["operation"], s["result"]) for s in contacts} == {("contact_added", "delivered")}


def _audit_url(wh: Warehouse, tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'old.audit.duckdb'}" if wh.kind == "duckdb" else wh.url


@pytest.mark.parametrize("wh_name", ["duck", "pg"])
def test_a_snapshot_table_of_an_earlier_version_becomes_the_view_on_first_open(
    wh_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    wh: Warehouse = request.getfixturevalue(wh_name)
    url, schema = _audit_url(wh, tmp_path), "reverse_etl_audit"
    tables = audit_tables(schema)
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def row(sync: str, key: str, operation: str, run_id: str, **more: Any) -> dict[str, Any]:
        return {
            "sync": sync, "key": key, "operation": operation, "result": "delivered",
            "reason": None, "vendor_status": None, "dedup_id": None, "run_id": run_id,
            "settled_at": at, **more,
        }  # fmt: skip

    # The earlier layout: ``snapshot`` a table holding event and contact keys alike; one
    # contact key already in ``contact_snapshot`` (a migration cut short where DDL commits).
    old = sa.Table(
        SNAPSHOT,
        sa.MetaData(schema=schema),
        *(sa.Column(c.name, c.type, nullable=c.nullable) for c in tables.contact_snapshot.c),
    )
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        for t in (tables.runs, tables.changelog, tables.contact_snapshot, old):
            c.execute(sa.schema.CreateTable(t))
        c.execute(
            old.insert(),
            [
                row("customers", "a", "contact_added", "r1"),
                row("customers", "b", "contact_unlisted", "r1"),
                row("videos", "1", "event_sent", "r2", dedup_id="videos:1"),
                row("videos", "old", "event_sent", "r0"),  # its changelog row retired
            ],
        )
        c.execute(tables.contact_snapshot.insert(), [row("customers", "a", "contact_added", "r1")])
        c.execute(
            tables.changelog.insert(),
            [
                row("videos", "1", "event_sent", "r2", dedup_id="videos:1", batch_id=1, scope="s"),
                row("customers", "a", "contact_added", "r1", batch_id=2, scope="s"),
            ],
        )
    engine.dispose()

    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    settings = AuditSettings(url=url, schema=schema, retention_days=36_500)
    for _ in range(2):  # the second open finds the view and changes nothing
        assert flush(settings, store, "videos", "incremental", defaults={}) == 0

    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            inspector = sa.inspect(c)
            assert SNAPSHOT in inspector.get_view_names(schema)
            assert SNAPSHOT not in inspector.get_table_names(schema)
            stored = c.execute(sa.select(tables.contact_snapshot)).mappings().all()
            view = c.execute(sa.select(tables.snapshot)).mappings().all()
    finally:
        engine.dispose()
    assert sorted((r["key"], r["operation"]) for r in stored) == [
        ("a", "contact_added"),
        ("b", "contact_unlisted"),
    ]
    assert sorted((r["sync"], r["key"], r["run_id"]) for r in view) == [
        ("customers", "a", "r1"),
        ("customers", "b", "r1"),
        ("videos", "1", "r2"),
    ]
    assert table_counts(settings, "customers") == {"runs": 0, "changelog": 1, "snapshot": 2}


def _doc_queries() -> list[str]:
    """The example queries of docs/audit.md, in their order."""
    text = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    return [q[: q.rindex(";")] for q in re.findall(r"```sql\n(.*?)```", text, re.S)]


@pytest.mark.parametrize("wh_name", ["duck", "pg"])
def test_the_example_queries_of_the_audit_docs_run_on_the_view(
    wh_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sandbox: SandboxServer,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    wh: Warehouse = request.getfixturevalue(wh_name)
    create_events_table(wh)
    rows = event_rows(0, 6)
    rows[3]["email"] = rows[3]["user_id"] = None  # a reject
    insert_events(wh, rows)
    wh.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR(200), first_name VARCHAR(50))",
    )
    people = [{"customer_id": i, "email": f"c{i}@example.com", "first_name": "N"} for i in range(4)]
    people[2]["email"] = "not an address"
    wh.insert("customers", people)
    wh.dispose()
    config = _config(tmp_path, _events_sync(wh, sandbox))
    _config(tmp_path, CUSTOMERS.format(url=wh.url, sandbox=sandbox.url), "customers")
    for sync in ("videos", "customers"):
        code, out, err = cli(config, "sync", sync)
        assert code == 0, out + err

    history, standing, rejects, per_day = (
        q.replace("'orders_placed'", "'videos'")
        .replace("'123'", "'3'")
        .replace("'customers_to_klaviyo'", "'customers'")
        for q in _doc_queries()
    )
    audit = Audit(wh)
    if wh.kind == "duckdb":  # the docs' ATTACH, the other way round: the warehouse's table
        standing = standing.replace("analytics.customers", "wh.customers")
        path = sa.engine.make_url(wh.url).database
        with duckdb.connect(str(beside(Path(path or ""))), read_only=True) as con:
            con.execute(f"ATTACH '{path}' AS wh (READ_ONLY)")
            cur = con.execute(standing)
            names = [d[0] for d in cur.description or ()]
            stands = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    else:
        stands = audit.rows(standing.replace("analytics.customers", "customers"))
    assert sorted((r["customer_id"], r["result"]) for r in stands) == [
        (0, "delivered"),
        (1, "delivered"),
        (2, "rejected"),
        (3, "delivered"),
    ]
    (row,) = audit.rows(history)
    assert (row["result"], row["run_status"]) == ("rejected", "success")
    assert sorted((r["sync"], r["n"]) for r in audit.rows(rejects)) == [
        ("customers", 1),
        ("videos", 1),
    ]
    days = audit.rows(per_day)
    assert sorted((r["sync"], r["runs"], r["not_successful"]) for r in days) == [
        ("customers", 1, 0),
        ("videos", 1, 0),
    ]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_audit_database_warns_and_the_next_run_writes_the_missed_rows(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    cli: Callable[..., tuple[int, str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 10))
    duck.dispose()
    down = f"postgresql+psycopg://u:secret@127.0.0.1:{_closed_port()}/audit?connect_timeout=2"
    config = _config(tmp_path, _events_sync(duck, sandbox, f"audit: {{url: '{down}'}}\n"))
    code, out, err = cli(config, "sync", "videos", "--json")
    assert code == 0, out + err
    first = json.loads(out)
    assert first["status"] == "success" and first["delivered"] == 10
    (warning,) = [r for r in caplog.records if r.name == "connector.audit"]
    assert warning.levelname == "WARNING"
    text = warning.getMessage()
    assert "could not write the audit tables" in text and "next run writes them" in text
    assert "secret" not in text + out + err
    store = StateStore.open(os.environ["CONNECTOR_STATE_URL"])
    assert outbox.backlog(store, "videos") == 10

    config = _config(tmp_path, _events_sync(duck, sandbox))  # the audit database is back
    insert_events(duck, event_rows(10, 5))
    duck.dispose()
    code, out, err = cli(config, "sync", "videos", "--json")
    assert code == 0, out + err
    audit = Audit(duck)
    assert [r["run_id"] for r in audit.runs()] == [first["run_id"], json.loads(out)["run_id"]]
    assert sorted(int(c["key"]) for c in audit.changelog()) == list(range(15))
    assert outbox.backlog(store, "videos") == 0


def test_a_warehouse_without_a_bulk_path_of_its_own_writes_by_executemany(
    tmp_path: Path,
    mysql: Warehouse,
    sandbox: SandboxServer,
    cli: Callable[..., tuple[int, str, str]],
) -> None:
    create_events_table(mysql)
    rows = event_rows(0, 12)
    rows[4]["email"] = rows[4]["user_id"] = None
    insert_events(mysql, rows)
    config = _config(tmp_path, _events_sync(mysql, sandbox))
    code, out, err = cli(config, "sync", "videos", "--json")
    assert code == 0, out + err
    assert "audit" not in err
    audit = Audit(mysql)
    (run,) = audit.runs()
    assert (run["status"], run["rows_delivered"], run["rows_rejected"]) == ("success", 11, 1)
    got = {c["key"]: c["result"] for c in audit.changelog()}
    assert got == {str(i): "rejected" if i == 4 else "delivered" for i in range(12)}
    assert len(audit.snapshot()) == 12
