"""Config loading and the command line: every problem reported at once, exit codes, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from connector.cli import main as cli
from connector.config.sync_file import json_schema, load_syncs, parse_sync
from connector.core.errors import ConfigError
from connector.destinations.klaviyo.bulk import KlaviyoBulkOptions
from connector.sandbox import SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import create_events_table, event_rows, insert_events

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name: videos
source: {table: ev, cursor: occurred_at, primary_key: event_id, url: "URL"}
destination: {type: klaviyo_bulk_events, api_key: "${KLAVIYO_API_KEY}", base_url: "http://sandbox.invalid"}
mapping:
  event_name: video_played
  event_time: occurred_at
  identifiers: {email: email}
  event_properties: {title: title}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_sync(textwrap.dedent(text), "syncs/x.yaml")
    return err.value.problems


@pytest.mark.parametrize(
    "edit,expected",
    [
        (
            ("identifiers: {email: email}", "identifiers: {emial: email}"),
            "syncs/x.yaml: mapping.identifiers.emial: unknown identifier for klaviyo_bulk_events; "
            "expected one of email, phone_number, external_id, anonymous_id, _kx, id",
        ),
        (
            ("primary_key: event_id", "primary_key: event_id, bogus: 1"),
            "syncs/x.yaml: source.bogus: unknown key; remove it or check its spelling",
        ),
        (
            ('api_key: "${KLAVIYO_API_KEY}"', "api_key: pk_live_abc"),
            "syncs/x.yaml: destination.api_key: must be an environment reference like "
            "${MY_API_KEY}; secrets are never written in config files",
        ),
        (
            ('api_key: "${KLAVIYO_API_KEY}"', 'api_key: "${NOT_SET_ANYWHERE}"'),
            "syncs/x.yaml: destination.api_key: environment variable NOT_SET_ANYWHERE is not set; "
            "export it (or write ${NOT_SET_ANYWHERE:-default})",
        ),
        (
            ("table: ev,", "table: ev, query: SELECT 1,"),
            "syncs/x.yaml: source: set exactly one of source.table or source.query",
        ),
        (
            ("cursor: occurred_at,", "cursor: occurred_at, timezone: Mars/Olympus,"),
            "syncs/x.yaml: source.timezone: unknown time zone 'Mars/Olympus'; use an IANA name "
            "like UTC",
        ),
        (
            ("type: klaviyo_bulk_events", "type: klaviyo_bulk"),
            "syncs/x.yaml: destination.type: unknown type 'klaviyo_bulk'",
        ),
        (
            (
                "event_properties: {title: title}",
                "event_properties: {title: title}\nschedule: every hour",
            ),
            "syncs/x.yaml: schedule.cron: must be a 5-field cron expression",
        ),
        (("name: videos", "name: 9 videos"), "syncs/x.yaml: name: '9 videos' is not a valid"),
    ],
)
def test_each_config_problem_names_the_file_field_and_fix(
    edit: tuple[str, str], expected: str
) -> None:
    text = GOOD.replace(*edit)
    problems = _problems(text)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = (
        GOOD.replace("identifiers: {email: email}", "identifiers: {emial: email}")
        .replace("primary_key: event_id", "primary_key: event_id, bogus: 1")
        .replace('api_key: "${KLAVIYO_API_KEY}"', "api_key: literal")
    )
    problems = _problems(text)
    assert len(problems) == 3
    assert {p.split(": ")[1] for p in problems} == {
        "mapping.identifiers.emial",
        "source.bogus",
        "destination.api_key",
    }


def test_invalid_yaml_says_where() -> None:
    (problem,) = _problems("name: [unclosed\n")
    assert problem.startswith("syncs/x.yaml: not valid YAML (line")


def _with(destination: str, identifiers: str, properties: str) -> str:
    return (
        GOOD.replace("type: klaviyo_bulk_events", f"type: {destination}")
        .replace("identifiers: {email: email}", f"identifiers: {identifiers}")
        .replace("  event_properties: {title: title}\n", properties)
    )


def test_mapping_names_that_collide_in_the_body_are_config_errors_naming_both() -> None:
    text = _with(
        "klaviyo_bulk_events",
        "{email: email}",
        "  event_properties:\n"
        "    video: title\n"
        "    video.title: title\n"
        "    video.len.s: len\n"
        "    a..b: title\n"
        "    duration: len\n"
        "    duration: title\n",
    )
    problems = _problems(text)
    assert problems == [
        "syncs/x.yaml: key 'duration' is written twice in one mapping (lines 14 and 15); YAML "
        "would keep only the last: remove one",
        "syncs/x.yaml: mapping.event_properties.a..b: empty name part (a leading, trailing or "
        "double dot)",
        "syncs/x.yaml: mapping.event_properties: 'video' and 'video.title' are both mapped: "
        "'video' would be both a value and an object holding 'title'; rename one",
        "syncs/x.yaml: mapping.event_properties: 'video' and 'video.len.s' are both mapped: "
        "'video' would be both a value and an object holding 'len'; rename one",
    ]


def test_names_that_flatten_to_one_key_are_config_errors() -> None:
    text = _with(
        "omnisend_track",
        "{email: email}",
        "  event_properties: {video.title: title, video_title: kind, video: kind}\n",
    )
    assert _problems(text) == [
        "syncs/x.yaml: mapping.event_properties: 'video.title' and 'video_title' both become "
        "property 'video_title' (omnisend_track flattens dots to '_'); rename one"
    ]


@pytest.mark.parametrize("dtype", ["brevo_event", "brevo_events_batch", "brevo_tracker"])
def test_dotted_brevo_contact_attributes_are_config_errors(dtype: str) -> None:
    ident = "{email: email}" if dtype == "brevo_tracker" else "{email_id: email}"
    text = _with(dtype, ident, "  contact_properties: {ADDRESS.CITY: city, FIRSTNAME: first}\n")
    assert _problems(text) == [
        f"syncs/x.yaml: mapping.contact_properties.ADDRESS.CITY: {dtype} contact_properties "
        "take no nested values, so a dotted name cannot nest; use a name without dots"
    ]


def test_unquoted_dates_validate_where_the_docs_write_them() -> None:
    text = GOOD.replace(
        'base_url: "http://sandbox.invalid"}',
        'base_url: "http://sandbox.invalid", options: {revision: 2026-07-15}}',
    )
    sync = parse_sync(text + "partitions: {start: 2026-01-01}\n", "syncs/x.yaml")
    options = sync.destination.options
    assert isinstance(options, KlaviyoBulkOptions) and options.revision == "2026-07-15"
    assert sync.partitions is not None and str(sync.partitions.start) == "2026-01-01"


def test_a_broken_file_does_not_hide_the_valid_ones(tmp_path: Path) -> None:
    syncs = tmp_path / "syncs"
    syncs.mkdir()
    (syncs / "good.yaml").write_text(GOOD)
    (syncs / "bad.yaml").write_text(
        GOOD.replace("name: videos", "name: other").replace("cursor: occurred_at, ", "")
    )
    (syncs / "fine.yaml").write_text(GOOD.replace("name: videos", "name: fine"))
    loaded = load_syncs(tmp_path)
    assert sorted(loaded.syncs) == ["fine", "videos"]
    assert "syncs/bad.yaml: source.cursor: Field required" in str(loaded.errors["syncs/bad.yaml"])


def test_env_defaults_and_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SANDBOX", "http://127.0.0.1:9")
    sync = parse_sync(
        GOOD.replace("http://sandbox.invalid", "${MY_SANDBOX}").replace(
            '"URL"', '"${WH_URL:-duckdb:///x.duckdb}"'
        ),
        "syncs/x.yaml",
    )
    assert sync.destination.base_url == "http://127.0.0.1:9"
    assert sync.source.url == "${WH_URL:-duckdb:///x.duckdb}"  # secret-capable: resolved late
    # The api key stays a reference in the model: it is resolved only when a run needs it.
    assert sync.destination.api_key == "${KLAVIYO_API_KEY}"


def test_published_json_schema_matches_the_models() -> None:
    published = json.loads((ROOT / "docs" / "sync.schema.json").read_text())
    assert published == json_schema(), "regenerate: connector schema --output docs/sync.schema.json"
    for name in ("brevo_events_batch", "klaviyo_bulk_events"):
        assert name in json.dumps(published)


def test_shipped_demo_configs_are_valid() -> None:
    loaded = load_syncs(ROOT / "config", check_env=False)
    assert loaded.errors == {}
    assert {"video_played", "order_placed"} <= set(loaded.syncs)


# --------------------------------------------------------------------------- CLI


def _write(tmp_path: Path, text: str, name: str = "videos") -> Path:
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    (syncs / f"{name}.yaml").write_text(text)
    return tmp_path / "config"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_config_error_exits_2_with_the_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path, GOOD.replace("identifiers: {email: email}", "identifiers: {emial: email}")
    )
    code, _, err = _run(["--config-dir", str(config), "sync", "videos"], capsys)
    assert code == 2
    assert "mapping.identifiers.emial: unknown identifier" in err
    code, _, err = _run(["--config-dir", str(config), "sync", "nope"], capsys)
    assert code == 2 and "no sync named 'nope'" in err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sync"])
    assert exit_.value.code == 2


def _project(
    tmp_path: Path, duck: Warehouse, sandbox: SandboxServer, rows: list[dict[str, Any]]
) -> list[str]:
    """The events table with ``rows``, the GOOD sync against it and the sandbox, a state file;
    returns the CLI's leading options."""
    create_events_table(duck)
    insert_events(duck, rows)
    text = GOOD.replace("URL", duck.url).replace("http://sandbox.invalid", sandbox.url)
    config = _write(tmp_path, text)
    return ["--config-dir", str(config), "--state-url", f"sqlite:///{tmp_path / 'state.db'}"]


