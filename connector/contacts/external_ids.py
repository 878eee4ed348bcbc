"""``connector validate``'s check of Klaviyo external ids shared by several syncs of one
account (issue 19; docs/contacts.md, "Two syncs, one account"). Light: ``validate`` imports
it without any HTTP client."""

from __future__ import annotations

import hashlib
import os

from ..config.sync_file import SyncConfig
from ..core.errors import ConnectorError


def external_id_overlaps(syncs: list[SyncConfig]) -> list[str]:
    """``connector validate``: ``klaviyo_profiles`` syncs of one Klaviyo account (the same
    API key and base URL) that map ``external_id`` from an integer column without
    ``options.external_id_prefix``: customer 42 of one and customer 42 of the other would be
    one profile, each sync overwriting the other's. One warning per such account."""
    accounts: dict[tuple[str, str, str], list[SyncConfig]] = {}
    for sync in syncs:
        dest = sync.destination
        col = sync.mapping.identifiers.get("external_id")
        if (
            dest.type != "klaviyo_profiles"
            or col is None
            or getattr(dest.options, "external_id_prefix", None)
        ):
            continue
        from ..read.source import Reader

        try:
            with Reader(sync) as reader:
                kind = reader.column_types().get(col)
        except ConnectorError:  # told by the sync's own checks
            continue
        if kind != "integer":
            continue
        ref = dest.api_key.strip()
        name = ref[2:-1] if ref.startswith("${") and ref.endswith("}") else ref
        secret = os.environ.get(name) or ref  # the account, compared by its key (never shown)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        accounts.setdefault((dest.type, dest.base_url or "", digest), []).append(sync)
    out = []
    for group in accounts.values():
        if len(group) < 2:
            continue
        names = ", ".join(s.source_path or s.name for s in group)
        out.append(
            f"{names} write profiles of one Klaviyo account with plain integer external_id "
            "values: the same number in two of them is one profile, each sync overwriting the "
            "other's. Give each a prefix: destination.options.external_id_prefix (e.g. "
            "'shop-a:'), see docs/contacts.md"
        )
    return out
