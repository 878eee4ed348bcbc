"""The outcome queue, pure: scripted readings in, parts sent and the batch's outcome out.

Items are opaque to the queue, so plain strings stand in for them.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from connector.core.errors import RequestError
from connector.deliver.http_loop import Verdict
from connector.deliver.outcomes import BatchOutcome, OutcomeQueue, Reading, read
from connector.destinations.base import Item, Learned, Outcome


def _items(n: int) -> list[Item]:
    return cast(list[Item], [f"e{i}" for i in range(n)])


def _run(
    n: int, answer: Any, dedup: bool = False, ambiguous: int = 0
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
    ("dedup", "ambiguous", "duplicated"),
    # A dedup destination received the copies too (it stores one): counted alike (issue 19
    # item 9; the summary says which).
    [(False, 1, 3), (False, 2, 6), (True, 2, 6), (False, 0, 0)],
)
def test_each_ambiguous_attempt_may_have_stored_one_copy_without_dedup(
    dedup: bool, ambiguous: int, duplicated: int
) -> None:
    _, out = _run(3, lambda part: Outcome(delivered=[0, 1, 2]), dedup=dedup, ambiguous=ambiguous)

    assert out.possibly_duplicated == duplicated and len(out.delivered) == 3


def test_items_refused_after_an_ambiguous_attempt_are_delivered_not_rejected() -> None:
    """A timeout stored the batch, the retry got a 400 naming event 3: it is at the vendor
    once (no extra copy); the rest are re-sent and stored a second time."""

    def answer(part: list[Item]) -> Outcome:
        if len(part) == 4:
            return Outcome(rejected={3: "bad"}, resend=[0, 1, 2])
        return Outcome(delivered=list(range(len(part))))

    queue = OutcomeQueue("dest", _items(4), dedup=False)
    kept: list[tuple[Item, str]] = []
    first = True
    while (nxt := queue.next_part()) is not None:
        part, _ = nxt
        kept += queue.settle(part, read(answer(part)), ambiguous=1 if first else 0)
        first = False
    out = queue.result()

    assert kept == [("e3", "bad")]
    assert out.rejected == [] and sorted(cast(list[str], out.delivered)) == _items(4)
    assert out.possibly_duplicated == 3  # e0-e2 inherit the attempt: stored twice


def test_halves_inherit_the_attempts_of_the_part_they_split_from() -> None:
    def answer(part: list[Item]) -> Outcome:
        return Outcome(split=True) if len(part) == 4 else Outcome(delivered=[0, 1])

    queue = OutcomeQueue("dest", _items(4), dedup=False)
    first = True
    while (nxt := queue.next_part()) is not None:
        queue.settle(nxt[0], read(answer(nxt[0])), ambiguous=2 if first else 0)
        first = False

    assert queue.result().possibly_duplicated == 8  # 4 items, 2 extra copies each


@pytest.mark.parametrize(
    ("processed", "stored_nothing", "duplicated"), [(0, True, 0), (1, False, 0), (3, False, 8)]
)
def test_a_failed_exchange_counts_copies_beyond_the_one_the_next_run_sends(
    processed: int, stored_nothing: bool, duplicated: int
) -> None:
    """A 401/403 or refused connections only: nothing stored, nothing counted; otherwise
    the part is pending (the next run counts one copy) and the extra attempts count here."""
    queue = OutcomeQueue("dest", _items(4), dedup=False)
    assert queue.next_part() is not None

    queue.fail(processed)

    assert (not queue.maybe_stored, queue.possibly_duplicated) == (stored_nothing, duplicated)


def test_a_fatal_answer_after_an_ambiguous_attempt_may_have_stored() -> None:
    queue = OutcomeQueue("dest", _items(2), dedup=False)
    nxt = queue.next_part()
    assert nxt is not None

    with pytest.raises(RequestError) as err:
        queue.settle(nxt[0], Reading(Verdict.FATAL, message="revision refused"), ambiguous=1)
    queue.fail()

    assert err.value.stored_nothing is False and queue.maybe_stored
    assert queue.possibly_duplicated == 0


def test_a_failure_after_a_settled_part_keeps_its_copies_and_counts_the_pending_rest() -> None:
    queue = OutcomeQueue("dest", _items(4), dedup=False)
    nxt = queue.next_part()
    assert nxt is not None
    queue.settle(nxt[0], read(Outcome(split=True)), ambiguous=2)
    nxt = queue.next_part()
    assert nxt is not None
    queue.settle(nxt[0], read(Outcome(delivered=[0, 1])))  # 2 items, 2 extra copies each
    assert queue.next_part() is not None

    queue.fail(1)  # the second half: 2 inherited + 1 = 3 attempts, 2 copies beyond one each

    assert queue.possibly_duplicated == 2 * 2 + 2 * 2


def test_dedup_destinations_count_the_copies_received_and_know_what_may_be_stored() -> None:
    queue = OutcomeQueue("dest", _items(2), dedup=True)
    assert queue.next_part() is not None

    queue.fail(3)

    # Three attempts may have reached the vendor; the next run sends one more: two extra
    # copies of each item received (the destination stores one of them).
    assert queue.maybe_stored and queue.possibly_duplicated == 4


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
