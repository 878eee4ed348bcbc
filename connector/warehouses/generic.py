"""Any other SQLAlchemy database: the base class's behaviour, unchanged.

Its columns' kinds are unknown (``other``), so the type rules do not judge them; values are
typed by what the driver returns; pages are keyset pages; contact syncs diff by key lookups.
"""

from __future__ import annotations

from .base import Warehouse


class Generic(Warehouse):
    """The fallback for a URL no warehouse module serves."""


WAREHOUSE = Generic()
