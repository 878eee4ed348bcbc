"""One ``verify`` of one sync: sample confirmed contacts, re-map their source rows as they are
now, read each back from the vendor and compare (docs/verify.md).

1. A random sample of the sync's stored hashes (``connector_contact_hashes``: the keys the
   vendor confirmed, each with its hash and confirmation time).
2. Their source rows, read again by key and mapped and hashed through the run's own mapper
   (``contacts.diff.Hasher``) and encoded by the destination: what a sync would send now.
3. Each contact read through the vendor's read endpoint (``vendors.READERS``) on the run's one
   HTTP client, paced by ``share.ReadShare``; every field of the payload compared
   (``report.same``) and each difference classified (``report``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from ..config.sync_file import SyncConfig
from ..contacts.diff import Hasher, Page
from ..deliver.factory import make_contact_destination
from ..deliver.http_loop import Runtime, Stats, connect
from ..deliver.shared_pacer import destination_pacer
from ..read.source import Reader
from ..store.schema import contact_hashes
from ..store.state import StateStore
from .report import (
    CHANGED_AT_VENDOR,
    CHANGED_IN_WAREHOUSE,
    NEVER_LANDED,
    NOT_AS_SENT,
    Difference,
    VerifyReport,
    same,
)
from .share import DEFAULT_SHARE, ReadShare
from .vendors import READERS, Dest, Found, Unreadable, VendorRead, cannot

DEFAULT_SAMPLE = 100


@dataclass
class Confirmed:
    """A sampled stored hash: the key, its hash and when the vendor confirmed it."""

    key: str
    hash: str
    confirmed_at: datetime


def sample_confirmed(state: StateStore, sync: str, n: int) -> list[Confirmed]:
    """Up to ``n`` of ``sync``'s confirmed keys, drawn at random by the state store."""
    c = contact_hashes.c
    stmt = (
        sa.select(c.key, c.hash, c.confirmed_at)
        .where(c.sync == sync)
        .order_by(sa.func.random())
        .limit(n)
    )
    with state.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out = []
    for key, h, at in rows:
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        out.append(Confirmed(str(key), str(h), at))
    return out


def changed_since(updated: datetime | None, confirmed: datetime) -> bool:
    """Did the vendor change the contact at or after we confirmed it? Compared to the vendor's
    precision: a time in whole seconds is compared with our confirmation's second."""
    if updated is None:
        return False
    if updated.microsecond == 0:
        confirmed = confirmed.replace(microsecond=0)
    return updated >= confirmed


def verify_sync(
    sync: SyncConfig,
    state: StateStore,
    *,
    sample: int = DEFAULT_SAMPLE,
    share: float = DEFAULT_SHARE,
    runtime: Runtime | None = None,
    transport: httpx.BaseTransport | None = None,
    warehouse_url: str | None = None,
) -> VerifyReport:
    """Verify a sample of ``sync``'s confirmed contacts (see the module docstring).

    Raises:
        ConfigError: the API key's variable is unset, or the source cannot be read by key.
        ConnectorError: the source, the state store or the vendor failed.
    """
    dest_type = sync.destination.type
    report = VerifyReport(sync.name, dest_type, read_share=share)
    why = cannot(dest_type)
    if why:
        report.cannot = why
        return report
    vendor = READERS[dest_type]
    report.endpoint = vendor.endpoint
    picked = sample_confirmed(state, sync.name, sample)
    report.sampled = len(picked)
    if not picked:
        return report
    rt = runtime or Runtime()
    stats = Stats()
    dest = make_contact_destination(sync, runtime=rt, stats=stats, state=state)
    dest.http.close()  # reconnected on the read share of the same account pacer
    account = destination_pacer(dest, rt, state.engine)
    reads = ReadShare(account, dest.rate(), share, rt.clock, rt.sleep)
    dest.connect(connect(dest, reads, rt, stats, transport))
    try:
        _compare_all(sync, dest, vendor, picked, report, warehouse_url)
    finally:
        dest.http.close()
    report.requests = stats.requests
    return report


def _compare_all(
    sync: SyncConfig,
    dest: Dest,
    vendor: VendorRead,
    picked: list[Confirmed],
    report: VerifyReport,
    warehouse_url: str | None,
) -> None:
    by_key = {p.key: p for p in picked}
    seen: set[str] = set()
    hasher = Hasher(sync)
    with Reader(sync, warehouse_url) as reader:
        for chunk in reader.rows_by_keys(list(by_key)):
            page = hasher.page(chunk)
            for i in range(len(page)):
                key = page.keys[i]
                if key in by_key and key not in seen:
                    seen.add(key)
                    _compare_one(dest, vendor, page, i, by_key[key], report)
    report.gone_from_source = len(by_key) - len(seen)


def _compare_one(
    dest: Dest, vendor: VendorRead, page: Page, i: int, row: Confirmed, report: VerifyReport
) -> None:
    key = page.keys[i]
    if i in page.reasons:
        report.unreadable.append((key, f"the row cannot be mapped now: {page.reasons[i]}"))
        return
    contact = page.contact(i)
    reason = dest.check(contact)
    if reason is not None:
        report.unreadable.append((key, f"the row would be rejected now: {reason}"))
        return
    sent = vendor.sent(dest.encode(contact))
    try:
        found = vendor.read(dest, contact.identifiers)
    except Unreadable as exc:
        report.unreadable.append((key, str(exc)))
        return
    report.checked += 1
    diffs = _differences(key, sent, found, row, warehouse_changed=page.hashes[i] != row.hash)
    if diffs:
        report.differences += diffs
    else:
        report.matched += 1


def _differences(
    key: str, sent: dict[str, Any], found: Found | None, row: Confirmed, *, warehouse_changed: bool
) -> list[Difference]:
    if found is None:
        return [Difference(key, "*", "(the contact)", None, NEVER_LANDED)]
    out = []
    for name, value in sent.items():
        held = found.fields.get(name)
        if value is None or same(name, value, held):
            continue  # a NULL: vendors differ on clearing; not compared (docs/verify.md)
        if warehouse_changed:
            kind = CHANGED_IN_WAREHOUSE
        elif changed_since(found.updated, row.confirmed_at):
            kind = CHANGED_AT_VENDOR
        else:
            kind = NOT_AS_SENT
        out.append(Difference(key, name, value, held, kind))
    return out
