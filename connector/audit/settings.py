"""Whether a sync writes audit tables, and where (the ``audit:`` block, env ``CONNECTOR_AUDIT``)."""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from ..config.env import resolve_env
from ..config.sections import AuditConfig
from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError
from ..read.source import warehouse_url
from ..warehouses import embedded_file

AUDIT_ENV = "CONNECTOR_AUDIT"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})

#: The Dagster run a sync runs in (set by ``dagster_defs`` around a run; None elsewhere).
dagster_run_id: ContextVar[str | None] = ContextVar("connector_dagster_run_id", default=None)


@dataclass(frozen=True)
class AuditSettings:
    """Where a sync's audit tables go (``url`` may hold a password: never log it unmasked)."""

    url: str
    schema: str
    retention_days: int


def audit_settings(sync: SyncConfig, warehouse: str | None = None) -> AuditSettings | None:
    """The sync's audit settings, or None when it writes no audit tables.

    On with an ``audit:`` block (unless ``enabled: false``) or with env ``CONNECTOR_AUDIT``
    (``1``/``true``: the defaults; a URL: the tables go there). ``warehouse`` is the run's
    warehouse URL when the caller overrides the sync's."""
    env = os.environ.get(AUDIT_ENV, "").strip()
    block = sync.audit
    if block is not None and not block.enabled:
        return None
    if block is None:
        if env.lower() in _OFF:
            return None
        block = AuditConfig()
    url = _url(sync, block, env, warehouse)
    return AuditSettings(url, block.schema_, block.retention_days)


def audited(sync: SyncConfig) -> bool:
    """Whether the sync writes audit tables, from the config alone (nothing resolved: where
    Dagster loads its definitions, a ``${VAR}`` may be unset)."""
    if sync.audit is not None:
        return sync.audit.enabled
    return os.environ.get(AUDIT_ENV, "").strip().lower() not in _OFF


def _url(sync: SyncConfig, block: AuditConfig, env: str, warehouse: str | None) -> str:
    if block.url:
        return resolve_env(block.url, f"{sync.source_path}: audit.url")
    if env and env.lower() not in _ON | _OFF:
        if "://" not in env:
            raise ConfigError(
                f"{AUDIT_ENV}={env[:40]!r} is neither 1/true nor a database URL; set it to 1 "
                "(audit tables in each sync's warehouse) or to a SQLAlchemy URL"
            )
        return env
    source = warehouse or warehouse_url(sync)
    db = embedded_file(source)
    if db is not None:
        return f"duckdb:///{beside(db)}"
    return source


def beside(db: Path) -> Path:
    """The audit file of an embedded warehouse (opened read-only): ``<stem>.audit.duckdb``."""
    return db.with_name(f"{db.stem}.audit.duckdb")
