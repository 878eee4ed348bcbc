"""``build_defs``: every sync file in a config dir → assets, checks, schedules, one resource.

A broken sync file never takes the others down: it becomes a placeholder asset in the
``config_errors`` group whose description carries the file, field and fix, with a
``config_valid`` check that fails with the same text and a materialization that fails with
it; the problem is also logged as a warning when the definitions load.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from connector import ConfigError, Runtime, load_syncs
from connector.config.sync_file import CONFIG_DIR_ENV

from .assets import RESOURCE_KEY, build_sync_asset
from .audit import audit_check_specs, audit_specs
from .checks import CONFIG_VALID, check_specs
from .failures import SyncFailed
from .resources import ConnectorResource
from .schedules import build_schedule
from .translator import ReverseEtlTranslator

log = logging.getLogger("dagster_defs")

CONFIG_ERRORS_GROUP = "config_errors"


def default_config_dir() -> Path:
    """``$CONNECTOR_CONFIG_DIR``, else ``./config``, else the ``config/`` next to this package
    (so ``dagster dev -m dagster_defs`` works from any directory of a checkout)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    here = Path("config")
    if (here / "syncs").is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "config"


def build_defs(
    config_dir: str | os.PathLike[str] | None = None,
    *,
    translator: ReverseEtlTranslator | None = None,
    resource: ConnectorResource | None = None,
    runtime: Runtime | None = None,
    resource_key: str = RESOURCE_KEY,
    source_assets: bool = True,
) -> dg.Definitions:
    """Definitions for every ``<config_dir>/syncs/*.yaml``.

    ``translator`` customizes the asset specs (its ``asset_key_prefix``, ``reverse_etl`` by
    default, also names the ops and schedules, so two sets of syncs can live side by side);
    ``resource`` overrides the connector resource (default: :meth:`ConnectorResource.from_env`)
    and ``resource_key`` the key it is bound to (``connector``); ``runtime`` injects the core's
    clock and sleep (tests). ``source_assets=False`` leaves the warehouse tables undeclared
    (still the syncs' deps): for a second set of syncs over the same tables in one code
    location, whose declarations would otherwise conflict.
    """
    root = Path(config_dir) if config_dir is not None else default_config_dir()
    translator = translator or ReverseEtlTranslator()
    prefix = translator.asset_key_prefix
    # API keys and ${ENV} URLs are resolved when a run needs them, not where the UI loads.
    syncset = load_syncs(root, check_env=False)
    if not (root / "syncs").is_dir():
        log.warning("reverse-ETL: no sync directory at %s; set %s", root / "syncs", CONFIG_DIR_ENV)

    assets: list[Any] = []
    schedules: list[Any] = []
    sources: dict[dg.AssetKey, dg.AssetSpec] = {}
    audited: list[dg.AssetKey] = []  # syncs writing audit tables (their lineage)
    for sync in syncset.syncs.values():
        spec = translator.get_asset_spec(sync)
        for dep in spec.deps if source_assets else ():
            if dep.asset_key not in sources:
                table = ".".join(dep.asset_key.path[1:])
                sources[dep.asset_key] = translator.get_source_asset_spec(sync, table)
        assets.append(
            build_sync_asset(
                sync,
                spec,
                runtime,
                pool=translator.get_pool(sync),
                check_specs=[*check_specs(sync, spec.key), *audit_check_specs(sync, spec.key)],
                resource_key=resource_key,
                op_name=f"{_identifier(prefix)}_{sync.name}",
                config_dir=root,
            )
        )
        if audit_check_specs(sync, spec.key):
            audited.append(spec.key)
        schedule = build_schedule(sync, spec, _identifier(prefix))
        if schedule is not None:
            schedules.append(schedule)

    taken = {dg.AssetKey([prefix, name]) for name in syncset.syncs}
    for where, error in syncset.errors.items():
        log.warning("reverse-ETL: %s is not loaded:\n%s", where, error)
        placeholder = build_broken_sync(where, error, taken, prefix)
        taken.add(placeholder.key)
        assets.append(placeholder)

    return dg.Definitions(
        assets=[*sources.values(), *assets, *audit_specs(audited, prefix)],
        schedules=schedules,
        resources={resource_key: resource or ConnectorResource.from_env()},
    )


def _identifier(text: str) -> str:
    """``text`` as a Dagster op/schedule name part (letters, digits, underscores)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def build_broken_sync(
    where: str, error: ConfigError, taken: set[dg.AssetKey], prefix: str = "reverse_etl"
) -> dg.AssetsDefinition:
    """The placeholder Dagster users see for a file that does not validate."""
    name = _identifier(Path(where).stem) or "sync"
    key = dg.AssetKey([prefix, name])
    if key in taken:
        key = dg.AssetKey([prefix, f"{name}__config_error"])
    message = "\n".join(error.problems)
    description = (
        f"⚠ Broken sync config: `{where}` did not load, so this sync does not run. "
        f"Fix the file and reload the code location.\n\n```\n{message}\n```"
    )
    op_name = f"{_identifier(prefix)}_" + "_".join(key.path[1:]) + "__broken"

    @dg.multi_asset(
        name=op_name,
        specs=[
            dg.AssetSpec(
                key=key,
                description=description,
                group_name=CONFIG_ERRORS_GROUP,
                kinds={"yaml"},
                tags={"reverse_etl/config_error": "true"},
                metadata={
                    "config_file": where,
                    "config_errors": dg.MetadataValue.md(
                        "\n".join(f"- `{p}`" for p in error.problems)
                    ),
                },
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(CONFIG_VALID, asset=key, description="The sync file validates.")
        ],
    )
    def _broken(context: dg.AssetExecutionContext) -> Iterator[dg.AssetCheckResult]:
        # The failed check is recorded first so the asset's Checks tab shows the problems.
        yield dg.AssetCheckResult(
            check_name=CONFIG_VALID,
            passed=False,
            description=message,
            metadata={"config_file": where},
        )
        raise SyncFailed(f"Broken sync config:\n{message}", metadata={"config_file": where})

    return _broken
