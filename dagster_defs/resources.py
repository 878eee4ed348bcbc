"""Where the connector reads and records: the warehouse URL and the state store URL.

Both are resource fields, meant to be set from ``dg.EnvVar`` so the values live in the
deployment's environment, never in run config, the launchpad or the event log (Dagster shows
an ``EnvVar`` field as the variable's name). API keys stay ``${VAR}`` references in the sync
files and are read from the same environment by the core when a run needs them.
"""

from __future__ import annotations

import inspect
import os

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from connector.config.sync_file import WAREHOUSE_URL_ENV, SyncConfig
from connector.read.source import redact_url, warehouse_url
from connector.store.state import STATE_URL_ENV, StateStore


class ConnectorResource(dg.ConfigurableResource):
    """Where the reverse-ETL syncs read rows and keep their checkpoints. Leave a field unset
    to use the default: the warehouse from the sync's own source.url, then WAREHOUSE_URL, then
    the demo DuckDB file; the state store from CONNECTOR_STATE_URL, then
    sqlite:///.connector/state.db."""

    # The description above is what the launchpad shows: plain text, no markup.
    warehouse_url: str | None = Field(
        default=None,
        description="Warehouse URL (SQLAlchemy form) for syncs without their own source.url; "
        "bind it to the WAREHOUSE_URL variable.",
    )
    state_url: str | None = Field(
        default=None,
        description="State store URL (SQLite or PostgreSQL); bind it to the CONNECTOR_STATE_URL "
        "variable.",
    )
    duckdb_read_only: bool = Field(
        default=True,
        description="Open a DuckDB file warehouse read-only: DuckDB lets one process write a "
        "file, or many read it, so parallel runs and steps can only share it read-only.",
    )

    @classmethod
    def from_env(cls) -> ConnectorResource:
        """Fields bound to ``EnvVar`` for the variables set where the definitions load (the
        run reads the values from its own environment; a variable not set here keeps the core
        default)."""
        warehouse = os.environ.get(WAREHOUSE_URL_ENV)
        state = os.environ.get(STATE_URL_ENV)
        return cls(
            warehouse_url=dg.EnvVar(WAREHOUSE_URL_ENV) if warehouse else None,
            state_url=dg.EnvVar(STATE_URL_ENV) if state else None,
        )

    def state(self) -> StateStore:
        """The state store at ``state_url`` (default: the core's, ``$CONNECTOR_STATE_URL`` or
        SQLite)."""
        return StateStore.open(self.state_url)

    def warehouse_for(self, sync: SyncConfig) -> str:
        """The URL to pass to the core: a sync that names its own ``source.url`` keeps it; a
        DuckDB file is opened read-only (see ``duckdb_read_only``)."""
        url = self.warehouse_url if self.warehouse_url and not sync.source.url else None
        url = url or warehouse_url(sync)
        if self.duckdb_read_only:
            url = _read_only_duckdb(url)
        return url

    def describe(self, sync: SyncConfig) -> dict[str, str]:
        """Redacted URLs, safe for the event log."""
        return {
            "warehouse": redact_url(self.warehouse_for(sync)),
            "state_store": redact_url(self.state().url),
        }


# Dagster shows the class docstring as the resource's description in the launchpad: as plain
# text without the source's indentation.
ConnectorResource.__doc__ = inspect.cleandoc(ConnectorResource.__doc__ or "").replace("\n", " ")


def _read_only_duckdb(url: str) -> str:
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # not a URL, or a bad port
        return url
    if parsed.get_backend_name() != "duckdb" or parsed.database in (None, "", ":memory:"):
        return url
    if "access_mode" in parsed.query:
        return url
    return parsed.update_query_dict({"access_mode": "read_only"}).render_as_string(
        hide_password=False
    )
