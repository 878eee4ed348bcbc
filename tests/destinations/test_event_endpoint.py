"""The event destination contract (``connector/destinations/event_endpoint.py``): an
``abc.ABC`` with typed config, payloads and state, whose ``interpret`` is pure. What a
response teaches (the Brevo batch body shape, Omnisend v4 property types) comes back as
``Outcome.learned`` and is stored by the run in the transaction that settles the batch, on
the run's thread — never by a sender thread. A single-event answer's words about the request
fail the run; about the event, they reject it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connector.deliver.delivery import Runtime
from connector.deliver.factory import make_event_destination
from connector.deliver.http_loop import Verdict
from connector.deliver.outcomes import read
from connector.deliver.ratelimit import account_key
from connector.destinations import DESTINATIONS
from connector.destinations.base import Learned, Outcome
from connector.destinations.event_endpoint import (
    EventDestination,
    SingleEventDestination,
    request_problem,
    single_outcome,
)
from connector.destinations.omnisend.track import OmnisendTrack
from connector.run.sync import run_sync
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import FakeSleep, Warehouse
from tests.e2e import test_destinations_single as single
from tests.helpers import create_events_table, event_rows, insert_events, sync_for


def test_every_destination_is_an_abc_with_the_contract_implemented() -> None:
    assert EventDestination.__abstractmethods__ >= {
        "validate",
        "encode",
        "build",
        "interpret",
        "auth_headers",
    }
    for cls in DESTINATIONS.values():
        assert not cls.__abstractmethods__, cls.type

    class Half(SingleEventDestination):
        def validate(self, events: Any) -> dict[int, str]:
            return {}

    with pytest.raises(TypeError, match="abstract"):
        Half(None, "k", "s")  # type: ignore[abstract]


def test_outcome_verdicts_keep_the_flags_meaning() -> None:
    assert read(Outcome(delivered=[0])).verdict is Verdict.DELIVERED
    assert read(Outcome(split=True)).verdict is Verdict.SPLIT
    assert read(Outcome(fatal="no")).verdict is Verdict.FATAL
    assert Outcome(resend=[0], resend_variant="object").switch_shape


def test_learned_merges_later_lessons_over_earlier_ones() -> None:
    a = Learned({"shape": "array"}, {"e": {"x": "int"}})
    b = Learned({"shape": "object"}, {"e": {"y": "string"}, "f": {"z": "bool"}})
    assert a.merge(b) == Learned(
        {"shape": "object"}, {"e": {"x": "int", "y": "string"}, "f": {"z": "bool"}}
    )
    assert a.merge(None) is a and not Learned()


V4 = """
name: s
source: {table: t, cursor: c, primary_key: k}
destination: {type: omnisend_track, api_key: "${OMNISEND_TOKEN}"}
mapping: {event_name: played, event_time: c, identifiers: {email: m}, event_properties: {q: q}}
"""


class _Memory:
    """An AccountMemory that counts its reads."""

    def __init__(self, types: dict[str, str]) -> None:
        self.types = types
        self.reads = 0

    def account_setting(self, account: str, name: str) -> str | None:
        self.reads += 1
        return None

    def property_types(self, account: str, event_name: str) -> dict[str, str]:
        self.reads += 1
        return dict(self.types)


def test_omnisend_v4_interpret_returns_the_types_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow as pa

    from connector.config.sync_file import parse_sync
    from connector.map.mapper import Chunk, Mapper

    monkeypatch.setenv("OMNISEND_TOKEN", "t")
    sync = parse_sync(V4, "syncs/s.yaml")
    dest = make_event_destination(sync)
    assert isinstance(dest, OmnisendTrack)
    dest.attach(_Memory({}), "acct")
    table = pa.table(
        {
            "k": [1, 2],
            "c": pa.array([1, 2], pa.timestamp("s", tz="UTC")),
            "m": ["a@example.com", "b@example.com"],
            "q": [360, 480],
        }
    )
    events = Mapper(sync).map(Chunk(table))
    items, reasons = dest.encode(events, [0])
    assert reasons == {} and isinstance(items[0].payload, bytes)
    request = dest.build(items)
    frozen_before = {k: dict(v) for k, v in dest._frozen.items()}

    out = dest.interpret(request, 202, httpx.Headers({}), b"{}")

    assert out.delivered == [0] and out.learned == Learned(property_types={"played": {"q": "int"}})
    assert dest._frozen == frozen_before  # nothing learned until the run says so
    refused = dest.interpret(request, 400, httpx.Headers({}), b'{"error": "bad q"}')
    assert refused.learned is None  # a refused event teaches nothing
    dest.learn(out.learned)
    assert dest._frozen["played"] == {"q": "int"}


class _ThreadRecordingStore(StateStore):
    """The real store, noting the thread of every write about the destination account."""

    writers: list[str]

    def settle(self, *args: Any, **kwargs: Any) -> None:
        self.writers.append(threading.current_thread().name)
        super().settle(*args, **kwargs)

    def learn_property_types(self, *args: Any, **kwargs: Any) -> None:
        self.writers.append(threading.current_thread().name)
        super().learn_property_types(*args, **kwargs)

    def set_account_setting(self, *args: Any, **kwargs: Any) -> None:
        self.writers.append(threading.current_thread().name)
        super().set_account_setting(*args, **kwargs)


@pytest.fixture
def recording_state(tmp_path: Any) -> Iterator[_ThreadRecordingStore]:
    store = _ThreadRecordingStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    assert isinstance(store, _ThreadRecordingStore)
    store.writers = []
    yield store


def test_omnisend_v4_types_are_stored_by_the_run_thread_at_settle(
    duck: Warehouse, recording_state: _ThreadRecordingStore, fake_time: FakeSleep
) -> None:
    with SandboxServer(SandboxOptions(clock=fake_time.clock), host="127.0.0.1", port=0) as sandbox:
        single.create_table(duck)
        duck.insert("plays", [single.row(i) for i in range(6)])
        sync = single.make_sync("omnisend_track", duck, sandbox, concurrency=4)
        rt = Runtime(clock=fake_time.clock, sleep=fake_time.sleep, random=lambda: 0.5)

        res = run_sync(sync, state=recording_state, runtime=rt)

    assert res.delivered == 6
    main = threading.current_thread().name
    assert recording_state.writers and set(recording_state.writers) == {main}
    (account,) = single._accounts(recording_state)
    assert recording_state.property_types(account, "video_played")["ctx_q"] == "int"


def test_brevo_batch_shape_is_stored_in_the_settle_transaction_by_the_run_thread(
    duck: Warehouse, recording_state: _ThreadRecordingStore, runtime: Runtime
) -> None:
    with SandboxServer(SandboxOptions(brevo_batch_shape="object"), port=0) as sandbox:
        create_events_table(duck)
        insert_events(duck, event_rows(0, 450))  # three batches of ≤ 200
        sync = sync_for("brevo_events_batch", duck, sandbox.url, options="{concurrency: 1}")

        res = run_sync(sync, state=recording_state, runtime=runtime)

        assert res.delivered == 450
        # A batch built as an array is refused and re-sent as an object; once the first
        # accepted batch is settled, the run builds objects (a batch already on its way
        # may still be refused once: nothing of a 400 is stored).
        statuses = [r.status for r in sandbox.requests]
        assert statuses[:2] == [400, 202] and statuses.count(202) == 3
        assert set(statuses) == {400, 202}
        account = account_key("brevo_events_batch", sandbox.url, "sandbox-brevo-key")
        assert recording_state.account_setting(account, "brevo_batch_body_shape") == "object"

        insert_events(duck, event_rows(450, 10))
        assert run_sync(sync, state=recording_state, runtime=runtime).delivered == 10
        assert [r.status for r in sandbox.requests][len(statuses) :] == [202]
    main = threading.current_thread().name
    assert set(recording_state.writers) == {main}


def test_single_event_responses_map_to_outcomes() -> None:
    assert single_outcome("Brevo", 204, "").delivered == [0]
    assert single_outcome("Omnisend", 202, "").delivered == [0]
    assert single_outcome("Brevo", 400, "invalid_parameter: x").rejected == {
        0: "Brevo 400: invalid_parameter: x"
    }
    assert single_outcome("Brevo", 413, "too big").rejected
    fatal = single_outcome("Omnisend", 404, "no such endpoint").fatal
    assert fatal and "404" in fatal


# --------------------------------------------------------------------------- classifiers


@pytest.mark.parametrize(
    "message",
    [
        "Revision 2023-10-15 does not support this endpoint.",
        "The revision header is required, e.g. revision: 2026-07-15.",
        "Invalid header: X-Unknown",
        "Unsupported API version v9",
        "Content-Type must be application/json, not 'text/plain'",
        'Unsupported media type "text/plain" in request',
        "Request body is not valid JSON",
        "JSON parse error.",
        "Malformed request.",
        "json: cannot unmarshal array into Go value of type main.createEventRequest",
        "Key not found: unauthorized",
    ],
)
def test_messages_about_the_request_are_request_level(message: str) -> None:
    assert request_problem(message)
    out = single_outcome("Brevo", 400, message)
    assert not out.rejected and out.fatal and message[:100] in out.fatal


@pytest.mark.parametrize(
    "message",
    [
        "bad_request: event_name is invalid",
        "json: cannot unmarshal string into Go struct field "
        "createEventRequest.identifiers.contact_id of type int64",
        "Event property key 'a b' is not valid",
        "contact not found",
    ],
)
def test_messages_about_the_event_reject_the_event(message: str) -> None:
    assert not request_problem(message)
    assert single_outcome("Brevo", 400, message).rejected == {0: f"Brevo 400: {message}"}
