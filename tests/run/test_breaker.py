"""A batch whose every item is refused with one and the same reason, *with* per-item detail,
fails the run: nothing is recorded as a reject, the checkpoint stays, and the next run (the
account fixed) delivers every row once (issue 19 item 2; ``run.breaker``, ``ALIKE_MIN_ROWS``).

End to end through the CLI against the sandbox, with ``disabled_event_names`` (Brevo's 400
``errors[{eventIndex: [0,1,2,3], message: "event_name is not enabled on this account"}]``,
Klaviyo's 400 with one pointer per event and one detail) and with the same Brevo body injected
as a fault; runs far below ``reject_ratio_min_rows``.

The circuit breaker's ratio: a run whose API-side rejects pass it fails (at a later batch too,
keeping what was settled), runs below its ratio or minimum are left alone, and local
validation rejects do not count toward it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.cli import main as cli
from connector.core.errors import RequestError
from connector.core.options import CommonOptions
from connector.deliver.delivery import Runtime
from connector.run.breaker import ALIKE_MIN_ROWS, Breaker, Trip
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import (
    BREVO,
    KLAVIYO,
    KLAVIYO_ITEM,
    KLAVIYO_PATH,
    assert_nothing_rejected_or_moved,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    klaviyo_errors,
    sync_for,
)

TEMPLATES = {"brevo_events_batch": BREVO, "klaviyo_bulk_events": KLAVIYO}
DISABLED = "video_played"  # every row of ``event_rows``
NOT_ENABLED = "event_name is not enabled on this account"


def _sandbox(**options: Any) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(**options), host="127.0.0.1", port=0) as sb:
        yield sb


def _cli(
    tmp_path: Path,
    wh: Warehouse,
    kind: str,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    text = TEMPLATES[kind].format(
        name="videos", table="ev", url=wh.url, sandbox=sandbox.url, chunk_size=100, options="{}"
    )
    (syncs / "videos.yaml").write_text(text)
    wh.dispose()
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    code = cli.main(
        ["--config-dir", str(tmp_path / "config"), "--state-url", state_url, "sync", "videos"]
    )
    out, err = capsys.readouterr()
    return code, out, err


def _brevo_not_enabled(n: int) -> dict[str, Any]:
    return {
        "status": "failure",
        "total_events": n,
        "successful_events": 0,
        "failed_events": n,
        "errors": [{"eventIndex": list(range(n)), "message": NOT_ENABLED}],
    }


@pytest.mark.parametrize(
    ("kind", "how", "words"),
    [
        ("brevo_events_batch", "option", NOT_ENABLED),
        ("brevo_events_batch", "fault", NOT_ENABLED),
        ("klaviyo_bulk_events", "option", "The metric is not enabled on this account."),
    ],
)
@pytest.mark.parametrize("rows", [ALIKE_MIN_ROWS, 4, 30])
def test_every_row_refused_alike_fails_the_run_and_keeps_the_checkpoint(
    kind: str,
    how: str,
    words: str,
    rows: int,
    tmp_path: Path,
    duck: Warehouse,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on main (4405b50): exit 0 with every row a reject and the checkpoint past them
    (the "fault" case; the "option" cases need the sandbox option this change adds)."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, rows))
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    options = {"disabled_event_names": (DISABLED,)} if how == "option" else {}
    for sandbox in _sandbox(**options):
        if how == "fault":
            body = _brevo_not_enabled(rows)
            sandbox.inject(Fault(path="/v3/events/batch", status=400, body=body))
        code, _out, err = _cli(tmp_path, duck, kind, sandbox, capsys)
        assert code == 1, err
        assert f"every one of the {rows} rows" in err and words in err
        assert state.rejects("videos") == []
        assert state.checkpoint("videos") is None
        # Nothing was stored: no copy to count later.
        assert state.ledger("videos", "incremental") == []
        assert state.runs("videos")[0]["status"] == "failed"
        assert delivered_ids(sandbox, kind) == []
    for sandbox in _sandbox():  # the account has the event name enabled now
        code, out, err = _cli(tmp_path, duck, kind, sandbox, capsys)
        assert code == 0, err
        assert sorted(delivered_ids(sandbox, kind)) == list(range(rows))
        assert state.rejects("videos") == []
        assert "possibly duplicated 0" in out


def test_one_row_refused_is_a_reject_of_that_row(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """Below ALIKE_MIN_ROWS: one refused row is a row refused, not the request."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 1))
    for sandbox in _sandbox(disabled_event_names=(DISABLED,)):
        code, _out, err = _cli(tmp_path, duck, "brevo_events_batch", sandbox, capsys)
        assert code == 0, err
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    assert [(r["key"], r["reason"]) for r in state.rejects("videos")] == [
        ("0", f"Brevo: {NOT_ENABLED}")
    ]


