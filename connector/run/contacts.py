"""One run of one contact sync: read → hash → diff → jobs → poll → confirm → store hashes.

Counts (``ContactResult``): ``added`` (no stored hash), ``changed`` (stored hash differs),
``unchanged`` (equal: nothing sent), ``rejected`` (locally or by the vendor; sent again by
later runs), ``jobs`` and ``polls``; ``delivered`` is the rows the vendor confirmed.
A run that fails (a request error, a cancelled or timed-out job, errors that name no row)
leaves the rows of unfinished jobs unconfirmed: the next run sends them again. With a cursor,
the checkpoint moves to the last row read only when the run succeeds; open rejects of earlier
runs (rows before the checkpoint) are re-read by key and diffed too.

``removed`` counts stored contacts whose source row vanished (a full scan's ordered merge,
``merge``); with ``options.on_removed: unlist`` they are taken off the list after the jobs
(``unlisted``) and their hashes forgotten. See docs/contacts.md, "Removed rows".
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.sync_file import SyncConfig, resolve_env
from ..contacts.diff import Hasher, Page
from ..contacts.hashes import HashStore
from ..contacts.keyorder import KeyOrder, Unordered, kinds_for
from ..contacts.merge import Ahead, Merge
from ..core.errors import ConfigError, ConnectorError, RequestError, mask_url
from ..core.logcontext import get_logger, run_context
from ..deliver.contact_pacing import contact_pacer
from ..deliver.delivery import Runtime
from ..deliver.job_http import JobHTTP
from ..destinations.contact_base import (
    Contact,
    ContactDestination,
    Gone,
    JobRow,
    JobStats,
    identity,
)
from ..destinations.contact_registry import CONTACT_DESTINATIONS
from ..map.mapper import Chunk
from ..read.readahead import read_ahead
from ..read.source import Reader
from ..store.lease import Lease
from ..store.state import CLOSED_DELIVERED, CLOSED_GONE, INCREMENTAL, Reject, StateStore
from .contact_breaker import ContactBreaker
from .result import SAMPLE_REJECTS, SyncResult, _describe

log = get_logger("connector.contacts")

_ADDED_IDS_MAX = 100_000
_SHARED_SCAN = 50_000  # removed contacts checked per scan of the stored identifiers


@dataclass
class ContactResult(SyncResult):
    """A contact run's counts (``delivered`` = rows the vendor confirmed)."""

    kind: str = "contacts"
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    sent: int = 0
    jobs: int = 0
    polls: int = 0
    unconfirmed: int = 0
    unlisted: int = 0


def make_contact_destination(
    sync: SyncConfig,
    stats: JobStats,
    runtime: Runtime,
    *,
    resolve_secret: bool = True,
    transport: Any = None,
    state: StateStore | None = None,
) -> ContactDestination:
    """Build the contact destination of ``sync`` with its paced, retrying ``JobHTTP`` client.

    The API key and a ``${ENV}`` base URL are resolved from the environment unless
    ``resolve_secret`` is false (a dry run: the key becomes ``***``). The pace is the
    destination's ``options.rate_limit`` or the vendor's documented rate, shared per account
    (``contacts.pacing``: through ``state``'s pacer table as ``options.pacing`` says, and with
    the event syncs of the account where the vendor has one limit for both). ``transport``
    replaces httpx's (tests, the sandbox). Requests counted go to ``stats``.

    Raises:
        ConfigError: an ``${ENV}`` reference names an unset variable.
    """
    dest: Any = sync.destination
    cls = CONTACT_DESTINATIONS[dest.type]
    where = f"{sync.source_path or sync.name}: destination"
    api_key = resolve_env(dest.api_key, where + ".api_key") if resolve_secret else "***"
    base_url = (
        resolve_env(dest.base_url, where + ".base_url") if dest.base_url else cls.default_base_url
    ).rstrip("/")
    from ..config.sync_file import RateLimit

    rate = dest.options.rate_limit or RateLimit(
        per_second=cls.rate_per_second, per_minute=cls.rate_per_minute
    )
    pacer = contact_pacer(cls, dest.options, base_url, api_key, rate, runtime, state)
    http = JobHTTP(
        base_url,
        {},
        dest.options,
        pacer.acquire,
        stats,
        sleep=runtime.sleep,
        random=runtime.random,
        transport=transport,
        pause=pacer.pause,
        name=cls.type,
    )
    out = cls(dest, api_key, sync.name, http)
    http.client.headers.update(out.headers())
    return out


