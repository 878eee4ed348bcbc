"""Omnisend contact batches: the 2026-03-15 ``Batch`` schema lists its items under
``responses[]`` and ``errors[]``; a refused item listed only under ``errors[]`` is a reject of
its row, and a batch whose items cannot be matched says why in the run's error (issue 19
item 8).

End to end through the CLI against the sandbox (``omnisend_batch_items: split``); the reading
of both arrays unit by unit is in destinations/omnisend/test_contacts.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.contact_fixtures import ContactCli

SYNC = """
name: people
source: {{table: people, primary_key: [id], url: "{url}", chunk_size: 100}}
destination:
  type: omnisend_contacts
  api_key: ${{OMNISEND_API_KEY}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05}}
mapping:
  identifiers: {{email: email}}
  contact_properties: {{firstName: first_name, gender: gender}}
"""
ROWS = 60
BAD = {7, 19, 33, 48, 59}  # gender "x": the API refuses these (m|f), the connector does not


class Cli(ContactCli):
    name = "people"
    template = SYNC


def _people(wh: Warehouse) -> None:
    wh.run(
        "DROP TABLE IF EXISTS people",
        "CREATE TABLE people (id INTEGER, email VARCHAR(100), first_name VARCHAR(50), "
        "gender VARCHAR(5))",
    )
    wh.insert(
        "people",
        [
            {
                "id": i,
                "email": f"p{i}@example.com",
                "first_name": f"P{i}",
                "gender": "x" if i in BAD else "f",
            }
            for i in range(1, ROWS + 1)
        ],
    )


@pytest.mark.parametrize("items", ["split", "all"])
def test_refused_items_listed_only_under_errors_are_rejects_of_their_rows(
    items: str,
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failed on main (4405b50) with ``split``: exit 1 "60 rows stay unconfirmed (see above)"
    with nothing above, no reject, and the same on every later run."""
    _people(duck)
    options = SandboxOptions(omnisend_batch_items=items)  # type: ignore[arg-type]
    with SandboxServer(options, host="127.0.0.1", port=0) as sandbox:
        cli = Cli(tmp_path, duck, sandbox)
        code, summary = cli.sync(monkeypatch, capsys)
        assert code == 0, summary
        assert (summary["delivered"], summary["rejected"]) == (ROWS - len(BAD), len(BAD))
        state = StateStore(cli.state_url)
        rejects = {r["key"]: r["reason"] for r in state.rejects("people")}
        assert set(rejects) == {str(i) for i in BAD}
        assert all("gender must be m or f" in why for why in rejects.values())
        code, listed = cli.run(monkeypatch, capsys, "rejects", "people")
        assert code == 0 and all(f"\n{i}\t" in listed["stdout"] for i in BAD), listed
        # The next run sends only the refused rows again (the others are confirmed).
        code, again = cli.sync(monkeypatch, capsys)
        assert code == 0, again
        assert (again["sent"], again["delivered"], again["rejected"]) == (5, 0, 5)
