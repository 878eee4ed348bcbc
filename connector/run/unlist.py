"""Taking vanished contacts off the sync's list(s) (``options.on_removed: unlist``).

After its jobs, a contact run hands the ords of the stored rows whose source row vanished
(``contacts.differ``) to ``Unlister.unlist``: their contacts are removed from the list(s) in
requests of ``max_unlist_per_request``, and their stored hashes go (a row that comes back is
new). A contact the vendor refused is a reject (tried again next run); one stored before
identifiers were is a reject too (it cannot be named to the vendor). One that shares an
identifier with a row this run added (the row was re-keyed) or with a stored row still in the
source (two rows, one contact) is only forgotten: the contact is still in the source.
"""

from __future__ import annotations

from ..audit.tables import CONTACT_REMOVED, CONTACT_UNLISTED
from ..contacts.hashes import HashStore
from ..core.errors import ConnectorError
from ..core.logcontext import get_logger
from ..core.options import DestinationSettings
from ..destinations.contact_endpoint import ContactDestination, Gone, identity
from ..store.state import CLOSED_GONE, INCREMENTAL, Reject, StateStore
from .result import ContactResult
from .shell import RunShell

log = get_logger("connector.contacts")

ADDED_IDS_MAX = 100_000  # identifiers of added rows kept; past it, this run unlists nothing
SHARED_SCAN = 50_000  # removed contacts checked per scan of the stored identifiers


class Unlister:
    """What one run unlists: ``note_added`` the identifiers of each row it adds, then
    ``unlist`` the vanished rows."""

    def __init__(
        self,
        dest: ContactDestination[DestinationSettings],
        hashes: HashStore,
        state: StateStore,
        result: ContactResult,
    ) -> None:
        self.dest = dest
        self.hashes = hashes
        self.state = state
        self.res = result
        # Identifiers of the rows this run added: a removed row whose contact one of them
        # carries (a re-keyed row) is forgotten, not unlisted. None: too many to keep.
        self.added: set[tuple[str, str]] | None = set()

    def note_added(self, identifiers: dict[str, str]) -> None:
        """A row this run adds (no stored hash), with its contact's identifiers."""
        if self.added is None:
            return
        self.added.update(identity(identifiers))
        if len(self.added) > ADDED_IDS_MAX:
            self.added = None  # too many to keep: this run unlists nothing

    def unlist(self, gone: list[bytes], shell: RunShell) -> None:
        """Remove the vanished contacts (their ords: ``gone``) from the sync's list(s); the
        check for contacts that live on is one pass over the sync's stored identifiers per
        ``SHARED_SCAN`` removed rows."""
        name = self.res.sync
        size = max(1, self.dest.max_unlist_per_request)
        added = self.added
        if added is None:
            log.warning(
                "%s: %d removed contacts are not taken off the list this run: it added more "
                "than %d rows, too many to check that none of them is the same contact; the "
                "next run does it",
                name,
                len(gone),
                ADDED_IDS_MAX,
            )
            return
        ratio = getattr(self.dest.options, "max_unlist_ratio", 1.0)
        stored = self.hashes.count(name)  # the vanished ones included
        if ratio < 1 and len(gone) > ratio * stored:
            raise ConnectorError(
                f"{len(gone):,} of the {stored:,} contacts this sync confirmed vanished from the "
                f"source, more than options.max_unlist_ratio ({ratio:g}): nothing was taken off "
                "the list. If the source is right, raise max_unlist_ratio (1 = no limit) and run "
                "again; if it was emptied or half loaded, fix it first"
            )
        vanished = set(gone)
        kept = 0
        for part in range(0, len(gone), SHARED_SCAN):
            rows = [
                row
                for start in range(part, min(part + SHARED_SCAN, len(gone)), 1000)
                for row in self.hashes.gone(name, gone[start : start + 1000])
            ]
            wanted = {p for _, idents in rows if idents for p in identity(idents)} - added
            # Identifiers that a stored row still in the source carries: that contact lives on.
            live = self.hashes.identifiers_in_use(name, wanted, vanished) if wanted else set()
            for start in range(0, len(rows), 1000):
                known: list[Gone] = []
                for key, idents in rows[start : start + 1000]:
                    if idents and any(p in added or p in live for p in identity(idents)):
                        # The contact lives on under another key (a re-keyed row, or another
                        # row with the same identifier): forget this key, leave the contact.
                        shell.handled([key], CONTACT_REMOVED)
                        shell.audit_commit()
                        self.hashes.delete(name, [key])
                        kept += 1
                    elif idents:
                        known.append(Gone(key, idents))
                    else:
                        shell.rejected(
                            [
                                Reject(
                                    key,
                                    "removed from the source, but confirmed before the "
                                    "connector stored contacts' identifiers, so it cannot be "
                                    "removed from the list: remove it by hand",
                                )
                            ],
                            operation=CONTACT_UNLISTED,
                        )
                self._group(known, size, shell)
        if kept:
            log.info(
                "%s: %d removed rows share an identifier with a row still in the source: "
                "forgotten, their contacts left on the list",
                name,
                kept,
            )

    def _group(self, known: list[Gone], size: int, shell: RunShell) -> None:
        """Take ``known`` off the list in requests of ``size``; forget those the vendor
        took off, reject those it refused."""
        name = self.res.sync
        for g in range(0, len(known), size):
            group = known[g : g + size]
            shell.check_lease()
            refused = self.dest.unlist(group)
            shell.rejected(
                [Reject(group[j].key, reason) for j, reason in refused.items()],
                operation=CONTACT_UNLISTED,
            )
            done = [row.key for j, row in enumerate(group) if j not in refused]
            shell.handled(done, CONTACT_UNLISTED)
            shell.audit_commit()
            self.hashes.delete(name, done)
            if self.res.run_id:
                self.state.close_rejects(name, INCREMENTAL, done, self.res.run_id, CLOSED_GONE)
            self.res.unlisted += len(done)
            shell.tick()
