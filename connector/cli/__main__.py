"""``python -m connector.cli``: the ``connector`` command."""

from __future__ import annotations

import sys

from .main import entry

if __name__ == "__main__":
    sys.exit(entry())
