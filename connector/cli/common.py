"""What the command modules share: exit codes and opening the state store."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.state import StateStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def open_state(args: argparse.Namespace) -> StateStore:
    """The state store a command names (``--state-url``, else the environment's or the default)."""
    from ..store.state import StateStore

    return StateStore.open(args.state_url)
