"""Honest copy counts at destinations that dedup (issue 19 item 9).

"Possibly duplicated" counts the copies the vendor may have *received* beyond one, at every
destination; where it drops repeats by dedup id (Klaviyo ``unique_id``) it stores one of
them, and the summary says so. Checked against the sandbox's own counts: what it received
(stored + deduplicated) and what it stored. ``connector state show`` and the final summary
show the sync's total over every stored run and the last run's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.cli import main as cli
from connector.sandbox import Fault, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import (
    BREVO,
    KLAVIYO,
    create_events_table,
    delivered_ids,
    event_rows,
    insert_events,
)

ROWS = 200  # one batch at either destination
CASES = {
    "klaviyo_bulk_events": (KLAVIYO, "/api/event-bulk-create-jobs"),
    "brevo_events_batch": (BREVO, "/v3/events/batch"),
}


def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    code = cli.main(["--config-dir", str(tmp_path / "config"), "--state-url", state_url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _config(tmp_path: Path, wh: Warehouse, kind: str, sandbox: SandboxServer) -> None:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    text = CASES[kind][0].format(
        name="videos", table="ev", url=wh.url, sandbox=sandbox.url, chunk_size=500, options="{}"
    )
    (syncs / "videos.yaml").write_text(text)
    wh.dispose()


@pytest.mark.parametrize("kind", list(CASES))
def test_a_reset_after_processing_twice_counts_the_copies_the_vendor_received(
    kind: str,
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on main (4405b50) for Klaviyo: summary "possibly duplicated 0" while the
    sandbox received 600 copies of 200 events (it stores 200)."""
    create_events_table(duck)
    insert_events(duck, event_rows(0, ROWS))
    _config(tmp_path, duck, kind, sandbox)
    path = CASES[kind][1]
    sandbox.inject(Fault(path=path, reset=True, after_process=True, times=2))

    code, out, err = _cli(tmp_path, capsys, "sync", "videos")

    assert code == 0, err
    stats = sandbox.stats()
    stored = stats["events"][kind]
    received = stored + stats["deduplicated"][kind]
    assert received == 3 * ROWS  # the first two attempts were processed, then reset
    assert f"possibly duplicated {received - ROWS:,}" in out  # 400 copies beyond one
    if kind == "klaviyo_bulk_events":
        assert stored == ROWS  # Klaviyo drops the repeats by unique_id
        assert "the destination drops them by dedup id: it stores one" in out
    else:
        assert stored == 3 * ROWS  # Brevo has no dedup key: every copy is stored
        assert "no dedup key at this destination" in out
    assert sorted(set(delivered_ids(sandbox, kind))) == list(range(ROWS))
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    assert state.runs("videos")[0]["summary"]["possibly_duplicated"] == 2 * ROWS


def test_state_show_and_the_summary_total_the_copies_of_every_run(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on main (4405b50): neither showed the copies of earlier runs."""
    kind = "klaviyo_bulk_events"
    create_events_table(duck)
    insert_events(duck, event_rows(0, ROWS))
    _config(tmp_path, duck, kind, sandbox)
    path = CASES[kind][1]
    sandbox.inject(Fault(path=path, reset=True, after_process=True, times=2))
    code, out, err = _cli(tmp_path, capsys, "sync", "videos")
    assert code == 0, err
    assert "over all runs     400" in out

    insert_events(duck, event_rows(ROWS, 50))
    sandbox.inject(Fault(path=path, reset=True, after_process=True))
    code, out, err = _cli(tmp_path, capsys, "sync", "videos")
    assert code == 0, err
    assert "possibly duplicated 50 " in out
    assert "over all runs     450" in out

    code, out, err = _cli(tmp_path, capsys, "state", "show", "videos")
    assert code == 0, err
    assert "450 possibly duplicated copies over the sync's 2 stored runs (50 in the last run)" in (
        out
    )
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    copies = state.copies("videos")
    assert (copies.total, copies.last, copies.runs) == (450, 50, 2)
    stats = sandbox.stats()
    assert stats["events"][kind] + stats["deduplicated"][kind] == 3 * ROWS + 2 * 50
