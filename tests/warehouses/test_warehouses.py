"""The warehouse seam: one module per warehouse kind plus one registry line (a toy warehouse
proves it, as the toy destination does for destinations), drivers named by their extra,
connect arguments with ``${ENV}`` values, names by each warehouse's case rules."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from connector.core.errors import ConfigError, SourceError
from connector.read.source import Reader
from connector.warehouses import WAREHOUSE_MODULES, warehouse_for, warehouses
from connector.warehouses.snowflake import Snowflake
from dagster_defs.translator import warehouse_kind
from tests.conftest import Warehouse, make_sync
from tests.destinations.test_registry import ROOT, _tree_diff

EVENTS = """
name: signups
source: {{table: {table}, cursor: {cursor}, primary_key: {pk}, url: "{url}"{extra}}}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {base}
mapping:
  event_name: signed_up
  event_time: {time}
  identifiers: {{email: {email}}}
"""


def _events(url: str, base: str = "http://127.0.0.1:9", **kw: str) -> str:
    names = {"table": "signups", "cursor": "id", "pk": "id", "time": "signed_at"}
    names |= {"email": "email", "extra": ""}
    names.update(kw)
    return EVENTS.format(url=url, base=base, **names)


def test_each_url_is_served_by_its_module_and_any_other_by_the_generic_one() -> None:
    names = [w.name for w in warehouses()]
    assert names == list(WAREHOUSE_MODULES)
    claimed = [b for w in warehouses() for b in w.backends]
    assert len(claimed) == len(set(claimed)), "two modules claim one backend"
    assert warehouse_for("snowflake://u@acct/db/public").name == "snowflake"
    assert warehouse_for("mariadb+pymysql://u@h/db").name == "mysql"
    assert warehouse_for("postgresql+psycopg://u@h/db").name == "postgresql"
    assert warehouse_for("bigquery://project/dataset").name == "sql"
    assert warehouse_for("not a url").name == "sql"


@pytest.mark.parametrize(
    "url,kind",
    [
        ("snowflake://u@acct/db/public", "snowflake"),
        ("mysql+pymysql://u@h/db", "mysql"),
        ("postgresql+psycopg://u@h/db", "postgres"),
        ("duckdb:///w.duckdb", "duckdb"),
        ("bigquery://project/dataset", "bigquery"),  # no module: its backend name
    ],
)
def test_dagster_draws_the_kind_its_warehouse_module_declares(url: str, kind: str) -> None:
    assert warehouse_kind(make_sync(_events(url))) == kind


def test_a_missing_driver_names_the_extra_that_installs_it(tmp_path: Path) -> None:
    # This environment has no Snowflake dialect and no mysqlclient (the Snowflake one has).
    sync = make_sync(_events("snowflake://u:secret@acct/db/public"))
    with pytest.raises(ConfigError) as err:
        Reader(sync)
    assert "pip install 'warehouse-events-connector[snowflake]'" in str(err.value)
    assert "secret" not in str(err.value)
    with pytest.raises(ConfigError, match=r"write mysql\+pymysql:// and pip install .*\[mysql\]"):
        Reader(make_sync(_events("mysql://u@127.0.0.1:9/db")))


def test_connect_args_take_env_references_resolved_only_when_a_run_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra = ", connect_args: {password: '${WH_PASSWORD}', options: {a: '${WH_OPT:-x}'}}"
    with pytest.raises(ConfigError, match=r"source.connect_args.password: environment variable "):
        make_sync(_events("duckdb:///w.duckdb", extra=extra))
    monkeypatch.setenv("WH_PASSWORD", "s3cret")
    sync = make_sync(_events("duckdb:///w.duckdb", extra=extra))
    assert sync.source.connect_args == {
        "password": "${WH_PASSWORD}",
        "options": {"a": "${WH_OPT:-x}"},
    }
    # Elsewhere in the source block a reference is still refused.
    with pytest.raises(ConfigError, match=r"source.table: environment references .* allowed only"):
        make_sync(_events("duckdb:///w.duckdb", table="'${TABLE}'"))


def test_a_folding_warehouse_matches_names_in_any_case_and_names_both_of_two() -> None:
    sf = Snowflake()
    assert sf.matches("email", ["ID", "EMAIL"]) == ["EMAIL"]
    assert sf.matches("MixedCase", ["MIXEDCASE_X", "MixedCase"]) == ["MixedCase"]
    assert sf.matches("email", ["EMAIL", "Email"]) == ["EMAIL", "Email"]  # a config error
    assert warehouse_for("postgresql://h/db").matches("email", ["EMAIL"]) == []


def test_mariadb_columns_match_in_any_case(mysql: Warehouse) -> None:
    mysql.run("CREATE TABLE signups (id INTEGER, signed_at DATETIME(6), Email VARCHAR(50))")
    sync = make_sync(_events(mysql.url, cursor="ID", time="SIGNED_AT", email="email"))
    with Reader(sync) as reader:
        reader.check_columns()
        assert reader.column_types()["email"] == "string"


def test_a_postgresql_name_in_another_case_is_not_in_the_source(pg: Warehouse) -> None:
    pg.run("CREATE TABLE signups (id INTEGER, signed_at timestamptz, email TEXT)")
    with pytest.raises(ConfigError, match="column 'EMAIL' is not in the source"):
        Reader(make_sync(_events(pg.url, email="EMAIL"))).check_columns()


def _copy_with_toy(dest: Path) -> Path:
    pkg = dest / "connector"
    # With the compiled modules (copied with their times, so still valid), as the toy
    # destination's copy: each CLI run of the copy would otherwise compile the package again.
    shutil.copytree(ROOT / "connector", pkg)
    shutil.copy(ROOT / "tests" / "toy" / "toy_warehouse.py", pkg / "warehouses")
    reg = pkg / "warehouses" / "registry.py"
    text = reg.read_text()
    last = '    "sqlite",\n'
    assert text.count(last) == 1
    reg.write_text(text.replace(last, last + '    "toy_warehouse",\n'))
    return dest


def test_a_toy_warehouse_is_one_module_plus_one_registry_line(
    tmp_path: Path, sandbox: object
) -> None:
    copy = _copy_with_toy(tmp_path / "pkg")
    added, changed = _tree_diff(ROOT / "connector", copy / "connector")
    assert added == ["warehouses/toy_warehouse.py"]
    assert changed == ['warehouses/registry.py: +    "toy_warehouse",']

    db = tmp_path / "toy.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE signups (id INTEGER, signed_at TEXT, email TEXT, code TEXT)")
    con.executemany(
        "INSERT INTO signups VALUES (?, ?, ?, ?)",
        [(i, f"2026-11-01T00:00:{i % 60:02d}Z", f"u{i}@example.com", f"c{i}") for i in range(150)],
    )
    con.commit()
    con.close()
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True)
    url = f"toysql:///{db}"
    (syncs / "signups.yaml").write_text(_events(url, base=sandbox.url))  # type: ignore[attr-defined]
    (syncs / "bad.yaml").write_text(_events(url, cursor="code").replace("signups\n", "bad\n", 1))
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "CONNECTOR_CONFIG_DIR": str(tmp_path / "config"),
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }

    def run(*args: str, python: str = "") -> subprocess.CompletedProcess[str]:
        code = (
            python
            or "import sys; from connector.cli.main import main; sys.exit(main(sys.argv[1:]))"
        )
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )

    validate = run("validate")
    assert "ok   signups" in validate.stdout, validate.stdout + validate.stderr
    # The module's kinds reach the type rules: a text cursor is refused.
    assert "source.cursor must be a timestamp, date, integer or decimal column (code is string" in (
        validate.stdout + validate.stderr
    )
    first = run("sync", "signups")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(sandbox.events("klaviyo_bulk_events")) == 150  # type: ignore[attr-defined]
    assert run("sync", "signups").returncode == 0
    assert len(sandbox.events("klaviyo_bulk_events")) == 150  # type: ignore[attr-defined]
    seam = run(
        python="from connector.warehouses import warehouse_for as w; "
        f"x = w('{url}'); print(x.name, x.dagster_kind, x.key_order)"
    )
    assert seam.stdout.split() == ["toysql", "toysql", "True"], seam.stderr

    # Without the registry line the same URL has no warehouse, and no dialect.
    env["PYTHONPATH"] = str(ROOT)
    without = run("validate", "signups")
    assert without.returncode != 0
    assert "toysql" in without.stdout + without.stderr


def test_a_connect_argument_never_reaches_a_message(
    duck: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    duck.run("CREATE TABLE signups (id INTEGER, signed_at TIMESTAMPTZ, email VARCHAR)")
    duck.dispose()
    monkeypatch.setenv("WH_SETTING", "hunter2-not-a-size")
    extra = ", connect_args: {config: {default_order: '${WH_SETTING}'}}"
    with pytest.raises(SourceError) as err:  # DuckDB quotes the value it refuses
        Reader(make_sync(_events(duck.url, extra=extra))).check_columns()
    assert "DEFAULT_ORDER" in str(err.value) and "hunter2" not in str(err.value)
