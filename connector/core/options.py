"""Option types every destination shares: a leaf module (it imports nothing of the connector).

Each destination module declares its own options model (a subclass of ``CommonOptions``) and
its config model (a subclass of ``DestinationSettings`` with ``type: Literal[...]``);
``config`` validates a sync file's ``destination`` against the one config model its ``type``
names in the registry (``connector.destinations.registry``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A whole-value environment reference: ``${VAR}`` or ``${VAR:-default}``.
WHOLE_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$")


class Model(BaseModel):
    """Base of every config model: unknown keys are errors and loaded configs are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(Model):
    """Client-side pacing override; defaults come from the destination's documented limits."""

    per_second: float | None = Field(None, gt=0)
    per_minute: float | None = Field(None, gt=0)
    per_hour: float | None = Field(None, gt=0)


class CommonOptions(Model):
    """``destination.options`` every destination takes (delivery, pacing, circuit breaker)."""

    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(8, ge=0, le=100, description="Retries for 5xx/timeouts/resets.")
    max_wait_s: float = Field(60.0, gt=0, description="Cap on one rate-limit or backoff wait.")
    concurrency: int | None = Field(
        None, ge=1, le=64, description="Requests in flight; default per destination."
    )
    rate_limit: RateLimit | None = Field(None, description="Override the documented rate limit.")
    pacing: Literal["auto", "shared", "process"] = Field(
        "auto",
        description="Who shares the account's rate limit: 'shared' = every process using the "
        "same state store (its connector_pacer table), 'process' = this process only, 'auto' "
        "= shared when the state store is PostgreSQL.",
    )
    max_reject_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Circuit breaker: the run fails (no reject recorded, checkpoint kept) when "
        "the API rejects more than this share of the rows it answered for; 1 turns it off.",
    )
    reject_ratio_min_rows: int = Field(
        100,
        ge=1,
        le=100_000,  # batches with rejects wait in memory until this many rows were answered
        description="Rows the API must have answered for before the breaker judges.",
    )


class DestinationSettings(Model):
    """The ``destination`` block of a sync file: fields every destination has. A destination
    module subclasses it with ``type: Literal["<its type>"]`` and ``options: <its options>``."""

    type: str
    api_key: str = Field(description="A ${ENV_VAR} reference; secrets never live in YAML.")
    base_url: str | None = Field(None, description="Override of the vendor API root.")
    options: CommonOptions = Field(default_factory=CommonOptions)
    max_rows_per_run: int | None = Field(
        None,
        ge=1,
        description="Event syncs: send at most this many rows per run (CLI, demo and Dagster "
        "alike; a Dagster run over several partitions shares it); the checkpoint stops after "
        "the last row sent and the next run continues there. For slow destinations (one event "
        "per request) whose whole backlog would hold the account's pool for long.",
    )

    @field_validator("api_key")
    @classmethod
    def _env_reference(cls, value: str) -> str:
        if not WHOLE_ENV_REF.match(value):
            raise ValueError(
                "must be an environment reference like ${MY_API_KEY}; "
                "secrets are never written in config files"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL like http://127.0.0.1:8080")
        return value.rstrip("/") if value else value
