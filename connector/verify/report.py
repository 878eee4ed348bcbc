"""What ``connector verify`` found: the match rate and each difference, judged field by field.

Kinds of difference (``Difference.kind``):

- ``never_landed``: the vendor has no contact with the row's identifier, though the state store
  says it confirmed it;
- ``changed_at_vendor``: the field differs and the vendor says the contact changed after we
  confirmed it (its updated time is at or after our confirmation time, to the vendor's
  precision): someone or something at the vendor changed it since;
- ``changed_in_warehouse``: the row changed in the warehouse since it was confirmed (its hash
  differs): the next sync sends it, so the difference is expected;
- ``not_as_sent``: the field differs and nothing above explains it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TextIO

NEVER_LANDED = "never_landed"
CHANGED_AT_VENDOR = "changed_at_vendor"
CHANGED_IN_WAREHOUSE = "changed_in_warehouse"
NOT_AS_SENT = "not_as_sent"


def same(name: str, sent: Any, found: Any) -> bool:
    """Whether the vendor holds ``sent`` for field ``name``: numbers by value (``9.1`` and
    ``9.10``), e-mail addresses without case, times by instant, a sent phone among the
    contact's phones."""
    if isinstance(sent, bool) or isinstance(found, bool):
        return type(sent) is type(found) and sent == found  # True is not 1
    if sent == found:
        return True
    if isinstance(sent, int | float) and isinstance(found, int | float):
        return float(sent) == float(found)
    if isinstance(sent, str) and isinstance(found, list):
        return sent in found
    if isinstance(sent, str) and isinstance(found, str):
        if name.rsplit(".", 1)[-1].lower() == "email":
            return sent.lower() == found.lower()
        return _instant(sent) is not None and _instant(sent) == _instant(found)
    return False


def _instant(text: str) -> datetime | None:
    if len(text) < 19 or text[4] != "-" or "T" not in text[:11].upper():
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


@dataclass
class Difference:
    """One field of one contact that the vendor does not hold as the warehouse says."""

    key: str
    field: str
    sent: Any  # what the warehouse row maps to now
    found: Any  # what the vendor holds (None: absent)
    kind: str


@dataclass
class VerifyReport:
    """One ``verify`` of one sync."""

    sync: str
    destination: str
    endpoint: str = ""
    cannot: str = ""  # why this destination cannot be verified ('' when it can)
    sampled: int = 0  # confirmed contacts drawn from the state store
    checked: int = 0  # of those, read back and compared
    matched: int = 0  # of those, every field as the warehouse says
    gone_from_source: int = 0  # sampled keys no longer in the source (not compared)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    differences: list[Difference] = field(default_factory=list)
    read_share: float = 0.0
    requests: int = 0

    @property
    def match_rate(self) -> float | None:
        """Matched / checked (None when nothing was checked)."""
        return self.matched / self.checked if self.checked else None

    @property
    def ok(self) -> bool:
        """Every checked contact matched, and at least one was checked."""
        return not self.cannot and self.checked > 0 and self.matched == self.checked

    def counts(self) -> dict[str, int]:
        """Differences per kind."""
        out: dict[str, int] = {}
        for d in self.differences:
            out[d.kind] = out.get(d.kind, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``--json``)."""
        out = asdict(self)
        out["unreadable"] = [{"key": k, "reason": r} for k, r in self.unreadable]
        out["match_rate"] = self.match_rate
        out["ok"] = self.ok
        out["difference_counts"] = self.counts()
        return out

    def print(self, out: TextIO) -> None:
        """The text report."""
        head = f"{self.sync} ({self.destination})"
        if self.cannot:
            print(f"{head}: cannot verify: {self.cannot}", file=out)
            return
        rate = f"{self.match_rate:.1%}" if self.match_rate is not None else "n/a"
        print(
            f"{head}: {self.matched:,} of {self.checked:,} contacts as sent ({rate}); "
            f"{self.sampled:,} sampled",
            file=out,
        )
        print(
            f"  read back through {self.endpoint}, {self.requests:,} requests at "
            f"{self.read_share:.0%} of the account's rate",
            file=out,
        )
        if self.gone_from_source:
            print(f"  {self.gone_from_source:,} sampled keys are no longer in the source", file=out)
        for key, why in self.unreadable:
            print(f"  {key}: not read back: {why}", file=out)
        if not self.sampled:
            print("  nothing to compare: no contact is confirmed yet; run the sync first", file=out)
        elif not self.checked:
            print("  nothing to compare: no sampled contact could be read back", file=out)
        if self.differences:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(self.counts().items()))
            print(f"  differences ({counts}):", file=out)
            print("    key\tfield\tsent\tfound\tkind", file=out)
            for d in self.differences:
                print(f"    {d.key}\t{d.field}\t{d.sent!r}\t{d.found!r}\t{d.kind}", file=out)
