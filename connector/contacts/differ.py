"""How one contact run diffs its pages against the stored hashes, and finds removed rows.

``Differ.setup`` chooses, from the source's key and warehouse: a full scan (no cursor, no
limit, no full refresh) of a key with an order encoding (``keyorder``) on an ordered warehouse
is an ordered ``merge`` (pages carry their ords, removed rows are counted); a cursor run that
unlists vanished rows keeps a merge for a key-only scan after its pages (``scan``); anything
else looks each page's keys up (``hashes.HashStore.lookup``). A merge that finds the source's
order is not byte order after all falls back to lookups and counts no removed rows.

The run (``run.contacts``) reads the warehouse and sends; this module only decides which rows
of a page are new, changed or unchanged, and which stored rows vanished (``removed``, and with
``collect`` their ords in ``gone``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError
from ..core.logcontext import get_logger
from ..map.mapper import Chunk
from ..read.source import Reader
from .diff import Hasher, Page
from .hashes import HashStore
from .keyorder import KeyOrder, Unordered, kinds_for
from .merge import Ahead, Merge

log = get_logger("connector.contacts")


class Differ:
    """The diff of one contact run (see the module docstring); ``setup`` before the pages."""

    def __init__(
        self,
        sync: SyncConfig,
        hashes: HashStore,
        *,
        full_refresh: bool,
        dry_run: bool,
        limit: int | None,
    ) -> None:
        self.sync = sync
        self.hashes = hashes
        self.hasher = Hasher(sync)
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.limit = limit
        self.unlist = False
        self.collect = False
        self.merge: Merge | None = None  # the ordered diff of a full scan (else lookups)
        self.scan: Merge | None = None  # a cursor run's search for vanished rows
        self.removed = 0  # stored rows whose source row vanished
        self.gone: list[bytes] = []  # their ords, when ``collect``

    def setup(self, reader: Reader, *, unlist: bool, collect: bool) -> None:
        """Choose how this run diffs: the key's order encoding, if it has one, makes confirmed
        rows store their ord; a full scan of an ordered warehouse then merges, anything else
        looks keys up. Stored keys without an ord get one first (not in a dry run).
        ``unlist``: the sync unlists vanished rows (a cursor run then scans the source's keys
        for them); ``collect``: keep their ords (``unlist``, and not a dry run)."""
        self.unlist, self.collect = unlist, collect
        types = reader.column_types()
        kinds = kinds_for([types.get(c) for c in self.sync.source.primary_key])
        order = KeyOrder(kinds) if kinds is not None else None
        name = self.sync.name
        if self.dry_run:
            self.hashes.order = order
            if order is not None and self.hashes.needs_prepare(name, order):
                order = None  # a dry run writes nothing: look keys up this time
        else:
            self.hashes.prepare(name, order)
        whole = self.limit is None and not self.full_refresh
        ordered = order is not None and whole and reader.key_order
        if ordered and order is not None and self.sync.source.cursor is None:
            self.merge = Merge(self.hashes, name, order, collect=self.collect)
            self.hasher.order = order  # pages carry their ords
        elif ordered and order is not None and self.unlist:
            # A cursor run: vanished rows are found by a key-only scan after the run's pages.
            self.scan = Merge(self.hashes, name, order, collect=self.collect)
        elif self.unlist and whole:
            problem = unlist_problem(self.sync, types, key_order=reader.key_order)
            if problem is not None:  # (else a dry run that looks keys up this time)
                raise ConfigError(problem)

    def read(self, chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, Ahead | None]]:
        """``chunks``, each with its stored range's aggregate when the merge reads it ahead
        (``merge.Prefetch``). Meant for the read-ahead thread, one page ahead of the hashing:
        the warehouse read and the state store's query overlap the mapping."""
        prefetch = self.merge.prefetch() if self.merge is not None else None
        for chunk in chunks:
            ords = None
            if prefetch is not None and self.merge is not None:  # (None: fell back to lookups)
                ords = self.hasher.ords(chunk)
            yield chunk, prefetch.ahead(ords) if prefetch is not None and ords is not None else None

    def page(self, chunk: Chunk, ahead: Ahead | None) -> Page:
        """A chunk hashed (with the ords read ahead for it, if any)."""
        return self.hasher.page(chunk, ahead and ahead.ords)

    def diff(self, page: Page, ahead: Ahead | None) -> tuple[Sequence[int], Sequence[bool]]:
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
                self.removed = 0
                self.gone = []
            else:
                self.removed += d.vanished
                self.gone += d.gone
                return d.todo, d.added
        stored = self.hashes.lookup(self.sync.name, page.keys)
        hashes = page.hashes
        todo = [i for i in range(n) if stored.get(page.keys[i]) != hashes[i]]
        return todo, [page.keys[i] not in stored for i in todo]

    def needs_key_scan(self) -> bool:
        """Whether the run must read the source's keys after its pages (``scan_keys``)."""
        return self.scan is not None

    def scan_keys(self, chunks: Iterable[Chunk]) -> None:
        """A cursor run's key-only scan of the source (in key order, byte order for text):
        the stored rows it lacks vanished."""
        scan = self.scan
        assert scan is not None
        for chunk in chunks:
            pk = [chunk.table.column(c).combine_chunks() for c in self.sync.source.primary_key]
            try:
                d = scan.page(scan.order.page(pk), None)
            except Unordered as exc:
                log.warning("%s: %s; no removed rows this run", self.sync.name, exc)
                self.gone = []
                return
            self.removed += d.vanished
            self.gone += d.gone
        self._rest(scan)

    def finish_scan(self) -> None:
        """After a full scan's pages: the stored rows after its last key vanished too."""
        if self.merge is not None:
            self._rest(self.merge)

    def _rest(self, merge: Merge) -> None:
        while True:
            got = merge.rest()
            if not got:
                return
            self.removed += len(got)
            if merge.collect:
                self.gone += got


def unlist_problem(sync: SyncConfig, types: dict[str, str], *, key_order: bool) -> str | None:
    """Why ``on_removed: unlist`` could never find a removed row of this sync (its primary
    key has no order encoding, or its warehouse does not return keys in byte order): a config
    error at ``validate`` and at the start of a run, never a quiet 0 removed. None when it
    can (or the sync does not unlist)."""
    options = sync.destination.options
    mode = str(getattr(options, "on_removed", "keep"))
    if mode not in ("unlist", "untag"):
        return None
    where = sync.source_path or sync.name
    keep = "or set destination.options.on_removed: keep (removed rows are then left alone)"
    if not key_order:
        return (
            f"{where}: destination.options.on_removed: {mode} cannot find removed rows: this "
            "warehouse does not return keys in byte order (removed rows are found by merging "
            "the source's keys, in order, with the stored ones; DuckDB, PostgreSQL, MySQL and "
            "Snowflake do, see docs/warehouses.md), so every run would count 0 removed. Fix: "
            f"read the table from one of those, {keep}"
        )
    pk = sync.source.primary_key
    kinds = [types.get(c) for c in pk]
    if kinds_for(kinds) is None:
        bad = ", ".join(f"{c} ({k or 'unknown type'})" for c, k in zip(pk, kinds, strict=True))
        return (
            f"{where}: destination.options.on_removed: {mode} cannot find removed rows: the "
            f"primary key {bad} is not integer or text columns, the only keys whose order the "
            "diff can merge with the stored contacts (a date, timestamp or decimal key would "
            "count 0 removed, always). Fix: key the source by an integer or text column "
            f"(e.g. CAST(... AS VARCHAR) in a view), {keep}"
        )
    return None
