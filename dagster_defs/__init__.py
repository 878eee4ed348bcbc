"""Dagster integration of the reverse-ETL connector: one asset per sync file.

``dagster dev -m dagster_defs`` loads :data:`defs`, built from ``$CONNECTOR_CONFIG_DIR``
(default ``config/``) when Dagster loads the code location, not when this package is imported
(``@dg.definitions``): importing the package, as ``dg`` does to list the Component, builds
nothing. Build your own with :func:`build_defs` (another config dir, a custom
:class:`ReverseEtlTranslator`), or use :class:`ReverseEtlComponent` in a ``dg`` project.
"""

from __future__ import annotations

import dagster as dg

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


@dg.definitions
def defs() -> dg.Definitions:
    """The syncs of ``$CONNECTOR_CONFIG_DIR`` (or ``./config``), with the default resource."""
    return build_defs()
