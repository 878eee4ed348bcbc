"""A ``dg`` Component, so the syncs fit a ``dg`` project like dagster-sling and dagster-dlt do.

Registered for ``dg`` by the ``dagster_dg_cli.registry_modules`` entry point (pyproject.toml),
so ``dg list components`` shows ``dagster_defs.ReverseEtlComponent`` and
``dg scaffold defs dagster_defs.ReverseEtlComponent reverse_etl`` writes::

    defs/reverse_etl/defs.yaml         type + attributes (config_dir: config)
    defs/reverse_etl/config/syncs/example_events.yaml   a sample sync to edit

Each instance is independent: its asset keys, op and schedule names start with
``asset_key_prefix`` and its resource is bound to ``resource_key``, both derived from the
instance's folder unless set, so a second team's instance (``reverse_etl2``) loads beside the
first.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field
from typing_extensions import override

SAMPLE_SYNC = """\
# A sample sync: rows of a warehouse table -> Klaviyo events. Edit it, or add more files here;
# every syncs/*.yaml becomes an asset. The fields: docs/design.md and `connector schema`.
name: {name}
description: Example events from the warehouse, as Klaviyo "example_event" events.
owners: [team:data]
source:
  table: analytics.events          # or query: SELECT ... FROM ...
  cursor: occurred_at              # rows are read after the last delivered (cursor, key)
  primary_key: [event_id]
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}     # read from the environment when a run needs it
mapping:
  event_name: example_event
  event_time: occurred_at
  identifiers:
    email: email
  event_properties:
    title: title
schedule: "0 * * * *"              # created stopped; turn it on in the UI
"""


class ReverseEtlScaffolder(dg.Scaffolder):
    """``dg scaffold defs dagster_defs.ReverseEtlComponent <folder>``: the component's
    ``defs.yaml`` and a sample sync file in ``<folder>/config/syncs/``."""

    @override
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        from dagster.components.component_scaffolding import scaffold_component

        scaffold_component(request, {"config_dir": "config"})
        syncs = request.target_path / "config" / "syncs"
        syncs.mkdir(parents=True, exist_ok=True)
        sample = syncs / "example_events.yaml"
        if not sample.exists():
            name = _identifier(request.target_path.name) + "_example_events"
            sample.write_text(SAMPLE_SYNC.format(name=name), encoding="utf-8")


@dg.scaffold_with(ReverseEtlScaffolder)
class ReverseEtlComponent(dg.Component, dg.Resolvable, dg.Model):
    """One asset per sync file in config_dir, with its checks, schedule and resource."""

    config_dir: str | None = Field(
        None,
        description="Directory holding syncs/*.yaml, relative to this component's folder. "
        "Default: $CONNECTOR_CONFIG_DIR, else ./config.",
    )
    asset_key_prefix: str | None = Field(
        None,
        description="First part of the asset keys, op and schedule names. Default: "
        "reverse_etl for a folder named reverse_etl, else the folder's name.",
    )
    resource_key: str | None = Field(
        None,
        description="Key of this instance's connector resource. Default: connector for a "
        "folder named reverse_etl, else connector_<folder>.",
    )

    source_assets: bool | None = Field(
        None,
        description="Declare the warehouse tables the syncs read as external assets. Default: "
        "yes for a folder named reverse_etl, no for other instances (two instances declaring "
        "the same table would conflict; their syncs still depend on it).",
    )

    @override
    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from .factory import build_defs
        from .translator import ASSET_PREFIX, ReverseEtlTranslator

        here = context.path if context.path.is_dir() else context.path.parent
        folder = _identifier(here.name)
        default = folder in ("", ASSET_PREFIX)
        prefix = self.asset_key_prefix or (ASSET_PREFIX if default else folder)
        resource_key = self.resource_key or ("connector" if default else f"connector_{folder}")
        root = Path(here, self.config_dir).resolve() if self.config_dir is not None else None
        return build_defs(
            root,
            translator=ReverseEtlTranslator(asset_key_prefix=prefix),
            resource_key=resource_key,
            source_assets=default if self.source_assets is None else self.source_assets,
        )


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text).strip("_")
