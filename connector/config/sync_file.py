"""Sync configuration: YAML files under ``$CONNECTOR_CONFIG_DIR/syncs/`` validated once, at load.

The YAML shape, the CLI and the environment variables are the public interface: fields may be
added, none may be renamed. Secrets are only ever ``${ENV}`` references; they are resolved when a
run needs them and never stored, logged or echoed back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

import yaml
from pydantic import (
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticKnownError, core_schema

from ..core.errors import ConfigError
from ..core.options import CommonOptions, DestinationSettings, Model, RateLimit
from ..destinations.registry import DESTINATIONS
from .env import check_env_refs, interpolate
from .mapping_checks import semantic_problems
from .sections import (
    AuditConfig,
    ChecksConfig,
    MappingConfig,
    PartitionsConfig,
    ScheduleConfig,
    SourceConfig,
    VerifyConfig,
)
from .yaml_file import (
    SyncFileLoader,
    dates_as_text,
    load_yaml,
    read_sync_file,
)

CONFIG_DIR_ENV = "CONNECTOR_CONFIG_DIR"
MAX_NAME = 63  # a sync name's length: it keys the state and names Dagster assets
_NAME_RULE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
WAREHOUSE_URL_ENV = "WAREHOUSE_URL"
DEFAULT_CONFIG_DIR = "config"

# An asset owner as Dagster takes it: an e-mail address or team:<name>.
_OWNER = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|team:[A-Za-z0-9_.-]+")

__all__ = [  # the option types live in ``options``; re-exported for existing imports
    "CommonOptions",
    "DestinationConfig",
    "DestinationSettings",
    "RateLimit",
    "SyncConfig",
]


# --------------------------------------------------------------------------- destinations


# Each destination module declares its options and config model; the registry lists them,
# event and contact destinations alike. A sync file's ``destination`` is validated against the
# one config model its ``type`` names, so parsing it imports that destination's module and no
# other; the JSON Schema is the union of every config model (discriminated by ``type``).
class _Destination:
    """The ``destination`` field's type: a discriminated union of the registry's config
    models, whose members are looked up (and their modules imported) one ``type`` at a time.
    Errors carry the same types, messages and locations as pydantic's own tagged union's,
    without its tag in the location."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(_validate_destination)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        models = tuple(c.config_model for c in DESTINATIONS.values())
        union: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
        return handler(TypeAdapter(union).core_schema)


def _validate_destination(value: Any, info: ValidationInfo) -> DestinationSettings:
    if isinstance(value, DestinationSettings):
        dtype: Any = getattr(value, "type", None)
    elif isinstance(value, dict):
        if "type" not in value:
            raise PydanticKnownError("union_tag_not_found", {"discriminator": "'type'"})
        dtype = value["type"]
    else:
        raise PydanticKnownError("model_attributes_type")
    if not isinstance(dtype, str) or dtype not in DESTINATIONS:
        raise PydanticKnownError(
            "union_tag_invalid",
            {
                "discriminator": "'type'",
                "tag": str(dtype),
                "expected_tags": ", ".join(repr(t) for t in DESTINATIONS),
            },
        )
    model = DESTINATIONS[dtype].config_model
    if isinstance(value, model):
        return value
    return model.model_validate(value, context=info.context)


if TYPE_CHECKING:
    DestinationConfig = DestinationSettings
else:
    DestinationConfig = _Destination


