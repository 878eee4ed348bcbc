"""Builders for the batching and Brevo batch unit tests: mapped items and a destination."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from connector.config.sync_file import parse_sync
from connector.deliver.factory import make_event_destination
from connector.destinations.base import Item, Request
from connector.map.mapper import Chunk, Mapper


def brevo_items(n: int, size: int) -> list[Item]:
    """``n`` mapped Brevo event items whose payloads are ``size`` bytes."""
    sync = parse_sync(
        """
name: s
source: {table: t, cursor: c, primary_key: k}
destination: {type: brevo_events_batch, api_key: "${BREVO_API_KEY}"}
mapping: {event_name: e, event_time: c, identifiers: {email_id: m}}
""",
        "syncs/s.yaml",
    )
    table = pa.table(
        {
            "k": list(range(n)),
            "m": ["a@b"] * n,
            "c": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * n),
        }
    )
    events = Mapper(sync).map(Chunk(table))
    payload = b'{"p":"' + b"x" * max(0, size - 9) + b'"}'
    return [Item(events, i, payload, len(payload) + 1) for i in range(n)]


def brevo_destination(n: int) -> tuple[object, Request]:
    """A brevo_events_batch destination and the request it builds for ``n`` items."""
    sync = parse_sync(
        """
name: s
source: {table: t, cursor: c, primary_key: k}
destination: {type: brevo_events_batch, api_key: "${BREVO_API_KEY}"}
mapping: {event_name: e, event_time: c, identifiers: {email_id: m}}
""",
        "syncs/s.yaml",
    )
    dest = make_event_destination(sync)
    items = brevo_items(n, 5)
    return dest, dest.build(items)
