"""The destination registry: a destination is one file plus one registry line, and endpoint
modules never import each other (the import graph is the module map's, tests/test_connector.py).

The toy destination test is the proof of "one file plus one line": it copies the package, adds
``tests/toy/toy_webhook.py`` as a destination module and one line (``type: module``) to
``registry.ENDPOINT_MODULES``, and runs the real CLI (schema, validate, sync, sync again) of
that copy against a small ToyCo server on 127.0.0.1.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, get_args

import duckdb
import pytest

from connector.config.sync_file import json_schema, parse_sync
from connector.core.errors import ConfigError
from connector.destinations import (
    DESTINATIONS,
    ContactDestination,
    Destination,
    EventDestination,
    registry,
    types_of,
)
from dagster_defs.translator import ReverseEtlTranslator, vendor
from tests.test_connector import _registered_modules, _registry_lines, import_graph

ROOT = Path(__file__).resolve().parents[2]


def test_no_endpoint_module_imports_another_endpoint_module() -> None:
    graph = import_graph()
    endpoints = {f"connector.destinations.{m}" for m in _registered_modules()}
    assert len(endpoints) == len(DESTINATIONS)
    crossing = {m: sorted(graph[m] & endpoints) for m in endpoints if graph[m] & endpoints}
    assert crossing == {}, "endpoints share code through a vendor module, not each other"


# --------------------------------------------------------------------------- what reads it


EVENT_TYPES = [
    "brevo_events_batch",
    "klaviyo_bulk_events",
    "brevo_event",
    "brevo_tracker",
    "omnisend_track",
    "omnisend_events",
]
CONTACT_TYPES = ["klaviyo_profiles", "brevo_contacts", "omnisend_contacts"]


def test_the_registry_lists_every_destination_module_with_its_declarations() -> None:
    assert list(DESTINATIONS) == EVENT_TYPES + CONTACT_TYPES  # one registry, both kinds
    for dtype, cls in DESTINATIONS.items():
        assert get_args(cls.config_model.model_fields["type"].annotation) == (dtype,)
        assert cls.kind == ("contacts" if dtype in CONTACT_TYPES else "events")
        base = ContactDestination if cls.kind == "contacts" else EventDestination
        assert issubclass(cls, base) and issubclass(cls, Destination)
    assert types_of("events") == EVENT_TYPES and types_of("contacts") == CONTACT_TYPES
    vendors = {dtype: cls.vendor.name for dtype, cls in DESTINATIONS.items()}
    assert vendors["brevo_tracker"] == "brevo" and vendors["omnisend_events"] == "omnisend"
    assert vendors["brevo_contacts"] == "brevo" and vendors["klaviyo_profiles"] == "klaviyo"
    # The JSON Schema's destination union is the registry's config models, in its order.
    branches = json_schema()["properties"]["destination"]["oneOf"]
    refs = [b["$ref"].rsplit("/", 1)[1] for b in branches]
    assert refs == [cls.config_model.__name__ for cls in DESTINATIONS.values()]


def test_a_contact_endpoint_shares_its_vendors_headers_and_error_reading() -> None:
    """Contact endpoints sit beside their vendor's event endpoints: the same vendor object,
    the same header builder, the same RFC 9457 reading (Omnisend) as the event side."""
    from connector.destinations.brevo import vendor as brevo
    from connector.destinations.omnisend import contacts as omnisend_contacts
    from connector.destinations.omnisend import vendor as omnisend

    graph = import_graph()
    event_vendors = {DESTINATIONS[t].vendor.name: DESTINATIONS[t].vendor for t in EVENT_TYPES}
    for dtype in CONTACT_TYPES:
        cls = DESTINATIONS[dtype]
        assert cls.vendor is event_vendors[cls.vendor.name], dtype
        assert f"connector.destinations.{cls.vendor.name}.vendor" in graph[cls.__module__]
    cfg = DESTINATIONS["brevo_contacts"].config_model.model_validate(
        {"type": "brevo_contacts", "api_key": "${K}", "options": {"list_ids": [1]}}
    )
    assert DESTINATIONS["brevo_contacts"](cfg, "k", "s").auth_headers() == brevo.brevo_headers(
        "api-key", "k"
    )
    problem = {"title": "Conflict", "detail": "taken", "errors": [{"field": "email"}]}
    assert omnisend_contacts._problem(409, problem) == "409 " + omnisend.problem_text(problem)


def test_a_registered_module_must_declare_a_matching_config_type() -> None:
    with pytest.raises(TypeError, match="DESTINATION"):
        registry._load("base", "base")
    # A registry line whose type is not the one its module declares.
    with pytest.raises(TypeError, match=r"registered as 'brevo_tracker'.*'brevo_event'"):
        registry._load("brevo_tracker", "brevo.event")
    with pytest.raises(TypeError, match="registered as 'brevo_tracker'"):
        registry.Registry({"brevo_tracker": "brevo.event"})["brevo_tracker"]


def test_each_registry_line_names_the_type_its_module_declares() -> None:
    """type <-> module, checked for every line (the registry imports a module only when its
    type is looked up, so a wrong line would otherwise show only in a sync of that type)."""
    lines = _registry_lines()
    types = [t for t, _ in lines]
    assert len(set(types)) == len(types), "a type is registered twice"
    modules = [m for _, m in lines]
    assert len(set(modules)) == len(modules), "a module is registered twice"
    fresh = registry.Registry(dict(lines))
    for dtype, module in lines:
        cls = fresh[dtype]
        assert cls.type == dtype and cls.__module__ == f"connector.destinations.{module}"
        assert fresh.module_of(dtype) == cls.__module__
    assert fresh.loaded() == types


def test_the_registry_imports_an_endpoint_module_when_its_type_is_looked_up() -> None:
    """Keys, ``in`` and ``len`` import nothing; ``DESTINATIONS[t]`` imports t's module only;
    ``values()`` imports them all. In a fresh process, so no other test has imported them."""
    code = """