# Rows of one job at most, whatever the vendor allows: the run holds every row of its open and
# in-flight jobs (``jobs_in_flight`` + 1) until the vendor confirms them, ~0.8 KB each. A limit
# by bytes alone (Brevo's 8 MiB) let a job of short contacts hold 40,000 rows and more.
ROWS_PER_JOB = 10_000
# Hashes stored per statement: the parameters of 10,000 rows peaked at ~6 MiB (measured).
CONFIRM_ROWS = 2_000


@dataclass
class _Job:
    """One import job: its rows (all a confirmation needs), the ``Contact`` of each row only
    when the destination's ``after_confirm`` needs it, and, while it fills, its size and the
    identifiers it holds (for conflicts; dropped once submitted)."""

    rows: list[JobRow] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    size: int = 0
    seen: dict[str, dict[str, str]] = field(default_factory=dict)  # name → value → row key
    job_id: str | None = None
    started: float = 0.0


def _compact(payload: bytes) -> bytes:
    """A right-sized copy of a payload the job keeps until the vendor confirms it. orjson
    (3.12+) returns ``bytes`` whose buffer stays at its initial 4 KiB however short the JSON
    is: 10,000 kept profiles of ~450 bytes held 40 MiB instead of 5 (measured)."""
    return bytes(memoryview(payload))


