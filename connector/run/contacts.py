"""The contact diff strategy: one run of one contact sync, read → hash → diff → jobs → poll →
confirm → store hashes, inside the run shell (``shell.RunShell``: lease, run record, rows
handled, progress, timing).

Counts (``ContactResult``): ``added`` (no stored hash), ``changed`` (stored hash differs),
``unchanged`` (equal: nothing sent), ``rejected`` (locally or by the vendor; sent again by
later runs), ``jobs`` and ``polls``; ``delivered`` is the rows the vendor confirmed.
A run that fails (a request error, a cancelled or timed-out job, errors that name no row)
leaves the rows of unfinished jobs unconfirmed: the next run sends them again. With a cursor,
the checkpoint moves to the last row read only when the run succeeds; open rejects of earlier
runs (rows before the checkpoint) are re-read by key and diffed too.

What is particular to diffing is ``contacts.differ`` (merge or lookups, removed rows); the
jobs are ``contact_jobs``; ``removed`` rows are taken off the list with ``options.on_removed:
unlist`` by ``unlist`` (see docs/contacts.md, "Removed rows").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..audit import recorder_for
from ..audit.tables import CONTACT_ADDED, CONTACT_CHANGED
from ..config.sync_file import SyncConfig
from ..contacts.conflicts import Conflicts, tracked_kinds
from ..contacts.diff import Page
from ..contacts.differ import Differ, unlist_problem
from ..contacts.hashes import HashStore
from ..contacts.merge import Ahead, Merge
from ..core.errors import ConfigError, ConnectorError, RequestError, SourceError
from ..core.logcontext import get_logger
from ..deliver.delivery import Runtime, Stats
from ..deliver.factory import make_contact_destination
from ..destinations.contact_endpoint import Contact, JobRow
from ..map.mapper import Chunk
from ..read.readahead import read_ahead
from ..read.source import Reader, warehouse_url
from ..store.lease import Lease
from ..store.state import INCREMENTAL, StateStore
from ..warehouses.registry import warehouse_for
from .contact_jobs import Jobs, compact_payload, reject
from .result import ContactResult, SyncResult
from .shell import RunShell
from .unlist import Unlister

__all__ = ["ContactResult", "ContactRun", "preview_contacts", "run_contacts"]

log = get_logger("connector.contacts")

# Rows screened for conflicts at a time: one identifier lookup per name for them, and no
# more of them held beside the jobs (a whole page, 10,000, cost ~7 MiB of peak RSS).
SCREEN_ROWS = 2_000


class ContactRun:
    """One run of one contact sync; ``execute`` runs it once in the run shell (see the module
    docstring).

    ``full_refresh`` ignores the checkpoint and the stored hashes (every row is sent);
    ``dry_run`` reads, hashes and diffs but sends and writes nothing; ``limit`` caps the rows
    read; ``progress`` is called with the result so far (at most once a second, and at the
    end); ``lease``: one the caller holds (else the run takes it, unless ``dry_run``).
    """

    def __init__(
        self,
        sync: SyncConfig,
        state: StateStore,
        *,
        full_refresh: bool = False,
        dry_run: bool = False,
        limit: int | None = None,
        runtime: Runtime | None = None,
        progress: Callable[[SyncResult], None] | None = None,
        warehouse_url: str | None = None,
        transport: Any = None,
        lease: Lease | None = None,
    ) -> None:
        self.sync = sync
        self.state = state
        self.lease = lease
        self.hashes = HashStore(state)
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.limit = limit
        self.rt = runtime or Runtime()
        self.progress = progress
        self.warehouse_url = warehouse_url
        self.stats = Stats()
        self.dest = make_contact_destination(
            sync,
            resolve_secret=not dry_run,
            runtime=self.rt,
            stats=self.stats,
            state=state,
            transport=transport,
        )
        self.res = ContactResult(sync=sync.name, scope=INCREMENTAL, run_id=None)
        self.differ = Differ(
            sync, self.hashes, full_refresh=full_refresh, dry_run=dry_run, limit=limit
        )
        self.unlisting = False  # on_removed: unlist, and not a dry run (set by ``run``)
        self.unlister = Unlister(self.dest, self.hashes, state, self.res)
        kinds = tracked_kinds(
            self.dest.identifier_fields, sync.mapping.identifiers, sync.source.primary_key
        )
        self.hashes.ident_kinds = kinds
        self.conflicts = Conflicts(sync.name, self.hashes, kinds, dry_run=dry_run)
        self._read_upto: tuple[Any, ...] | None = None  # cursor mode: the last row read
        self.previews: list[dict[str, Any]] | None = None  # preview: the job requests
        self._moved_sample: str | None = None  # a key whose e-mail changed (the warning)

    @property
    def merge(self) -> Merge | None:
        """The run's ordered merge (None: it looks keys up)."""
        return self.differ.merge

    def execute(self) -> ContactResult:
        """Read, diff and send every changed row, wait for the jobs and store what they
        confirmed; then move the checkpoint (cursor syncs) and record the run.

        Returns the run's ``ContactResult`` (also recorded in the state store).

        Raises:
            LeaseHeld: another run of the sync holds its lease; nothing was read or sent.
            RequestError: a request, a job or its outcome failed, or rows stay unconfirmed;
                the run is recorded as failed and its unconfirmed rows are sent again next run.
            ConnectorError: the source, the state store or the vendor refused otherwise.
        """
        shell = RunShell(
            self.state,
            self.res,
            self.stats,
            dry_run=self.dry_run,
            clock=self.rt.clock,
            progress=self.progress,
            lease=self.lease,
            audit=recorder_for(
                self.sync, self.state, INCREMENTAL, self.warehouse_url, dry_run=self.dry_run
            ),
        )
        try:
            shell.execute(self)
        finally:
            self.dest.http.close()
        return self.res

    # -- the strategy ------------------------------------------------------------------
    def run(self, shell: RunShell) -> None:
        """The run's work inside the shell (see ``execute``)."""
        jobs = Jobs(
            shell,
            self.dest,
            self.hashes,
            self.state,
            self.res,
            self.rt,
            dry_run=self.dry_run,
            previews=self.previews,
            conflicts=self.conflicts,
        )
        full_scan = self.sync.source.cursor is None
        with Reader(self.sync, self.warehouse_url, byte_order=full_scan) as reader:
            if not self.dry_run and self.dest.has_preflight():
                problems = self.dest.preflight(self.sync, reader.column_types())
                if problems:
                    raise ConfigError(problems)
            unlist = str(getattr(self.dest.options, "on_removed", "keep")) in ("unlist", "untag")
            self.unlisting = unlist and not self.dry_run
            self.conflicts.present = self._present(reader)
            self.differ.setup(reader, unlist=unlist, collect=self.unlisting)
            # Closed on a failure too: an embedded warehouse's open result is let go now.
            chunks = read_ahead(
                lambda: self.differ.read(self._chunks(reader)), name=f"read-{self.sync.name}"
            )
            with contextlib.closing(chunks) as it:
                for chunk, ahead in it:
                    self._page(self.differ.page(chunk, ahead), ahead, jobs, shell)
                    shell.tick()
        self._removed_after_scan()
        jobs.finish()
        self._warn_moved()
        if self.differ.gone:
            gone, self.differ.gone = self.differ.gone, []
            self.unlister.unlist(gone, shell)
        if self.res.unconfirmed:
            raise RequestError(
                f"{self.res.unconfirmed} rows stay unconfirmed: {self.res.error or 'unknown'}"
                " (they are sent again by the next run)"
            )
        if self._read_upto is not None and not self.dry_run:
            self.state.set_checkpoint(self.sync.name, INCREMENTAL, self._read_upto, shell.run_id)
            self.res.hwm_after = list(self._read_upto)

    def _chunks(self, reader: Reader) -> Iterator[Chunk]:
        if self.sync.source.cursor is None:
            yield from reader.pages(None, None, self.limit)
            return
        after = None if self.full_refresh else self.state.checkpoint(self.sync.name)
        self.res.hwm_before = list(after) if after else None
        retried: set[str] = set()
        if after is not None:
            # Rows before the checkpoint that the vendor refused or we rejected: read again.
            keys = self.state.open_reject_keys(self.sync.name, INCREMENTAL)
            retried = set(keys)
            yield from reader.rows_by_keys(keys)
        # The lookback window: rows that committed late behind the checkpoint are read too
        # (``read.lookback``); the stored hashes skip the ones already confirmed.
        start = reader.widen(after)[0] if self.limit is None else after
        for chunk in reader.pages(start, None, self.limit):
            if retried:
                keys = self.differ.hasher.keys(chunk)
                keep = [i for i, k in enumerate(keys) if k not in retried]
                if len(keep) < len(keys):
                    chunk = Chunk(chunk.table.take(keep), chunk.json_columns)
            if chunk.table.num_rows:
                last = chunk.table.slice(chunk.table.num_rows - 1)
                cols = [reader.cursor, *reader.pk]
                upto = tuple(last.column(c)[0].as_py() for c in cols)
                if after is None or upto > after:  # never back into the window
                    self._read_upto = upto
            yield chunk

    def _page(self, page: Page, ahead: Ahead | None, jobs: Jobs, shell: RunShell) -> None:
        res = self.res
        n = len(page)
        res.rows_read += n
        todo, added = self.differ.diff(page, ahead)
        res.removed = self.differ.removed
        res.unchanged += n - len(todo)
        ready: list[tuple[JobRow, Contact | None, bool]] = []
        for i, new in zip(todo, added, strict=True):
            key, h = page.keys[i], page.hashes[i]
            if new:
                res.added += 1
            else:
                res.changed += 1
            shell.note(key, CONTACT_ADDED if new else CONTACT_CHANGED)  # audit rows
            if i in page.reasons:
                shell.rejected([reject(key, page.reasons[i])])
                continue
            contact = page.contact(i)
            if new and self.unlisting:
                self.unlister.note_added(contact.identifiers)
            reason = self.dest.check(contact)
            if reason is not None:
                shell.rejected([reject(key, reason)])
                continue
            payload = self.dest.encode(contact)
            too_big = self.dest.too_big(payload)
            if too_big is not None:
                shell.rejected([reject(key, too_big, payload)])
                continue
            # Held until screened, SCREEN_ROWS at a time: right-sized (orjson keeps a 4 KiB
            # buffer per payload), the ``Contact`` only when the job keeps it.
            row = JobRow(key, h, contact.identifiers, compact_payload(payload))
            ready.append((row, contact if jobs.keep_contacts else None, new))
            if len(ready) >= SCREEN_ROWS:
                self._send(ready, jobs, shell)
                ready = []
        self._send(ready, jobs, shell)

    def _send(
        self, ready: list[tuple[JobRow, Contact | None, bool]], jobs: Jobs, shell: RunShell
    ) -> None:
        """Screen rows for identifier conflicts (rejects), note those whose e-mail changed,
        and put the others in jobs."""
        if not ready:
            return
        clashes = self.conflicts.screen([row for row, _, _ in ready])
        moved = self.conflicts.moved(  # before the rows' jobs can confirm their new e-mails
            [row for j, (row, _, new) in enumerate(ready) if not new and j not in clashes]
        )
        if moved:
            self.res.email_changed += len(moved)
            self._moved_sample = self._moved_sample or moved[0]
        for j, (row, kept, new) in enumerate(ready):
            if j in clashes:
                shell.rejected([reject(row.key, clashes[j], row.payload)])
            else:
                jobs.add(row, kept, new=new and not self.full_refresh)
        self.res.conflicts = self.conflicts.count

    def _removed_after_scan(self) -> None:
        """After the pages: the stored rows after the last key vanished too (a full scan);
        a cursor run that unlists scans the source's keys for vanished rows."""
        if self.differ.needs_key_scan():
            with Reader(self.sync, self.warehouse_url, keys_only=True, byte_order=True) as keys:
                self.differ.scan_keys(keys.pages(None, None, None))
        else:
            self.differ.finish_scan()
        self.res.removed = self.differ.removed

    def _warn_moved(self) -> None:
        """Rows whose e-mail changed, where the vendor finds the profile by e-mail only (no
        ``stable_ids`` identifier mapped): each made a new profile; say so."""
        res = self.res
        stable = [n for n in self.dest.stable_ids if n in self.sync.mapping.identifiers]
        if not res.email_changed or stable:
            return
        how = (
            f"map {' or '.join(self.dest.stable_ids)} from the primary key so that the same "
            "profile is updated"
            if self.dest.stable_ids
            else "it finds contacts by e-mail (or phone) only"
        )
        log.warning(
            "%s: %d rows changed their e-mail (e.g. key %s): %s made a new profile for each "
            "new address and the old profile keeps its values (%s; docs/contacts.md, 'A row "
            "whose e-mail changes')",
            self.sync.name,
            res.email_changed,
            self._moved_sample,
            self.dest.type,
            how,
        )

    def _present(self, reader: Reader) -> Callable[[list[str]], set[str]]:
        """Which of these keys the source still has (owners of conflicting identifiers);
        a key type that cannot be read back by key counts every key as present."""

        def present(keys: list[str]) -> set[str]:
            found: set[str] = set()
            try:
                for chunk in reader.rows_by_keys(keys):
                    found.update(self.differ.hasher.keys(chunk))
            except SourceError as exc:
                log.info("%s: owners of identifiers not looked up: %s", self.sync.name, exc)
                return set(keys)
            return found

        return present


