"""Bad input gets a clear message and an exit code, never a traceback or a harmed state store.

One table of cases: each runs the CLI in-process on a fresh project (a DuckDB warehouse with
rows, a sync file, a state store holding a checkpoint) and checks the exit code, a fragment of
the message, that no traceback is printed, that no secret leaks, and that every checkpoint is
unchanged. Nothing listens at the sync's destination URL: a case that sent anything would fail
with exit 1 instead of its expected code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.cli import main as cli
from connector.config.sync_file import load_syncs
from connector.core.errors import ConfigError, mask_url
from connector.sandbox import SandboxServer
from connector.store import state as state_module
from connector.store.schema import leases
from connector.store.state import INCREMENTAL, StateStore, now
from tests.conftest import Warehouse, _free_port
from tests.helpers import BASE, create_events_table, event_rows, insert_events

SYNC = """
name: {name}
source:
  table: ev
  cursor: {cursor}
  primary_key: [{pk}]
  url: "{url}"
destination:
  type: {dtype}
  api_key: "${{{key}}}"
  base_url: "http://127.0.0.1:9"
  options: {{max_retries: 0}}
mapping:
  event_name: {event_name}
  event_time: occurred_at
  identifiers: {idents}
  event_properties: {{title: {title}}}
"""

BREVO = {"dtype": "brevo_events_batch", "key": "BREVO_API_KEY", "idents": "{email_id: email}"}
KLAVIYO = {"dtype": "klaviyo_bulk_events", "key": "KLAVIYO_API_KEY", "idents": "{email: email}"}

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@dataclass
class Project:
    root: Path
    config: Path
    warehouse: str
    state_url: str
    held: list[Any] = field(default_factory=list)  # closed after the case (sockets, locks)

    def sync_text(self, name: str = "videos", **over: str) -> str:
        values = {
            "name": name,
            "cursor": "occurred_at",
            "pk": "event_id",
            "url": self.warehouse,
            "event_name": "video_played",
            "title": "title",
            **BREVO,
            **over,
        }
        return SYNC.format(**values)

    def write(self, text: str, file: str = "videos.yaml") -> Path:
        path = self.config / "syncs" / file
        path.write_text(text)
        return path

    def base(self) -> list[str]:
        return ["--config-dir", str(self.config), "--state-url", self.state_url]


Setup = Callable[[Project], list[str]]


@dataclass
class Case:
    id: str
    setup: Setup
    code: int
    fragment: str
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    lock_wait_ms: int | None = None  # the SQLite store's lock wait for this case


def _sync(p: Project, *extra: str) -> list[str]:
    return [*p.base(), "sync", "videos", *extra]


def _edit(**over: str) -> Setup:
    def setup(p: Project) -> list[str]:
        p.write(p.sync_text(**over))
        return _sync(p)

    return setup


def _raw(text: str, args: tuple[str, ...] = ("sync", "videos")) -> Setup:
    def setup(p: Project) -> list[str]:
        p.write(textwrap.dedent(text).replace("URL", p.warehouse))
        return [*p.base(), *args]

    return setup


def _args(*args: str) -> Setup:
    return lambda p: [*p.base(), *args]


def _duplicate(*args: str) -> Setup:
    def setup(p: Project) -> list[str]:
        # a.yaml sorts first: before the fix `sync videos` silently ran it.
        p.write(p.sync_text(event_name="other_event"), "a_copy.yaml")
        return [*p.base(), *args]

    return setup


def _bomb_beside(p: Project) -> list[str]:
    p.write(BOMB, "bomb.yaml")
    return _sync(p, "--dry-run")


def _bomb_itself(p: Project) -> list[str]:
    p.write(BOMB + p.sync_text() + "owners: [*i]\n", "videos.yaml")
    return _sync(p)


def _recursive(p: Project) -> list[str]:
    p.write(p.sync_text() + "owners: &o [a, *o]\n")
    return _sync(p)


def _oversized(p: Project) -> list[str]:
    p.write(p.sync_text() + "#" * 300_000 + "\n")  # over MAX_SYNC_FILE_BYTES
    return _sync(p)


def _missing_duckdb(p: Project) -> list[str]:
    p.write(p.sync_text(url=f"duckdb:///{p.root / 'wharehouse.duckdb'}"))
    return _sync(p)


def _state_dir_is_a_file(p: Project) -> list[str]:
    (p.root / "not_a_dir").write_text("x")
    return [
        "--config-dir",
        str(p.config),
        "--state-url",
        f"sqlite:///{p.root / 'not_a_dir' / 'state.db'}",
        "sync",
        "videos",
    ]


def _state_url_with_password(p: Project) -> list[str]:
    url = "postgresql+psycopg://conn:pw-in-userinfo@127.0.0.1:9/state?password=hunter2"
    return ["--config-dir", str(p.config), "--state-url", url, "state", "show", "videos"]


def _source_url_with_password(p: Project) -> list[str]:
    p.write(p.sync_text(url="postgresql+psycopg://conn@127.0.0.1:9/wh?password=hunter2"))
    return _sync(p)


def _fifo(*args: str) -> Setup:
    def setup(p: Project) -> list[str]:
        os.mkfifo(p.config / "syncs" / "pipe.yaml")  # reading it would block forever
        return [*p.base(), *(args or ("sync", "videos", "--dry-run"))]

    return setup


def _not_utf8(p: Project) -> list[str]:
    (p.config / "syncs" / "videos.yaml").write_bytes(b"name: \xff\xfe\n")
    return _sync(p)


def _broken_state(damage: Callable[[Path], object], *args: str) -> Setup:
    """The CLI pointed at a copy of the project's store, damaged; the project's store itself
    must stay as it was."""

    def setup(p: Project) -> list[str]:
        src, copy = p.root / "state.db", p.root / "copy.db"
        with sqlite3.connect(src) as c:  # fold the WAL in, so the copy holds everything
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(src, copy)
        damage(copy)
        url = f"sqlite:///{copy}"
        return ["--config-dir", str(p.config), "--state-url", url, *(args or ("sync", "videos"))]

    return setup


def _newer_version(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("UPDATE connector_schema_version SET version = version + 1")


def _state_server_down(p: Project) -> list[str]:
    url = f"postgresql+psycopg://conn@127.0.0.1:{_free_port()}/state"
    return ["--config-dir", str(p.config), "--state-url", url, "sync", "videos"]


def _held_lease(p: Project) -> list[str]:
    store = StateStore(p.state_url)
    with store.engine.begin() as c:  # a run of another machine, alive as far as we know
        c.execute(
            leases.insert().values(
                sync="videos",
                scope=INCREMENTAL,
                holder="other-run",
                host="worker-7",
                pid=4242,
                process="other-machine/1/1",
                acquired_at=now(),
                heartbeat_at=now(),
                expires_at=now() + timedelta(minutes=1),
            )
        )
    return _sync(p)


def _query_cursor(cursor_sql: str, event_time: str = "occurred_at") -> Setup:
    return _raw(
        f"""
        name: videos
        source:
          query: "SELECT *, {cursor_sql} AS c FROM ev"
          cursor: c
          primary_key: event_id
          url: "URL"
        destination: {{type: brevo_events_batch, api_key: "${{BREVO_API_KEY}}"}}
        mapping:
          event_name: video_played
          event_time: {event_time}
          identifiers: {{email_id: email}}
        """
    )


def _row_value(
    dtype: str,
    key: str,
    select: str,
    mapping: str,
    idents: str = "{email_id: email}",
    options: str = "{}",
) -> Setup:
    """``preview`` of a sync whose rows each hold one bad value (``select``: extra columns of
    the query): every row is a reject naming the value's problem, nothing is sent."""
    return _raw(
        f"""
        name: videos
        source:
          query: "SELECT *, {select} FROM ev"
          cursor: occurred_at
          primary_key: event_id
          url: "URL"
        destination:
          type: {dtype}
          api_key: "${{{key}}}"
          base_url: "http://127.0.0.1:9"
          options: {options}
        mapping:
          event_name: video_played
          event_time: occurred_at
          identifiers: {idents}
        {mapping}
        """,
        ("preview", "videos"),
    )


