"""The scopes of one asset run (their counts are summed by ``connector.report.health.totals``)."""

from dataclasses import dataclass

from connector import Window


@dataclass(frozen=True)
class Scope:
    """One call of the core: a checkpoint scope and, for partitions, its time window."""

    name: str
    window: Window | None = None
    partition: str | None = None
