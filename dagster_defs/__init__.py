"""Dagster integration of the reverse-ETL connector: one asset per sync file.

``dagster dev -m dagster_defs`` loads :data:`defs`, built from ``$CONNECTOR_CONFIG_DIR``
(default ``config/``). Build your own with :func:`build_defs` (another config dir, a custom
:class:`ReverseEtlTranslator`), or use :class:`ReverseEtlComponent` in a ``dg`` project.
"""

from __future__ import annotations

from .assets import SyncRunConfig
from .component import ReverseEtlComponent
from .factory import build_defs
from .resources import ConnectorResource
from .translator import ReverseEtlTranslator

__all__ = [
    "ConnectorResource",
    "ReverseEtlComponent",
    "ReverseEtlTranslator",
    "SyncRunConfig",
    "build_defs",
    "defs",
]

defs = build_defs()
