"""Reverse-ETL connector: warehouse rows → Brevo, Omnisend and Klaviyo events.

Public API::

    from connector import load_syncs, load_sync, run_sync, StateStore, Window

    sync = load_sync("video_played")
    result = run_sync(sync)            # incremental; raises DeliveryError on failure
    print(result.delivered, result.rejected, result.hwm_after)
    preview_frame(sync, limit=20)      # pandas DataFrame: one row per event (notebooks)

The names are imported when first used (PEP 562), so ``import connector`` and the
``connector`` command load only what they touch: ``connector --help`` imports none of pydantic,
SQLAlchemy, pyarrow or httpx (docs/performance.md, "Start-up").
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name → the module that defines it.
_EXPORTS: dict[str, str] = {
    "INCREMENTAL": ".store.state",
    "AuthError": ".core.errors",
    "ConfigError": ".core.errors",
    "ConnectorError": ".core.errors",
    "DeliveryError": ".core.errors",
    "Reader": ".read.source",
    "RequestError": ".core.errors",
    "RetriesExhausted": ".core.errors",
    "Runtime": ".deliver.delivery",
    "SourceError": ".core.errors",
    "StateError": ".core.errors",
    "StateStore": ".store.state",
    "SyncConfig": ".config.sync_file",
    "SyncResult": ".run.sync",
    "SyncSet": ".config.sync_file",
    "Window": ".read.source",
    "json_schema": ".config.sync_file",
    "load_sync": ".config.sync_file",
    "load_syncs": ".config.sync_file",
    "parse_sync": ".config.sync_file",
    "preview": ".run.sync",
    "preview_frame": ".run.frame",
    "run_sync": ".run.sync",
}

__all__ = [
    "INCREMENTAL",
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "DeliveryError",
    "Reader",
    "RequestError",
    "RetriesExhausted",
    "Runtime",
    "SourceError",
    "StateError",
    "StateStore",
    "SyncConfig",
    "SyncResult",
    "SyncSet",
    "Window",
    "__version__",
    "json_schema",
    "load_sync",
    "load_syncs",
    "parse_sync",
    "preview",
    "preview_frame",
    "run_sync",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and keep the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .config.sync_file import (
        SyncConfig,
        SyncSet,
        json_schema,
        load_sync,
        load_syncs,
        parse_sync,
    )
    from .core.errors import (
        AuthError,
        ConfigError,
        ConnectorError,
        DeliveryError,
        RequestError,
        RetriesExhausted,
        SourceError,
        StateError,
    )
    from .deliver.delivery import Runtime
    from .read.source import Reader, Window
    from .run.frame import preview_frame
    from .run.sync import SyncResult, preview, run_sync
    from .store.state import INCREMENTAL, StateStore
