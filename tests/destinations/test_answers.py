"""Request-level vs item-level answers, decided by the answer's structure before its words
(``connector.destinations.answers.judge``; issue 19 item 1).

End to end through the CLI against the sandbox: Omnisend's dated API answering an
unsupported ``Omnisend-Version`` (the sandbox's own 400 wording), a retired one (410 Gone) or
a problem body without field errors whose words name nothing known: the run exits 1, records
no reject and keeps the checkpoint; with the version served again the next run delivers every
row. Plus the judge and the vendors' readings, unit by unit.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from connector.cli import main as cli
from connector.destinations.answers import About, judge, request_problem
from connector.destinations.base import Request
from connector.destinations.brevo.batch import BrevoEventsBatch
from connector.sandbox import Fault, SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse

SYNC = """
name: plays
source: {{table: plays, cursor: ts, primary_key: [id], url: "{url}"}}
destination:
  type: omnisend_events
  api_key: ${{OMNISEND_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: {{column: name}}
  event_time: ts
  identifiers: {{email: email}}
  event_properties: {{n: id}}
"""
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ROWS = 12


@pytest.fixture
def plays(duck: Warehouse) -> Warehouse:
    duck.run(
        "DROP TABLE IF EXISTS plays",
        f"CREATE TABLE plays (id INTEGER, ts {duck.timestamptz()}, name VARCHAR(50), "
        "email VARCHAR(100))",
    )
    duck.insert(
        "plays",
        [
            {"id": i, "ts": T0 + timedelta(seconds=i), "name": "played", "email": f"u{i}@x.io"}
            for i in range(ROWS)
        ],
    )
    return duck


def _sandbox(**options: object) -> Iterator[SandboxServer]:
    opts = SandboxOptions(rate_limits_enabled=False, **options)  # type: ignore[arg-type]
    with SandboxServer(opts, host="127.0.0.1", port=0) as sb:
        yield sb


def _cli(
    tmp_path: Path, wh: Warehouse, sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    (syncs / "plays.yaml").write_text(SYNC.format(url=wh.url, sandbox=sandbox.url))
    wh.dispose()
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    argv = ["--config-dir", str(tmp_path / "config"), "--state-url", state_url, "sync", "plays"]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _problem(status: int, detail: str) -> dict[str, object]:
    return {"type": "https://x/", "title": "Bad request", "status": status, "detail": detail}


@pytest.mark.parametrize(
    ("options", "fault", "words"),
    [
        # The sandbox's own words: "Unsupported Omnisend-Version '2026-03-15'; supported: ..."
        ({"omnisend_versions": ("2027-01-15",)}, None, "Unsupported Omnisend-Version"),
        # The vendor retired the version: 410 Gone, RFC 9457, no field errors.
        ({"omnisend_retired_versions": ("2026-03-15",)}, None, "was retired"),
        # A problem body without errors[] whose words name nothing the old classifier knew.
        ({}, _problem(400, "This version cannot serve the request."), "cannot serve"),
    ],
    ids=["unsupported-400", "retired-410", "problem-without-errors"],
)
def test_an_omnisend_version_error_fails_the_run_with_no_reject_and_the_checkpoint_kept(
    options: dict[str, object],
    fault: dict[str, object] | None,
    words: str,
    tmp_path: Path,
    plays: Warehouse,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on main (6a354b0 and 4405b50): exit 0, 12 rejects, checkpoint moved past them."""
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    for sandbox in _sandbox(**options):
        if fault is not None:
            sandbox.inject(Fault(path="/api/events", status=400, body=fault, times=100))
        code, _out, err = _cli(tmp_path, plays, sandbox, capsys)
        assert code == 1, err
        assert words in err and "refused the request itself" in err
        assert state.rejects("plays") == []
        assert state.checkpoint("plays") is None
        assert state.runs("plays")[0]["status"] == "failed"
        assert sandbox.events("omnisend_events") == []
    for sandbox in _sandbox():  # the version is served (again): every row, once
        code, _out, err = _cli(tmp_path, plays, sandbox, capsys)
        assert code == 0, err
        assert len(sandbox.events("omnisend_events")) == ROWS
        assert state.rejects("plays") == []


# --------------------------------------------------------------------------- the judge


def test_structure_decides_before_the_words() -> None:
    # Pointers at items: about the items, whatever the words say.
    assert judge(400, "Invalid revision header", item_detail=True) is About.ITEMS
    # A pointer at the request, or a status never about items: the request.
    assert judge(400, "x", item_detail=True, request_detail=True) is About.REQUEST
    assert judge(410, "gone", item_detail=True) is About.REQUEST
    # A format with a place for item detail that names none: the request, whatever its words.
    assert judge(400, "contact has no identifier", item_detail=False) is About.REQUEST
    # A format without such a place: the words decide.
    assert judge(400, "event_name is invalid", item_detail=False, detail_format=False) is (
        About.ITEMS
    )
    assert judge(400, "Unsupported API version", item_detail=False, detail_format=False) is (
        About.REQUEST
    )


@pytest.mark.parametrize(
    "message",
    [
        "Unsupported Omnisend-Version '2025-01-01'; supported: 2026-03-15",  # the sandbox's
        "The Omnisend-Version header is required",
        "unsupported version",
    ],
)
def test_the_version_words_are_known(message: str) -> None:
    assert request_problem(message)


def _brevo(n: int) -> tuple[BrevoEventsBatch, Request]:
    dest = BrevoEventsBatch.__new__(BrevoEventsBatch)  # interpret reads no config but these
    dest._known = "array"
    items = [object()] * n
    return dest, Request("/v3/events/batch", b"[]", {}, items, variant="array")  # type: ignore[arg-type]


def test_a_brevo_batch_400_pointing_at_no_event_is_about_the_request() -> None:
    """batchEventsResponse lists each refused event under errors[].eventIndex: a 400 that
    points at none is about the request (before: split down to single events)."""
    dest, request = _brevo(4)
    body = orjson.dumps({"code": "invalid_parameter", "message": "Something odd"})
    outcome = dest.interpret(request, 400, {}, body)
    assert outcome.fatal and "Something odd" in outcome.fatal and not outcome.split
    # Its size (out_of_range) is about the request too, and halves fix it.
    body = orjson.dumps({"code": "out_of_range", "message": "Request body must not exceed 512 KB"})
    assert dest.interpret(request, 400, {}, body).split
    # Indices: about those events.
    body = orjson.dumps({"errors": [{"eventIndex": [1], "message": "bad date"}]})
    outcome = dest.interpret(request, 400, {}, body)
    assert outcome.rejected == {1: "Brevo: bad date"} and outcome.resend == [0, 2, 3]


def test_a_klaviyo_profile_error_is_judged_by_where_it_points() -> None:
    from connector.destinations.klaviyo.vendor import jsonapi_about_request

    def body(**source: str) -> bytes:
        return orjson.dumps({"errors": [{"detail": "Invalid email.", "source": source}]})

    assert not jsonapi_about_request(400, body(pointer="/data/attributes/email"))
    assert jsonapi_about_request(400, body(header="revision"))
    assert jsonapi_about_request(400, body())  # points nowhere: about the request
    assert jsonapi_about_request(410, body(pointer="/data/attributes/email"))  # retired


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_an_omnisend_version_error_fails_a_contact_run_too(
    mode: str,
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.e2e.test_omnisend_batch_items import SYNC, Cli, _people

    _people(duck)
    template = SYNC.replace("poll_max_interval_s: 0.05", f"poll_max_interval_s: 0.05, mode: {mode}")
    for sandbox in _sandbox(omnisend_retired_versions=("2026-03-15",)):
        cli_run = Cli(tmp_path, duck, sandbox)
        cli_run.template = template  # type: ignore[misc]
        cli_run.write()
        code, out = cli_run.sync(monkeypatch, capsys)
        assert code == 1 and "410" in out["stderr"] and "was retired" in out["stderr"], out
        assert StateStore(cli_run.state_url).rejects("people") == []
        assert cli_run.confirmed() == 0