def test_cli_sync_state_rejects_preview_and_validate(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = event_rows(0, 30)
    rows[4]["email"] = None
    base = _project(tmp_path, duck, sandbox, rows)
    state = base[-1]

    code, out, err = _run([*base, "validate"], capsys)
    assert code == 0 and "ok   videos" in out

    code, out, _ = _run([*base, "preview", "videos", "--limit", "2"], capsys)
    assert code == 0
    assert "Authorization: Klaviyo-API-Key ****" in out and "pk_sandbox" not in out
    assert '"unique_id": "videos:0"' in out
    assert sandbox.stats()["requests"] == 0 and StateStore(state).checkpoint("videos") is None

    code, out, err = _run([*base, "sync", "videos"], capsys)
    assert code == 0
    assert "delivered           29" in out and "rejected            1" in out
    assert "rows/s" in err  # progress on stderr
    assert "is partitioned" not in err

    code, out, _ = _run([*base, "sync", "videos"], capsys)
    assert code == 0 and "delivered           0" in out

    code, out, _ = _run([*base, "rejects", "videos"], capsys)
    assert code == 0 and out.startswith("1 open rejects (videos)\nkey\treason")
    assert out.splitlines()[2].startswith("4\tno profile identifier")

    code, out, _ = _run([*base, "state", "show", "videos"], capsys)
    assert code == 0 and "videos [incremental]: 2026-11-01 00:00:09+00:00 / key 29" in out

    code, out, _ = _run([*base, "state", "reset", "videos"], capsys)
    assert code == 0 and StateStore(state).checkpoint("videos") is None


def test_cli_validate_reports_missing_columns_and_bad_types(
    tmp_path: Path,
    duck: Warehouse,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_events_table(duck)
    text = (
        GOOD.replace("URL", duck.url)
        .replace("http://sandbox.invalid", "http://127.0.0.1:9")
        .replace("title: title", "title: titel")
        .replace("cursor: occurred_at", "cursor: email")
    )
    config = _write(tmp_path, text)
    code, _, err = _run(["--config-dir", str(config), "validate"], capsys)
    assert code == 2
    assert "column 'titel' is not in the source" in err
    assert (
        "source.cursor must be a timestamp, date, integer or decimal column (email is string: "
        "text orders '10' before '9'" in err
    )


def test_cli_run_failure_exits_1(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 3))
    # Nothing listens on port 9: connection refused, retried, then the run fails.
    text = (
        GOOD.replace("URL", duck.url)
        .replace("http://sandbox.invalid", "http://127.0.0.1:9")
        .replace(
            'base_url: "http://127.0.0.1:9"}',
            'base_url: "http://127.0.0.1:9", options: {max_retries: 0}}',
        )
    )
    config = _write(tmp_path, text)
    code, _, err = _run(
        [
            "--config-dir",
            str(config),
            "--state-url",
            f"sqlite:///{tmp_path / 's.db'}",
            "sync",
            "videos",
        ],
        capsys,
    )
    assert code == 1
    assert "ConnectError" in err and "checkpoint stays at the last delivered row" in err


def test_cli_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["schema"], capsys)
    assert code == 0 and json.loads(out) == json_schema()