import json, sys
from connector.destinations.registry import DESTINATIONS
out = {"keys": list(DESTINATIONS), "n": len(DESTINATIONS), "in": "brevo_event" in DESTINATIONS}
def endpoints():
    return sorted(DESTINATIONS.module_of(t) for t in DESTINATIONS
                  if DESTINATIONS.module_of(t) in sys.modules)
out["before"] = endpoints()
out["get"] = DESTINATIONS["omnisend_track"].type
out["one"] = endpoints()
out["missing"] = DESTINATIONS.get("nope") is None and "nope" not in DESTINATIONS
list(DESTINATIONS.values())
out["all"] = endpoints()
print(json.dumps(out))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    out = json.loads(proc.stdout)
    assert out["keys"] == EVENT_TYPES + CONTACT_TYPES and out["n"] == 9 and out["in"]
    assert out["before"] == []
    assert out["get"] == "omnisend_track"
    assert out["one"] == ["connector.destinations.omnisend.track"]
    assert out["missing"]
    assert out["all"] == sorted(f"connector.destinations.{m}" for m in _registered_modules())


SYNC = """
name: s
source: {table: t, cursor: at, primary_key: id}
destination: {type: %s, api_key: "${K}"}
mapping: {event_name: e, event_time: at, identifiers: {%s: email}}
"""


def test_the_dagster_vendor_kind_and_pool_come_from_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K", "k")
    tracker = parse_sync(SYNC % ("brevo_tracker", "email"), "syncs/s.yaml")
    assert vendor(tracker) == DESTINATIONS["brevo_tracker"].vendor.name == "brevo"
    assert ReverseEtlTranslator().get_pool(tracker) == "reverse_etl/brevo/K"
    spec = ReverseEtlTranslator().get_asset_spec(tracker)
    assert "brevo" in spec.kinds and spec.group_name == "brevo"
    klaviyo = parse_sync(SYNC % ("klaviyo_bulk_events", "email"), "syncs/s.yaml")
    assert ReverseEtlTranslator().get_pool(klaviyo) == "reverse_etl/klaviyo/K"


# --------------------------------------------------------------------------- one file + one line