class SyncConfig(Model):
    """One sync: a source, a destination and the mapping between them."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
    description: str | None = None
    source: SourceConfig
    destination: DestinationConfig
    mapping: MappingConfig
    schedule: ScheduleConfig | None = None
    partitions: PartitionsConfig | None = None
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    owners: list[str] = Field(
        default_factory=list,
        description="Who owns the sync: e-mail addresses or team:<name> (shown as the Dagster "
        "asset's owners).",
    )
    verify: VerifyConfig | None = Field(
        None,
        description="Contact syncs: read a sample back from the vendor after each Dagster run "
        "(the landed_as_sent check) and the defaults of connector verify.",
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name_rule(cls, value: Any) -> Any:
        if isinstance(value, str) and not _NAME_RULE.match(value):
            shown = value if len(value) <= 40 else f"{value[:40]}… ({len(value)} characters)"
            raise ValueError(
                f"{shown!r} is not a valid sync name: a letter, then letters, digits or _, at "
                f"most {MAX_NAME} characters in all (it keys the sync's state and names its "
                "Dagster assets); rename it"
            )
        return value

    audit: AuditConfig | None = Field(
        None,
        description="Audit tables in the warehouse: one row per run, per row handled, and the "
        "latest result per key (docs/audit.md). Also on for every sync with env CONNECTOR_AUDIT.",
    )

    @field_validator("owners")
    @classmethod
    def _owner_form(cls, owners: list[str]) -> list[str]:
        for owner in owners:
            if not _OWNER.fullmatch(owner):
                raise ValueError(
                    f"{owner!r} is neither an e-mail address nor team:<name>; write e.g. "
                    f"team:{re.sub(r'[^A-Za-z0-9_-]+', '-', owner).strip('-') or 'growth'}"
                )
        return owners

    @field_validator("schedule", mode="before")
    @classmethod
    def _cron_shorthand(cls, value: Any) -> Any:
        return {"cron": value} if isinstance(value, str) else value

    # Where it was loaded from (for messages); not part of the YAML.
    source_path: str | None = Field(None, exclude=True, json_schema_extra={"readOnly": True})

    @property
    def is_contact_sync(self) -> bool:
        """A contact (profile) sync: a state diffed and sent when changed (connector.contacts);
        its destination's ``kind`` in the registry is ``contacts``."""
        return DESTINATIONS[self.destination.type].kind == "contacts"

    @model_validator(mode="after")
    def _flow_fields(self, info: ValidationInfo) -> SyncConfig:
        if self.is_contact_sync:
            if self.destination.max_rows_per_run is not None:
                raise ValueError(
                    "destination.max_rows_per_run: a contact sync sends what changed as a "
                    "whole (its diff finds removed rows); remove the option"
                )
            if self.partitions is not None:
                raise ValueError(
                    "partitions: a contact sync mirrors a state, not a time series; "
                    "remove partitions (every run sends what changed)"
                )
            return self  # mapping_checks checks the mapping of either kind
        if self.verify is not None:
            raise ValueError(
                f"verify: {self.destination.type} sends events, which connector verify cannot "
                "read back (docs/verify.md, Events); remove the verify block"
            )
        # Event syncs need a cursor, an event name and time: _semantic_problems reports each
        # missing one by its field; this catches a model built without parse_sync.
        loader = bool(info.context and info.context.get("loader"))
        if not loader and None in (
            self.source.cursor,
            self.mapping.event_name,
            self.mapping.event_time,
        ):
            raise ValueError(
                "source.cursor, mapping.event_name and mapping.event_time are required by "
                f"event destinations ({self.destination.type})"
            )
        return self

    @property
    def cursor(self) -> str:
        """The cursor column of an event sync (always set there, see ``_flow_fields``)."""
        assert self.source.cursor is not None
        return self.source.cursor


