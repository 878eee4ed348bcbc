"""The sync asset's body (``dagster_defs.assets``): materializing the shipped demo syncs
in-process against the demo warehouse and the sandbox, the metadata matches what the sandbox
received and a second materialization sends nothing; dry run, limit and retried rejects come
from the run config, URLs from env vars, and a failure or a held lease fails the run clearly."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from connector import INCREMENTAL, load_syncs
from connector.cli.demo import build_demo_warehouse
from connector.sandbox import SandboxServer
from connector.store.lease import Lease
from connector.store.state import StateStore
from dagster_defs import ConnectorResource, build_defs
from tests.conftest import FakeSleep, Warehouse
from tests.dagster_fixtures import Env, env, klaviyo_ids, materialization, quiet_sandbox
from tests.helpers import PLAIN_SYNC, fill_events

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

SHIPPED = Path(__file__).resolve().parents[2] / "config"
_LOADED = load_syncs(SHIPPED, check_env=False).syncs
DEMO_SYNCS = sorted(n for n, s in _LOADED.items() if not s.is_contact_sync)  # event syncs
CONTACT_SYNCS = sorted(n for n, s in _LOADED.items() if s.is_contact_sync)
EVENTS, ORDERS = 40, 25


@pytest.fixture
def demo_defs(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_time: FakeSleep
) -> dg.Definitions:
    """The shipped config on a small demo warehouse, every base_url on the sandbox."""
    monkeypatch.setenv("SANDBOX_URL", env.sandbox.url)
    demo = build_demo_warehouse(tmp_path / "demo.duckdb", events=EVENTS, orders=ORDERS)
    resource = ConnectorResource(warehouse_url=f"duckdb:///{demo}", state_url=env.state.url)
    return build_defs(SHIPPED, resource=resource, runtime=env.runtime)


def _materialize(
    defs: dg.Definitions, key: dg.AssetKey, instance: dg.DagsterInstance, **config: object
) -> dg.ExecuteInProcessResult:
    asset = defs.resolve_assets_def(key)
    partition = "2026-11-01" if asset.partitions_def is not None else None
    run_config = {"ops": {asset.op.name: {"config": config}}} if config else None
    return dg.materialize(
        [asset], instance=instance, partition_key=partition, run_config=run_config
    )


@pytest.mark.parametrize("name", DEMO_SYNCS)
def test_materializing_a_demo_sync_records_its_counts_then_sends_nothing(
    name: str, demo_defs: dg.Definitions, env: Env
) -> None:
    sync = load_syncs(SHIPPED, check_env=False).syncs[name]
    kind = sync.destination.type
    key = dg.AssetKey(["reverse_etl", name])
    instance = dg.DagsterInstance.ephemeral()

    result = _materialize(demo_defs, key, instance)
    md = materialization(result, key)
    received = len(env.sandbox.events(kind))
    total = EVENTS if name.startswith("video") else ORDERS
    null_cursor = 1 if name.startswith("video") else 0  # demo row 17 has no occurred_at
    assert md["rows_read"] == total - null_cursor
    assert md["delivered"] == md["dagster/row_count"] == received > 0
    assert md["rejected"] == md["rows_read"] - md["delivered"] + null_cursor
    assert md["batches"] >= 1 and md["requests"] >= md["batches"]
    assert md["retries"] == 0 and md["rate_limited_429"] == 0
    assert md["hwm_before"] == "(none)"
    scope = "partition:2026-11-01" if sync.partitions else INCREMENTAL
    checkpoint = env.state.checkpoint(name, scope)
    assert checkpoint is not None and md["hwm_after"].endswith(f", {checkpoint[-1]}")
    assert md["duration_s"] >= 0 and md["rows_per_s"] >= 0
    samples = md["sample_rejects"].records if md["rejected"] else []
    assert "sample_rejects" in md or md["rejected"] == 0  # no empty table
    assert len(samples) == min(md["rejected"], 20)
    for record in samples:  # key and reason only: no payload, no secret
        assert set(record.data) == {"key", "reason"}
        assert "sandbox" not in record.data["reason"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"reject_ratio", "checkpoint_freshness", "nothing_missing"}
    assert checks["reject_ratio"].metadata["rejected"].value == md["rejected"]
    assert checks["checkpoint_freshness"].passed

    again = materialization(_materialize(demo_defs, key, instance), key)
    assert again["delivered"] == again["rows_read"] == 0
    assert again["hwm_before"] == again["hwm_after"] == md["hwm_after"]
    assert len(env.sandbox.events(kind)) == received


@pytest.mark.parametrize("name", CONTACT_SYNCS)
def test_materializing_a_contact_sync_records_its_diff_counts_then_sends_nothing(
    name: str, demo_defs: dg.Definitions, env: Env
) -> None:
    key = dg.AssetKey(["reverse_etl", name])
    spec = demo_defs.resolve_assets_def(key)
    assert spec.partitions_def is None
    assert "backfills do not apply" in (spec.descriptions_by_key[key] or "")
    instance = dg.DagsterInstance.ephemeral()
    first = _materialize(demo_defs, key, instance)
    md = materialization(first, key)
    stored = len(env.sandbox.contacts(_LOADED[name].destination.type))
    assert md["rows_read"] == md["added"] == md["sent"] == md["delivered"] == stored == 500
    assert md["jobs"] >= 1 and md["polls"] >= md["jobs"] and md["unchanged"] == 0
    second = _materialize(demo_defs, key, instance)
    again = materialization(second, key)
    assert (again["unchanged"], again["sent"], again["delivered"]) == (500, 0, 0)
    # The run log: the plan (rows to compare, contacts confirmed), then the rows settled of it.
    dest = _LOADED[name].destination.type
    for result, confirmed, counts in (
        (first, 0, "0 unchanged, 500 delivered"),
        (second, 500, "500 unchanged, 0 delivered"),
    ):
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
        plan = f"plan: 500 rows to compare with {confirmed} confirmed contacts → {dest} jobs"
        assert any(plan in m for m in messages), messages
        assert any(f"500 / 500 rows (100.0%): {counts}, 0 rejected" in m for m in messages)
    # The scope's last line in a diff's words: no skipped rows or possible copies.
    done = f"{name}: incremental: read 500, unchanged 500, delivered 0, rejected 0 in "
    assert any(m.startswith(done) for m in messages), messages


def test_dry_run_and_limit_come_from_run_config(demo_defs: dg.Definitions, env: Env) -> None:
    key = dg.AssetKey(["reverse_etl", "order_placed"])
    instance = dg.DagsterInstance.ephemeral()
    dry = materialization(_materialize(demo_defs, key, instance, dry_run=True), key)
    assert dry["dry_run"] is True and dry["delivered"] == ORDERS
    assert env.sandbox.events("brevo_events_batch") == []
    assert env.state.checkpoint("order_placed") is None

    limited = materialization(_materialize(demo_defs, key, instance, limit=10), key)
    assert limited["rows_read"] == limited["delivered"] == 10
    rest = materialization(_materialize(demo_defs, key, instance), key)
    assert rest["delivered"] == ORDERS - 10


def test_urls_come_from_env_vars_and_stay_out_of_run_config_and_the_event_log(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = build_demo_warehouse(tmp_path / "demo.duckdb", events=EVENTS, orders=ORDERS)
    state_url = f"sqlite:///{tmp_path / 'env-state.db'}"
    monkeypatch.setenv("SANDBOX_URL", env.sandbox.url)
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo}")
    monkeypatch.setenv("CONNECTOR_STATE_URL", state_url)
    defs = build_defs(SHIPPED, runtime=env.runtime)  # the default: ConnectorResource.from_env()
    key = dg.AssetKey(["reverse_etl", "order_placed"])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([defs.resolve_assets_def(key)], instance=instance)
    assert materialization(result, key)["delivered"] == ORDERS
    assert StateStore(state_url).checkpoint("order_placed") is not None
    assert "resources" not in result.dagster_run.run_config
    text = "\n".join(str(e.message) for e in instance.all_logs(result.run_id))
    assert "sandbox-brevo-key" not in text  # the API key never reaches the event log


def test_a_delivery_failure_fails_the_run_with_a_clear_message(
    demo_defs: dg.Definitions, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_wrong")
    key = dg.AssetKey(["reverse_etl", "video_played"])
    asset = demo_defs.resolve_assets_def(key)
    result = dg.materialize(
        [asset],
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2026-11-01",
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.step_failure_data.user_failure_data.description)  # type: ignore[union-attr]
    assert "partition:2026-11-01 failed" in message and "pk_wrong" not in message


def test_a_dagster_run_refuses_while_another_run_holds_the_syncs_lease(
    demo_defs: dg.Definitions, env: Env
) -> None:
    held = Lease(StateStore(env.state.url), "order_placed", INCREMENTAL, ttl_s=60)
    held.acquire()  # a CLI run of the same sync, still running
    key = dg.AssetKey(["reverse_etl", "order_placed"])
    asset = demo_defs.resolve_assets_def(key)
    result = dg.materialize([asset], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.step_failure_data.user_failure_data.description)  # type: ignore[union-attr]
    assert "order_placed [incremental] is already running since" in message
    assert env.sandbox.stats()["requests"] == 0

    held.release()
    result = dg.materialize([asset], instance=dg.DagsterInstance.ephemeral())
    assert materialization(result, key)["delivered"] == ORDERS


# --------------------------------------------------------------------------- Dagster


UNPARTITIONED = """
name: {name}
source:
  table: ev
  cursor: occurred_at
  primary_key: [event_id]
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
  event_properties: {{title: title}}