class _JsonApi(BaseHTTPRequestHandler):
    """A handler answering JSON, quietly."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 for the test; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _ToyCo(_JsonApi):
    """ToyCo's ``POST /hooks/events``: refuses events whose plan is ``banned`` (422, nothing
    stored), stores the others and records every request."""

    requests: ClassVar[list[tuple[str, str, list[dict[str, Any]]]]] = []
    stored: ClassVar[dict[str, dict[str, Any]]] = {}

    def do_POST(self) -> None:
        events = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append((self.path, self.headers.get("x-toy-key", ""), events))
        banned = {
            str(i): "plan banned" for i, e in enumerate(events) if e["props"]["plan"] == "banned"
        }
        if banned:
            self._answer(422, {"rejected": banned})
            return
        for event in events:
            type(self).stored[event["id"]] = event
        self._answer(200, {})


@pytest.fixture
def toyco() -> Iterator[str]:
    _ToyCo.requests, _ToyCo.stored = [], {}
    yield from _serve(_ToyCo)


def _copy_with_toy(dest: Path, module: str = "toy_webhook") -> Path:
    """The package copied to ``dest`` plus the toy module and its registry line (the last; the
    toy modules are named as their types)."""
    pkg = dest / "connector"
    # With the compiled modules (copied with their times, so still valid): each CLI run of
    # the copy would otherwise compile the whole package again.
    shutil.copytree(ROOT / "connector", pkg)
    shutil.copy(ROOT / "tests" / "toy" / f"{module}.py", pkg / "destinations")
    reg = pkg / "destinations" / "registry.py"
    text = reg.read_text()
    last = '    "{}": "{}",\n'.format(*_registry_lines()[-1])
    assert text.count(last) == 1
    reg.write_text(text.replace(last, last + f'    "{module}": "{module}",\n'))
    return dest


def _toy_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a toy's CLI runs: config dir, state store, ToyCo's key."""
    return {
        "CONNECTOR_CONFIG_DIR": str(tmp_path / "config"),
        "CONNECTOR_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "TOY_KEY": "toy-secret",
    }


def _cli(copy: Path, cwd: Path, env: dict[str, str]) -> Any:
    """``connector <args>`` of the package copy in a subprocess."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from connector.cli.main import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env={**os.environ, "PYTHONPATH": str(copy), **env},
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
        )

    return cli


def _tree_diff(original: Path, copy: Path) -> tuple[list[str], list[str]]:
    """(files only in the copy, changed lines of files in both) of two package trees."""

    def files(root: Path) -> dict[str, Path]:
        return {
            str(p.relative_to(root)): p for p in root.rglob("*.py") if "__pycache__" not in p.parts
        }

    a, b = files(original), files(copy)
    added = sorted(set(b) - set(a))
    changed: list[str] = []
    for name in sorted(set(a) & set(b)):
        diff = difflib.unified_diff(
            a[name].read_text().splitlines(), b[name].read_text().splitlines(), n=0
        )
        changed += [
            f"{name}: {line}"
            for line in diff
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
        ]
    return added, changed


def test_a_toy_destination_is_one_file_plus_one_registry_line(
    tmp_path: Path, toyco: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _copy_with_toy(tmp_path / "pkg")
    added, changed = _tree_diff(ROOT / "connector", copy / "connector")
    assert added == ["destinations/toy_webhook.py"]
    assert changed == ['destinations/registry.py: +    "toy_webhook": "toy_webhook",']

    wh = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(wh))
    con.execute(
        "CREATE TABLE signups AS SELECT i AS id, "
        "TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i) AS signed_at, "
        "CASE WHEN i % 40 = 7 THEN NULL ELSE 'u' || i || '@example.com' END AS email, "
        "CASE WHEN i = 60 THEN 'banned' ELSE 'free' END AS plan FROM range(120) t(i)"
    )
    con.close()
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "toy.yaml").write_text(
        f"""
name: toy_signups
source: {{table: signups, cursor: signed_at, primary_key: id, url: "duckdb:///{wh}"}}
destination:
  type: toy_webhook
  api_key: ${{TOY_KEY}}
  base_url: {toyco}
  options: {{channel: signups}}
mapping:
  event_name: signed_up
  event_time: signed_at
  identifiers: {{email: email}}
  event_properties: {{plan: plan}}
