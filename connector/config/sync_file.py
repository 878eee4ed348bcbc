"""Sync configuration: YAML files under ``$CONNECTOR_CONFIG_DIR/syncs/`` validated once, at load.

The YAML shape, the CLI and the environment variables are the public interface: fields may be
added, none may be renamed. Secrets are only ever ``${ENV}`` references; they are resolved when a
run needs them and never stored, logged or echoed back.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from typing_extensions import override

from ..core.errors import ConfigError
from ..core.options import CommonOptions, DestinationSettings, Model, RateLimit
from ..destinations.registry import DESTINATIONS
from .mapping_checks import semantic_problems

CONFIG_DIR_ENV = "CONNECTOR_CONFIG_DIR"
WAREHOUSE_URL_ENV = "WAREHOUSE_URL"
DEFAULT_CONFIG_DIR = "config"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Fields that may hold secrets: kept as ${ENV} references until a run resolves them.
_LAZY_FIELDS = {("destination", "api_key"), ("source", "url")}
# Every value under these is lazy too (passwords, key passphrases for the warehouse driver).
_LAZY_BLOCKS = {("source", "connect_args")}
# The only fields where ${ENV} references are allowed (documented): anywhere else a reference
# would copy any environment variable into names or payloads sent to a vendor.
_ENV_FIELDS = {*_LAZY_FIELDS, ("destination", "base_url")}
_ENV_FIELDS_TEXT = (
    "destination.api_key, destination.base_url, source.url and the values of source.connect_args"
)
# A sync file is a few KB; the limits keep one bad file from taking the CLI or the Dagster code
# location down (a 271-byte alias bomb expands to millions of nodes).
MAX_SYNC_FILE_BYTES = 256 * 1024
MAX_YAML_NODES = 100_000
# An asset owner as Dagster takes it: an e-mail address or team:<name>.
_OWNER = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|team:[A-Za-z0-9_.-]+")

__all__ = [  # the option types live in ``options``; re-exported for existing imports
    "CommonOptions",
    "DestinationConfig",
    "DestinationSettings",
    "RateLimit",
    "SyncConfig",
]


_Model = Model


# --------------------------------------------------------------------------- source


class SourceConfig(_Model):
    """Where rows come from and how they are ordered."""

    table: str | None = Field(None, description="Table to read, optionally schema-qualified.")
    query: str | None = Field(
        None, description="Any SELECT (joins allowed); wrapped as a subquery."
    )
    cursor: str | None = Field(
        None,
        description="High-water-mark column: timestamp/timestamptz, date or integer. Required "
        "by event syncs; optional for contact syncs (unset: every run scans the table).",
    )
    primary_key: list[str] = Field(
        description="Unique row key: tie-breaker for the cursor and the source of dedup ids."
    )
    url: str | None = Field(
        None,
        description="SQLAlchemy URL (may be a ${ENV} reference). "
        "Default: env WAREHOUSE_URL, else the demo DuckDB file.",
    )
    connect_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments handed to the warehouse driver's connect() (e.g. "
        "private_key_file and private_key_file_pwd for Snowflake key-pair auth); string "
        "values may be ${ENV} references, resolved when a run connects. See docs/warehouses.md.",
    )
    timezone: str = Field("UTC", description="Zone of naive timestamp columns.")
    chunk_size: int = Field(5_000, ge=100, le=1_000_000, description="Rows read per page.")

    @field_validator("primary_key", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("primary_key")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one column")
        if len(set(value)) != len(value):
            raise ValueError("lists a column twice")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like UTC") from None
        return value

    @field_validator("query")
    @classmethod
    def _select_only(cls, value: str | None) -> str | None:
        if value is None:
            return value
        stripped = value.strip().rstrip(";").strip()
        if not re.match(r"(?is)^(select|with)\b", stripped):
            raise ValueError("must be a SELECT (or WITH ... SELECT) statement")
        if ";" in stripped:
            raise ValueError("must be a single statement (remove the ';')")
        return stripped

    @model_validator(mode="after")
    def _table_xor_query(self) -> SourceConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of source.table or source.query")
        return self


# --------------------------------------------------------------------------- mapping


class ColumnRef(_Model):
    """A value taken from a column instead of a literal."""

    column: str


class ObjectMapping(_Model):
    """Brevo custom-object reference: ``object: {type, identifiers: {id, ext_id}}``."""

    type: str | ColumnRef = Field(
        description="Object type: a literal (e.g. subscription) or {column: type_col}."
    )
    id: str | None = Field(None, description="Column holding the internal object id.")
    ext_id: str | None = Field(None, description="Column holding the external object id.")


class MappingConfig(_Model):
    """Which columns become the event, its contact and its properties."""

    event_name: str | ColumnRef | None = Field(
        None, description="Literal event name, or {column: name_col} (event syncs)."
    )
    event_time: str | None = Field(
        None, description="Column with the event time, sent with an offset (event syncs)."
    )
    identifiers: dict[str, str] = Field(
        description="Destination identifier field -> column (e.g. email: email)."
    )
    event_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Property name -> column. Dotted names (video.title) build nested objects.",
    )
    contact_properties: dict[str, str] = Field(
        default_factory=dict, description="Contact attribute -> column."
    )
    value: str | None = Field(None, description="Column with a monetary value (Klaviyo value).")
    value_currency: str | ColumnRef | None = Field(
        None, description="ISO 4217 currency, literal or {column: ...}."
    )
    object: ObjectMapping | None = Field(None, description="Brevo custom-object reference.")

    @field_validator("event_name")
    @classmethod
    def _name_not_blank(cls, value: str | ColumnRef | None) -> str | ColumnRef | None:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty; write the event name or use {column: name_column}")
        return value

    @field_validator("identifiers")
    @classmethod
    def _at_least_one(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("map at least one identifier (e.g. email: email_column)")
        return value

    def columns(self) -> set[str]:
        """Every warehouse column this mapping reads."""
        cols = {*self.identifiers.values()}
        if self.event_time:
            cols.add(self.event_time)
        cols |= set(self.event_properties.values()) | set(self.contact_properties.values())
        if isinstance(self.event_name, ColumnRef):
            cols.add(self.event_name.column)
        if self.value:
            cols.add(self.value)
        if isinstance(self.value_currency, ColumnRef):
            cols.add(self.value_currency.column)
        if self.object:
            cols |= {c for c in (self.object.id, self.object.ext_id) if c}
            if isinstance(self.object.type, ColumnRef):
                cols.add(self.object.type.column)
        return cols


# --------------------------------------------------------------------------- destinations


# Each destination module declares its options and config model; the registry lists them,
# event and contact destinations alike.
if TYPE_CHECKING:
    DestinationConfig = DestinationSettings
else:
    DestinationConfig = Annotated[
        Union[tuple(cls.config_model for cls in DESTINATIONS.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]

# --------------------------------------------------------------------------- orchestration


class ScheduleConfig(_Model):
    cron: str = Field(description="Cron expression, e.g. '0 * * * *'.")
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5 and not value.startswith("@"):
            raise ValueError("must be a 5-field cron expression like '0 * * * *'")
        return value


class PartitionsConfig(_Model):
    start: date = Field(description="First partition (date).")
    period: Literal["daily", "hourly"] = "daily"
    timezone: str = "UTC"
    lookback: int = Field(
        2, ge=0, le=90, description="Recent partitions a scheduled run re-checks for late rows."
    )


class ChecksConfig(_Model):
    reject_ratio_warn: float = Field(0.01, ge=0, le=1)
    reject_ratio_error: float = Field(0.05, ge=0, le=1)
    max_lag_hours: float = Field(24.0, gt=0)
    # Contact syncs (the Dagster checks changed_ratio and removed_rows, docs/dagster.md).
    changed_ratio_warn: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Contact syncs: warn when more than this share of the already confirmed "
        "rows changed in one run (a mapping change or a rebuilt source table re-sends them).",
    )
    removed_ratio_warn: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Contact syncs: warn when more than this share of the confirmed contacts "
        "vanished from the source in one run.",
    )
    removed_ratio_error: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Contact syncs: the removed_rows check fails with ERROR severity above "
        "this share (an emptied or half-loaded source table?).",
    )


class SyncConfig(_Model):
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
            if self.partitions is not None:
                raise ValueError(
                    "partitions: a contact sync mirrors a state, not a time series; "
                    "remove partitions (every run sends what changed)"
                )
            return self  # mapping_checks checks the mapping of either kind
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


# --------------------------------------------------------------------------- env references


def resolve_env(value: str, where: str) -> str:
    """Substitute ``${VAR}`` / ``${VAR:-default}`` references; missing variables are errors."""
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        missing.append(var)
        return ""

    out = _ENV_REF.sub(sub, value)
    if missing:
        names = ", ".join(missing)
        raise ConfigError(
            f"{where}: environment variable {names} is not set; "
            f"export it (or write ${{{missing[0]}:-default}})"
        )
    return out


def _in_lazy_block(path: tuple[str, ...]) -> bool:
    return any(path[: len(block)] == block for block in _LAZY_BLOCKS)


def resolve_tree(node: Any, where: str) -> Any:
    """``resolve_env`` on every string of a nested value (``source.connect_args``)."""
    if isinstance(node, dict):
        return {k: resolve_tree(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_tree(v, f"{where}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        return resolve_env(node, where)
    return node


def _interpolate(node: Any, path: tuple[str, ...], where: str, problems: list[str]) -> Any:
    if _in_lazy_block(path):
        return node  # resolved when a run connects (resolve_tree); checked by _check_env
    if isinstance(node, dict):
        return {k: _interpolate(v, (*path, str(k)), where, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*path, str(i)), where, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and path not in _ENV_FIELDS and _ENV_REF.search(node):
        problems.append(
            f"{where}: {'.'.join(path)}: environment references (${{...}}) are allowed only in "
            f"{_ENV_FIELDS_TEXT}; write the value itself"
        )
        return node
    if isinstance(node, str) and "${" in node and path not in _LAZY_FIELDS:
        try:
            return resolve_env(node, f"{where}: {'.'.join(path)}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    return node


def _check_env(raw: dict[str, Any], where: str, problems: list[str]) -> None:
    for path in _LAZY_FIELDS:
        node: Any = raw
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str):
            try:
                resolve_env(node, f"{where}: {'.'.join(path)}")
            except ConfigError as exc:
                problems.extend(exc.problems)
    for block in _LAZY_BLOCKS:
        node = raw
        for part in block:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            try:
                resolve_tree(node, f"{where}: {'.'.join(block)}")
            except ConfigError as exc:
                problems.extend(exc.problems)


# --------------------------------------------------------------------------- loading


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # Drop the discriminator tag pydantic inserts for the destination union.
    if len(parts) > 1 and parts[0] == "destination" and parts[1] in _destination_types():
        parts.pop(1)
    return ".".join(parts) or "(top level)"


def _destination_types() -> set[str]:
    return set(DESTINATIONS)


class _Loader(yaml.SafeLoader):
    """Safe YAML that notes a key written twice in one mapping (plain YAML keeps the last
    value and silently drops the first: a mapped property would vanish)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    @override
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool, date)) and key in seen:
                self.duplicates.append(
                    f"key {key!r} is written twice in one mapping (lines {seen[key]} and "
                    f"{line}); YAML would keep only the last: remove one"
                )
            elif isinstance(key, (str, int, float, bool, date)):
                seen[key] = line
        return super().construct_mapping(node, deep)


