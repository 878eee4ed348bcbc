"""Read ahead: run an iterator in its own thread, a few items ahead of its consumer.

A contact run's pages cost the warehouse read (DuckDB decoding and sorting, or a server's
query), then mapping and hashing in Python. Both halves hold the GIL only part of the time
(DuckDB, Arrow and the database drivers release it), so reading page k+1 while page k is
hashed puts the second core to work: the wall time tends to the larger half instead of the
sum.

The iterator runs entirely in the worker thread: it is created there, advanced there and
closed there, so a driver's connection or open result never changes threads; it runs in a
copy of the consumer's context, so its log records name the run (``logcontext``). Closing the
consumer (or an error in it) stops the worker and waits for it, so when ``read_ahead``'s
generator is closed the source's result is closed too.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def read_ahead(
    make: Callable[[], Iterator[T]], depth: int = 1, name: str = "read-ahead"
) -> Generator[T]:
    """Yield ``make()``'s items, produced up to ``depth`` items ahead in a worker thread.

    An exception raised by the iterator is raised here, at the item where it happened (the
    items before it are yielded first). Closing this generator early closes the iterator in
    its thread and returns once the thread has ended.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    context = contextvars.copy_context()  # the run's log context (``logcontext``) goes along

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            it = make()
            try:
                for item in it:
                    if not put((item,)):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
            put(exc)
            return
        put(_DONE)

    worker = threading.Thread(target=context.run, args=(work,), name=name, daemon=True)
    worker.start()
    try:
        while True:
            got = items.get()
            if got is _DONE:
                return
            if isinstance(got, BaseException):
                raise got
            assert isinstance(got, tuple)
            yield got[0]
    finally:
        stop.set()
        worker.join()
