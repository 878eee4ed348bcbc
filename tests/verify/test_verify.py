"""``connector verify`` (the ``verify`` package as a whole): confirmed contacts read back from
the sandbox over real HTTP (Klaviyo get_profiles, Brevo get-contact-info, Omnisend list
contacts) and compared with a DuckDB warehouse; the reads paced on the account's shared row;
the Dagster check ``landed_as_sent``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest
import sqlalchemy as sa

from connector.cli.demo_run import DEMO_BREVO_ATTRIBUTES
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import ContactCli, make_customers
from tests.dagster_fixtures import Env, env, quiet_sandbox

__all__ = ["env", "quiet_sandbox"]  # fixtures used by name

# The reads take 10% of the account's rate: a generous override keeps the tests quick.
FAST = "rate_limit: {{per_second: 500}}"

KLAVIYO = """
name: to_klaviyo
source: {{table: customers, primary_key: [customer_id], url: "{url}"}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, FAST}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name, plan: plan, ltv: ltv, location.city: city}}
{verify}
"""
BREVO = """
name: to_brevo
source: {{table: customers, primary_key: [customer_id], url: "{url}"}}
destination:
  type: brevo_contacts
  api_key: ${{BREVO_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, list_ids: [7], FAST}}
mapping:
  identifiers: {{email: email, ext_id: customer_id}}
  contact_properties: {{FIRSTNAME: first_name, PLAN: plan, LTV: ltv}}
{verify}
"""
OMNISEND = """
name: to_omnisend
source: {{table: customers, primary_key: [customer_id], url: "{url}"}}
destination:
  type: omnisend_contacts
  api_key: ${{OMNISEND_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05, FAST}}
