"""The run's give-up signal (``core.giveup``): seen in the context it was set in and in copies
of it (a run's sender threads), nowhere else."""

from __future__ import annotations

import threading
from contextvars import copy_context

from connector.core import giveup


def test_only_the_runs_contexts_give_up_and_only_once_it_failed() -> None:
    failed = threading.Event()
    run = copy_context()
    run.run(giveup.watch, failed)
    sender = run.copy()  # what a sender thread runs in

    assert not sender.run(giveup.given_up)
    failed.set()
    assert sender.run(giveup.given_up) and run.run(giveup.given_up)
    assert not giveup.given_up()  # this test's own context watches nothing
    seen: list[bool] = []
    other = threading.Thread(target=lambda: seen.append(giveup.given_up()))
    other.start()
    other.join()
    assert seen == [False]  # a thread started without the run's context (contact polls)