class ContactRun:
    """One run of one contact sync; ``execute`` runs it once (see the module docstring).

    ``full_refresh`` ignores the checkpoint and the stored hashes (every row is sent);
    ``dry_run`` reads, hashes and diffs but sends and writes nothing; ``limit`` caps the rows
    read; ``progress`` is called with the result so far after each page and each job.
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
        self.lease = lease  # held by run_sync around the run (not for dry runs)
        self.hashes = HashStore(state)
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.limit = limit
        self.rt = runtime or Runtime()
        self.progress = progress
        self.warehouse_url = warehouse_url
        self.stats = JobStats()
        self.dest = make_contact_destination(
            sync, self.stats, self.rt, resolve_secret=not dry_run, transport=transport, state=state
        )
        self.hasher = Hasher(sync)
        self.breaker = ContactBreaker(
            self.dest.type, self.dest.options, lambda k, r, p: self._reject(k, r, p, api=True)
        )
        self.res = ContactResult(sync=sync.name, scope=INCREMENTAL, run_id=None)
        self.job = _Job()
        self.outstanding: deque[_Job] = deque()
        self.rejects: list[Reject] = []
        self._read_upto: tuple[Any, ...] | None = None  # cursor mode: the last row read
        self.previews: list[dict[str, Any]] | None = None  # preview: the job requests
        self.merge: Merge | None = None  # the ordered diff of a full scan (else lookups)
        self.gone: list[bytes] = []  # ords of vanished rows to unlist (on_removed: unlist)
        self._key_scan: Merge | None = None  # a cursor run's search for vanished rows
        # Identifiers of the rows this run added (unlisting only): a removed row whose
        # contact one of them carries (a re-keyed row) is forgotten, not unlisted.
        self._added_ids: set[tuple[str, str]] | None = set()

    # -- reading ---------------------------------------------------------------------
    def _on_removed(self) -> str:
        return str(getattr(self.dest.options, "on_removed", "keep"))

    def _setup_diff(self, reader: Reader) -> None:
        """Choose how this run diffs (``hashes``): the key's order encoding, if it has one,
        makes confirmed rows store their ord; a full scan of an ordered warehouse then
        merges, anything else looks keys up. Stored keys without an ord get one first."""
        types = reader.column_types()
        kinds = kinds_for([types.get(c) for c in self.sync.source.primary_key])
        order = KeyOrder(kinds) if kinds is not None else None
        if self.dry_run:
            self.hashes.order = order
            if order is not None and self.hashes.needs_prepare(self.sync.name, order):
                order = None  # a dry run writes nothing: look keys up this time
        else:
            self.hashes.prepare(self.sync.name, order)
        whole = self.limit is None and not self.full_refresh
        if order is not None and whole and self.sync.source.cursor is None and reader.key_order:
            self.merge = Merge(self.hashes, self.sync.name, order, collect=self._unlisting())
            self.hasher.order = order  # pages carry their ords
        elif order is not None and whole and self._on_removed() == "unlist" and reader.key_order:
            # A cursor run: vanished rows are found by a key-only scan after the run's pages.
            self._key_scan = Merge(self.hashes, self.sync.name, order, collect=self._unlisting())
        elif self._on_removed() == "unlist" and whole:
            log.warning(
                "%s: on_removed: unlist needs an integer or text primary key on a warehouse "
                "ordering keys by their bytes (docs/warehouses.md) to find removed rows; none "
                "are removed this run",
                self.sync.name,
            )

    def _unlisting(self) -> bool:
        return self._on_removed() == "unlist" and not self.dry_run

    def _read(self, reader: Reader) -> Iterator[tuple[Chunk, Ahead | None]]:
        """The run's chunks, each with its stored range's aggregate when the merge reads it
        ahead (``merge.Prefetch``). Runs in the read-ahead thread, one page ahead of the
        hashing: the warehouse read and the state store's query overlap the mapping."""
        prefetch = self.merge.prefetch() if self.merge is not None else None
        for chunk in self._chunks(reader):
            ords = None
            if prefetch is not None and self.merge is not None:  # (None: fell back to lookups)
                ords = self.hasher.ords(chunk)
            yield chunk, prefetch.ahead(ords) if prefetch is not None and ords is not None else None

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
        for chunk in reader.pages(after, None, self.limit):
            if retried:
                keys = self.hasher.keys(chunk)
                keep = [i for i, k in enumerate(keys) if k not in retried]
                if len(keep) < len(keys):
                    chunk = Chunk(chunk.table.take(keep), chunk.json_columns)
            if chunk.table.num_rows:
                last = chunk.table.slice(chunk.table.num_rows - 1)
                cols = [reader.cursor, *reader.pk]
                self._read_upto = tuple(last.column(c)[0].as_py() for c in cols)
            yield chunk

    # -- the run -----------------------------------------------------------------------
    def execute(self) -> ContactResult:
        """Read, diff and send every changed row, wait for the jobs and store what they
        confirmed; then move the checkpoint (cursor syncs) and record the run.

        Returns the run's ``ContactResult`` (also recorded in the state store).

        Raises:
            RequestError: a request, a job or its outcome failed, or rows stay unconfirmed;
                the run is recorded as failed and its unconfirmed rows are sent again next run.
            ConnectorError: the source, the state store or the vendor refused otherwise.
        """
        # Log records of the run (any thread it starts) name the sync and the run id.
        with run_context(self.sync.name, lambda: self.res.run_id):
            return self._execute()

    def _execute(self) -> ContactResult:
        started = time.perf_counter()
        failure: BaseException | None = None
        if not self.dry_run:
            self.res.run_id = self.state.start_run(self.sync.name, INCREMENTAL)
        try:
            full_scan = self.sync.source.cursor is None
            with Reader(self.sync, self.warehouse_url, byte_order=full_scan) as reader:
                if not self.dry_run and self.dest.has_preflight():
                    problems = self.dest.preflight(self.sync, reader.column_types())
                    if problems:
                        raise ConfigError(problems)
                self._setup_diff(reader)
                # Closed on a failure too: an embedded warehouse's open result is let go now.
                pages = read_ahead(lambda: self._read(reader), name=f"read-{self.sync.name}")
                with contextlib.closing(pages) as it:
                    for chunk, ahead in it:
                        self._page(self.hasher.page(chunk, ahead and ahead.ords), ahead)
                        self._report()
            self._removed_after_scan()
            self._flush()
            while self.outstanding:
                self._finish_job(self.outstanding.popleft())
            self.breaker.release()
            if self.gone:
                self._unlist()
            if self.res.unconfirmed:
                raise RequestError(
                    f"{self.res.unconfirmed} rows stay unconfirmed (see above); they are sent "
                    "again by the next run"
                )
            if self._read_upto is not None and not self.dry_run:
                with self.state._tx() as c:
                    self.state._set_checkpoint(
                        c, self.sync.name, INCREMENTAL, self._read_upto, self.res.run_id or ""
                    )
                self.res.hwm_after = list(self._read_upto)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._record_rejects()
            self._finish(started, failure)
            self.dest.http.close()
        return self.res

    def _page(self, page: Page, ahead: Ahead | None = None) -> None:
        res = self.res
        n = len(page)
        res.rows_read += n
        todo, added = self._diff(page, ahead)
        res.unchanged += n - len(todo)
        for i, new in zip(todo, added, strict=True):
            key, h = page.keys[i], page.hashes[i]
            if new:
                res.added += 1
            else:
                res.changed += 1
            if i in page.reasons:
                self._reject(key, page.reasons[i])
                continue
            contact = page.contact(i)
            if new and self._added_ids is not None and self._unlisting():
                self._note_added(contact.identifiers)
            reason = self.dest.check(contact)
            if reason is not None:
                self._reject(key, reason)
                continue
            payload = self.dest.encode(contact)
            too_big = self.dest.too_big(payload)
            if too_big is not None:
                self._reject(key, too_big, payload)
                continue
            self._add(JobRow(key, h, contact.identifiers, payload), contact)

    def _diff(self, page: Page, ahead: Ahead | None) -> tuple[Sequence[int], Sequence[bool]]:
        """The rows of ``page`` to send and, for each, whether it is new (no stored hash)."""
        n = len(page)
        if self.full_refresh:
            return range(n), [True] * n
        if self.merge is not None:
            try:
                if page.ords is None:
                    raise Unordered("a page's key values have no order encoding")
                d = self.merge.page(page.ords, page.hashes, ahead)
            except Unordered as exc:
                log.warning(
                    "%s: %s; this run diffs by key lookups from here on and counts no removed rows",
                    self.sync.name,
                    exc,
                )
                self.merge = None
                self.res.removed = 0
                self.gone = []
            else:
                self.res.removed += d.vanished
                self.gone += d.gone
                return d.todo, d.added
        stored = self.hashes.lookup(self.sync.name, page.keys)
        hashes = page.hashes
        todo = [i for i in range(n) if stored.get(page.keys[i]) != hashes[i]]
        return todo, [page.keys[i] not in stored for i in todo]

    # -- removed rows --------------------------------------------------------------------
    def _removed_after_scan(self) -> None:
        """After the pages: the stored rows after the last key vanished too (a full scan);
        a cursor run that unlists scans the source's keys for vanished rows."""
        if self.merge is not None:
            self._rest(self.merge)
            return
        scan = self._key_scan
        if scan is None:
            return
        with Reader(self.sync, self.warehouse_url, keys_only=True, byte_order=True) as keys:
            for chunk in keys.pages(None, None, None):
                pk = [chunk.table.column(c).combine_chunks() for c in self.sync.source.primary_key]
                try:
                    d = scan.page(scan.order.page(pk), None)
                except Unordered as exc:
                    log.warning("%s: %s; no removed rows this run", self.sync.name, exc)
                    self.gone = []
                    return
                self.res.removed += d.vanished
                self.gone += d.gone
        self._rest(scan)

    def _rest(self, merge: Merge) -> None:
        while True:
            got = merge.rest()
            if not got:
                return
            self.res.removed += len(got)
            if merge.collect:
                self.gone += got

    def _note_added(self, identifiers: dict[str, str]) -> None:
        ids = self._added_ids
        assert ids is not None
        ids.update(identity(identifiers))
        if len(ids) > _ADDED_IDS_MAX:
            self._added_ids = None  # too many to keep: this run unlists nothing

    def _unlist(self) -> None:
        """Remove the vanished contacts from the sync's list(s) (``on_removed: unlist``), in
        requests of ``max_unlist_per_request``; their stored hashes go (a row that comes
        back is new). A contact the vendor refused is a reject (tried again next run); one
        stored before identifiers were is a reject too (it cannot be named to the vendor).
        One that shares an identifier with a row this run added (the row was re-keyed) or
        with a stored row still in the source (two rows, one contact) is only forgotten: the
        contact is still in the source. That check is one pass over the sync's stored
        identifiers per ``_SHARED_SCAN`` removed rows."""
        dest, name = self.dest, self.sync.name
        size = max(1, dest.max_unlist_per_request)
        gone, self.gone = self.gone, []
        added = self._added_ids
        if added is None:
            log.warning(
                "%s: %d removed contacts are not taken off the list this run: it added more "
                "than %d rows, too many to check that none of them is the same contact; the "
                "next run does it",
                name,
                len(gone),
                _ADDED_IDS_MAX,
            )
            return
        ratio = getattr(dest.options, "max_unlist_ratio", 1.0)
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
        for part in range(0, len(gone), _SHARED_SCAN):
            rows = [
                row
                for start in range(part, min(part + _SHARED_SCAN, len(gone)), 1000)
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
                        self.hashes.delete(name, [key])
                        kept += 1
                    elif idents:
                        known.append(Gone(key, idents))
                    else:
                        self._reject(
                            key,
                            "removed from the source, but confirmed before the connector "
                            "stored contacts' identifiers, so it cannot be removed from the "
                            "list: remove it by hand",
                        )
                self._unlist_group(known, size)
        if kept:
            log.info(
                "%s: %d removed rows share an identifier with a row still in the source: "
                "forgotten, their contacts left on the list",
                name,
                kept,
            )

    def _unlist_group(self, known: list[Gone], size: int) -> None:
        """Take ``known`` off the list in requests of ``size``; forget those the vendor
        took off, reject those it refused."""
        name = self.sync.name
        for g in range(0, len(known), size):
            group = known[g : g + size]
            self._check_lease()
            refused = self.dest.unlist(group)
            for j, reason in refused.items():
                self._reject(group[j].key, reason)
            done = [row.key for j, row in enumerate(group) if j not in refused]
            self.hashes.delete(name, done)
            if self.res.run_id:
                self.state.close_rejects(name, INCREMENTAL, done, self.res.run_id, CLOSED_GONE)
            self.res.unlisted += len(done)
            self._report()

    def _add(self, row: JobRow, contact: Contact) -> None:
        dest = self.dest
        if (
            len(self.job.rows) >= min(dest.max_per_job, ROWS_PER_JOB)
            or self.job.size + len(row.payload) + 1 + dest.job_overhead() > dest.max_job_bytes
        ):
            self._flush()
        idents = []
        for name in dest.identifier_fields:
            value = row.identifiers.get(name)
            if not value:
                continue
            if name == "email":
                lower = value.lower()
                value = value if lower == value else lower  # the row's own string when equal
            seen = self.job.seen.setdefault(name, {})
            other = seen.get(value)
            if other is not None:
                self._reject(
                    row.key,
                    f"identifier conflict: {name} is also the {name} of row {other} in the "
                    "same import job; one profile per identifier (fix the duplicate)",
                    row.payload,
                )
                return
            idents.append((seen, value))
        for seen, value in idents:
            seen[value] = row.key
        row.payload = _compact(row.payload)
        self.job.rows.append(row)
        if self._keep_contacts():
            self.job.contacts.append(contact)
        self.job.size += len(row.payload) + 1
        self.res.sent += 1

    def _flush(self) -> None:
        job, self.job = self.job, _Job()
        if job.rows and self.previews is not None:
            path, body = self.dest.job_request(job.rows)
            headers = {
                k: ("***" if k.lower() in ("authorization", "api-key") else v)
                for k, v in self.dest.headers().items()
            }
            url = mask_url(self.dest.http.client.base_url.join(path).__str__())
            self.previews.append({"method": "POST", "url": url, "headers": headers, "body": body})
        if not job.rows or self.dry_run:
            return
        self._check_lease()
        job.job_id = self.dest.submit(job.rows)
        job.started = self.rt.clock()
        job.seen = {}
        self.res.jobs += 1
        self.outstanding.append(job)
        while len(self.outstanding) >= self.dest.options.jobs_in_flight:
            self._finish_job(self.outstanding.popleft())

    def _check_lease(self) -> None:
        """A run that lost its lease (another run took the sync over, or it could not renew
        it in time) submits no more jobs and takes nobody off a list: ``LeaseHeld`` fails the
        run, and the rows of its unconfirmed jobs are sent again by the next one."""
        if self.lease is not None:
            self.lease.check()

    def _keep_contacts(self) -> bool:
        return getattr(self.dest.options, "null_standard_fields", "keep") == "clear"

    def _finish_job(self, job: _Job) -> None:
        assert job.job_id is not None
        opts = self.dest.options
        interval = opts.poll_interval_s
        while True:
            self.res.polls += 1
            if self.dest.poll(job.job_id):
                break
            if self.rt.clock() - job.started > opts.job_timeout_s:
                raise RequestError(
                    f"import job {job.job_id} still running after {opts.job_timeout_s:.0f} s "
                    "(options.job_timeout_s); its rows are sent again by the next run"
                )
            self.rt.sleep(interval)
            interval = min(opts.poll_max_interval_s, interval * 1.5)
        result = self.dest.result(job.job_id, job.rows)
        if result.unknown is not None:
            self.res.unconfirmed += len(job.rows)
            self.res.error = result.unknown
            return
        errors = dict(result.errors)
        if job.contacts:
            ok = [i for i in range(len(job.rows)) if i not in errors]
            more = self.dest.after_confirm([job.rows[i] for i in ok], [job.contacts[i] for i in ok])
            errors.update({ok[j]: r for j, r in more.items()})
        refused = [(job.rows[i].key, reason, job.rows[i].payload) for i, reason in errors.items()]
        self.breaker.judge(len(job.rows), refused)  # records, holds or trips (below)
        confirmed = [
            (r.key, r.hash, r.identifiers) for i, r in enumerate(job.rows) if i not in errors
        ]
        for start in range(0, len(confirmed), CONFIRM_ROWS):  # bounded statement parameters
            self.hashes.confirm(self.sync.name, confirmed[start : start + CONFIRM_ROWS])
        if self.res.run_id:
            self.state.close_rejects(
                self.sync.name,
                INCREMENTAL,
                [k for k, _, _ in confirmed],
                self.res.run_id,
                CLOSED_DELIVERED,
            )
        self.res.delivered += len(confirmed)
        self._report()
        self.breaker.check()  # tripped: the run stops before its next job

    # -- rejects, progress, end --------------------------------------------------------
    def _reject(
        self, key: str, reason: str, payload: bytes | None = None, *, api: bool = False
    ) -> None:
        self.res.rejected += 1
        if len(self.res.sample_rejects) < SAMPLE_REJECTS:
            self.res.sample_rejects.append((key, reason))
        self.rejects.append(Reject(key, reason, payload.decode() if payload else None))
        if len(self.rejects) >= 1000:
            self._record_rejects()

    def _record_rejects(self) -> None:
        if self.rejects and not self.dry_run and self.res.run_id:
            self.state.add_rejects(self.sync.name, INCREMENTAL, self.res.run_id, self.rejects)
        self.rejects = []

    def _report(self) -> None:
        s = self.stats
        self.res.requests, self.res.retries, self.res.rate_limited = (
            s.requests,
            s.retries,
            s.rate_limited,
        )
        self.res.batches = self.res.jobs
        if self.progress is not None:
            self.progress(self.res)

    def _finish(self, started: float, failure: BaseException | None) -> None:
        res = self.res
        self._report()
        res.duration_s = time.perf_counter() - started
        res.rows_per_s = res.rows_read / res.duration_s if res.duration_s > 0 else 0.0
        if self.dry_run:
            res.status = "dry_run" if failure is None else "failed"
        else:
            res.status = "success" if failure is None else "failed"
        if failure is not None:
            res.error = _describe(failure)
        if res.run_id:
            try:
                self.state.finish_run(res.run_id, res.status, res.to_dict(), res.error)
            except ConnectorError:
                if failure is None:
                    raise


def contact_problems(
    sync: SyncConfig, types: dict[str, str], warnings: list[str] | None = None
) -> list[str]:
    """``connector validate``: what the destination's preflight finds (an unknown Brevo
    attribute...), asking the vendor with the sync's own key; [] when it asks nothing. What
    the sync will do that the user may not expect goes to ``warnings`` (``validate_warnings``)."""
    cls = CONTACT_DESTINATIONS[sync.destination.type]
    if warnings is not None:
        warnings += cls.validate_warnings(sync)
    if not cls.has_preflight():
        return []
    dest = make_contact_destination(sync, JobStats(), Runtime())
    try:
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
        f"  changed             {res.changed:,}",
        f"  unchanged           {res.unchanged:,}  (nothing sent)",
        f"  removed             {res.removed:,}"
        + (f"  ({res.unlisted:,} removed from the list)" if res.unlisted else ""),
        f"  {'would send' if dry else 'sent':<19} {res.sent:,}",
        f"  delivered           {res.delivered:,}  (confirmed by the vendor)",
        f"  rejected            {res.rejected:,}  (sent again by the next run)",
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
