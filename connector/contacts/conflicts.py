"""Identifier conflicts of a contact sync, within a run and across runs.

Two source rows (two keys) with one identifier (an e-mail, case-insensitive; a phone; an
external id...) would write one profile at the vendor: each run would overwrite it with the
other row's values. The first row the vendor confirmed owns the identifier: its value is
stored with its key (``connector_contact_idents``, written in the transaction that stores the
row's hash, ``HashStore.confirm``). Before a row is sent, ``Conflicts.screen`` looks up the
identifiers of the rows about to be sent (one ``IN`` query per identifier and 5,000 values,
only for rows that changed) and compares them with the rows of this run still in flight; a
row whose identifier belongs to another key is a reject naming that key and the fix, and stays
one (its hash is not stored, so every run diffs it again) until the source is fixed: the owner's
identifier changes (its confirmation frees the old value), or the owner's row is removed from
the source (before rejecting a row, the owners it would conflict with are looked up in the
source by key, once per page that has any: an owner no longer there lets go of its
identifiers and the row is sent — a re-keyed row moves its profile at once). An identifier
mapped from a one-column primary key (other than an e-mail) cannot conflict and is not
tracked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from .hashes import HashStore

Pair = tuple[str, str]  # (identifier name, value; e-mails lower-cased)


class Row(Protocol):
    """A row about to be sent, as ``screen`` reads it (``JobRow``)."""

    @property
    def key(self) -> str:
        """The row's primary key as text."""

    @property
    def identifiers(self) -> Mapping[str, str]:
        """Identifier name → value."""


def tracked_kinds(
    identifier_fields: Sequence[str], identifiers: Mapping[str, str], primary_key: Sequence[str]
) -> tuple[str, ...]:
    """The identifier names a sync's conflicts are checked on: those it maps, but one mapped
    from a one-column primary key (its values are unique as the keys are), unless an e-mail
    (``A@x`` and ``a@x`` are two keys and one address)."""
    single = primary_key[0] if len(primary_key) == 1 else None
    return tuple(
        name
        for name in identifier_fields
        if name in identifiers and (name == "email" or identifiers[name] != single)
    )


def pairs(identifiers: Mapping[str, str], kinds: Sequence[str]) -> list[Pair]:
    """The tracked identifiers of a row, compared as the vendors compare them."""
    out = []
    for kind in kinds:
        value = identifiers.get(kind)
        if value:
            if kind == "email":
                low = value.lower()
                value = value if low == value else low  # the row's own string when equal
            out.append((kind, value))
    return out


class Conflicts:
    """The identifier conflicts of one contact run (see the module docstring).

    ``pending`` holds the identifiers of this run's rows that are screened and not yet
    settled (name → value → key; ``claims``: each such key's, its value alone when one name
    is tracked — the run holds one per row in flight, so they are kept small); a settled
    job's rows (confirmed: now stored; refused: owned by nobody) leave it at the next
    ``screen``, after the store was read, so no identifier is ever in neither.
    """

    def __init__(
        self,
        sync: str,
        hashes: HashStore,
        kinds: tuple[str, ...],
        *,
        present: Callable[[list[str]], set[str]] | None = None,
        dry_run: bool = False,
    ) -> None:
        self.sync = sync
        self.hashes = hashes
        self.kinds = kinds
        self.present = present  # which of these keys the source still has (None: all)
        self.dry_run = dry_run  # frees nothing in the store
        self.pending: dict[str, dict[str, str]] = {kind: {} for kind in kinds}
        self.claims: dict[str, str | tuple[Pair, ...]] = {}
        self.single = kinds[0] if len(kinds) == 1 else None
        self.settled: list[str] = []
        self.count = 0  # rows rejected as conflicts
        self.freed = 0  # owners found gone from the source, their identifiers let go

    def screen(self, rows: Sequence[Row]) -> dict[int, str]:
        """For rows about to be sent (``key`` and ``identifiers`` each, in order): row index
        → why it conflicts with a confirmed row of another key or with a row sent earlier in
        this run. The rows found free are claimed (later rows with their identifiers
        conflict)."""
        if not self.kinds or not rows:
            return {}
        settled, self.settled = self.settled, []
        kinds = self.kinds
        per_row = [pairs(r.identifiers, kinds) for r in rows]
        wanted: dict[str, set[str]] = {}
        for ps in per_row:
            for kind, value in ps:
                wanted.setdefault(kind, set()).add(value)
        stored = {k: self.hashes.owners(self.sync, k, sorted(v)) for k, v in wanted.items()}
        self._drop_vanished(rows, per_row, stored)
        pending, claims, single = self.pending, self.claims, self.single
        for key in settled:
            claim = claims.pop(key, None)
            if claim is None:
                continue
            held = ((single or "", claim),) if isinstance(claim, str) else claim
            for kind, value in held:
                owned = pending[kind]
                if owned.get(value) == key:
                    del owned[value]
        reasons: dict[int, str] = {}
        for i, (row, ps) in enumerate(zip(rows, per_row, strict=True)):
            key = row.key
            reason = None
            for kind, value in ps:
                other = stored[kind].get(value)
                if other is not None and other != key:
                    reason = stored_conflict(kind, other)
                    break
                other = pending[kind].get(value)
                if other is not None and other != key:
                    reason = (
                        f"identifier conflict: its {kind} is also the {kind} of row {other}, "
                        "sent earlier in this run; one profile per identifier: fix the "
                        "duplicate in the source"
                    )
                    break
            if reason is not None:
                reasons[i] = reason
                continue
            if ps:
                claims[key] = ps[0][1] if single is not None else tuple(ps)
                for kind, value in ps:
                    pending[kind][value] = key
        self.count += len(reasons)
        return reasons

    def moved(self, rows: Sequence[Row]) -> list[str]:
        """The keys of these rows (changed rows, about to be sent) whose e-mail is not the
        one their key owns since the vendor last confirmed it (case aside)."""
        if "email" not in self.kinds or not rows:
            return []
        owned = self.hashes.owned_by(self.sync, "email", [r.key for r in rows])
        out = []
        for row in rows:
            old = owned.get(row.key)
            new = row.identifiers.get("email")
            if old is not None and new and new.lower() != old:
                out.append(row.key)
        return out

    def settle(self, keys: Sequence[str]) -> None:
        """These rows' job finished (confirmed or refused): their identifiers leave
        ``pending`` at the next ``screen``."""
        if self.kinds:
            self.settled += keys

    def _drop_vanished(
        self, rows: Sequence[Row], per_row: list[list[Pair]], stored: dict[str, dict[str, str]]
    ) -> None:
        """Owners of the stored conflicts found that the source no longer has: their
        identifiers are freed (in the store, and in ``stored``)."""
        owners = {
            other
            for row, ps in zip(rows, per_row, strict=True)
            for kind, value in ps
            if (other := stored[kind].get(value)) is not None and other != row.key
        }
        if not owners or self.present is None:
            return
        gone = owners - self.present(sorted(owners))
        if not gone:
            return
        for owned in stored.values():
            for value in [v for v, k in owned.items() if k in gone]:
                del owned[value]
        self.freed += len(gone)
        if not self.dry_run:
            self.hashes.free(self.sync, sorted(gone))


def stored_conflict(kind: str, other: str) -> str:
    """The reject reason of a row whose ``kind`` belongs to the confirmed row ``other``."""
    return (
        f"identifier conflict: its {kind} is the {kind} of row {other}, which the vendor "
        f"already holds (confirmed by an earlier run); sending this row would overwrite that "
        f"profile. Fix the source: give one of the two rows another {kind} (or remove row "
        f"{other}); this row stays a reject until then"
    )
