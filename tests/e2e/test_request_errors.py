"""Request-level failures are failed runs, never a pile of row rejects (DESIGN.md, delivery).

End to end against the sandbox: a refused request (Klaviyo's revision, a header or parameter,
the Brevo batch body shape, a single-event vendor answering every event alike, every split of
a batch refused alike) exits 1, records no reject for the refused rows and keeps the
checkpoint; fixed, the next run delivers every row exactly once. The breaker's ratio is tested
in run/test_breaker.py, the classifiers unit by unit with their destinations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.config.sync_file import SyncConfig, parse_sync
from connector.core.errors import AuthError, RequestError
from connector.deliver.delivery import Runtime
from connector.deliver.ratelimit import account_key
from connector.run.sync import run_sync
from connector.sandbox import Fault, SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.e2e import test_destinations_single as single
from tests.helpers import (
    KLAVIYO,
    KLAVIYO_PATH,
    assert_nothing_rejected_or_moved,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
    klaviyo_errors,
    sync_for,
)


def _write_config(tmp_path: Path, text: str, name: str = "videos") -> Path:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    (syncs / f"{name}.yaml").write_text(text)
    return tmp_path / "config"


def _cli_sync(config: Path, state_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["--config-dir", str(config), "--state-url", state_url, "sync", "videos"])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- end to end


def test_klaviyo_revision_without_the_endpoint_fails_the_run_and_names_the_option(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 30))
    state_url = f"sqlite:///{tmp_path / 's.db'}"

    def config(options: str) -> Path:
        text = KLAVIYO.format(
            name="videos", table="ev", url=duck.url, sandbox=sandbox.url, chunk_size=100,
            options=options,
        )  # fmt: skip
        return _write_config(tmp_path, text)

    code, err = _cli_sync(config('{revision: "2023-10-15"}'), state_url, capsys)

    assert code == 1
    assert "Bulk event creation needs revision 2024-05-15 or later" in err  # the vendor's words
    assert "destination.options.revision" in err and "2023-10-15" in err  # the fix
    state = StateStore(state_url)
    assert_nothing_rejected_or_moved(state)
    assert sandbox.stats()["requests"] == 1  # no split down to single events

    code, _ = _cli_sync(config("{}"), state_url, capsys)
    assert code == 0
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(30))
    assert state.rejects("videos") == [] and state.checkpoint("videos")[1] == 29  # type: ignore[index]
    assert state.runs("videos")[0]["summary"]["possibly_duplicated"] == 0


@pytest.mark.parametrize(
    "source",
    [
        {"header": "revision"},  # the message of the issue, pointing at the header
        {"parameter": "additional-fields[profile]"},  # an unknown query parameter
        {"pointer": "/data/type"},  # the envelope of the body, not an event
    ],
)
def test_klaviyo_errors_at_the_request_fail_the_run_without_rejects(
    source: dict[str, str],
    duck: Warehouse,
    sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 20))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url)
    detail = "Revision 2023-10-15 does not support this endpoint."
    body = klaviyo_errors({"title": "Invalid input.", "detail": detail, "source": source})
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=400, body=body))

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert detail in str(err.value)
    assert_nothing_rejected_or_moved(state)
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected, res.possibly_duplicated) == (20, 0, 0)
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(20))


def test_a_klaviyo_400_pointing_at_no_event_fails_the_run_at_once(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """No source, no known words: JSON:API errors say where they are, so an error pointing at
    no event is about the request (``answers.judge``), decided from the first answer."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 8))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url)
    body = klaviyo_errors({"title": "Invalid input.", "detail": "Unexpected input."})
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=400, body=body, times=100))

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert "refused the request itself" in str(err.value)
    assert "Unexpected input." in str(err.value)
    assert_nothing_rejected_or_moved(state)
    assert sandbox.stats()["requests"] == 1  # no split down to single events
    sandbox.reset()  # the vendor is fixed (nothing was stored)
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected, res.possibly_duplicated) == (8, 0, 0)
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(8))


def test_a_batch_whose_every_single_event_is_refused_alike_fails_the_run(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """A 413 is about the size: the batch is split; every event alone gets the same answer,
    so the answer is about the request, not the rows."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 8))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url)
    body = klaviyo_errors({"title": "Too large.", "detail": "Request too large."})
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=413, body=body, times=100))

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert "every one of 8 events" in str(err.value) and "Request too large." in str(err.value)
    assert_nothing_rejected_or_moved(state)
    sandbox.reset()  # the vendor is fixed (nothing was stored)
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected, res.possibly_duplicated) == (8, 0, 0)
    assert sorted(delivered_ids(sandbox, "klaviyo_bulk_events")) == list(range(8))


def test_a_split_batch_with_different_answers_still_rejects_only_the_bad_rows(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """The other side of the rule above: a batch refused whole for its size, whose singles
    are refused for one row only, is about that row."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 4))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url)
    body = klaviyo_errors({"title": "Too large.", "detail": "Request too large."})
    # The whole batch, its first half and the first single are refused; the rest go through.
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=413, body=body, times=3))

    res = run_sync(sync, state=state, runtime=runtime)

    assert (res.delivered, res.rejected) == (3, 1)
    assert [r["key"] for r in state.rejects("videos")] == ["0"]


