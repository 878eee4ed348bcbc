"""The outcome queue, pure: scripted readings in, parts sent and the batch's outcome out.

Items are opaque to the queue, so plain strings stand in for them.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from connector.destinations.base import Item, Learned, Outcome
from connector.errors import RequestError
from connector.http_loop import Verdict
from connector.outcomes import BatchOutcome, OutcomeQueue, Reading, read


def _items(n: int) -> list[Item]:
    return cast(list[Item], [f"e{i}" for i in range(n)])


def _run(
    n: int, answer: Any, dedup: bool = False, ambiguous: bool = False
) -> tuple[list[list[str]], BatchOutcome]:
    """Feed the queue ``answer(part) -> Outcome`` until every item ended."""
    queue = OutcomeQueue("dest", _items(n), dedup=dedup)
    parts: list[list[str]] = []
    while (nxt := queue.next_part()) is not None:
        part, variant = nxt
        parts.append(cast(list[str], part))
        queue.settle(part, read(answer(part)), ambiguous=ambiguous, variant=variant)
    return parts, queue.result()


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (Outcome(delivered=[0, 1]), Verdict.DELIVERED),
        (Outcome(delivered=[0], rejected={1: "bad"}), Verdict.REJECTED),
        (Outcome(rejected={0: "bad"}, resend=[1]), Verdict.RESEND),
        (Outcome(split=True), Verdict.SPLIT),
        (Outcome(resend_variant="object", resend=[0, 1]), Verdict.SWITCH_SHAPE),
        (Outcome(fatal="the header is wrong", split=True), Verdict.FATAL),
    ],
)
def test_read_gives_each_answer_one_verdict(outcome: Outcome, verdict: Verdict) -> None:
    assert read(outcome).verdict is verdict


def test_a_batch_refused_without_detail_is_sent_again_in_halves_depth_first() -> None:
    parts, out = _run(
        8, lambda part: Outcome(split=True) if len(part) > 2 else Outcome(delivered=[0, 1])
    )

    assert [len(p) for p in parts] == [8, 4, 2, 2, 4, 2, 2]
    assert out.delivered == _items(8) and out.rejected == []


def test_items_to_resend_go_next_and_alone() -> None:
    def answer(part: list[Item]) -> Outcome:
        if len(part) == 4:  # a 400 listing one bad event: nothing stored
            return Outcome(rejected={2: "bad email"}, resend=[0, 1, 3])
        return Outcome(delivered=list(range(len(part))))

    parts, out = _run(4, answer)

    assert parts == [["e0", "e1", "e2", "e3"], ["e0", "e1", "e3"]]
    assert out.delivered == cast(list[Item], ["e0", "e1", "e3"])
    assert out.rejected == [("e2", "bad email")]


def test_every_single_event_refused_alike_fails_the_run_without_a_reject() -> None:
    def answer(part: list[Item]) -> Outcome:
        return Outcome(split=True) if len(part) > 1 else Outcome(rejected={0: "bad header"})

    queue = OutcomeQueue("dest", _items(4), dedup=False)
    while (nxt := queue.next_part()) is not None:
        queue.settle(nxt[0], read(answer(nxt[0])))

    with pytest.raises(RequestError, match=r"every one of 4 events, sent alone.*bad header"):
        queue.result()


def test_single_events_refused_for_different_reasons_are_rejects() -> None:
    def answer(part: list[Item]) -> Outcome:
        if len(part) > 1:
            return Outcome(split=True)
        return Outcome(rejected={0: f"bad {part[0]}"})

    _, out = _run(2, answer)

    assert out.rejected == [("e0", "bad e0"), ("e1", "bad e1")]


def test_a_lone_event_refused_is_a_reject_not_a_request_error() -> None:
    _, out = _run(1, lambda part: Outcome(rejected={0: "bad"}))

    assert out.rejected == [("e0", "bad")]


@pytest.mark.parametrize(("delivered_first", "stored_nothing"), [(False, True), (True, False)])
def test_a_fatal_answer_fails_the_run_and_says_whether_anything_was_stored(
    delivered_first: bool, stored_nothing: bool
) -> None:
    queue = OutcomeQueue("dest", _items(4), dedup=False)
    nxt = queue.next_part()
    assert nxt is not None
    part = nxt[0]
    if delivered_first:
        queue.settle(part, read(Outcome(delivered=[0, 1], resend=[2, 3])))
        nxt = queue.next_part()
        assert nxt is not None
        part = nxt[0]

    with pytest.raises(RequestError, match="revision") as err:
        queue.settle(part, Reading(Verdict.FATAL, message="revision refused"))

    assert err.value.stored_nothing is stored_nothing


@pytest.mark.parametrize(
    ("dedup", "ambiguous", "duplicated"), [(False, True, 3), (True, True, 0), (False, False, 0)]
)
def test_events_delivered_after_an_ambiguous_failure_may_be_duplicated_without_dedup(
    dedup: bool, ambiguous: bool, duplicated: int
) -> None:
    _, out = _run(
        4,
        lambda part: Outcome(delivered=[0, 1, 2], rejected={3: "bad"}),
        dedup=dedup,
        ambiguous=ambiguous,
    )

    assert out.possibly_duplicated == duplicated


def test_a_resend_in_another_body_variant_keeps_it_through_splits_and_lessons_merge() -> None:
    """Brevo batch: the object shape asked for once is used by the re-send and its halves;
    what the answers taught is merged into the batch's outcome (the later lesson wins)."""
    queue = OutcomeQueue("dest", _items(4), dedup=False)
    sent: list[tuple[int, str | None]] = []
    while (nxt := queue.next_part()) is not None:
        part, variant = nxt
        sent.append((len(part), variant))
        if variant is None:
            outcome = Outcome(resend=[0, 1, 2, 3], resend_variant="object")
        elif len(part) == 4:
            outcome = Outcome(split=True, learned=Learned({"shape": "object", "a": "1"}))
        else:
            outcome = Outcome(delivered=[0, 1], learned=Learned({"shape": "object2"}))
        queue.settle(part, read(outcome), variant=variant)

    out = queue.result()

    assert sent == [(4, None), (4, "object"), (2, "object"), (2, "object")]
    assert len(out.delivered) == 4
    assert out.learned == Learned({"shape": "object2", "a": "1"})
