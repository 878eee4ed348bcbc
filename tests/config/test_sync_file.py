"""Sync files (``config.sync_file``): every problem of a file reported at once, naming the
file, the field and the fix; YAML, ``${ENV}`` references, the published JSON Schema and the
shipped demo configs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from connector.config.sync_file import json_schema, load_syncs, parse_sync
from connector.core.errors import ConfigError
from connector.destinations.klaviyo.bulk import KlaviyoBulkOptions

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


SHIPPED = Path(__file__).resolve().parents[2] / "config"


def test_owners_must_be_emails_or_teams(tmp_path: Path) -> None:
    from connector import ConfigError
    from connector.config.sync_file import parse_sync

    text = (SHIPPED / "syncs" / "video_played.yaml").read_text()
    text = text.replace("owners: [team:growth]", "owners: [growth]")
    with pytest.raises(ConfigError, match="neither an e-mail address nor team:<name>"):
        parse_sync(text, "syncs/video_played.yaml")