def test_rows_refused_among_delivered_ones_are_rejects(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side: the rule needs every answered row refused."""
    create_events_table(duck)
    rows = event_rows(0, 6)
    for row in rows[:4]:
        row["kind"] = "signed_up"
    insert_events(duck, rows)
    for sandbox in _sandbox(disabled_event_names=(DISABLED,)):
        code, _out, err = _cli(tmp_path, duck, "klaviyo_bulk_events", sandbox, capsys)
        assert code == 0, err
        assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == [0, 1, 2, 3]
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    assert sorted(r["key"] for r in state.rejects("videos")) == ["4", "5"]


# --------------------------------------------------------------------------- the rule


def _breaker(
    released: list[str], dropped: list[str], alike: int | None = ALIKE_MIN_ROWS
) -> Breaker[str]:
    def message(trip: Trip, ratio: float) -> str:
        return f"ratio {trip.refused}/{trip.answered}"

    return Breaker(
        CommonOptions(), released.append, message, alike_min_rows=alike, drop=dropped.append
    )


def test_the_rule_trips_at_the_end_of_a_small_run_and_drops_its_units() -> None:
    released: list[str] = []
    dropped: list[str] = []
    breaker = _breaker(released, dropped)
    assert breaker.judge(2, ["same", "same"], "a") is None
    assert breaker.judge(1, ["same"], "b") is None
    with pytest.raises(RequestError) as err:
        breaker.release()
    assert "every one of the 3 rows" in str(err.value) and err.value.stored_nothing
    assert (released, dropped) == ([], ["a", "b"])


@pytest.mark.parametrize(
    ("units", "released"),
    [
        ([(1, ["same"])], ["a"]),  # one row: a reject
        ([(2, ["same", "other"])], ["a"]),  # two reasons
        ([(2, ["same", "same"]), (3, [])], ["b", "a"]),  # a row delivered
    ],
)
def test_the_rule_needs_every_row_refused_alike(
    units: list[tuple[int, list[str]]], released: list[str]
) -> None:
    got: list[str] = []
    dropped: list[str] = []
    breaker = _breaker(got, dropped)
    for name, (answered, reasons) in zip("ab", units, strict=False):
        assert breaker.judge(answered, reasons, name) is None
    breaker.release()
    assert got == released and dropped == []


def test_contact_runs_do_not_apply_the_rule() -> None:
    got: list[str] = []
    breaker = _breaker(got, [], alike=None)
    breaker.judge(3, ["same"] * 3, "a")
    breaker.release()
    assert got == ["a"]


def _pointer_rejects(rows: range) -> dict[str, Any]:
    return klaviyo_errors(
        *(
            {"title": "Invalid input.", "detail": "Not a known metric.", "source": {"pointer": p}}
            for p in (KLAVIYO_ITEM.format(i) for i in rows)
        )
    )


def test_circuit_breaker_stops_a_run_whose_api_rejects_pass_the_ratio(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 200))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url, chunk_size=500)
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=400, body=_pointer_rejects(range(150))))

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert "rejected 150 of the 200 rows" in str(err.value)
    assert "Not a known metric." in str(err.value) and "max_reject_ratio" in str(err.value)
    assert_nothing_rejected_or_moved(state)
    res = run_sync(sync, state=state, runtime=runtime)  # the vendor knows the metric now
    assert (res.delivered, res.rejected) == (200, 0)
    # The 50 accepted before the trip were re-sent with the same unique_id: stored once.
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(200))


@pytest.mark.parametrize(
    ("rows", "bad", "options", "rejected"),
    [
        (200, 20, "{}", 20),  # 10% < 50%: item rejects, as before
        (50, 40, "{}", 40),  # 80% but fewer than 100 rows answered: no judgment
        (200, 150, "{max_reject_ratio: 0.9}", 150),  # the ratio is an option
        (20, 15, "{max_reject_ratio: 0.9, reject_ratio_min_rows: 10}", 15),
    ],
)
def test_circuit_breaker_leaves_runs_below_its_ratio_or_minimum_alone(
    rows: int,
    bad: int,
    options: str,
    rejected: int,
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, rows))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url, chunk_size=500, options=options)
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=400, body=_pointer_rejects(range(bad))))

    res = run_sync(sync, state=state, runtime=runtime)

    assert (res.delivered, res.rejected) == (rows - rejected, rejected)
    assert len(state.rejects("videos")) == rejected
    assert state.checkpoint("videos")[1] == rows - 1  # type: ignore[index]


def _brevo_summary(status: int, indices: range, total: int = 200) -> Fault:
    body = {
        "status": "partial_success" if status == 207 else "failure",
        "total_events": total,
        "successful_events": total - len(indices),
        "failed_events": len(indices),
        "errors": [{"eventIndex": list(indices), "message": "Contact not found"}],
    }
    return Fault(path="/v3/events/batch", status=status, body=body)


def test_circuit_breaker_trips_on_a_later_batch_and_keeps_what_was_settled(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """Three batches of 200: 40 rejects (20%), then 160 (200 of 400: 50%, not past it), then
    200 (400 of 600): the run stops at the third; the first two stay recorded."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 600))
    sync = sync_for(
        "brevo_events_batch", duck, sandbox.url, chunk_size=600, options="{concurrency: 1}"
    )
    sandbox.inject(
        _brevo_summary(207, range(40)),
        _brevo_summary(207, range(160)),
        _brevo_summary(400, range(200)),
    )

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert "rejected 400 of the 600 rows" in str(err.value)
    assert state.checkpoint("videos")[1] == 399  # type: ignore[index]
    keys = sorted(int(r["key"]) for r in state.rejects("videos"))
    assert keys == list(range(40)) + list(range(200, 360))  # none of the third batch
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected) == (200, 0)
    assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(400, 600))


def test_local_validation_rejects_do_not_count_toward_the_breaker(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    rows = event_rows(0, 200)
    for r in rows[:150]:
        r["email"] = "not an email"
        r["user_id"] = None
    insert_events(duck, rows)
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url, chunk_size=500)

    res = run_sync(sync, state=state, runtime=runtime)

    assert (res.delivered, res.rejected) == (50, 150)