def _dates_as_text(node: Any) -> Any:
    """YAML reads a bare 2026-07-15 as a date; every field taking one takes its ISO text
    (``options: {revision: 2026-07-15}`` unquoted, as the docs write it)."""
    if isinstance(node, dict):
        return {_dates_as_text(k): _dates_as_text(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_dates_as_text(v) for v in node]
    if isinstance(node, date) and not isinstance(node, datetime):
        return node.isoformat()
    return node


def _load_yaml(text: str, where: str, yl: yaml.SafeLoader) -> Any:
    """``yaml.safe_load`` with a size limit and a bound on alias expansion.

    The node graph is composed first (aliases share nodes, so that is cheap) and its expanded
    size counted before anything is built: a file that expands past ``MAX_YAML_NODES`` nodes,
    or aliases itself, is refused instead of being expanded by the checks that walk it.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SYNC_FILE_BYTES:
        raise ConfigError(
            f"{where}: file is {size:,} bytes; sync files are limited to "
            f"{MAX_SYNC_FILE_BYTES:,} bytes"
        )
    try:
        node = yl.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), where)
        return yl.construct_document(node)
    except RecursionError:  # the composer and the walk recurse once per nesting level
        raise ConfigError(
            f"{where}: YAML nested too deeply; a sync file needs a few levels"
        ) from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], where: str) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise ConfigError(f"{where}: a YAML alias refers to itself; remove the recursive alias")
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(n, sizes, open_, where) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_, where) + _expanded_size(v, sizes, open_, where)
    open_.discard(key)
    if size > MAX_YAML_NODES:
        raise ConfigError(
            f"{where}: YAML aliases expand to more than {MAX_YAML_NODES:,} values; "
            "write the values out or use fewer aliases"
        )
    sizes[key] = size
    return size


def parse_sync(text: str, where: str, *, check_env: bool = True) -> SyncConfig:
    """Parse and validate one YAML document; every problem is reported in one ConfigError."""
    loader = _Loader(text)
    try:
        raw = _load_yaml(text, where, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with name/source/destination/mapping")

    problems: list[str] = [f"{where}: {dup}" for dup in loader.duplicates]
    raw = _interpolate(_dates_as_text(raw), (), where, problems)
    if check_env:
        _check_env(raw, where, problems)
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
    ) -> None:
        self.syncs = syncs
        self.errors = errors
        # Names used by more than one file -> the error naming every file.
        self.duplicates = duplicates or {}

    def get(self, name: str) -> SyncConfig:
        if name in self.syncs:
            return self.syncs[name]
        if name in self.duplicates:
            raise self.duplicates[name]
        for path, err in self.errors.items():
            if Path(path).stem == name:
                raise err
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
    files = sorted([*root.glob("syncs/*.yaml"), *root.glob("syncs/*.yml")])
    for path in files:
        where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        try:
            sync = parse_sync(_read_sync_file(path, where), where, check_env=check_env)
        except ConfigError as exc:
            errors[where] = exc
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
    return SyncSet(syncs, errors, duplicates)


def _read_sync_file(path: Path, where: str) -> str:
    """A sync file's text; an oversized or unreadable file is a config error naming it."""
    try:
        if not path.is_file():  # a FIFO would block the read forever
            raise ConfigError(f"{where}: not a regular file; sync files are plain YAML files")
        size = path.stat().st_size
        if size > MAX_SYNC_FILE_BYTES:
            raise ConfigError(
                f"{where}: file is {size:,} bytes; sync files are limited to "
                f"{MAX_SYNC_FILE_BYTES:,} bytes"
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the file: {exc}") from None


def load_sync(
    name_or_path: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    check_env: bool = True,
) -> SyncConfig:
    """One sync by name (from the config dir) or by path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{name_or_path}: no such file")
        text = _read_sync_file(candidate, str(candidate))
        return parse_sync(text, str(candidate), check_env=check_env)
    return load_syncs(directory, check_env=check_env).get(name_or_path)


def json_schema() -> dict[str, Any]:
    """JSON Schema of one sync file, for editors (published as docs/sync.schema.json)."""
    schema = SyncConfig.model_json_schema(mode="validation")
    schema["properties"].pop("source_path", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Reverse-ETL sync"
    return schema