CASES = [
    # -- two files, one name
    Case("duplicate-name-sync", _duplicate("sync", "videos"), 2, "is also used by"),
    Case("duplicate-name-names-both", _duplicate("sync", "videos"), 2, "syncs/a_copy.yaml"),
    Case("duplicate-name-validate", _duplicate("validate"), 2, "sync names must be unique"),
    Case("duplicate-name-state-reset", _duplicate("state", "reset", "videos"), 2, "rename one"),
    # -- rules that the config alone decides
    Case(
        "brevo-literal-event-name-charset",
        _edit(event_name='"order placed!"'),
        2,
        "Brevo event names must be 1-255 letters",
    ),
    Case(
        "brevo-literal-event-name-too-long",
        _edit(event_name="e" * 256),
        2,
        "mapping.event_name",
    ),
    Case(
        "klaviyo-literal-metric-name-too-long",
        _edit(event_name="m" * 130, **KLAVIYO),
        2,
        "Klaviyo metric names must be under 128 characters",
    ),
    Case("empty-literal-event-name", _edit(event_name='""'), 2, "mapping.event_name: is empty"),
    Case(
        "brevo-property-name-charset",
        _raw(
            """
            name: videos
            source: {table: ev, cursor: occurred_at, primary_key: event_id, url: "URL"}
            destination: {type: brevo_events_batch, api_key: "${BREVO_API_KEY}"}
            mapping:
              event_name: video_played
              event_time: occurred_at
              identifiers: {email_id: email}
              event_properties: {"video title": title}
            """
        ),
        2,
        "for Brevo",
    ),
    # -- ${VAR} only where documented
    Case(
        "env-ref-in-name",
        _edit(name="${BAD_INPUT_NAME}"),
        2,
        "name: environment references (${...}) are allowed only in destination.api_key",
        env={"BAD_INPUT_NAME": "videos"},
    ),
    Case(
        "env-ref-in-event-name",
        _edit(event_name='"${BAD_INPUT_SECRET}"'),
        2,
        "mapping.event_name: environment references",
        env={"BAD_INPUT_SECRET": "s3cr3t-value"},
        secrets=("s3cr3t-value",),
    ),
    Case(
        "env-ref-in-property-column",
        _edit(title='"${BAD_INPUT_SECRET}"'),
        2,
        "mapping.event_properties.title: environment references",
        env={"BAD_INPUT_SECRET": "s3cr3t-value"},
        secrets=("s3cr3t-value",),
    ),
    Case(
        "env-ref-in-cursor",
        _edit(cursor='"${BAD_INPUT_SECRET:-occurred_at}"'),
        2,
        "source.cursor: environment references",
    ),
    # -- YAML that would take the process down
    Case("alias-bomb-in-the-sync", _bomb_itself, 2, "YAML aliases expand to more than"),
    Case("alias-bomb-beside-a-good-sync", _bomb_beside, 0, "videos: dry_run"),
    Case("recursive-alias", _recursive, 2, "a YAML alias refers to itself"),
    Case("oversized-sync-file", _oversized, 2, "sync files are limited to"),
    Case("deep-nesting", _raw("owners: " + "[" * 3000 + "]" * 3000 + "\n"), 2, "nested too deeply"),
    Case("fifo-beside-a-good-sync", _fifo(), 0, "videos: dry_run"),
    Case("fifo-named-as-the-sync", _fifo("sync", "pipe"), 2, "pipe.yaml: not a regular file"),
    Case("not-utf8", _not_utf8, 2, "cannot read the file"),
    Case("invalid-yaml", _raw("name: [unclosed\n"), 2, "not valid YAML (line"),
    Case("not-a-mapping", _raw("- just\n- a list\n"), 2, "expected a mapping"),
    # -- ordinary config errors
    Case("unknown-key", _edit(pk="event_id]\n  bogus: [1"), 2, "source.bogus: unknown key"),
    Case(
        "literal-api-key",
        lambda p: [
            *p.base(),
            "sync",
            str(p.write(p.sync_text().replace('"${BREVO_API_KEY}"', "k1"))),
        ],
        2,
        "must be an environment reference",
    ),
    Case(
        "unset-api-key-variable",
        _edit(key="BAD_INPUT_UNSET_KEY"),
        2,
        "environment variable BAD_INPUT_UNSET_KEY is not set",
    ),
    Case("unknown-destination", _edit(dtype="brevo"), 2, "unknown type 'brevo'"),
    Case("no-such-sync", _args("sync", "nope"), 2, "no sync named 'nope'"),
    Case("no-such-sync-file", _args("sync", "missing.yaml"), 2, "missing.yaml: no such file"),
    Case("state-show-no-such-sync", _args("state", "show", "nope"), 2, "no sync named"),
    # -- usage
    Case("negative-limit", _args("sync", "videos", "--limit", "-5"), 2, "not a positive number"),
    Case("zero-limit", _args("sync", "videos", "--limit", "0"), 2, "not a positive number"),
    Case("text-limit", _args("sync", "videos", "--limit", "ten"), 2, "is not a whole number"),
    Case("preview-negative-limit", _args("preview", "videos", "--limit", "-1"), 2, "positive"),
    # -- the warehouse does not fit the config
    Case(
        "missing-cursor-column",
        _edit(cursor="occured_at"),
        2,
        "source.cursor: column 'occured_at' is not in the source; it has:",
    ),
    Case(
        "missing-key-column",
        _edit(pk="id"),
        2,
        "source.primary_key: column 'id' is not in the source",
    ),
    Case("missing-mapped-column", _edit(title="titel"), 2, "column 'titel' is not in the source"),
    Case(
        "missing-column-preview",
        lambda p: (p.write(p.sync_text(cursor="occured_at")), [*p.base(), "preview", "videos"])[1],
        2,
        "column 'occured_at' is not in the source",
    ),
    Case("mistyped-duckdb-path", _missing_duckdb, 2, "no such file:"),
    Case(
        "mistyped-duckdb-path-validate",
        lambda p: (_missing_duckdb(p), [*p.base(), "validate"])[1],
        2,
        "FAIL videos",
    ),
    # -- column types: the rules validate applies, at run time, with validate's message
    Case("varchar-cursor", _edit(cursor="kind"), 2, "text orders '10' before '9'"),
    Case("boolean-cursor", _edit(cursor="autoplayed"), 2, "autoplayed is boolean"),
    Case("double-cursor", _query_cursor("CAST(duration AS DOUBLE)"), 2, "c is float"),
    Case(
        "varchar-cursor-preview",
        lambda p: (p.write(p.sync_text(cursor="kind")), [*p.base(), "preview", "videos"])[1],
        2,
        "source.cursor must be a timestamp, date, integer or decimal column (kind is string",
    ),
    Case(
        "integer-event-time",
        _query_cursor("occurred_at", event_time="event_id"),
        2,
        "mapping.event_time must be a timestamp or date column (event_id is integer)",
    ),
    # -- another run of the same sync holds its lease
    Case("sync-already-running", _held_lease, 1, "already running since"),
    Case("sync-already-running-names-it", _held_lease, 1, "pid 4242 on host worker-7"),
    # -- the state store or a URL is bad
    Case("state-dir-is-a-file", _state_dir_is_a_file, 1, "cannot create its directory"),
    Case(
        "state-dir-unwritable",
        lambda p: [*p.base()[:2], "--state-url", "sqlite:////proc/connector.db", "sync", "videos"],
        1,
        "cannot be opened for writing",
    ),
    Case(
        "state-db-empty-file",
        _broken_state(lambda f: f.write_bytes(b"")),
        1,
        "is an empty file (truncated?)",
    ),
    Case(
        "state-db-truncated",
        _broken_state(lambda f: os.truncate(f, 4096)),
        1,
        "connector state reset --broken-store",
    ),
    Case(
        "state-db-not-a-database",
        _broken_state(lambda f: f.write_bytes(b"not sqlite" * 1000), "state", "show", "videos"),
        1,
        "cannot be read (file is not a database)",
    ),
    Case(
        "state-db-from-a-newer-connector",
        _broken_state(_newer_version),
        1,
        "made by a newer connector",
    ),
    Case("state-server-down", _state_server_down, 1, "check that the server runs"),
    Case(
        "broken-store-with-a-sync-name",
        _args("state", "reset", "videos", "--broken-store"),
        2,
        "use --broken-store alone",
    ),
    Case(
        "state-url-password-masked",
        _state_url_with_password,
        1,
        "password=***",
        secrets=("hunter2", "pw-in-userinfo"),
    ),
    Case(
        "base-url-password-masked-in-preview",
        lambda p: [
            *p.base(),
            "preview",
            str(
                p.write(
                    p.sync_text().replace("http://127.0.0.1:9", "http://u:pw-in-base@127.0.0.1:9")
                )
            ),
        ],
        0,
        "POST http://u:***@127.0.0.1:9/v3/events/batch",
        secrets=("pw-in-base",),
    ),
    Case(
        "source-url-password-masked",
        _source_url_with_password,
        1,
        "password=***",
        secrets=("hunter2",),
    ),
]


