"""Which pacer a contact run's requests take: the same choice as event syncs.

``destination.options.pacing`` (``auto``: shared through the state store's ``connector_pacer``
table when the store is PostgreSQL; ``shared``; ``process``) picks ``shared_pacer.SharedPacer``
or the process's ``ratelimit.Pacer``, as ``sync._Run`` does for event syncs.

The account a contact destination paces is its own type's (``ratelimit.account_key``: type,
base URL, key hash) unless the vendor documents one limit for its contact and event endpoints:
then ``ContactDestination.rate_account`` names the event destination whose budget it spends,
and contact and event runs of one account take turns at one pace.

- Klaviyo: no. Limits are per account *per endpoint* (rate_limits_and_error_handling); the
  profile bulk import (10/s, 150/min) is its own bucket, not the event bulk create's.
- Brevo: no. ``/v3/contacts/*`` (10/s, 36,000/h on General) is a bucket of its own beside
  ``/v3/events`` (api-limits).
- Omnisend: yes. 400 requests per minute per store, every endpoint of the API alike: contact
  batches, single upserts, polls and ``omnisend_events`` requests spend one budget.
"""

from __future__ import annotations

from typing import Any

from ..config.sync_file import RateLimit
from ..core.options import CommonOptions
from ..store.state import StateStore
from .delivery import Runtime
from .ratelimit import Pacer, account_key, pacer_for
from .shared_pacer import pacer_for_run


def contact_pacer(
    cls: Any,
    options: CommonOptions,
    base_url: str,
    api_key: str,
    rate: RateLimit,
    runtime: Runtime,
    state: StateStore | None,
) -> Pacer:
    """The pacer of a contact destination ``cls`` (a ``ContactDestination`` subclass) on one
    account; without a ``state`` (``validate``), the process's own."""
    account = account_key(cls.rate_account or cls.type, base_url, api_key)
    if state is None:
        return pacer_for(account, rate, runtime.clock, runtime.sleep)
    return pacer_for_run(options.pacing, state.engine, account, rate, runtime.clock, runtime.sleep)
