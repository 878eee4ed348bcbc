"""The lookback window packed (``store.window``): a settle records its rows as one unit row of
``connector_window_units``, and the per-row rows of a store from before the units
(``connector_window_keys``) are still honoured until the checkpoint's window passes them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from connector.sandbox import SandboxServer
from connector.store.schema import window_keys, window_units
from connector.store.state import StateStore
from connector.store.window import MARK, NEVER, Pairs, WindowWrite, write_window
from tests.conftest import Warehouse
from tests.read.test_lookback import T0, Cli, add_duck, create_duck, received, rows_at


def test_a_settle_of_10000_rows_writes_one_unit(tmp_path: Path) -> None:
    """10,000 pairs are one unit row; reads unpack them, keep those at or above the edge,
    and the prune drops a unit once its newest row lies behind the window."""
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    nums = np.arange(1000, 11000, dtype=np.int64)
    hashes = np.arange(10000, dtype=np.int64) * -7_919 + 2**62  # negatives and large values
    with state.engine.begin() as c:
        write_window(c, "s", "incremental", WindowWrite(Pairs(nums, hashes), None, NEVER))
    with state.engine.connect() as c:
        units = c.execute(sa.select(sa.func.count()).select_from(window_units)).scalar_one()
        keys = c.execute(sa.select(window_keys.c.cursor_num)).all()
    assert units == state.window_unit_count("s", "incremental") == 1
    assert keys == [(MARK,)]  # one unit, and the mark
    assert state.window_size("s") == state.window_size("s", "incremental") == 10000
    assert state.window_since("s", "incremental") == NEVER
    assert state.window_hashes("s", "incremental", 10990) == set(hashes[-10:].tolist())
    assert state.window_hashes("s", "other", 0) == set()
    with state.engine.begin() as c:  # a second settle, then a prune past the first unit
        write_window(c, "s", "incremental", WindowWrite([(20000, 5)], None, None))
        write_window(c, "s", "incremental", WindowWrite([], 11000, None))
    assert state.window_size("s") == 1 and state.window_hashes("s", "incremental", 0) == {5}
    state.adopt_window("s", "incremental", "other")
    assert state.window_hashes("s", "other", 0) == {5} and state.window_size("s") == 1
    state.reset("s")
    assert state.window_size("s") == 0


def test_an_upgraded_stores_per_row_window_is_still_honoured(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rows a store from before the units recorded one by one in ``connector_window_keys``
    are not sent again (without reading them every one would be a late row); a late row is
    still caught, and the old rows leave as the checkpoint's window passes them."""
    create_duck(duck, rows_at(1, 20, T0))
    cli = Cli(tmp_path, duck, sandbox, monkeypatch, capsys)
    assert cli.sync()["delivered"] == 20
    state = StateStore(cli.state_url)
    with state.engine.begin() as c:  # the store as the per-row window left it
        packed = c.execute(sa.select(window_units)).all()
        rows = [
            {"sync": u.sync, "scope": u.scope, "cursor_num": n, "row_hash": h}
            for u in packed
            for n, h in zip(
                np.frombuffer(u.cursor_nums, "<i8").tolist(),
                np.frombuffer(u.row_hashes, "<i8").tolist(),
                strict=True,
            )
        ]
        assert len(rows) == 20
        c.execute(window_units.delete())
        c.execute(window_keys.insert(), rows)
    assert state.window_size("late") == 20
    add_duck(duck, [(21, T0 + timedelta(seconds=5, microseconds=1), "late@example.com")])
    again = cli.sync()
    assert (again["delivered"], again["late_rows"], again["window_reread"]) == (1, 1, 20)
    assert received(sandbox) == 21
    add_duck(duck, [(22, T0 + timedelta(hours=2), "new@example.com")])
    assert cli.sync()["delivered"] == 1
    with state.engine.connect() as c:
        old = c.execute(
            sa.select(sa.func.count()).where(window_keys.c.cursor_num < MARK)
        ).scalar_one()
    assert old == 0 and state.window_size("late") == 1  # the window moved past them
    assert received(sandbox) == 22