mapping:
  identifiers: {{email: email}}
  contact_properties: {{firstName: first_name, city: city, plan: plan, ltv: ltv}}
{verify}
"""

# vendor → (sync template, sandbox kind, an edit made at the vendor, the field it changes)
VENDORS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "klaviyo": (KLAVIYO, "klaviyo_profiles", {"properties": {"plan": "edited"}}, "properties.plan"),
    "brevo": (BREVO, "brevo_contacts", {"attributes": {"PLAN": "edited"}}, "attributes.PLAN"),
    "omnisend": (
        OMNISEND,
        "omnisend_contacts",
        {"customProperties": {"plan": "edited"}},
        "customProperties.plan",
    ),
}


class Cli(ContactCli):
    defaults: ClassVar[dict[str, str]] = {"verify": ""}

    def verify(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
    ) -> tuple[int, dict[str, Any]]:
        code, out = self.run(monkeypatch, capsys, "verify", self.name, "--json", *args)
        assert out["stderr"] == "", out["stderr"]
        return code, json.loads(out["stdout"])


def _cli(
    vendor: str, tmp_path: Path, wh: Warehouse, sandbox: SandboxServer, state_url: str | None = None
) -> Cli:
    template = VENDORS[vendor][0].replace("FAST", FAST)
    cls = type(f"{vendor}Cli", (Cli,), {"name": f"to_{vendor}", "template": template})
    return cls(tmp_path, wh, sandbox, state_url)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """The sandbox with the Brevo attributes the Brevo sync maps (PLAN, LTV)."""
    attributes = {**DEMO_BREVO_ATTRIBUTES, "PLAN": "text", "LTV": "float", "EXT_ID": "text"}
    with SandboxServer(SandboxOptions(brevo_attributes=attributes), port=0) as sb:
        yield sb


def _synced(
    vendor: str,
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    make_customers(duck, 6)
    cli = _cli(vendor, tmp_path, duck, sandbox)
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0, res
    assert res["delivered"] == 6
    return cli


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_every_contact_landed_as_sent(
    vendor: str,
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = _synced(vendor, tmp_path, duck, sandbox, monkeypatch, capsys)
    code, report = cli.verify(monkeypatch, capsys)
    assert code == 0, report
    assert (report["sampled"], report["checked"], report["matched"]) == (6, 6, 6)
    assert report["match_rate"] == 1.0 and report["differences"] == []
    assert report["requests"] == 6  # one read per contact
    assert report["read_share"] == 0.1


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_a_change_at_the_vendor_and_a_contact_that_never_landed_are_reported(
    vendor: str,
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = _synced(vendor, tmp_path, duck, sandbox, monkeypatch, capsys)
    _, kind, changes, field = VENDORS[vendor]
    assert sandbox.edit_contact(kind, "c2@example.com", changes) is not None
    assert sandbox.edit_contact(kind, "c3@example.com", delete=True) == {}
    assert sandbox.contact(kind, "c3@example.com") is None

    code, report = cli.verify(monkeypatch, capsys)
    assert code == 1
    assert (report["checked"], report["matched"]) == (6, 4)
    assert report["match_rate"] == pytest.approx(4 / 6)
    diffs = sorted(report["differences"], key=lambda d: d["key"])
    edited = {"key": "2", "field": field, "sent": "free", "found": "edited"}
    gone = {"key": "3", "field": "*", "sent": "(the contact)", "found": None}
    assert diffs == [{**edited, "kind": "changed_at_vendor"}, {**gone, "kind": "never_landed"}]
    assert report["difference_counts"] == {"changed_at_vendor": 1, "never_landed": 1}

    code, out = cli.run(monkeypatch, capsys, "verify", cli.name)  # the text report
    assert code == 1
    assert "4 of 6 contacts as sent (66.7%)" in out["stdout"]
    assert f"2\t{field}\t'free'\t'edited'\tchanged_at_vendor" in out["stdout"]


def test_a_row_changed_in_the_warehouse_since_is_told_apart_and_sample_caps_the_reads(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = _synced("klaviyo", tmp_path, duck, sandbox, monkeypatch, capsys)
    duck.run("UPDATE customers SET city = 'Lyon' WHERE customer_id = 5")
    code, report = cli.verify(monkeypatch, capsys)
    assert code == 1
    assert report["differences"] == [
        {
            "key": "5",
            "field": "location.city",
            "sent": "Lyon",  # what the warehouse holds now
            "found": "Paris",
            "kind": "changed_in_warehouse",  # the next sync sends it
        }
    ]
    code, report = cli.verify(monkeypatch, capsys, "--sample", "2")
    assert (report["sampled"], report["requests"]) == (2, 2)


def test_a_postgresql_state_store_paces_the_reads_on_the_shared_account_row(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 4)
    cli = _cli("omnisend", tmp_path, duck, sandbox, state_url=pg_url)
    code, res = cli.sync(monkeypatch, capsys)
    assert code == 0 and res["delivered"] == 4
    sandbox.edit_contact("omnisend_contacts", "c1@example.com", {"firstName": "Eve"})
    engine = StateStore(pg_url).engine
    query = sa.text("SELECT account, next_at FROM connector_pacer")
    with engine.connect() as c:
        [(account, before)] = c.execute(query).all()  # the sync's slots
    code, report = cli.verify(monkeypatch, capsys)
    assert code == 1
    assert report["differences"] == [
        {
            "key": "1",
            "field": "firstName",
            "sent": "Name1",
            "found": "Eve",
            "kind": "changed_at_vendor",
        }
    ]
    # pacing auto on PostgreSQL: the reads took slots of the account's shared row too
    with engine.connect() as c:
        [(same_account, after)] = c.execute(query).all()
    assert same_account == account and account.startswith("omnisend_events|")
    assert after > before  # four more slots taken, by the reads


def test_verify_before_any_sync_and_of_an_event_sync(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 3, updated_at=True)
    cli = _cli("brevo", tmp_path, duck, sandbox)
    code, report = cli.verify(monkeypatch, capsys)
    assert code == 1  # nothing confirmed yet: no proof, no success
    assert (report["sampled"], report["checked"], report["ok"]) == (0, 0, False)

    (cli.config / "syncs" / "plays.yaml").write_text(
        EVENTS.format(url=duck.url, sandbox=sandbox.url)
    )
    code, out = cli.run(monkeypatch, capsys, "verify", "plays")
    assert code == 2, out
    assert "plays (klaviyo_bulk_events): cannot verify: Klaviyo's get_events" in out["stdout"], out


EVENTS = """
name: plays
source: {{table: customers, cursor: updated_at, primary_key: [customer_id], url: "{url}"}}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: signed_up
  event_time: updated_at
  identifiers: {{email: email}}
