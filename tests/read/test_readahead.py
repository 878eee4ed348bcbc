"""``connector.readahead``: an iterator run one item ahead in its own thread, and its use by
the contact merge (the stored range's aggregate read ahead, in that thread)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from connector.contacts.hashes import HashStore
from connector.contacts.keyorder import INTEGER, KeyOrder
from connector.contacts.merge import Ahead, Merge
from connector.deliver.delivery import Runtime
from connector.read.readahead import read_ahead
from connector.run.contacts import ContactRun
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.contacts.test_merge import people, sync_for, where
from tests.contacts_fakes import FakeKlaviyo


class Source:
    """An iterator that records the threads it is created, advanced and closed in."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.threads: dict[str, set[str]] = {"made": set(), "next": set(), "closed": set()}
        self.produced = 0
        self.closed = threading.Event()

    def make(self) -> Iterator[int]:
        self.threads["made"].add(threading.current_thread().name)
        return self._items()

    def _items(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads["next"].add(threading.current_thread().name)
                if i == self.fail_at:
                    raise ValueError(f"row {i} is bad")
                self.produced += 1
                yield i
        finally:
            self.threads["closed"].add(threading.current_thread().name)
            self.closed.set()


def test_items_come_in_order_from_one_worker_thread() -> None:
    src = Source(50)
    assert list(read_ahead(src.make, name="ra-test")) == list(range(50))
    assert src.threads == {"made": {"ra-test"}, "next": {"ra-test"}, "closed": {"ra-test"}}
    assert "ra-test" not in {t.name for t in threading.enumerate()}


def test_an_error_is_raised_at_its_item_after_the_items_before_it() -> None:
    src = Source(10, fail_at=4)
    got: list[int] = []
    with pytest.raises(ValueError, match="row 4 is bad"):
        for item in read_ahead(src.make):
            got.append(item)
    assert got == [0, 1, 2, 3]
    assert src.closed.is_set()


def test_closing_early_closes_the_iterator_in_its_thread_and_waits_for_it() -> None:
    src = Source(1000)
    it = read_ahead(src.make, depth=2, name="ra-close")
    assert [next(it), next(it)] == [0, 1]
    it.close()
    # Closed in the worker, and the worker has ended by the time close() returns.
    assert src.closed.is_set() and src.threads["closed"] == {"ra-close"}
    assert "ra-close" not in {t.name for t in threading.enumerate()}
    assert src.produced <= 2 + 2 + 1  # read at most depth (+ the one being put) ahead


def test_an_error_in_the_consumer_stops_the_worker() -> None:
    src = Source(1000)
    with pytest.raises(RuntimeError, match="consumer"):
        for item in read_ahead(src.make, name="ra-consumer"):
            if item == 3:
                raise RuntimeError("consumer failed")
    # The for loop dropped the generator; CPython closes it at once (refcount).
    assert src.closed.wait(5) and src.produced < 1000


def test_the_worker_logs_in_the_consumers_run_context(caplog: pytest.LogCaptureFixture) -> None:
    from connector.core.logcontext import get_logger, run_context

    log = get_logger("connector.test_readahead")

    def pages() -> Iterator[int]:
        for i in range(3):
            log.warning("read page %d", i)
            yield i

    with run_context("customers", lambda: "run-7"):
        assert list(read_ahead(pages, name="ra-log")) == [0, 1, 2]
    got = [(r.threadName, r.sync_name, r.run_id) for r in caplog.records]  # type: ignore[attr-defined]
    assert got == [("ra-log", "customers", "run-7")] * 3


@pytest.mark.parametrize("kind", ["int", "text"])
def test_the_merge_reads_each_pages_range_ahead_in_the_read_thread(
    kind: str,
    duck: Warehouse,
    state: StateStore,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys: list[Any] = list(range(1, 451)) if kind == "int" else [f"k{i:03d}" for i in range(1, 451)]
    people(duck, kind, keys)
    fake = FakeKlaviyo()
    ContactRun(sync_for(duck, kind), state, runtime=runtime, transport=fake.transport).execute()
    # Changes on pages 1 and 4, a row gone from page 2 (pages of 100 in key order).
    duck.run(
        *(f"UPDATE people SET plan = 'vip' WHERE {where(kind, keys[i - 1])}" for i in (7, 333)),
        f"DELETE FROM people WHERE {where(kind, keys[199])}",
    )

    calls: list[str] = []
    real = HashStore.summary

    def summary(self: HashStore, *a: Any, **kw: Any) -> tuple[int, bytes]:
        calls.append(threading.current_thread().name)
        return real(self, *a, **kw)

    monkeypatch.setattr(HashStore, "summary", summary)
    r = ContactRun(sync_for(duck, kind), state, runtime=runtime, transport=fake.transport)
    r.execute()
    assert (r.res.changed, r.res.unchanged, r.res.removed, r.res.sent) == (2, 447, 1, 2)
    assert r.merge is not None and r.merge.pages == 5 and r.merge.fast == 2
    # One query per page, each in the read-ahead thread, none again by the merge (a text
    # key too: without the read-ahead it skips the aggregate after a page that differs).
    assert calls == ["read-merge_k"] * 5


def test_an_aggregate_read_for_another_range_is_not_used(state: StateStore) -> None:
    import pyarrow as pa

    order = KeyOrder((INTEGER,))
    store = HashStore(state)
    store.order = order
    store.confirm("s", [(str(k), f"{k:032x}", None) for k in (1, 2, 3)])
    ords = order.page([pa.array([1, 2, 3], pa.int64())])
    hashes = [f"{k:032x}" for k in (1, 2, 3)]
    merge = Merge(store, "s", order, collect=False)
    # Read as if the previous page had ended at key 1: claims the range holds nothing.
    stale = Ahead(ords, ords[0].as_py(), ords[2].as_py(), 2 * 3 + 1_000, 0, b"")
    d = merge.page(ords, hashes, stale)
    assert (d.unchanged, d.todo, d.vanished) == (3, [], 0)
