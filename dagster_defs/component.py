"""A ``dg`` Component, so the syncs fit a ``dg`` project like dagster-sling and dagster-dlt do.

``defs/reverse_etl/defs.yaml``::

    type: dagster_defs.ReverseEtlComponent
    attributes:
      config_dir: ../../../config     # relative to this defs.yaml's folder
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field
from typing_extensions import override


class ReverseEtlComponent(dg.Component, dg.Resolvable, dg.Model):
    """One asset per sync file in ``config_dir`` (checks, schedules and the resource included)."""

    config_dir: str | None = Field(
        None,
        description="Directory holding syncs/*.yaml, relative to this component's folder. "
        "Default: $CONNECTOR_CONFIG_DIR, else ./config.",
    )

    @override
    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from .factory import build_defs

        if self.config_dir is None:
            return build_defs()
        here = context.path if context.path.is_dir() else context.path.parent
        return build_defs(Path(here, self.config_dir).resolve())