"""
    )
    env = _toy_env(tmp_path)
    cli = _cli(copy, tmp_path, env)

    where = subprocess.run(
        [sys.executable, "-c", "import connector; print(connector.__file__)"],
        env={**os.environ, "PYTHONPATH": str(copy), **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert where.stdout.strip() == str(copy / "connector" / "__init__.py")

    schema = cli("schema")
    assert schema.returncode == 0, schema.stderr
    assert "ToyWebhookDestination" in json.loads(schema.stdout)["$defs"]

    validate = cli("validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "ok   toy_signups (toy_webhook)" in validate.stdout

    run = cli("sync", "toy_signups")
    assert run.returncode == 0, run.stdout + run.stderr
    # 120 rows: 3 without an email rejected locally, row 60 refused by ToyCo, 116 stored.
    assert len(_ToyCo.stored) == 116
    assert all(
        e["channel"] == "signups" and e["name"] == "signed_up" for e in _ToyCo.stored.values()
    )
    assert {key for _, key, _ in _ToyCo.requests} == {"toy-secret"}
    assert all(len(events) <= 50 for _, _, events in _ToyCo.requests)  # the module's limit
    assert "rejected            4" in run.stdout

    sent = len(_ToyCo.requests)
    again = cli("sync", "toy_signups")
    assert again.returncode == 0, again.stderr
    assert len(_ToyCo.requests) == sent  # the checkpoint moved past every row

    # Without the registry line the same file is no destination at all.
    monkeypatch.setenv("TOY_KEY", "k")
    with pytest.raises(ConfigError, match="toy_webhook"):
        parse_sync((tmp_path / "config" / "syncs" / "toy.yaml").read_text(), "toy.yaml")


class _ToyContactsApi(_JsonApi):
    """ToyCo's contact import: ``POST /contacts/jobs`` stores a job (profiles whose plan is
    ``banned`` are refused), ``GET /contacts/jobs/<id>`` answers ``running`` once, then
    ``done`` with the refused profiles; profiles of done jobs are stored by e-mail."""

    jobs: ClassVar[dict[str, dict[str, Any]]] = {}
    stored: ClassVar[dict[str, dict[str, Any]]] = {}
    keys: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).keys.add(self.headers.get("x-toy-key", ""))
        job = str(len(self.jobs) + 1)
        type(self).jobs[job] = {"profiles": body["profiles"], "polls": 0}
        self._answer(202, {"job": job})

    def do_GET(self) -> None:
        job = self.jobs[self.path.rsplit("/", 1)[1]]
        job["polls"] += 1
        if job["polls"] == 1:
            self._answer(200, {"status": "running"})
            return
        refused = [p for p in job["profiles"] if p["plan"] == "banned"]
        for p in job["profiles"]:
            if p not in refused:
                type(self).stored[p["email"]] = p
        errors = [{"email": p["email"].upper(), "reason": "plan banned"} for p in refused]
        self._answer(200, {"status": "done", "errors": errors})


@pytest.fixture
def toy_contacts_api() -> Iterator[str]:
    _ToyContactsApi.jobs, _ToyContactsApi.stored, _ToyContactsApi.keys = {}, {}, set()
    yield from _serve(_ToyContactsApi)


@pytest.mark.slow
def test_a_toy_contact_endpoint_is_one_file_plus_one_registry_line(
    tmp_path: Path, toy_contacts_api: str
) -> None:
    """The contact kind's proof: ``tests/toy/toy_contacts.py`` and its registry line make a
    contact sync that config, the JSON Schema, validate, the diff, the jobs and their polls
    run, and that Dagster and the demo tell from an event sync by its registry ``kind``."""
    copy = _copy_with_toy(tmp_path / "pkg", "toy_contacts")
    added, changed = _tree_diff(ROOT / "connector", copy / "connector")
    assert added == ["destinations/toy_contacts.py"]
    assert changed == ['destinations/registry.py: +    "toy_contacts": "toy_contacts",']

    wh = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(wh))
    con.execute(
        "CREATE TABLE customers AS SELECT i AS id, "
        "CASE WHEN i % 20 = 7 THEN NULL ELSE 'c' || i || '@example.com' END AS email, "
        "CASE WHEN i = 30 THEN 'banned' ELSE 'free' END AS plan FROM range(50) t(i)"
    )
    con.close()
    (tmp_path / "config" / "syncs").mkdir(parents=True)
    (tmp_path / "config" / "syncs" / "toy.yaml").write_text(
        f"""