def contact_problems(
    sync: SyncConfig, types: dict[str, str], warnings: list[str] | None = None
) -> list[str]:
    """``connector validate``: what the destination's preflight finds (an unknown Brevo
    attribute...), asking the vendor with the sync's own key; [] when it asks nothing. What
    the sync will do that the user may not expect goes to ``warnings`` (``validate_warnings``)."""
    problem = unlist_problem(sync, types, key_order=warehouse_for(warehouse_url(sync)).key_order)
    if problem is not None:
        return [problem]
    dest = make_contact_destination(sync)
    try:
        if warnings is not None:
            warnings += dest.validate_warnings(sync)
        if not dest.has_preflight():
            return []
        return dest.preflight(sync, types)
    except ConfigError:
        raise
    except ConnectorError as exc:
        return [f"{sync.source_path or sync.name}: could not check the destination: {exc}"]
    finally:
        dest.http.close()


def run_contacts(sync: SyncConfig, state: StateStore | None = None, **kwargs: Any) -> ContactResult:
    """Run one contact sync to completion (see ``ContactRun``)."""
    return ContactRun(sync, state or StateStore.open(), **kwargs).execute()


def preview_contacts(
    sync: SyncConfig, limit: int = 5, warehouse_url: str | None = None
) -> dict[str, Any]:
    """The job request(s) the first ``limit`` rows would make, and how many of them are new,
    changed or unchanged against the stored hashes. Sends nothing, writes nothing."""
    run = ContactRun(
        sync, StateStore.open(), dry_run=True, limit=limit, warehouse_url=warehouse_url
    )
    run.previews = []
    res = run.execute()
    return {
        "requests": run.previews,
        "rejects": res.sample_rejects,
        "counts": {"added": res.added, "changed": res.changed, "unchanged": res.unchanged},
    }


