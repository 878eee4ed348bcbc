"""Shared builders for end-to-end tests: a source table and sync YAML per destination."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from connector.config.sync_file import SyncConfig, parse_sync
from connector.deliver.http_loop import tls_context
from connector.store.state import StateStore

from .conftest import Warehouse

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def create_events_table(wh: Warehouse, table: str = "ev") -> None:
    wh.run(
        f"DROP TABLE IF EXISTS {table}",
        f"""CREATE TABLE {table} (
            event_id INTEGER,
            occurred_at {wh.timestamptz()},
            kind VARCHAR(300),
            email VARCHAR(200),
            user_id VARCHAR(50),
            title {"LONGTEXT" if wh.kind == "mysql" else "TEXT"},
            duration NUMERIC(10, 1),
            autoplayed BOOLEAN,
            upload_date DATE,
            payload {"VARIANT" if wh.kind == "snowflake" else "JSON"},
            first_name VARCHAR(50)
        )""",
    )


def fill_events(wh: Warehouse, rows: int, title_chars: int = 20) -> None:
    """``rows`` rows of one size each (every text padded), one second apart, made by DuckDB."""
    create_events_table(wh)
    wh.run(
        f"""INSERT INTO ev SELECT
            i, TIMESTAMPTZ '2026-11-01 00:00:00+00' + i * INTERVAL 1 SECOND, 'video_played',
            'user' || lpad(i::VARCHAR, 7, '0') || '@example.com', 'u-' || lpad(i::VARCHAR, 7, '0'),
            repeat('x', {title_chars}), 12.5, true, DATE '2026-11-01', '{{"device": "web"}}', 'Ada'
            FROM range({rows}) t(i)"""
    )


def event_rows(start: int, count: int, per_second: int = 3) -> list[dict[str, Any]]:
    """Rows ``start..start+count-1``; ``per_second`` rows share each cursor value (ties)."""
    rows = []
    for i in range(start, start + count):
        rows.append(
            {
                "event_id": i,
                "occurred_at": BASE + timedelta(seconds=i // per_second),
                "kind": "video_played",
                "email": f"user{i}@example.com",
                "user_id": f"u-{i}",
                "title": f'Video {i} "quoted" \\ back',
                "duration": f"{i % 100}.5",
                "autoplayed": i % 2 == 0,
                "upload_date": (BASE + timedelta(days=i % 30)).date(),
                "payload": f'{{"device": "web", "n": {i}}}',
                "first_name": "Ada" if i % 3 else None,
            }
        )
    return rows


def insert_events(wh: Warehouse, rows: list[dict[str, Any]], table: str = "ev") -> None:
    if not rows:
        return
    if wh.kind == "duckdb":  # one Arrow table (binding rows one by one costs seconds)
        wh.insert(table, rows)
        return
    if wh.kind == "snowflake":  # one JSON text (the emulator translates every literal)
        wh.insert_json(table, rows, parsed={"payload"})
        return
    import sqlalchemy as sa

    cols = list(rows[0])
    values = ", ".join(wh.json_param(c) if c == "payload" else f":{c}" for c in cols)
    stmt = sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values})")
    with wh.engine.begin() as c:
        c.execute(stmt, wh.rows(rows))


KLAVIYO = """
name: {name}
source:
  table: {table}
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
  chunk_size: {chunk_size}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
  options: {options}
mapping:
  event_name: {{column: kind}}
  event_time: occurred_at
  identifiers: {{email: email, external_id: user_id}}
  event_properties:
    video.title: title
    duration: duration
    autoplayed: autoplayed
    upload_date: upload_date
    payload: payload
  contact_properties:
    first_name: first_name
"""

BREVO = """
name: {name}
source:
  table: {table}
  cursor: occurred_at
  primary_key: [event_id]
  url: {url}
  chunk_size: {chunk_size}
destination:
  type: brevo_events_batch
  api_key: ${{BREVO_API_KEY}}
  base_url: {sandbox}
  options: {options}