checks:
  reject_ratio_warn: 0.6
  reject_ratio_error: 0.9
"""


def test_the_asset_retries_rejects_from_its_run_config(env: Env) -> None:
    from tests.dagster_fixtures import create_table, dated_rows

    create_table(env.warehouse, dated_rows(days=1, per_day=6, bad_every=3))  # 2 without email
    env.write_sync("plays", UNPARTITIONED)
    key = dg.AssetKey(["reverse_etl", "plays"])
    asset = env.defs().resolve_assets_def(key)
    instance = dg.DagsterInstance.ephemeral()
    run: Callable[..., dg.ExecuteInProcessResult] = lambda **cfg: dg.materialize(  # noqa: E731
        [asset],
        instance=instance,
        run_config={"ops": {asset.op.name: {"config": cfg}}} if cfg else None,
    )
    assert materialization(run(), key)["rejected"] == 2
    bad = sorted(int(k) for k in _open_plays(env))
    checkpoint = env.state.checkpoint("plays")
    env.warehouse.run(f"UPDATE ev SET email = 'fixed@example.com' WHERE event_id = {bad[0]}")

    result = run(retry_rejects=True)

    md = materialization(result, key)
    assert (md["rows_read"], md["delivered"], md["rejected"]) == (2, 1, 1)
    assert md["rejects_retried"] == 2 and md["rejects_closed_source_row_gone"] == 0
    assert klaviyo_ids(env.sandbox).count(bad[0]) == 1 and len(klaviyo_ids(env.sandbox)) == 5
    assert sorted(int(k) for k in _open_plays(env)) == bad[1:]
    assert env.state.checkpoint("plays") == checkpoint


def _open_plays(env: Env) -> dict[str, Any]:
    return {r["key"]: r for r in env.state.rejects("plays")}


def test_the_dagster_run_log_has_the_plan_before_sending(
    duck: Warehouse, sandbox: SandboxServer, tmp_path: Path
) -> None:
    fill_events(duck, 1_234)
    (tmp_path / "syncs").mkdir()
    (tmp_path / "syncs" / "videos.yaml").write_text(
        textwrap.dedent(PLAIN_SYNC).format(name="videos", url=duck.url, sandbox=sandbox.url)
    )
    resource = ConnectorResource(state_url=f"sqlite:///{tmp_path / 'state.db'}")
    defs = build_defs(tmp_path, resource=resource)
    asset = defs.resolve_assets_def(dg.AssetKey(["reverse_etl", "videos"]))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset], instance=instance)
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    plan = next(i for i, m in enumerate(messages) if "plan: 1,234 events → 2 klaviyo" in m)
    done = next(i for i, m in enumerate(messages) if "1,234 / 1,234 rows (100.0%)" in m)
    assert plan < done
    assert sandbox.stats()["requests"] == 2