def print_contact_summary(res: ContactResult, out: Any) -> None:
    """The CLI summary of a contact run (``--json`` prints ``res.to_dict()``)."""
    dry = res.status == "dry_run"
    lines = [
        f"{res.sync}: {res.status}",
        f"  rows read           {res.rows_read:,}",
        f"  added               {res.added:,}",
        f"  changed             {res.changed:,}"
        + (f"  ({res.email_changed:,} with another e-mail)" if res.email_changed else ""),
        f"  unchanged           {res.unchanged:,}  (nothing sent)",
        f"  removed             {res.removed:,}"
        + (f"  ({res.unlisted:,} removed from the list)" if res.unlisted else ""),
        f"  {'would send' if dry else 'sent':<19} {res.sent:,}",
        f"  delivered           {res.delivered:,}  (confirmed by the vendor)",
        f"  rejected            {res.rejected:,}  (sent again by the next run)"
        + (f"  ({res.conflicts:,} identifier conflicts)" if res.conflicts else ""),
        f"  jobs                {res.jobs:,} ({res.polls:,} polls, {res.requests:,} requests, "
        f"{res.retries:,} retries, {res.rate_limited:,} rate-limited)",
    ]
    if res.hwm_before is not None or res.hwm_after is not None:
        lines.append(
            "  checkpoint          "
            + (", ".join(map(str, res.hwm_before)) if res.hwm_before else "(start)")
            + " -> "
            + (", ".join(map(str, res.hwm_after)) if res.hwm_after else "(unchanged)")
        )
    lines.append(f"  duration            {res.duration_s:.2f}s ({res.rows_per_s:,.0f} rows/s)")
    if res.sample_rejects:
        lines.append("  sample rejects:")
        lines += [f"    {key}: {reason}" for key, reason in res.sample_rejects[:5]]
        lines.append(f"  (all of them: connector rejects {res.sync})")
    if res.error:
        lines.append(f"  error: {res.error}")
    print("\n".join(lines), file=out)