"""


def test_an_event_sync_with_a_verify_block_is_a_config_error(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_customers(duck, 1, updated_at=True)
    cli = _cli("brevo", tmp_path, duck, sandbox)
    (cli.config / "syncs" / "plays.yaml").write_text(
        EVENTS.format(url=duck.url, sandbox=sandbox.url) + "verify: {sample: 5}\n"
    )
    code, out = cli.run(monkeypatch, capsys, "verify", "plays")
    assert code == 2
    assert "verify: klaviyo_bulk_events sends events" in out["stderr"]


# --------------------------------------------------------------------------- Dagster

DAGSTER_SYNC = """
name: {name}
source: {{table: customers, primary_key: [customer_id]}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05}}
mapping:
  identifiers: {{email: email, external_id: customer_id}}
  contact_properties: {{first_name: first_name, plan: plan}}
verify: {{sample: 50}}
"""
KEY = dg.AssetKey(["reverse_etl", "people"])


def _materialize(env: Env) -> dict[str, dg.AssetCheckEvaluation]:
    defs = env.defs()
    result = dg.materialize([defs.resolve_assets_def(KEY)], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_landed_as_sent_check_after_a_dagster_run(env: Env) -> None:
    make_customers(env.warehouse, 5)
    env.write_sync("people", DAGSTER_SYNC)
    checks = _materialize(env)
    assert set(checks) == {"reject_ratio", "changed_ratio", "removed_rows", "landed_as_sent"}
    landed = checks["landed_as_sent"]
    assert landed.passed
    assert landed.metadata["match_rate"].value == 1.0
    assert landed.metadata["checked"].value == 5

    env.sandbox.edit_contact("klaviyo_profiles", "c4@example.com", {"first_name": "Edited"})
    landed = _materialize(env)["landed_as_sent"]  # nothing to send; the check reads again
    assert not landed.passed
    assert landed.severity == dg.AssetCheckSeverity.WARN  # only a change made at the vendor
    assert landed.metadata["differences"].value == [
        {
            "key": "4",
            "field": "first_name",
            "sent": "Name4",
            "found": "Edited",
            "kind": "changed_at_vendor",
        }
    ]

    env.sandbox.edit_contact("klaviyo_profiles", "c5@example.com", delete=True)
    env.state.engine.dispose()
    landed = _materialize(env)["landed_as_sent"]
    assert landed.severity == dg.AssetCheckSeverity.ERROR  # a contact is missing
    assert landed.metadata["difference_counts"].value == {
        "changed_at_vendor": 1,
        "never_landed": 1,
    }


def test_no_landed_as_sent_check_without_a_verify_block(env: Env) -> None:
    make_customers(env.warehouse, 2)
    env.write_sync("people", DAGSTER_SYNC.replace("verify: {{sample: 50}}\n", ""))
    assert "landed_as_sent" not in _materialize(env)


def test_landed_as_sent_executes_alone(env: Env) -> None:
    make_customers(env.warehouse, 3)
    env.write_sync("people", DAGSTER_SYNC)
    _materialize(env)
    env.sandbox.edit_contact("klaviyo_profiles", "c1@example.com", delete=True)
    check_key = dg.AssetCheckKey(KEY, "landed_as_sent")
    only = dg.define_asset_job("landed_only", selection=dg.AssetSelection.checks(check_key))
    defs = dg.Definitions.merge(env.defs(), dg.Definitions(jobs=[only]))
    result = defs.resolve_job_def("landed_only").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["difference_counts"].value == {"never_landed": 1}
    assert check.description == "2 of 3 contacts as sent (66.7%); 1 difference"


def test_a_dry_run_reads_nothing_back(env: Env) -> None:
    make_customers(env.warehouse, 2)
    env.write_sync("people", DAGSTER_SYNC)
    asset = env.defs().resolve_assets_def(KEY)
    result = dg.materialize(
        [asset],
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {asset.op.name: {"config": {"dry_run": True}}}},
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert "landed_as_sent" not in checks
    assert not [r for r in env.sandbox.requests if r.method == "GET"]
