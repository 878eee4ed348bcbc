"""The exactly-once ledger (connector/plan/ledger.py) as a pure object: tables of cases, then every
crash point and completion order of two interrupted runs followed by one that completes."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.plan.ledger import FRESH, SKIP, Ledger, Leftover, Settlement
from connector.store.state import LedgerEntry, Position
from connector.store.window import MARK, NEVER

T1 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 1, 12, 1, tzinfo=UTC)


def entry(id: int, first: Any, last: Any, status: str, run: str = "a") -> LedgerEntry:
    f = first if isinstance(first, tuple) else (first,)
    la = last if isinstance(last, tuple) else (last,)
    return LedgerEntry(id, run, 0, f, la, 1, status)


P, D = "pending", "delivered"

# (case, leftovers, position, decision)
LEFTOVER_CASES: list[tuple[str, list[LedgerEntry], Position, Leftover]] = [
    ("no leftovers: send", [], (5,), FRESH),
    ("outside every entry: send", [entry(1, 0, 9, P)], (10,), FRESH),
    (
        "inside a pending entry: re-send, one copy held",
        [entry(1, 0, 9, P)],
        (5,),
        Leftover(False, 1),
    ),
    ("first bound is inclusive", [entry(1, 0, 9, P)], (0,), Leftover(False, 1)),
    ("last bound is inclusive", [entry(1, 0, 9, P)], (9,), Leftover(False, 1)),
    ("inside a delivered entry: skip", [entry(1, 0, 9, D)], (3,), SKIP),
    (
        "pending in two killed runs: two copies",
        [entry(1, 0, 9, P, "a"), entry(2, 5, 14, P, "b")],
        (7,),
        Leftover(False, 2),
    ),
    (
        "older pending, newer delivered: delivered wins",
        [entry(1, 0, 9, P, "a"), entry(2, 0, 9, D, "b")],
        (3,),
        SKIP,
    ),
    (
        "newer pending over an older delivered range (rows it only covered): delivered wins",
        [entry(1, 0, 9, D, "a"), entry(2, 0, 19, P, "b")],
        (3,),
        SKIP,
    ),
    (
        "order of the stored rows does not matter",
        [entry(2, 0, 9, D, "b"), entry(1, 0, 9, P, "a")],
        (3,),
        SKIP,
    ),
    (
        "the pending entry still counts beyond the delivered range",
        [entry(1, 0, 9, D, "a"), entry(2, 0, 19, P, "b")],
        (15,),
        Leftover(False, 1),
    ),
    (
        "(cursor, key) positions: a tie group split between two entries",
        [entry(1, (T1, 1), (T2, 3), D), entry(2, (T2, 4), (T2, 9), P)],
        (T2, 3),
        SKIP,
    ),
    (
        "(cursor, key) positions: next key of the tie is in the pending entry",
        [entry(1, (T1, 1), (T2, 3), D), entry(2, (T2, 4), (T2, 9), P)],
        (T2, 4),
        Leftover(False, 1),
    ),
]


@pytest.mark.parametrize(
    "leftovers,pos,expected", [c[1:] for c in LEFTOVER_CASES], ids=[c[0] for c in LEFTOVER_CASES]
)
def test_leftover_decision(leftovers: list[LedgerEntry], pos: Position, expected: Leftover) -> None:
    assert Ledger(leftovers).leftover(pos) == expected


# (case, leftovers, settled batches in completion order (seq, ledger id, last), decisions)
SETTLE_CASES: list[
    tuple[str, list[LedgerEntry], list[tuple[int, int | None, Position]], list[Settlement]]
] = [
    (
        "in order: each batch moves the checkpoint and drops its row",
        [],
        [(0, 10, (9,)), (1, 11, (19,)), (2, 12, (29,))],
        [Settlement([], [10], (9,)), Settlement([], [11], (19,)), Settlement([], [12], (29,))],
    ),
    (
        "reverse order: later batches are marked delivered until the first settles",
        [],
        [(2, 12, (29,)), (1, 11, (19,)), (0, 10, (9,))],
        [
            Settlement([12], [], None),
            Settlement([11], [], None),
            Settlement([], [10, 11, 12], (29,)),
        ],
    ),
    (
        "middle first, then the first: the prefix takes both",
        [],
        [(1, 11, (19,)), (0, 10, (9,)), (2, 12, (29,))],
        [Settlement([11], [], None), Settlement([], [10, 11], (19,)), Settlement([], [12], (29,))],
    ),
    (
        "a batch that sent nothing (all rejected or skipped) has no ledger row",
        [],
        [(1, None, (19,)), (0, 10, (9,))],
        [Settlement([], [], None), Settlement([], [10], (19,))],
    ),
    (
        "leftovers are dropped once the checkpoint passes their last row",
        [entry(1, 0, 9, P), entry(2, 10, 29, D), entry(3, 30, 39, P)],
        [(0, 20, (15,)), (1, 21, (29,))],
        [Settlement([], [20, 1], (15,)), Settlement([], [21, 2], (29,))],
    ),
]


@pytest.mark.parametrize(
    "leftovers,settled,expected", [c[1:] for c in SETTLE_CASES], ids=[c[0] for c in SETTLE_CASES]
)
def test_settle_decisions(
    leftovers: list[LedgerEntry],
    settled: list[tuple[int, int | None, Position]],
    expected: list[Settlement],
) -> None:
    ledger = Ledger(leftovers)
    assert [ledger.settle(*s) for s in settled] == expected


def test_a_batch_settles_once() -> None:
    ledger = Ledger()
    ledger.settle(0, 1, (9,))
    with pytest.raises(ValueError, match="already settled"):
        ledger.settle(0, 1, (9,))


def test_forget_drops_only_the_refused_batch() -> None:
    assert Ledger.forget(7) == Settlement([], [7], None)
    assert Ledger.forget(None) == Settlement()


@pytest.mark.parametrize(
    "stored,full_refresh,leftovers,clear",
    [
        ([entry(1, 0, 9, P)], True, [], True),
        ([], True, [], False),
        ([entry(2, 5, 9, D), entry(1, 0, 4, P)], False, [1, 2], False),
    ],
    ids=["full refresh clears", "full refresh of an empty ledger", "incremental keeps, by id"],
)
def test_start(
    stored: list[LedgerEntry], full_refresh: bool, leftovers: list[int], clear: bool
) -> None:
    ledger, must_clear = Ledger.start(stored, full_refresh=full_refresh)
    assert [e.id for e in ledger.leftovers] == leftovers
    assert must_clear is clear


# --------------------------------------------------------------------------- simulation
#
# A run as ``sync._Run`` drives the ledger: read after the checkpoint, skip or re-send each
# row by ``leftover``, pack items into batches (skipped rows are covered by the next batch),
# write each batch pending (step), the vendor stores it (step), answers come back in some
# order and each settles in one transaction with its counted copies (step). A crash may come
# between any two steps.


class Crash(Exception):
    pass


@dataclass
class Store:
    checkpoint: Position | None = None
    entries: dict[int, LedgerEntry] = field(default_factory=dict)
    next_id: int = 1

    def apply(self, s: Settlement) -> None:
        for i in s.delivered_ids:
            self.entries[i] = replace(self.entries[i], status=D)
        for i in s.drop_ids:
            self.entries.pop(i, None)
        if s.checkpoint is not None:
            self.checkpoint = s.checkpoint


@dataclass
class Vendor:
    stored: Counter[int] = field(default_factory=Counter)
    confirmed: set[int] = field(default_factory=set)  # answers the connector saw
    resent_confirmed: list[int] = field(default_factory=list)


@dataclass
class Batch:
    seq: int
    items: list[int] = field(default_factory=list)
    covered: list[int] = field(default_factory=list)
    copies: dict[int, int] = field(default_factory=dict)
    ledger_id: int | None = None

    @property
    def last(self) -> Position:
        return (max(self.items + self.covered),)

    @property
    def first(self) -> Position:
        return (min(self.items + self.covered),)


def simulate(
    store: Store,
    vendor: Vendor,
    rows: int,
    size: int,
    order: tuple[int, ...] | None,
    crash_after: int | None,
    full_refresh: bool = False,
) -> tuple[int, bool]:
    """One run; returns (copies it counted, whether every pending row it left was stored).
    ``order`` permutes the answers (None: in order); raises nothing on a crash."""
    ledger, clear = Ledger.start(
        sorted(store.entries.values(), key=lambda e: e.id), full_refresh=full_refresh
    )
    if clear:
        store.entries.clear()
    if full_refresh:  # a full refresh sends every row again on purpose
        vendor.confirmed.clear()
    start = None if full_refresh else store.checkpoint
    batches: list[Batch] = []
    cur = Batch(0)
    for r in range(rows):
        if start is not None and (r,) <= start:
            continue
        left = ledger.leftover((r,))
        if left.skip:
            cur.covered.append(r)
            continue
        if len(cur.items) == size:
            batches.append(cur)
            cur = Batch(cur.seq + 1)
        cur.items.append(r)
        if left.copies:
            cur.copies[r] = left.copies
    if cur.items or cur.covered:
        batches.append(cur)
    counted = 0
    steps = 0
    unstored: set[int] = set()

    def step() -> None:
        nonlocal steps
        if steps == crash_after:
            raise Crash
        steps += 1

    try:
        for b in batches:
            if not b.items:
                continue
            step()
            b.ledger_id = store.next_id
            store.next_id += 1
            store.entries[b.ledger_id] = LedgerEntry(
                b.ledger_id, f"run{id(ledger)}", b.seq, b.first, b.last, len(b.items), P
            )
            unstored.add(b.ledger_id)
            step()
            for r in b.items:
                if r in vendor.confirmed and not full_refresh:
                    vendor.resent_confirmed.append(r)
                vendor.stored[r] += 1
            unstored.discard(b.ledger_id)
        answers = [batches[i] for i in (order or range(len(batches))) if i < len(batches)]
        for b in answers:
            step()
            store.apply(ledger.settle(b.seq, b.ledger_id, b.last))
            vendor.confirmed.update(b.items)
            counted += sum(b.copies.values())
    except Crash:
        pass
    return counted, not unstored


ROWS = 6
ORDERS = list(itertools.permutations(range(3)))


def _scenarios() -> list[tuple[tuple[int, ...], int, int, tuple[int, ...], int]]:
    out = []
    for order_a in ORDERS:
        for crash_a in range(9):  # 3 batches: 3 pending + 3 stored + 3 settled steps
            for size_b in (2, 3):
                for order_b in (ORDERS[0], ORDERS[-1], ORDERS[2]):
                    for crash_b in range(9):
                        out.append((order_a, crash_a, size_b, order_b, crash_b))
    return out


def test_two_interrupted_runs_then_a_complete_one_in_every_interleaving() -> None:
    """Nothing is lost, nothing confirmed is sent again, and the copies counted by the three
    runs add up to the extra copies the vendor stored (at least that many when a crash came
    between writing a batch pending and its request reaching the vendor)."""
    checked = 0
    for order_a, crash_a, size_b, order_b, crash_b in _scenarios():
        store, vendor = Store(), Vendor()
        a, a_stored = simulate(store, vendor, ROWS, 2, order_a, crash_a)
        b, b_stored = simulate(store, vendor, ROWS, size_b, order_b, crash_b)
        c, _ = simulate(store, vendor, ROWS, 2, None, None)
        case = (order_a, crash_a, size_b, order_b, crash_b)
        assert set(vendor.stored) == set(range(ROWS)), case  # nothing lost
        assert vendor.resent_confirmed == [], case  # delivered always wins
        assert store.entries == {} and store.checkpoint == (ROWS - 1,), case
        extra = sum(n - 1 for n in vendor.stored.values())
        if a_stored and b_stored:
            assert a + b + c == extra, case
        else:
            assert a + b + c >= extra, case
        checked += 1
    assert checked == 6 * 9 * 2 * 3 * 9


@pytest.mark.parametrize("crash_b", range(9))
def test_full_refresh_interrupted_then_incremental_run(crash_b: int) -> None:
    """A full refresh clears what the crashed run left and sends every row again; killed in
    turn, the next incremental run still loses nothing and ends with an empty ledger."""
    store, vendor = Store(), Vendor()
    simulate(store, vendor, ROWS, 2, ORDERS[-1], 7)  # crash: batch 2 answered, 0 and 1 not
    assert any(e.status == D for e in store.entries.values())
    before = Counter(vendor.stored)
    simulate(store, vendor, ROWS, 2, None, crash_b, full_refresh=True)
    if crash_b >= 6:  # every request of the full refresh went out: every row again
        assert all(vendor.stored[r] == before[r] + 1 for r in range(ROWS))
    simulate(store, vendor, ROWS, 2, None, None)
    assert set(vendor.stored) == set(range(ROWS))
    assert vendor.resent_confirmed == []
    assert store.entries == {} and store.checkpoint == (ROWS - 1,)


# --------------------------------------------------------------------------- the lookback window
#
# The same runs with a lookback window of ``SPAN`` cursor values (``read.lookback``): rows are
# integers, their own cursor; some commit late (become visible once the checkpoint passed
# them). Each run reads from the window's far edge, skips the rows the window table knows, and
# each settle records its batch's rows there and prunes it, in the same step (transaction) that
# moves the checkpoint.

SPAN = 5
LATE = (6, 8)  # rows 0..9: these two commit after the first run read their neighbours


@dataclass
class WindowStore(Store):
    window: list[tuple[int, int]] = field(default_factory=list)  # (cursor_num, row_hash)

    def apply(self, s: Settlement) -> None:
        super().apply(s)
        if s.window is not None:
            if s.window.prune_below is not None:
                self.window = [w for w in self.window if w[0] >= s.window.prune_below]
            if s.window.mark is not None:
                self.window.append((MARK, s.window.mark))
            self.window += list(s.window.add)


def simulate_window(
    store: WindowStore,
    vendor: Vendor,
    visible: list[int],
    size: int,
    order: tuple[int, ...] | None,
    crash_after: int | None,
) -> tuple[int, int]:
    """One run with the window; returns (late rows caught, copies counted)."""
    from connector.plan.ledger import Lookbehind
    from connector.read.lookback import Lookback

    lookback = Lookback("integer", SPAN, str(SPAN))
    start = store.checkpoint
    marks = [h for n, h in store.window if n == MARK]
    rows = [(n, h) for n, h in store.window if n != MARK]
    floor = NEVER if start is None else start[0] - SPAN
    window = Lookbehind(lookback, start, {h for n, h in rows if n >= floor}, marked=bool(marks))
    window.since = marks[0] if marks else NEVER
    ledger, _ = Ledger.start(
        sorted(store.entries.values(), key=lambda e: e.id), full_refresh=False, window=window
    )
    batches: list[Batch] = []
    handled: dict[int, list[int]] = {}
    cur = Batch(0)
    for r in sorted(visible):
        if start is not None and r <= start[0] - SPAN:
            continue
        left = ledger.leftover((r,))
        if left.skip:
            cur.covered.append(r)
            continue
        if len(cur.items) == size:
            batches.append(cur)
            cur = Batch(cur.seq + 1)
        cur.items.append(r)
        if left.copies:
            cur.copies[r] = left.copies
    if cur.items or cur.covered:
        batches.append(cur)
    for b in batches:
        handled[b.seq] = list(b.items)
    counted = steps = 0

    def step() -> None:
        nonlocal steps
        if steps == crash_after:
            raise Crash
        steps += 1

    try:
        for b in batches:
            if not b.items:
                continue
            step()
            b.ledger_id = store.next_id
            store.next_id += 1
            store.entries[b.ledger_id] = LedgerEntry(
                b.ledger_id, "r", b.seq, b.first, b.last, len(b.items), P
            )
            step()
            for r in b.items:
                if r in vendor.confirmed:
                    vendor.resent_confirmed.append(r)
                vendor.stored[r] += 1
        answers = [batches[i] for i in (order or range(len(batches))) if i < len(batches)]
        for b in answers:
            step()
            positions = [(r,) for r in handled[b.seq]]
            store.apply(ledger.settle(b.seq, b.ledger_id, b.last, positions.copy))
            vendor.confirmed.update(b.items)
            counted += sum(b.copies.values())
    except Crash:
        pass
    return window.late, counted


def test_lookback_window_every_crash_point_loses_nothing_and_resends_only_in_flight() -> None:
    """Run A reads rows 0..9 but the late ones and is killed at any point (or completes); the
    late rows commit; run B reads again, killed at any point; run C completes. Every row is
    stored, none the connector saw confirmed goes out again, the late rows are caught, the
    checkpoint never moves back and the window table holds only the window."""
    from connector.read.lookback import row_hash

    everything = list(range(10))
    early = [r for r in everything if r not in LATE]
    checked = 0
    for order_a in ORDERS:
        for crash_a in [*range(9), None]:
            for order_b in (ORDERS[0], ORDERS[-1]):
                for crash_b in [*range(12), None]:
                    store, vendor = WindowStore(), Vendor()
                    case = (order_a, crash_a, order_b, crash_b)
                    simulate_window(store, vendor, early, 3, order_a, crash_a)
                    after_a = store.checkpoint
                    late_b, _ = simulate_window(store, vendor, everything, 3, order_b, crash_b)
                    assert (
                        store.checkpoint is None or after_a is None or store.checkpoint >= after_a
                    )
                    late_c, _ = simulate_window(store, vendor, everything, 3, None, None)
                    assert set(vendor.stored) == set(everything), case  # nothing lost
                    assert vendor.resent_confirmed == [], case  # no delivered row again
                    assert store.entries == {} and store.checkpoint == (9,), case
                    floor = 9 - SPAN
                    assert all(n >= floor for n, _ in store.window), case  # bounded
                    assert [n for n, _ in store.window].count(MARK) == 1, case  # one mark
                    known = {h for n, h in store.window if n != MARK}
                    assert {row_hash((r,)) for r in everything if r > floor} <= known, case
                    if crash_a is None and after_a == (9,):  # A checkpointed past the late rows
                        assert late_b + late_c >= len(LATE), case
                    checked += 1
    assert checked == 6 * 10 * 2 * 13