# -- values JSON or the vendor cannot carry (issue 19 items 5, 6, 11, 13): rejects of their rows,
# each naming the problem, never a request-level 400 that blocks the good rows
CASES += [
    Case(
        "klaviyo-value-text-1e999",
        _row_value(
            "klaviyo_bulk_events",
            "KLAVIYO_API_KEY",
            "'1e999' AS v",
            "  value: v",
            idents="{email: email}",
        ),
        0,
        "value: column v holds a number beyond what JSON carries (±1.8e308",
    ),
    Case(
        "double-property-nan-batch",
        _row_value(
            "brevo_events_batch",
            "BREVO_API_KEY",
            "CAST('nan' AS DOUBLE) AS x",
            "  event_properties: {score: x}",
        ),
        0,
        "event_properties.score: column x holds NaN or infinity, which JSON cannot carry",
    ),
    Case(
        "double-property-infinity-single",
        _row_value(
            "omnisend_events",
            "OMNISEND_API_KEY",
            "CAST('-inf' AS DOUBLE) AS x",
            "  event_properties: {score: x}",
            idents="{email: email}",
        ),
        0,
        "event_properties.score: column x holds NaN or infinity",
    ),
    Case(
        "json-number-beyond-double",
        _row_value(
            "brevo_event",
            "BREVO_API_KEY",
            """CAST('{\\"n\\": 1e999}' AS JSON) AS j""",
            "  event_properties: {ctx: j}",
        ),
        0,
        "event_properties.ctx: column j holds a number beyond what JSON carries",
    ),
    Case(
        "brevo-batch-contact-id-beyond-int64",
        _row_value(
            "brevo_events_batch",
            "BREVO_API_KEY",
            "'9223372036854775808' AS cid",
            "",
            idents="{email_id: email, contact_id: cid}",
        ),
        0,
        "contact_id is beyond Brevo's limit (a 64-bit integer, at most 9223372036854775807)",
    ),
    Case(
        "brevo-single-contact-id-ubigint-beyond-int64",
        _row_value(
            "brevo_event",
            "BREVO_API_KEY",
            "CAST(18446744073709551615 AS UBIGINT) AS cid",
            "",
            idents="{email_id: email, contact_id: cid}",
        ),
        0,
        "contact_id is beyond Brevo's limit",
    ),
    Case(
        "klaviyo-string-attribute-holds-an-object",
        _row_value(
            "klaviyo_bulk_events",
            "KLAVIYO_API_KEY",
            """CAST('{\\"a\\": 1}' AS JSON) AS o""",
            "  contact_properties: {organization: o}",
            idents="{email: email}",
        ),
        0,
        "profile organization is a string attribute: the JSON holds an object or array",
    ),
    Case(
        "omnisend-bearer-with-v5",
        _row_value(
            "omnisend_events",
            "OMNISEND_API_KEY",
            "1 AS one",
            "",
            idents="{email: email}",
            options="{auth: bearer, api_version: v5}",
        ),
        2,
        "auth: bearer needs api_version 2026-03-15",
    ),
]