def test_brevo_batch_tries_the_other_shape_once_and_remembers_it_per_account(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    with SandboxServer(SandboxOptions(brevo_batch_shape="object"), port=0) as sandbox:
        create_events_table(duck)
        insert_events(duck, event_rows(0, 10))
        sync = sync_for("brevo_events_batch", duck, sandbox.url)

        res = run_sync(sync, state=state, runtime=runtime)

        assert (res.delivered, res.rejected) == (10, 0)
        assert [r.status for r in sandbox.requests] == [400, 202]  # array, then the object
        account = account_key("brevo_events_batch", sandbox.url, "sandbox-brevo-key")
        assert state.account_setting(account, "brevo_batch_body_shape") == "object"

        insert_events(duck, event_rows(10, 5))
        res = run_sync(sync, state=state, runtime=runtime)
        assert res.delivered == 5
        assert [r.status for r in sandbox.requests][2:] == [202]  # the object at once
        assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(15))


def test_brevo_batch_body_refused_in_both_shapes_fails_the_run_without_rejects(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 10))
    sync = sync_for("brevo_events_batch", duck, sandbox.url, options="{concurrency: 1}")
    refused = {
        "code": "bad_request",
        "message": "json: cannot unmarshal array into Go value of type main.unifiedEventsRequest",
    }
    sandbox.inject(Fault(path="/v3/events/batch", status=400, body=refused, times=2))

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert "cannot unmarshal array" in str(err.value) and "both batch body shapes" in str(err.value)
    assert_nothing_rejected_or_moved(state)
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected, res.possibly_duplicated) == (10, 0, 0)
    assert sorted(delivered_ids(sandbox, "brevo_events_batch")) == list(range(10))


BREVO_EVENT = """
name: videos
source: {{table: ev, cursor: occurred_at, primary_key: [event_id], url: "{url}"}}
destination:
  type: brevo_event
  api_key: ${{BREVO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: {{column: kind}}
  event_time: occurred_at
  identifiers: {{email_id: email, ext_id: user_id}}
  event_properties: {{duration: duration}}
"""


@pytest.fixture
def unlimited() -> Iterator[SandboxServer]:
    """A sandbox without rate windows: the fake clock of the run never lets real ones refill."""
    with SandboxServer(SandboxOptions(rate_limits_enabled=False), port=0) as sb:
        yield sb


@pytest.fixture
def brevo_event_sync(duck: Warehouse, unlimited: SandboxServer) -> SyncConfig:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 12))
    return parse_sync(BREVO_EVENT.format(url=duck.url, sandbox=unlimited.url), "syncs/videos.yaml")


@pytest.mark.parametrize(
    "message",
    [
        "Content-Type must be application/json, not 'text/plain'",
        "json: cannot unmarshal array into Go value of type main.createEventRequest",
        "Unsupported API version",
    ],
)
def test_a_single_event_vendor_refusing_every_request_alike_fails_the_run(
    message: str,
    brevo_event_sync: SyncConfig,
    unlimited: SandboxServer,
    state: StateStore,
    runtime: Runtime,
) -> None:
    sandbox = unlimited
    body = {"code": "bad_request", "message": message}
    sandbox.inject(Fault(path="/v3/events", status=400, body=body, times=1000))

    with pytest.raises(RequestError) as err:
        run_sync(brevo_event_sync, state=state, runtime=runtime)

    assert message in str(err.value)
    assert_nothing_rejected_or_moved(state)
    sandbox.reset()
    res = run_sync(brevo_event_sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected, res.possibly_duplicated) == (12, 0, 0)
    assert sorted(delivered_ids(sandbox, "brevo_event")) == list(range(12))


@pytest.mark.parametrize("kind", single.KINDS)
def test_every_single_event_type_fails_the_run_on_a_version_error(
    kind: str, duck: Warehouse, unlimited: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    single.create_table(duck)
    duck.insert("plays", [single.row(i) for i in range(6)])
    sync = single.make_sync(kind, duck, unlimited)
    text = "Unsupported API version: use /v5"
    body = (
        {"error": text} if kind.startswith("omnisend") else {"code": "bad_request", "message": text}
    )
    unlimited.inject(Fault(path=single.PATHS[kind], status=400, body=body, times=1000))

    with pytest.raises(RequestError) as err:
        run_sync(sync, state=state, runtime=runtime)

    assert text in str(err.value)
    assert state.rejects(sync.name) == [] and state.checkpoint(sync.name) is None
    unlimited.reset()
    res = run_sync(sync, state=state, runtime=runtime)
    assert (res.delivered, res.rejected, res.possibly_duplicated) == (6, 0, 0)
    assert len(unlimited.events(kind)) == 6


def test_a_run_failed_mid_read_lets_the_duckdb_file_go(
    duck: Warehouse, sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """A run that fails at its first batch, 30 pages before the end of its read, closes the
    open DuckDB result: the loader can write the file at once (as contact runs must too)."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, 3_000))
    sync = sync_for("klaviyo_bulk_events", duck, sandbox.url, chunk_size=100)
    sandbox.inject(Fault(path=KLAVIYO_PATH, status=401, times=100))

    with pytest.raises(AuthError):
        run_sync(sync, state=state, runtime=runtime)

    duck.run("UPDATE ev SET title = 'loaded again' WHERE event_id = 1")  # a write lock: no error
    assert_nothing_rejected_or_moved(state)