def test_connector_entry_point_is_installed() -> None:
    exe = Path(sys.executable).with_name("connector")
    proc = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, env={**os.environ}, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("connector ")


def test_cli_sync_of_a_partitioned_sync_says_it_uses_the_incremental_scope(
    tmp_path: Path, duck: Warehouse, capsys: pytest.CaptureFixture[str]
) -> None:
    create_events_table(duck)
    insert_events(duck, event_rows(0, 3))
    text = GOOD.replace("URL", duck.url) + "partitions: {start: 2026-11-01, period: daily}\n"
    config = _write(tmp_path, text)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    args = ["--config-dir", str(config), "--state-url", state, "sync", "videos", "--dry-run"]
    code, _, err = _run(args, capsys)
    assert code == 0
    assert "note: videos is partitioned; Dagster delivers it per partition" in err


def test_cli_rejects_lists_a_row_rejected_by_every_run_once(
    tmp_path: Path,
    duck: Warehouse,
    sandbox: SandboxServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = event_rows(0, 5)
    rows[2]["occurred_at"] = None  # never readable: a reject again on every run
    rows[3]["email"] = None  # rejected once; the checkpoint passes it
    base = _project(tmp_path, duck, sandbox, rows)
    for _ in range(3):
        assert _run([*base, "sync", "videos"], capsys)[0] == 0

    code, out, _ = _run([*base, "rejects", "videos"], capsys)
    assert code == 0
    assert out.startswith("2 open rejects (videos)\n")
    lines = out.splitlines()[2:]  # after the count and the column names
    assert len(lines) == 2, out
    [null_row] = [line for line in lines if line.startswith("2\t")]
    assert "cursor column occurred_at is NULL" in null_row
    [no_email] = [line for line in lines if line.startswith("3\t")]
    assert "no profile identifier" in no_email