# -- issue 19 item 14: messages, not tracebacks or hangs
def _long_name_argument(p: Project) -> list[str]:
    return [*_sync(p)[:-1], "a" * 300]  # was: OSError: [Errno 36] File name too long


def _undecodable(path: Path) -> None:
    with sqlite3.connect(path) as c:  # was: orjson.JSONDecodeError
        c.execute("UPDATE connector_checkpoints SET position = '[{\"dt\": broken'")


def _busy_port(p: Project) -> list[str]:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    p.held.append(sock)  # was: OSError: [Errno 98] Address already in use
    return ["sandbox", "--port", str(sock.getsockname()[1])]


def _locked_store(p: Project) -> list[str]:
    """A copy of the store locked by another connection's write transaction (was: exit 1
    after 62 s, saying little)."""
    args = _broken_state(lambda path: None)(p)
    holder = sqlite3.connect(p.root / "copy.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    p.held.append(holder)
    return args


def _misnamed_file(p: Project) -> list[str]:
    p.write(p.sync_text(name="my-sync"), "mine.yaml")  # was: "known syncs: none"
    return [*p.base(), "sync", "my-sync"]


def _missing_config_dir(p: Project) -> list[str]:
    return ["--config-dir", str(p.root / "no_such_dir"), "--state-url", p.state_url, "sync", "x"]


def _schedule(cron: str) -> Setup:
    def setup(p: Project) -> list[str]:
        p.write(p.sync_text() + f"schedule: '{cron}'\n")
        return [*p.base(), "validate"]

    return setup


CASES += [
    Case("name-argument-300-characters", _long_name_argument, 2, "at most 63 characters"),
    Case("name-300-characters", _edit(name="a" * 300), 2, "at most 63 characters in all"),
    Case(
        "undecodable-checkpoint",
        _broken_state(_undecodable),
        1,
        "the stored checkpoint cannot be read (JSONDecodeError",
    ),
    Case(
        "undecodable-checkpoint-names-the-reset",
        _broken_state(_undecodable, "state", "show", "videos"),
        1,
        "`connector state reset videos`",
    ),
    Case("sandbox-port-in-use", _busy_port, 2, "the port is already in use"),
    Case("sandbox-port-out-of-range", _args("sandbox", "--port", "70000"), 2, "0 to 65535"),
    Case(
        "sandbox-host-not-here",
        _args("sandbox", "--host", "nohost.invalid", "--port", "0"),
        2,
        "the host name does not resolve",
    ),
    Case(
        "empty-api-key-validate",
        _args("validate"),
        2,
        "environment variable BREVO_API_KEY is empty",
        env={"BREVO_API_KEY": ""},
    ),
    Case(
        "empty-api-key-sync",
        _sync,
        2,
        "destination.api_key: environment variable BREVO_API_KEY is empty",
        env={"BREVO_API_KEY": ""},
    ),
    # The message, not the wait: a test below bounds the real wait.
    Case(
        "state-store-locked",
        _locked_store,
        1,
        "is locked by another process or run",
        lock_wait_ms=300,
    ),
    Case(
        "misnamed-file-is-not-invisible",
        _misnamed_file,
        2,
        "syncs/mine.yaml declares the sync 'my-sync', but the file is not valid",
    ),
    Case("misnamed-file-says-why", _misnamed_file, 2, "'my-sync' is not a valid sync name"),
    Case("missing-config-dir", _missing_config_dir, 2, "no_such_dir does not exist"),
    Case(
        "config-dir-is-a-file",
        lambda p: [
            *("--config-dir", str(p.config / "syncs" / "videos.yaml")),
            *("--state-url", p.state_url, "sync", "videos"),
        ],
        2,
        "videos.yaml is not a directory",
    ),
    Case(
        "state-reset-unknown-scope",
        _args("state", "reset", "videos", "--scope", "bogus"),
        2,
        "unknown scope 'bogus' for videos: a scope is 'incremental' or 'partition:<key>'; "
        "videos has: incremental",
    ),
    Case(
        "rejects-unknown-scope", _args("rejects", "videos", "--scope", "bogus"), 2, "unknown scope"
    ),
    Case("schedule-minute-99", _schedule("99 * * * *"), 2, "schedule.cron: minute field '99'"),
    Case("schedule-backwards-range", _schedule("0 5-1 * * *"), 2, "hour field '5-1'"),
    Case(
        "missing-warehouse-driver",
        _edit(url="postgresql+psycopg2://conn@127.0.0.1:9/wh"),
        2,
        "needs psycopg2, which is not installed",
    ),
    Case(
        "missing-warehouse-dialect",
        _edit(url="nosuchdb://conn@127.0.0.1:9/wh"),
        2,
        "a nosuchdb:// warehouse needs its SQLAlchemy dialect, which is not installed",
    ),
    Case(
        "json-on-a-sync-that-does-not-load",
        _args("sync", "nope", "--json"),
        2,
        '"status": "failed", "error": "no sync named',
    ),
    Case(
        "json-on-a-failed-run",
        lambda p: _sync(p, "--json"),
        1,
        '"status": "failed"',
    ),
]


def _checkpoints(state_url: str) -> list[Any]:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as c:
            return sorted(
                tuple(r)
                for r in c.execute(
                    sa.text("SELECT sync, scope, position FROM connector_checkpoints")
                )
            )
    finally:
        engine.dispose()


@pytest.fixture
def project(tmp_path: Path, duck: Warehouse) -> Iterator[Project]:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 10))
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True)
    p = Project(tmp_path, config, duck.url, f"sqlite:///{tmp_path / 'state.db'}")
    p.write(p.sync_text())
    # A checkpoint every case must leave alone (rows 0-4 delivered earlier).
    StateStore(p.state_url).settle("videos", INCREMENTAL, "earlier", [], [], (BASE, 4), [])
    yield p
    for thing in p.held:
        thing.close()


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_matrix(
    case: Case,
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    if case.lock_wait_ms is not None:
        monkeypatch.setattr(state_module, "SQLITE_BUSY_TIMEOUT_MS", case.lock_wait_ms)
    before = _checkpoints(project.state_url)
    assert before, "the fixture seeds a checkpoint"
    args = case.setup(project)
    code, out, err = _run_cli(args, capsys)
    text = out + err
    assert code == case.code, text
    assert case.fragment in text, text
    assert "Traceback" not in text
    for secret in case.secrets:
        assert secret not in text
    assert _checkpoints(project.state_url) == before


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 40


# --------------------------------------------------------------------------- beyond the matrix


def test_duplicate_names_run_neither_file(project: Project) -> None:
    project.write(project.sync_text(event_name="other_event"), "a_copy.yaml")
    project.write(project.sync_text(name="fine"), "fine.yaml")
    loaded = load_syncs(project.config)
    assert sorted(loaded.syncs) == ["fine"]
    assert set(loaded.errors) == {"syncs/a_copy.yaml", "syncs/videos.yaml"}
    assert "syncs/videos.yaml: name: 'videos' is also used by syncs/a_copy.yaml" in str(
        loaded.errors["syncs/videos.yaml"]
    )


def test_yaml_anchors_within_the_bound_still_work(project: Project) -> None:
    project.write(project.sync_text() + "owners: [&o team:ana, *o, ben@example.com]\n")
    assert load_syncs(project.config).get("videos").owners == [
        "team:ana",
        "team:ana",
        "ben@example.com",
    ]


def test_a_missing_duckdb_file_is_not_created(project: Project) -> None:
    _missing_duckdb(project)
    from connector.read.source import Reader

    with pytest.raises(ConfigError, match="no such file"):
        Reader(load_syncs(project.config).get("videos"))
    assert not (project.root / "wharehouse.duckdb").exists()


def test_the_source_warehouse_is_opened_read_only(project: Project) -> None:
    from connector.read.source import Reader

    with Reader(load_syncs(project.config).get("videos")) as reader:
        assert reader.column_types()["event_id"] == "integer"
        with pytest.raises(sa.exc.DBAPIError, match="read-only"), reader.engine.connect() as c:
            c.exec_driver_sql("CREATE TABLE written_by_the_connector (i INTEGER)")


def test_a_sqlite_source_is_opened_read_only(tmp_path: Path) -> None:
    from connector.read.source import engine_for, release_engine

    path = tmp_path / "wh.sqlite"
    writer = sa.create_engine(f"sqlite:///{path}")
    with writer.begin() as c:
        c.exec_driver_sql("CREATE TABLE t (i INTEGER)")
    writer.dispose()
    url = f"sqlite:///{path}"
    try:
        with engine_for(url).connect() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                c.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        release_engine(url)


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=hunter2&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("duckdb:///w.duckdb?motherduck_token=abc", "duckdb:///w.duckdb?motherduck_token=***"),
        (
            "https://api.example.test/x?api_key=abc&page=2",
            "https://api.example.test/x?api_key=***&page=2",
        ),
        ("https://tok123@api.example.test/", "https://***@api.example.test/"),
        ("sqlite:///.connector/state.db", "sqlite:///.connector/state.db"),
        ("postgresql://u@h/db?PWD=x&Secret=y", "postgresql://u@h/db?PWD=***&Secret=***"),
    ],
)
def test_mask_url_hides_every_credential(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_a_query_password_never_reaches_the_state_store(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    _source_url_with_password(project)
    code, _out, _err = _run_cli(_sync(project), capsys)
    assert code == 1
    engine = sa.create_engine(project.state_url)
    with engine.connect() as c:
        stored = " ".join(
            str(v) for row in c.execute(sa.text("SELECT * FROM connector_runs")) for v in row
        )
    engine.dispose()
    assert "password=***" in stored and "hunter2" not in stored
    code, out, _ = _run_cli([*project.base(), "state", "show", "videos"], capsys)
    assert code == 0 and "hunter2" not in out and "password=***" in out


def test_dagster_describes_urls_masked(tmp_path: Path) -> None:
    from connector.config.sync_file import parse_sync
    from dagster_defs.resources import ConnectorResource

    sync = parse_sync(
        SYNC.format(
            name="videos",
            cursor="occurred_at",
            pk="event_id",
            url="postgresql+psycopg://conn@127.0.0.1:9/wh?password=hunter2",
            event_name="video_played",
            title="title",
            **BREVO,
        ),
        "syncs/videos.yaml",
    )
    res = ConnectorResource(state_url=f"sqlite:///{tmp_path / 's.db'}")
    shown = res.describe(sync)
    assert "hunter2" not in str(shown) and "password=***" in shown["warehouse"]


def test_a_run_killed_without_a_trace_is_marked_interrupted_by_the_next(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    killed = store.start_run("videos", INCREMENTAL)
    other_scope = store.start_run("videos", "partition:2026-11-01")
    store.settle("videos", INCREMENTAL, killed, [], [], (BASE, 41), [])
    store.add_pending("videos", INCREMENTAL, killed, 3, (BASE, 42), (BASE, 50), 9)
    store.record_progress(killed, {"rows_read": 120, "delivered": 100, "rejected": 2})
    # The process is killed here: finish_run never runs.
    store.start_run("videos", INCREMENTAL)
    runs = {r["run_id"]: r for r in store.runs("videos")}
    assert runs[killed]["status"] == "interrupted"
    assert runs[killed]["finished_at"] is not None
    assert runs[killed]["summary"]["hwm_after"][1] == 41
    assert runs[killed]["summary"]["in_flight"] == 9
    assert runs[killed]["summary"]["rows_read"] == 120
    assert "120 rows read, 100 delivered, 2 rejected" in runs[killed]["error"]
    assert "moved the checkpoint to 2026-11-01 00:00:00+00:00, 41" in runs[killed]["error"]
    assert runs[other_scope]["status"] == "running"  # another scope is not this run's business


@pytest.mark.parametrize("command", [["state", "show", "videos"], ["preview", "videos"]])
def test_output_piped_into_head_exits_quietly(project: Project, command: list[str]) -> None:
    store = StateStore(project.state_url)
    for _ in range(5):
        store.finish_run(store.start_run("videos", INCREMENTAL), "success", {"delivered": 1})
    env = {**os.environ, "PYTHONUNBUFFERED": ""}
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written, like `| head -0`
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", *project.base(), *command],
        stdout=w,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=120,
    )
    os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 0
    assert proc.returncode != -signal.SIGPIPE


def test_json_of_a_failed_run_is_parseable(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run_cli(_sync(project, "--json"), capsys)
    assert code == 1, err
    shown = json.loads(out)  # stdout holds the JSON alone (the messages are on stderr)
    assert shown["sync"] == "videos" and shown["status"] == "failed"
    assert "Connection refused" in shown["error"] or "ConnectError" in shown["error"]
    assert shown["rows_read"] == 7  # the failed run's record: rows 3-9 are after (BASE, 4)


def test_two_null_key_rows_are_two_rejects_everywhere(
    project: Project, sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wh = Warehouse(project.warehouse)
    rows = event_rows(100, 2)
    for row in rows:
        row["event_id"] = None
    insert_events(wh, rows)
    wh.dispose()
    project.write(project.sync_text().replace("http://127.0.0.1:9", sandbox.url))
    code, out, err = _run_cli(_sync(project, "--json"), capsys)
    assert code == 0, err
    assert json.loads(out)["rejected"] == 2
    code, out, err = _run_cli([*project.base(), "rejects", "videos"], capsys)
    assert code == 0, err
    listed = [line for line in out.splitlines() if "primary key is NULL" in line]
    assert len(listed) == 2, out  # was 1: both rows had the key "NULL"
    # A second run finds the same two rows: still two rejects, not four.
    assert _run_cli(_sync(project), capsys)[0] == 0
    code, out, _ = _run_cli([*project.base(), "rejects", "videos"], capsys)
    assert len([line for line in out.splitlines() if "primary key is NULL" in line]) == 2


def test_a_locked_state_store_fails_within_seconds() -> None:
    assert state_module.SQLITE_BUSY_TIMEOUT_MS <= 5_000  # was 30 s per statement (62 s seen)
