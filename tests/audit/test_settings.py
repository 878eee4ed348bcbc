"""Whether a sync writes audit tables, and where (``audit.settings``): on by the ``audit:`` block
or ``CONNECTOR_AUDIT``, the file winning over the environment, and beside an embedded warehouse
file."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.audit.settings import audit_settings
from connector.config.sync_file import parse_sync
from connector.core.errors import ConfigError

MINIMAL = """
name: s
source: {{table: t, cursor: c, primary_key: [id], url: '{url}'}}
destination: {{type: klaviyo_bulk_events, api_key: "${{KLAVIYO_API_KEY}}"}}
mapping: {{event_name: e, event_time: c, identifiers: {{email: m}}}}
"""


def test_the_audit_is_on_by_block_or_environment_and_goes_beside_an_embedded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONNECTOR_AUDIT", raising=False)
    duck_url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    plain = parse_sync(MINIMAL.format(url=duck_url), "syncs/s.yaml")
    assert audit_settings(plain) is None  # opt-in
    block = parse_sync(
        MINIMAL.format(url=duck_url) + "audit: {schema: audit_x, retention_days: 7}\n", "s.yaml"
    )
    on = audit_settings(block)
    assert on is not None
    assert (on.url, on.schema, on.retention_days) == (
        f"duckdb:///{tmp_path / 'wh.audit.duckdb'}",
        "audit_x",
        7,
    )
    server = parse_sync(MINIMAL.format(url="postgresql+psycopg://h/db"), "s.yaml")
    monkeypatch.setenv("CONNECTOR_AUDIT", "1")
    env_on = audit_settings(server)
    assert env_on is not None
    assert (env_on.url, env_on.schema, env_on.retention_days) == (
        "postgresql+psycopg://h/db",
        "reverse_etl_audit",
        90,
    )
    monkeypatch.setenv("CONNECTOR_AUDIT", "postgresql+psycopg://audit-host/logs")
    env_url = audit_settings(server)
    assert env_url is not None and env_url.url == "postgresql+psycopg://audit-host/logs"
    off = parse_sync(MINIMAL.format(url=duck_url) + "audit: {enabled: false}\n", "syncs/s.yaml")
    assert audit_settings(off) is None  # the file wins over the environment
    monkeypatch.setenv("CONNECTOR_AUDIT", "maybe")
    with pytest.raises(ConfigError, match="CONNECTOR_AUDIT"):
        audit_settings(server)
