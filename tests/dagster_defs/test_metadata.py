"""What each kind of sync carries in Dagster: its own checks and only the metadata that applies,
the sync file as code reference, the mapping as column schema, owners, source observations."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from connector.cli.demo import build_demo_warehouse
from dagster_defs import ConnectorResource, build_defs
from tests.conftest import FakeSleep
from tests.dagster_fixtures import Env, env, materialization, quiet_sandbox

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

SHIPPED = Path(__file__).resolve().parents[2] / "config"
CONTACTS = dg.AssetKey(["reverse_etl", "customers_to_brevo"])
EVENTS = dg.AssetKey(["reverse_etl", "video_played"])


@pytest.fixture
def demo_defs(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_time: FakeSleep
) -> dg.Definitions:
    monkeypatch.setenv("SANDBOX_URL", env.sandbox.url)
    demo = build_demo_warehouse(tmp_path / "demo.duckdb", events=40, orders=25)
    resource = ConnectorResource(warehouse_url=f"duckdb:///{demo}", state_url=env.state.url)
    return build_defs(SHIPPED, resource=resource, runtime=env.runtime)


def _checks(defs: dg.Definitions, key: dg.AssetKey) -> set[str]:
    return {c.name for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key == key}


def test_each_kind_of_sync_has_its_own_checks_and_only_the_metadata_that_applies() -> None:
    defs = build_defs(SHIPPED)
    assert _checks(defs, CONTACTS) == {"reject_ratio", "changed_ratio", "removed_rows"}
    assert _checks(defs, EVENTS) == {"reject_ratio", "checkpoint_freshness", "nothing_missing"}
    graph = defs.resolve_asset_graph()
    contact_md = graph.get(CONTACTS).metadata
    assert "cursor" not in contact_md and "event_time" not in contact_md
    assert contact_md["sync_kind"] == "contacts"
    assert graph.get(EVENTS).metadata["cursor"] == "occurred_at"
    # The thresholds are in the descriptions, not in measured metadata.
    spec = next(
        s for s in defs.resolve_assets_def(CONTACTS).check_specs if s.name == "removed_rows"
    )
    assert "warn above 5%, error above 50%" in (spec.description or "")


def test_an_asset_carries_its_sync_file_mapping_and_owners() -> None:
    defs = build_defs(SHIPPED)
    node = defs.resolve_asset_graph().get(EVENTS)
    [ref] = node.metadata["dagster/code_references"].code_references
    assert isinstance(ref, dg.LocalFileCodeReference)
    assert ref.file_path == str((SHIPPED / "syncs" / "video_played.yaml").resolve())
    schema = node.metadata["dagster/column_schema"]
    columns = {c.name: (c.type, c.description) for c in schema.columns}
    assert columns["identifiers.email"] == ("identifier", "← warehouse column `email`")
    assert columns["event_properties.video.title"] == (
        "event property",
        "← warehouse column `title`",
    )
    assert columns["event_time"][0] == "event time"
    assert node.owners == ["team:growth"]


def test_owners_must_be_emails_or_teams(tmp_path: Path) -> None:
    from connector import ConfigError
    from connector.config.sync_file import parse_sync

    text = (SHIPPED / "syncs" / "video_played.yaml").read_text()
    text = text.replace("owners: [team:growth]", "owners: [growth]")
    with pytest.raises(ConfigError, match="neither an e-mail address nor team:<name>"):
        parse_sync(text, "syncs/video_played.yaml")


def test_a_contact_run_judges_its_own_checks(demo_defs: dg.Definitions, env: Env) -> None:
    instance = dg.DagsterInstance.ephemeral()
    asset = demo_defs.resolve_assets_def(CONTACTS)
    first = dg.materialize([asset], instance=instance)
    checks = {c.check_name: c for c in first.get_asset_check_evaluations()}
    assert set(checks) == {"reject_ratio", "changed_ratio", "removed_rows"}
    assert all(c.passed for c in checks.values())
    assert checks["reject_ratio"].metadata["of"].value == 500  # every row needed sending
    assert "warn_above" not in checks["reject_ratio"].metadata
    md = materialization(first, CONTACTS)
    assert "hwm_before" not in md and "sample_rejects" not in md
    # The warehouse table is observed: its row count, by the sync that read it.
    logs = instance.all_logs(first.run_id)
    [obs] = [e.asset_observation for e in logs if e.asset_observation is not None]
    assert obs is not None and obs.asset_key == dg.AssetKey(["warehouse", "analytics", "customers"])
    assert obs.metadata["dagster/row_count"].value == 500


def test_contact_shares_judge_changed_and_removed_rows() -> None:
    from connector.config.sync_file import parse_sync
    from connector.report.health import Level, contact_shares
    from connector.run.contacts import ContactResult

    sync = parse_sync((SHIPPED / "syncs" / "customers_to_brevo.yaml").read_text(), "c.yaml")
    half_gone = ContactResult("c", "incremental", None, changed=10, unchanged=230, removed=260)
    shares = contact_shares(sync, [half_gone])
    assert shares["removed_rows"].level is Level.ERROR  # 52% > 50%
    assert shares["removed_rows"].describe().startswith("260 of 500 confirmed contacts vanished")
    assert shares["changed_ratio"].level is Level.OK
    rebuilt = ContactResult("c", "incremental", None, changed=400, unchanged=100, sent=400)
    assert contact_shares(sync, [rebuilt])["changed_ratio"].level is Level.WARN
    refused = ContactResult("c", "incremental", None, added=10, rejected=6)
    assert contact_shares(sync, [refused])["reject_ratio"].level is Level.ERROR


def test_the_launchpad_shows_plain_text_descriptions() -> None:
    resource = ConnectorResource.from_env().get_resource_definition()
    texts = [resource.description or ""]
    fields = resource.config_schema.as_field().config_type.fields  # type: ignore[attr-defined]
    texts += [f.description or "" for f in fields.values()]
    for text in texts:
        assert "``" not in text and ":class:" not in text and "\n" not in text, text
    assert (resource.description or "").startswith("Where the reverse-ETL syncs read rows")
