"""What ``dagster dev -m dagster_defs`` shows: one asset per sync file, its lineage, kinds,
group, pool, checks and schedule; broken files as placeholders; the CLI validation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from connector import SyncConfig, load_syncs
from dagster_defs import ReverseEtlComponent, ReverseEtlTranslator, build_defs
from dagster_defs.factory import CONFIG_ERRORS_GROUP
from dagster_defs.schedules import lookback_range
from tests.dagster_fixtures import PARTITIONED, Env, env, quiet_sandbox

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config"


def _sync_files() -> list[Path]:
    return sorted((SHIPPED / "syncs").glob("*.yaml"))


def _copy_config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(SHIPPED, target)
    return target


def test_one_asset_per_shipped_sync_file_with_lineage_from_the_warehouse_table() -> None:
    defs = build_defs(SHIPPED)
    graph = defs.resolve_asset_graph()
    syncs = {k for k in graph.get_all_asset_keys() if k.path[0] == "reverse_etl"}
    assert len(syncs) == len(_sync_files()) >= 6
    video = graph.get(dg.AssetKey(["reverse_etl", "video_played"]))
    assert video.group_name == "klaviyo"
    assert video.kinds == {"duckdb", "klaviyo"}
    assert set(video.parent_keys) == {dg.AssetKey(["warehouse", "analytics", "video_events"])}
    assert video.description is not None and video.description.startswith("Video plays")
    orders = graph.get(dg.AssetKey(["reverse_etl", "order_placed"]))
    # A query source depends on the tables it names.
    assert set(orders.parent_keys) == {dg.AssetKey(["warehouse", "analytics", "orders"])}
    assert orders.group_name == "brevo"
    source = graph.get(dg.AssetKey(["warehouse", "analytics", "orders"]))
    assert not source.is_materializable  # an external AssetSpec


def test_each_sync_has_its_checks_a_stopped_schedule_and_its_account_pool() -> None:
    defs = build_defs(SHIPPED)
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey(["reverse_etl", "video_played"])
    assert {c.name for c in graph.asset_check_keys if c.asset_key == key} == {
        "reject_ratio",
        "checkpoint_freshness",
        "nothing_missing",
    }
    schedules = {s.name: s for s in defs.schedules or []}
    assert len(schedules) == len(_sync_files())
    for schedule in schedules.values():
        assert isinstance(schedule, dg.ScheduleDefinition)
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    video = schedules["reverse_etl_video_played_schedule"]
    assert isinstance(video, dg.ScheduleDefinition) and video.cron_schedule == "*/15 * * * *"
    pools = {
        k.path[-1]: defs.resolve_assets_def(k).op.pool
        for k in graph.get_all_asset_keys()
        if k.path[0] == "reverse_etl"
    }
    assert pools["video_played"] == "reverse_etl/klaviyo/KLAVIYO_API_KEY"
    # Two Brevo endpoints on the same API key share the account's pool; the tracker key does not.
    assert (
        pools["order_placed"]
        == pools["video_played_brevo_event"]
        == "reverse_etl/brevo/BREVO_API_KEY"
    )
    assert pools["order_placed_brevo_tracker"] == "reverse_etl/brevo/BREVO_MA_KEY"


def test_partitioned_sync_is_daily_on_event_time_with_single_run_backfills() -> None:
    defs = build_defs(SHIPPED)
    asset = defs.resolve_assets_def(dg.AssetKey(["reverse_etl", "video_played"]))
    pdef = asset.partitions_def
    assert isinstance(pdef, dg.TimeWindowPartitionsDefinition)
    assert pdef.get_first_partition_key() == "2026-11-01"
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()


def test_adding_a_file_adds_an_asset_and_a_broken_file_names_file_and_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _copy_config(tmp_path)
    extra = (
        (config / "syncs" / "video_played.yaml")
        .read_text()
        .replace("name: video_played", "name: video_played_copy")
    )
    (config / "syncs" / "video_played_copy.yaml").write_text(extra)
    broken = (
        (config / "syncs" / "video_played.yaml")
        .read_text()
        .replace("name: video_played", "name: broken_one")
        .replace("email: email", "emial: email")
    )
    (config / "syncs" / "broken_one.yaml").write_text(broken)

    defs = build_defs(config)
    graph = defs.resolve_asset_graph()
    keys = {k.path[-1] for k in graph.get_all_asset_keys() if k.path[0] == "reverse_etl"}
    assert {"video_played_copy", "broken_one", "video_played"} <= keys
    assert len(keys) == len(_sync_files()) + 2

    placeholder = graph.get(dg.AssetKey(["reverse_etl", "broken_one"]))
    assert placeholder.group_name == CONFIG_ERRORS_GROUP
    assert placeholder.description is not None
    assert (
        "syncs/broken_one.yaml: mapping.identifiers.emial: unknown identifier"
        in placeholder.description
    )
    assert "syncs/broken_one.yaml" in caplog.text and "emial" in caplog.text

    # Materializing it fails with the same message and records a failed config check.
    result = dg.materialize([defs.resolve_assets_def(placeholder.key)], raise_on_error=False)
    assert not result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "config_valid" and not check.passed
    assert "mapping.identifiers.emial" in (check.description or "")


@pytest.mark.slow
def test_dagster_definitions_validate_passes_on_the_shipped_config() -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-m",
            "dagster_defs",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_scheduled_run_of_a_partitioned_sync_covers_the_current_and_lookback_partitions(
    env: Env,
) -> None:
    env.write_sync("plays", PARTITIONED, warn=0.01, error=0.05)
    defs = env.defs()
    schedule = next(s for s in defs.schedules or [] if s.name == "reverse_etl_plays_schedule")
    assert isinstance(schedule, dg.ScheduleDefinition)
    at = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=at) as context:
        data = schedule.evaluate_tick(context)
    [request] = data.run_requests or []
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-03"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-05"

    sync = load_syncs(env.config_dir).syncs["plays"]
    pdef = defs.resolve_assets_def(dg.AssetKey(["reverse_etl", "plays"])).partitions_def
    assert lookback_range(sync, pdef, at) == ("2026-11-03", "2026-11-05")
    # Before the first partition there is nothing to run.
    early = datetime(2026, 10, 1, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=early) as context:
        assert not schedule.evaluate_tick(context).run_requests


def test_component_in_a_defs_yaml_builds_the_same_assets(tmp_path: Path) -> None:
    from dagster.components.testing import create_defs_folder_sandbox

    config = _copy_config(tmp_path)
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "reverse_etl"
        folder.mkdir(parents=True)
        relative = Path(*[".."] * len(folder.parts)) / config.relative_to("/")
        (folder / "defs.yaml").write_text(
            f"type: dagster_defs.ReverseEtlComponent\nattributes:\n  config_dir: {relative}\n"
        )
        with sandbox.load_component_and_build_defs(defs_path=folder) as (component, defs):
            assert isinstance(component, ReverseEtlComponent)
            keys = {
                k
                for k in defs.resolve_asset_graph().get_all_asset_keys()
                if k.path[0] == "reverse_etl"
            }
    assert len(keys) == len(_sync_files())


def test_pool_name_never_contains_the_key_itself() -> None:
    translator = ReverseEtlTranslator()
    for sync in load_syncs(SHIPPED, check_env=False).syncs.values():
        assert translator.get_pool(sync).startswith("reverse_etl/")
        assert "sandbox" not in translator.get_pool(sync)


def test_a_custom_translator_sets_the_pool_of_the_sync_assets() -> None:
    """The translator owns the pool, as it owns the spec: one pool for every sync here."""

    class OnePool(ReverseEtlTranslator):
        def get_pool(self, sync: SyncConfig) -> str:
            return "warehouse_exports"

    defs = build_defs(SHIPPED, translator=OnePool())
    graph = defs.resolve_asset_graph()
    pools = {
        defs.resolve_assets_def(k).op.pool
        for k in graph.get_all_asset_keys()
        if k.path[0] == "reverse_etl"
    }
    assert pools == {"warehouse_exports"}