mapping:
  event_name: {{column: kind}}
  event_time: occurred_at
  identifiers: {{email_id: email, ext_id: user_id}}
  event_properties:
    video.title: title
    duration: duration
    autoplayed: autoplayed
    upload_date: upload_date
    payload: payload
  contact_properties:
    FIRSTNAME: first_name
"""

TEMPLATES = {"klaviyo_bulk_events": KLAVIYO, "brevo_events_batch": BREVO}


def sync_for(
    kind: str,
    wh: Warehouse,
    sandbox_url: str,
    *,
    name: str = "videos",
    table: str = "ev",
    chunk_size: int = 100,
    options: str = "{}",
) -> SyncConfig:
    text = TEMPLATES[kind].format(
        name=name,
        table=table,
        url=wh.url,
        sandbox=sandbox_url,
        chunk_size=chunk_size,
        options=options,
    )
    return parse_sync(text, f"syncs/{name}.yaml")


def delivered_ids(sandbox: Any, kind: str) -> list[int]:
    """Source event ids of what the sandbox accepted, in arrival order."""
    out = []
    for ev in sandbox.events(kind):
        if kind == "klaviyo_bulk_events":
            out.append(int(ev["event"]["unique_id"].split(":", 1)[1]))
        else:
            out.append(int(ev["identifiers"]["ext_id"].removeprefix("u-")))
    return out


# The least event sync: Klaviyo bulk events from ``ev`` (``url``), e-mail only, no properties.
PLAIN_SYNC = """
name: {name}
source: {{table: ev, cursor: occurred_at, primary_key: [event_id], url: "{url}"}}
destination:
  type: klaviyo_bulk_events
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: {sandbox}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {{email: email}}
"""


# A contact sync over ``table`` (primary key ``id``) with fast polls; ``options`` is appended to
# the options block (", list_id: L1").
CONTACT_SYNC = """
name: {table}
source: {{table: {table}, primary_key: [id], url: "{url}"}}
destination:
  type: {dtype}
  api_key: ${{{key}}}
  base_url: {sandbox}
  options: {{poll_interval_s: 0.01, poll_max_interval_s: 0.05{options}}}
mapping:
  identifiers: {identifiers}
  contact_properties: {contact}
"""


# Klaviyo's bulk event jobs: the path, an item's JSON pointer, and an error body as documented.
KLAVIYO_PATH = "/api/event-bulk-create-jobs"
KLAVIYO_ITEM = "/data/attributes/events-bulk-create/data/{}/attributes/events/data/0"


def klaviyo_errors(*errors: dict[str, Any]) -> dict[str, Any]:
    return {"errors": [{"id": "e", "status": 400, "code": "invalid", **e} for e in errors]}


def assert_nothing_rejected_or_moved(state: StateStore, name: str = "videos") -> None:
    """A run refused as a whole: no reject recorded, no checkpoint, the run failed."""
    assert state.rejects(name) == []
    assert state.checkpoint(name) is None
    assert state.runs(name)[0]["status"] == "failed"


def connector_process(
    config: Path, state_url: str, *args: str, env: Mapping[str, str | None] | None = None
) -> subprocess.Popen[str]:
    """``connector <args>`` as its own process (to kill, pause or race), with ``config`` as
    its config dir and ``state_url`` as its state store; ``env`` adds variables (None removes
    one). Its output comes back through pipes."""
    environ = {
        **os.environ,
        "CONNECTOR_CONFIG_DIR": str(config),
        "CONNECTOR_STATE_URL": state_url,
    }
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll an observable condition (no fixed sleep: returns as soon as it holds); fails
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def sandbox_client(url: str, **options: Any) -> httpx.Client:
    """An HTTP client of a sandbox at ``url``, on the process's one TLS context as the
    connector's own clients are: httpx loads the whole CA bundle for each client otherwise
    (~25 ms of CPU, for a server on loopback HTTP)."""
    options.setdefault("timeout", 10)
    return httpx.Client(base_url=url, verify=tls_context(), **options)
