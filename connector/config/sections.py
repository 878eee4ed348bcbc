"""The sections of a sync file: source, mapping, schedule, partitions and checks (pydantic models;
the destination section is each destination's own config model, see ``destinations.registry``)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from ..core.options import Model

# --------------------------------------------------------------------------- source

#: ``source.lookback`` as a duration: a number and a unit (``read.lookback`` reads it).
LOOKBACK_DURATION = re.compile(r"(\d+)\s*(s|sec|m|min|h|d)")
OFF_WORDS = frozenset({"off", "no", "false", "none"})


class SourceConfig(Model):
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
    lookback: str | int | None = Field(
        None,
        description="How far behind the checkpoint each incremental run reads again, for rows "
        "that commit late (their cursor is older than rows already read); rows already "
        "delivered or rejected there are not sent again. A duration (90s, 15m, 1h, 2d) for a "
        "timestamp cursor (default 1h), whole days (1d or 1) for a date cursor (default 1 "
        "day), a count of cursor values for an integer or decimal cursor (default 10000); 0 "
        "or off disables it. See docs/design.md (lookback window).",
    )

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

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback_form(cls, value: Any) -> Any:
        # YAML reads a bare off/no/false as False.
        if value is False or (isinstance(value, str) and value.strip().lower() in OFF_WORDS):
            return 0
        if value is True or isinstance(value, float):
            raise ValueError("must be a duration like 1h, a count like 10000, or off")
        if isinstance(value, str):
            text = value.strip().lower()
            if text.isdigit():
                return int(text)
            if not LOOKBACK_DURATION.fullmatch(text):
                raise ValueError(
                    f"{value!r} is not a duration: write a number and a unit (s, m, h, d), "
                    "like 1h or 2d, a count like 10000, or off"
                )
            return text
        if isinstance(value, int) and value < 0:
            raise ValueError("must not be negative (0 or off disables the window)")
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


class ColumnRef(Model):
    """A value taken from a column instead of a literal."""

    column: str


class ObjectMapping(Model):
    """Brevo custom-object reference: ``object: {type, identifiers: {id, ext_id}}``."""

    type: str | ColumnRef = Field(
        description="Object type: a literal (e.g. subscription) or {column: type_col}."
    )
    id: str | None = Field(None, description="Column holding the internal object id.")
    ext_id: str | None = Field(None, description="Column holding the external object id.")


class MappingConfig(Model):
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


# --------------------------------------------------------------------------- orchestration


class ScheduleConfig(Model):
    """When Dagster runs the sync (a cron expression in a time zone)."""

    cron: str = Field(description="Cron expression, e.g. '0 * * * *'.")
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        from .cron import cron_problem

        problem = cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class PartitionsConfig(Model):
    """Time partitions of an event sync: backfills run by partition from the Dagster UI."""

    start: date = Field(description="First partition (date).")
    period: Literal["daily", "hourly"] = "daily"
    timezone: str = "UTC"
    lookback: int = Field(
        2, ge=0, le=90, description="Recent partitions a scheduled run re-checks for late rows."
    )


class ChecksConfig(Model):
    """Thresholds of the Dagster asset checks run after each sync."""

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
    nothing_missing: bool = Field(
        True,
        description="Event syncs: the nothing_missing check (connector reconcile's comparison "
        "of source rows per day with the rows the sync handled) after each run; one GROUP BY "
        "on the source per scope run (docs/design.md, Reconcile). false turns it off.",
    )


class VerifyConfig(Model):
    """``verify:`` — the Dagster check ``landed_as_sent`` after each run of a contact sync,
    and the defaults of ``connector verify`` (docs/verify.md)."""

    sample: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Confirmed contacts read back from the vendor after each run and compared "
        "with the warehouse (each costs one read request).",
    )
    read_share: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="Share of the account's rate the reads may take; a sync running at the "
        "same time keeps the rest.",
    )


# --------------------------------------------------------------------------- audit


class AuditConfig(Model):
    """Audit tables in the warehouse (docs/audit.md): what each run did, row by row."""

    enabled: bool = Field(
        True, description="Write the audit tables for this sync (false: not even with the env)."
    )
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database the audit tables go to (may be a ${ENV} "
        "reference). Default: the sync's warehouse; for an embedded DuckDB file (opened "
        "read-only) a file beside it, <file>.audit.duckdb.",
    )
    schema_: str = Field(
        "reverse_etl_audit",
        alias="schema",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Schema of the audit tables (runs, changelog, snapshot).",
    )
    retention_days: int = Field(
        90,
        ge=1,
        le=36_500,
        description="Runs and changelog rows older than this are deleted at the end of a run "
        "(the snapshot keeps the latest result of every contact key; an event key leaves it "
        "with its changelog row).",
    )
