"""Klaviyo external ids shared by several syncs of one account (``contacts.external_ids``;
issue 19 item 15 (b), docs/contacts.md "Two syncs, one account"), through the CLI: ``connector
validate`` warns when two syncs send the same plain integer ids, and an ``external_id_prefix``
keeps their profiles apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.cli.main import main
from connector.sandbox import SandboxServer
from tests.conftest import Warehouse
from tests.e2e.test_contact_modes import POLLING, sb

__all__ = ["sb"]  # fixtures used by name


def two_klaviyo_syncs(tmp_path: Path, url: str, sandbox: str, prefixes: tuple[str, str]) -> None:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    for name, prefix in zip(("shop_a", "shop_b"), prefixes, strict=True):
        option = f", external_id_prefix: '{prefix}'" if prefix else ""
        (syncs / f"{name}.yaml").write_text(
            f"name: {name}\n"
            f"source: {{table: {name}, primary_key: [customer_id], url: '{url}'}}\n"
            "destination: {type: klaviyo_profiles, api_key: '${KLAVIYO_API_KEY}', "
            f"base_url: '{sandbox}', options: {{{POLLING}{option}}}}}\n"
            "mapping: {identifiers: {external_id: customer_id}, "
            "contact_properties: {first_name: first_name}}\n"
        )


def two_shops(duck: Warehouse) -> None:
    for shop in ("shop_a", "shop_b"):
        duck.run(
            f"DROP TABLE IF EXISTS {shop}",
            f"CREATE TABLE {shop} (customer_id INTEGER, first_name VARCHAR)",
        )
        duck.insert(shop, [{"customer_id": 42, "first_name": f"{shop} customer"}])
    duck.dispose()


def test_validate_warns_when_two_syncs_share_plain_integer_klaviyo_external_ids(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on main: validate said ok for both, and their customer 42 became one profile."""
    two_shops(duck)
    two_klaviyo_syncs(tmp_path, duck.url, sb.url, ("", ""))
    configure_env(tmp_path, monkeypatch)
    assert main(["validate"]) == 0  # a warning, not an error
    out, _ = capsys.readouterr()
    assert "shop_a.yaml, " in out and "shop_b.yaml" in out and "external_id_prefix" in out
    assert "pk_sandbox" not in out  # the account is compared by its key, never shown


def test_an_external_id_prefix_keeps_two_syncs_profiles_apart(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    two_shops(duck)
    two_klaviyo_syncs(tmp_path, duck.url, sb.url, ("shop-a:", "shop-b:"))
    configure_env(tmp_path, monkeypatch)
    assert main(["validate"]) == 0
    out, _ = capsys.readouterr()
    assert "warning" not in out
    assert main(["sync", "shop_a"]) == 0 and main(["sync", "shop_b"]) == 0
    capsys.readouterr()
    profiles = {p["external_id"]: p["first_name"] for p in sb.contacts("klaviyo_profiles")}
    assert profiles == {"shop-a:42": "shop_a customer", "shop-b:42": "shop_b customer"}


def configure_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("CONNECTOR_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_sandbox")
