"""The one factory of destinations: a sync's destination, of either kind, ready for its run.

``make_destination`` reads the registry, resolves the API key from the environment (or a
placeholder for ``preview``, ``validate`` and dry runs, which never send) and builds the
destination. ``make_event_destination`` and ``make_contact_destination`` are the same factory
with the kind checked, for the runs that need one kind's methods. A contact destination sends
its own requests (jobs, polls, lookups, list removals), so ``make_contact_destination``
connects it to its run's HTTP loop, paced per account (``shared_pacer.destination_pacer``); an
event destination's batches go through the run's ``Sender``, which takes the same loop and the
same pacer choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config.env import resolve_env
from ..config.sync_file import SyncConfig
from ..core.errors import ConfigError
from ..core.options import DestinationSettings
from ..destinations.base import Destination
from ..destinations.contact_endpoint import ContactDestination
from ..destinations.event_endpoint import EventDestination
from ..destinations.registry import destination_class
from ..store.state import StateStore
from .http_loop import Runtime, Stats, connect
from .shared_pacer import destination_pacer

if TYPE_CHECKING:
    import httpx  # annotations only: httpx is imported when a client is made

PLACEHOLDER_KEY = "****"  # the key of a destination that never sends


def make_destination(
    sync: SyncConfig, *, resolve_secret: bool = True
) -> Destination[DestinationSettings]:
    """The destination of ``sync``, of either kind, with its API key read from the
    environment (``resolve_secret=False``: a placeholder key). A contact destination is not
    yet connected to an HTTP loop (``make_contact_destination`` connects it).

    Raises:
        ConfigError: the API key's environment variable is not set.
    """
    cfg = sync.destination
    api_key = (
        resolve_env(cfg.api_key, f"{sync.source_path or sync.name}: destination.api_key")
        if resolve_secret
        else PLACEHOLDER_KEY
    )
    return destination_class(cfg.type)(cfg, api_key, sync.name)


def make_event_destination(
    sync: SyncConfig, *, resolve_secret: bool = True
) -> EventDestination[DestinationSettings]:
    """``make_destination`` for an event sync (``ConfigError`` for a contact sync). Its
    batches go through the run's ``Sender``, on the same HTTP loop and pacer choice."""
    dest = make_destination(sync, resolve_secret=resolve_secret)
    if not isinstance(dest, EventDestination):
        raise ConfigError(_wrong_kind(sync, "an event"))
    return dest


def make_contact_destination(
    sync: SyncConfig,
    *,
    resolve_secret: bool = True,
    runtime: Runtime | None = None,
    stats: Stats | None = None,
    state: StateStore | None = None,
    transport: httpx.BaseTransport | None = None,
) -> ContactDestination[DestinationSettings]:
    """``make_destination`` for a contact sync (``ConfigError`` for an event sync), connected
    to its HTTP loop: paced as ``options.pacing`` says through ``state``'s pacer table
    (without a ``state``, the process's pacer), waits on ``runtime``, requests counted in
    ``stats``, answered by ``transport`` in tests."""
    dest = make_destination(sync, resolve_secret=resolve_secret)
    if not isinstance(dest, ContactDestination):
        raise ConfigError(_wrong_kind(sync, "a contact"))
    rt = runtime or Runtime()
    pacer = destination_pacer(dest, rt, state.engine if state is not None else None)
    dest.connect(connect(dest, pacer, rt, stats or Stats(), transport))
    return dest


def _wrong_kind(sync: SyncConfig, wanted: str) -> str:
    kind = destination_class(sync.destination.type).kind
    return (
        f"{sync.source_path or sync.name}: destination {sync.destination.type} syncs {kind}; "
        f"this needs {wanted} destination"
    )