# --------------------------------------------------------------------------- loading


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_sync(text: str, where: str, *, check_env: bool = True) -> SyncConfig:
    """Parse and validate one YAML document; every problem is reported in one ConfigError."""
    loader = SyncFileLoader(text)
    try:
        raw = load_yaml(text, where, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name/source/destination/mapping")

    problems: list[str] = [f"{where}: {dup}" for dup in loader.duplicates]
    raw = interpolate(dates_as_text(raw), (), where, problems)
    if check_env:
        check_env_refs(raw, where, problems)
    model: SyncConfig | None = None
    try:
        model = SyncConfig.model_validate({**raw, "source_path": where}, context={"loader": True})
    except ValidationError as exc:
        for err in exc.errors():
            loc = _format_loc(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key; remove it or check its spelling"
            problems.append(f"{where}: {loc}: {msg}")
    problems.extend(f"{where}: {loc}: {msg}" for loc, msg in semantic_problems(raw))
    if problems or model is None:
        raise ConfigError(problems)
    return model


class SyncSet:
    """Every sync file in a config dir: the valid ones and, separately, the broken ones."""

    def __init__(
        self,
        syncs: dict[str, SyncConfig],
        errors: dict[str, ConfigError],
        duplicates: dict[str, ConfigError] | None = None,
        *,
        declared: dict[str, str] | None = None,
        missing_dir: Path | None = None,
    ) -> None:
        self.syncs = syncs
        self.errors = errors
        # Names used by more than one file -> the error naming every file.
        self.duplicates = duplicates or {}
        # The ``name:`` a broken file declares -> the file (so `sync <name>` finds it).
        self.declared = declared or {}
        # The config directory, when it does not exist.
        self.missing_dir = missing_dir

    def get(self, name: str) -> SyncConfig:
        if name in self.syncs:
            return self.syncs[name]
        if name in self.duplicates:
            raise self.duplicates[name]
        for path, err in self.errors.items():
            if Path(path).stem == name:
                raise err
        if name in self.declared:
            path = self.declared[name]
            raise ConfigError(
                [
                    f"{path} declares the sync {name!r}, but the file is not valid:",
                    *self.errors[path].problems,
                ]
            )
        if self.missing_dir is not None:
            what = "is not a directory" if self.missing_dir.exists() else "does not exist"
            raise ConfigError(
                f"no sync named {name!r}: the config directory {self.missing_dir} {what}; "
                f"pass --config-dir (or set {CONFIG_DIR_ENV}) to the directory that "
                "holds syncs/*.yaml"
            )
        known = ", ".join(sorted(self.syncs)) or "none"
        raise ConfigError(f"no sync named {name!r}; known syncs: {known}")


def load_syncs(
    directory: str | os.PathLike[str] | None = None, *, check_env: bool = True
) -> SyncSet:
    """Load ``<dir>/syncs/*.yaml``; a broken file never hides the valid ones."""
    root = config_dir(directory)
    syncs: dict[str, SyncConfig] = {}
    errors: dict[str, ConfigError] = {}
    files_of: dict[str, list[str]] = {}
    duplicates: dict[str, ConfigError] = {}
    declared: dict[str, str] = {}
    files = sorted([*root.glob("syncs/*.yaml"), *root.glob("syncs/*.yml")])
    for path in files:
        where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        text = None
        try:
            text = read_sync_file(path, where)
            sync = parse_sync(text, where, check_env=check_env)
        except ConfigError as exc:
            errors[where] = exc
            name = _declared_name(text)
            if name:
                declared.setdefault(name, where)
            continue
        files_of.setdefault(sync.name, []).append(where)
        syncs[sync.name] = sync
    # Two files with one name: neither runs (running either would write the other's checkpoint).
    for name, paths in files_of.items():
        if len(paths) > 1:
            del syncs[name]
            err = ConfigError(
                [
                    f"{p}: name: {name!r} is also used by "
                    f"{', '.join(o for o in paths if o != p)}; sync names must be unique "
                    "(they key the checkpoints): rename one"
                    for p in paths
                ]
            )
            for p in paths:
                errors[p] = err
            duplicates[name] = err
    missing = None if root.is_dir() else root
    return SyncSet(syncs, errors, duplicates, declared=declared, missing_dir=missing)


_NAME_LINE = re.compile(r"""^name:[ \t]*["']?([^"'#\n]*?)["']?[ \t]*(#.*)?$""", re.M)


def _declared_name(text: str | None) -> str | None:
    """The top-level ``name:`` of a sync file that did not load (None when there is none)."""
    m = _NAME_LINE.search(text or "")
    return m.group(1).strip() or None if m else None


def load_sync(
    name_or_path: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    check_env: bool = True,
) -> SyncConfig:
    """One sync by name (from the config dir) or by path to a YAML file."""
    candidate = Path(name_or_path)
    try:
        is_file = candidate.is_file()
    except OSError as exc:  # a name longer than a file name may be (ENAMETOOLONG)
        raise ConfigError(
            f"{name_or_path[:40]}… ({len(name_or_path)} characters): no such sync or file: "
            f"{exc.strerror}; a sync name is at most {MAX_NAME} characters (a letter, then "
            "letters, digits or _)"
        ) from None
    if candidate.suffix in (".yaml", ".yml") or is_file:
        if not candidate.is_file():
            raise ConfigError(f"{name_or_path}: no such file")
        text = read_sync_file(candidate, str(candidate))
        return parse_sync(text, str(candidate), check_env=check_env)
    return load_syncs(directory, check_env=check_env).get(name_or_path)


def json_schema() -> dict[str, Any]:
    """JSON Schema of one sync file, for editors (published as docs/sync.schema.json)."""
    schema = SyncConfig.model_json_schema(mode="validation")
    schema["properties"].pop("source_path", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Reverse-ETL sync"
    return schema
