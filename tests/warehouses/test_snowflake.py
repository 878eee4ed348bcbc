"""Snowflake's own cases against fakesnow (run in the Snowflake environment by
tests/e2e/test_snowflake.py): folded, lower-case and quoted mixed-case names, native types to kinds,
exact values, key-pair auth through ``source.connect_args``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.core.errors import ConfigError, SourceError
from connector.read.source import Reader
from connector.run.sync import preview, run_sync
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse, make_sync

SYNC = """
name: orders
source:
  table: {table}
  cursor: {cursor}
  primary_key: [{pk}]
  url: {url}
  chunk_size: 100
{extra}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: ordered
  event_time: {time}
  identifiers: {{email: {email}}}
  event_properties: {{amount: {amount}, label: MixedCase, props: {props}}}
"""


def _sync(wh: Warehouse, sandbox: str = "http://127.0.0.1:9", **kw: str) -> Any:
    names = {
        "table": "events",
        "cursor": "occurred_at",
        "pk": "id",
        "time": "occurred_at",
        "email": "email",
        "amount": "amount",
        "props": "props",
        "extra": "",
    }
    names.update(kw)
    return make_sync(SYNC.format(url=wh.url, sandbox=sandbox, **names))


def _events(wh: Warehouse, n: int = 5) -> None:
    wh.run(
        "CREATE TABLE EVENTS (ID INTEGER, OCCURRED_AT TIMESTAMP_TZ, EMAIL VARCHAR, "
        'AMOUNT NUMBER(12,2), "MixedCase" VARCHAR, PROPS VARIANT)'
    )
    wh.run(
        *(
            f"INSERT INTO EVENTS SELECT {i}, '2026-11-01 10:00:0{i // 2} +00:00'::TIMESTAMP_TZ, "
            f"'u{i}@example.com', {i}.10, 'L{i}', PARSE_JSON('{{\"n\": {i}, \"t\": \"é\"}}')"
            for i in range(n)
        )
    )


@pytest.mark.parametrize("case", ["lower", "upper"])
def test_folded_names_work_in_lower_or_upper_case_and_values_are_exact(
    snow: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Any, case: str
) -> None:
    _events(snow)
    names = {"cursor": "occurred_at", "pk": "id", "time": "occurred_at", "email": "email"}
    names |= {"amount": "amount", "props": "props", "table": "events"}
    if case == "upper":
        names = {k: v.upper() for k, v in names.items()}
    sync = _sync(snow, sandbox.url, **names)

    planned = preview(sync, limit=2)
    body = planned["requests"][0]["body"].decode()
    assert '"amount":0.10' in body and '"label":"L0"' in body, body
    assert '"props":{"n":0,"t":"é"}' in body  # VARIANT: an object, not its text

    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.status, res.delivered) == ("success", 5)
    got = sorted(sandbox.events("klaviyo_bulk_events"), key=lambda e: e["event"]["unique_id"])
    assert got[3]["event"]["time"] == "2026-11-01T10:00:01.000+00:00"
    assert got[3]["event"]["properties"]["props"] == {"n": 3, "t": "é"}


def test_native_types_become_kinds_and_a_text_cursor_is_refused(snow: Warehouse) -> None:
    snow.run(
        "CREATE TABLE T (N38 NUMBER(38,0), N12 NUMBER(12,2), F FLOAT, NTZ TIMESTAMP_NTZ, "
        "LTZ TIMESTAMP_LTZ, TZ TIMESTAMP_TZ, D DATE, B BOOLEAN, V VARIANT, O OBJECT, A ARRAY, "
        'S VARCHAR, "MixedCase" VARCHAR, PROPS VARIANT)'
    )
    sync = _sync(snow, table="t", cursor="s", pk="n38", time="ntz", email="s", amount="n12")
    with Reader(sync) as reader:
        kinds = reader.column_types()
        assert {k: kinds[k] for k in ("n38", "n12", "F", "ntz", "LTZ", "TZ", "D", "B")} == {
            "n38": "integer",
            "n12": "number",
            "F": "float",
            "ntz": "timestamp",
            "LTZ": "timestamptz",
            "TZ": "timestamptz",
            "D": "date",
            "B": "boolean",
        }
        assert [kinds[k] for k in ("V", "O", "A", "s")] == ["json", "json", "json", "string"]
        with pytest.raises(ConfigError, match=r"source.cursor must be .* \(s is string"):
            reader.check_columns()


PEM_ARGS = "  connect_args: {private_key: '${SF_KEY}', private_key_pwd: '${SF_KEY_PWD}'}"


def _key(tmp_path: Path, passphrase: bytes) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    path = tmp_path / "rsa_key.p8"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path, pem.decode()


def test_key_pair_auth_through_connect_args_with_the_passphrase_from_the_environment(
    snow: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _events(snow, 2)
    path, pem = _key(tmp_path, b"s3cret")
    no_password = snow.url.replace("fake:snow@", "fake@")
    monkeypatch.setenv("SF_KEY_PWD", "s3cret")
    monkeypatch.setenv("SF_KEY", pem)
    for extra in (
        f"  connect_args: {{private_key_file: {path}, private_key_file_pwd: '${{SF_KEY_PWD}}'}}",
        PEM_ARGS,
    ):
        sync = make_sync(
            textwrap.dedent(SYNC).format(
                url=no_password,
                sandbox="http://127.0.0.1:9",
                extra=extra,
                table="events",
                cursor="occurred_at",
                pk="id",
                time="occurred_at",
                email="email",
                amount="amount",
                props="props",
            )
        )
        assert "s3cret" not in sync.model_dump_json()  # kept as a reference
        with Reader(sync) as reader:
            assert reader.count(None, None) == 2

    # The passphrase reaches the driver: a wrong one fails, and the message does not echo it.
    monkeypatch.setenv("SF_KEY_PWD", "wrong-passphrase")
    with pytest.raises((SourceError, ConfigError)) as err:
        Reader(
            make_sync(
                textwrap.dedent(SYNC).format(
                    url=no_password,
                    sandbox="http://127.0.0.1:9",
                    extra=PEM_ARGS,
                    table="events",
                    cursor="occurred_at",
                    pk="id",
                    time="occurred_at",
                    email="email",
                    amount="amount",
                    props="props",
                )
            )
        ).count(None, None)
    assert "private_key" in str(err.value) and "wrong-passphrase" not in str(err.value)


def test_a_snowflake_sync_is_a_dagster_asset_that_materializes_its_rows(
    snow: Warehouse, sandbox: SandboxServer, tmp_path: Path, fake_time: Any
) -> None:
    import dagster as dg

    from connector.deliver.delivery import Runtime
    from dagster_defs import ConnectorResource, build_defs

    _events(snow, 6)
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True)
    text = SYNC.format(
        url=snow.url,
        sandbox=sandbox.url,
        table="events",
        cursor="occurred_at",
        pk="id",
        time="occurred_at",
        email="email",
        amount="amount",
        props="props",
        extra="",
    )
    (syncs / "orders.yaml").write_text(text)
    resource = ConnectorResource(state_url=f"sqlite:///{tmp_path / 'state.db'}")
    runtime = Runtime(clock=fake_time.clock, sleep=fake_time.sleep, random=lambda: 0.5)
    defs = build_defs(tmp_path / "config", resource=resource, runtime=runtime)
    key = dg.AssetKey(["reverse_etl", "orders"])
    asset = defs.resolve_assets_def(key)
    assert "snowflake" in asset.specs_by_key[key].kinds
    result = dg.materialize([asset], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert len(sandbox.events("klaviyo_bulk_events")) == 6