name: toy_customers
source: {{table: customers, primary_key: id, url: "duckdb:///{wh}"}}
destination:
  type: toy_contacts
  api_key: ${{TOY_KEY}}
  base_url: {toy_contacts_api}
  options: {{segment: vip, poll_interval_s: 0.01}}
mapping:
  identifiers: {{email: email}}
  contact_properties: {{plan: plan}}
"""
    )
    env = _toy_env(tmp_path)
    cli = _cli(copy, tmp_path, env)

    schema = cli("schema")
    assert schema.returncode == 0, schema.stderr
    assert "ToyContactsDestination" in json.loads(schema.stdout)["$defs"]

    validate = cli("validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "ok   toy_customers (toy_contacts)" in validate.stdout

    run = cli("sync", "toy_customers", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    first = json.loads(run.stdout)
    # 50 rows: 3 without an email rejected locally, c30 refused by ToyCo, 46 confirmed.
    assert (first["kind"], first["added"], first["delivered"], first["rejected"]) == (
        "contacts",
        50,
        46,
        4,
    )
    assert first["jobs"] == 3 and first["polls"] == 6  # ≤ 20 profiles a job; running once
    assert len(_ToyContactsApi.stored) == 46 and _ToyContactsApi.keys == {"toy-secret"}
    assert {p["segment"] for p in _ToyContactsApi.stored.values()} == {"vip"}

    again = json.loads(cli("sync", "toy_customers", "--json").stdout)
    # The diff: the confirmed rows are unchanged; the refused and rejected ones go again.
    assert (again["unchanged"], again["sent"], again["jobs"]) == (46, 1, 1)

    code = (
        "from connector.config.sync_file import load_sync; "
        "from dagster_defs.translator import ReverseEtlTranslator; "
        "spec = ReverseEtlTranslator().get_asset_spec(load_sync('toy_customers')); "
        "print(spec.group_name, spec.metadata['sync_kind'])"
    )
    dagster = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{ROOT}", **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert dagster.stdout.split() == ["toyco", "contacts"], dagster.stderr


@pytest.mark.parametrize(
    "destination",
    [
        {"type": "klaviyo_bulk_events", "api_key": "${K}", "bogus": 1},
        {"type": "brevo_contacts", "api_key": "${K}", "options": {"list_ids": "x", "y": 2}},
        {"type": "omnisend_track"},
        {"type": "klaviyo_bulk"},
        {"type": 5, "api_key": "${K}"},
        {"type": None},
        {"api_key": "${K}"},
        {},
        "klaviyo_bulk_events",
        [1, 2],
        None,
    ],
)
def test_the_destination_fails_as_the_discriminated_union_of_every_config_model(
    destination: Any,
) -> None:
    """``SyncConfig`` validates ``destination`` against the one config model its type names;
    its errors are those of pydantic's discriminated union of every config model (type,
    message, input), at the same location less the union's tag."""
    from typing import Annotated, Union

    from pydantic import Field, TypeAdapter, ValidationError

    from connector.config.sync_file import SyncConfig

    models = tuple(cls.config_model for cls in DESTINATIONS.values())
    form: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
    union: TypeAdapter[Any] = TypeAdapter(form)

    def errors(exc: ValidationError, drop_tag: bool) -> list[tuple[Any, ...]]:
        out = []
        for e in exc.errors(include_url=False):
            loc = list(e["loc"])
            if drop_tag and len(loc) > 1 and loc[0] in DESTINATIONS:
                loc.pop(0)
            out.append((e["type"], e["msg"], tuple(loc), repr(e.get("input"))))
        return out

    with pytest.raises(ValidationError) as expected:
        union.validate_python(destination)
    raw = {
        "name": "s",
        "source": {"table": "t", "cursor": "at", "primary_key": "id"},
        "destination": destination,
        "mapping": {"event_name": "e", "event_time": "at", "identifiers": {"email": "email"}},
    }
    with pytest.raises(ValidationError) as got:
        SyncConfig.model_validate(raw, context={"loader": True})
    mine = [
        (t, m, loc[1:], i)
        for t, m, loc, i in errors(got.value, False)
        if loc[:1] == ("destination",)
    ]
    assert mine == errors(expected.value, True)
