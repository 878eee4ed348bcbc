"""Log records carry the sync name and the run id, from the run's thread and its senders'."""

from __future__ import annotations

import io
import logging

import pytest

from connector.core.logcontext import FORMAT, RunContextFilter, get_logger, run_context, stamp
from connector.deliver.delivery import Runtime
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import create_events_table, event_rows, insert_events, sync_for


def test_records_of_a_run_carry_its_sync_name_and_run_id_in_every_thread(
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 30)
    rows[5]["event_id"] = None  # the run warns about it, from its own thread
    insert_events(duck, rows)
    sync = sync_for("brevo_events_batch", duck, sandbox.url)
    sandbox.inject(Fault(path="/v3/events/batch", status=429, headers={"Retry-After": "2"}))
    out = io.StringIO()
    handler = stamp(logging.StreamHandler(out))
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger("connector").addHandler(handler)
    caplog.set_level(logging.INFO, logger="connector")
    try:
        res = run_sync(sync, state=state, runtime=runtime)
    finally:
        logging.getLogger("connector").removeHandler(handler)

    assert res.run_id and res.delivered == 29
    waited = [r for r in caplog.records if "429, waiting" in r.getMessage()]
    null_keys = [r for r in caplog.records if "NULL cursor or primary key" in r.getMessage()]
    assert len(waited) == 1 and len(null_keys) == 1
    assert (waited[0].threadName or "").startswith("send-videos")  # a sender thread
    assert null_keys[0].threadName != waited[0].threadName
    for record in waited + null_keys:
        assert (record.sync_name, record.run_id) == ("videos", res.run_id)  # type: ignore[attr-defined]
    assert (
        f"[videos run {res.run_id}]: brevo_events_batch: POST answered 429, waiting"
        in out.getvalue()
    )


def test_records_outside_a_run_say_so_and_runs_do_not_leak_into_each_other() -> None:
    log = get_logger("connector.test")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    log.addHandler(keep)
    try:
        log.warning("before")
        with run_context("a", lambda: "1"):
            log.warning("in a")
            with run_context("b", lambda: None):  # the state store has not started it yet
                log.warning("in b")
            log.warning("a again")
        log.warning("after")
    finally:
        log.removeHandler(keep)

    assert [(r.sync_name, r.run_id) for r in seen] == [  # type: ignore[attr-defined]
        ("-", "-"),
        ("a", "1"),
        ("b", "-"),
        ("a", "1"),
        ("-", "-"),
    ]


def test_a_record_from_another_library_gets_the_fields_from_a_stamped_handler() -> None:
    record = logging.makeLogRecord({"name": "httpx", "msg": "HTTP Request"})
    with run_context("videos", lambda: "r1"):
        assert RunContextFilter().filter(record)

    assert logging.Formatter(FORMAT).format(record).endswith("[videos run r1]: HTTP Request")
