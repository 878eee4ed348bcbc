"""Reverse-ETL connector: warehouse rows → Brevo, Omnisend and Klaviyo events.

Public API::

    from connector import load_syncs, load_sync, run_sync, StateStore, Window

    sync = load_sync("video_played")
    result = run_sync(sync)            # incremental; raises DeliveryError on failure
    print(result.delivered, result.rejected, result.hwm_after)
    preview_frame(sync, limit=20)      # pandas DataFrame: one row per event (notebooks)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config.sync_file import SyncConfig, SyncSet, json_schema, load_sync, load_syncs, parse_sync
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
