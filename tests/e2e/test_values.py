"""Values leave exactly as the warehouse holds them: decimals and big integers as their exact
digits on every path, one rule for naive times in DST gaps and folds, and values that cannot
become their field rejected per row (never a crashed run)."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from connector.cli import main as cli
from connector.config.sync_file import SyncConfig, parse_sync
from connector.deliver.delivery import Runtime
from connector.map.mapper import Chunk, Mapper
from connector.plan.planner import payload as _payload
from connector.run.sync import preview, run_sync
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.map.test_mapper import DST_CASES

AMOUNTS = """
name: {name}
source: {{table: amounts, cursor: occurred_at, primary_key: id, url: "{url}"}}
destination:
  type: {dtype}
  api_key: "${{{key}}}"
  base_url: "{sandbox}"
mapping:
  event_name: order_placed
  event_time: occurred_at
  identifiers: {{{ident}: email}}
  event_properties: {{amount: amount, total: total, big: big, price: price, note: note}}
{extra}"""

DESTINATIONS = {
    # type: (api key variable, identifier field, extra mapping lines)
    "klaviyo_bulk_events": ("KLAVIYO_API_KEY", "email", "  value: amount\n"),
    "brevo_events_batch": ("BREVO_API_KEY", "email_id", ""),
    "brevo_event": ("BREVO_API_KEY", "email_id", ""),
    "omnisend_track": ("OMNISEND_TOKEN", "email", ""),
    "omnisend_events": ("OMNISEND_API_KEY", "email", ""),
}
SANDBOX_PATHS = {
    "klaviyo_bulk_events": "/api/event-bulk-create-jobs",
    "brevo_events_batch": "/v3/events/batch",
    "brevo_event": "/v3/events",
    "omnisend_track": "/v4/track",
    "omnisend_events": "/api/events",
}

# Row 1 and row 2 as the warehouse holds them; each must appear with exactly these digits.
EXACT_1 = {
    "amount": "18.99",
    "total": "12345678901234567.89",
    "big": "9223372036854775807",
    "price": "1234567.8912",
}
EXACT_2 = {"amount": "5.00", "total": "-0.01", "big": "-9223372036854775808", "price": "0.1"}
NOTE_NUMBERS = ("12345678901234567.89", "123456789012345678901234567890")


def _amounts_table(wh: Warehouse) -> None:
    double = "DOUBLE" if wh.kind == "duckdb" else "double precision"
    wh.run(
        "DROP TABLE IF EXISTS amounts",
        f"""CREATE TABLE amounts (
            id INTEGER, occurred_at {wh.timestamptz()}, email VARCHAR(100),
            amount DECIMAL(10, 2), total DECIMAL(38, 2), big BIGINT, price {double},
            note {wh.json_type()})""",
        """INSERT INTO amounts VALUES
            (1, '2026-11-01 10:00:00+00', 'a@example.com', 18.99, 12345678901234567.89,
             9223372036854775807, 1234567.8912,
             '{"n": 12345678901234567.89, "i": 123456789012345678901234567890}'),
            (2, '2026-11-01 10:00:01+00', 'b@example.com', 5.00, -0.01,
             -9223372036854775807 - 1, 0.1, '{"n": 1.5}')""",
    )


def _sync(wh: Warehouse, dtype: str, sandbox_url: str = "http://127.0.0.1:9") -> SyncConfig:
    key, ident, extra = DESTINATIONS[dtype]
    text = AMOUNTS.format(
        name="orders",
        url=wh.url,
        dtype=dtype,
        key=key,
        sandbox=sandbox_url,
        ident=ident,
        extra=extra,
    )
    return parse_sync(text, "syncs/orders.yaml")


def _assert_exact(body: str, dtype: str) -> None:
    """Every number of rows 1 and 2 is in the body with the warehouse's digits."""
    for name, text in (*EXACT_1.items(), *EXACT_2.items()):
        assert re.search(rf'"{name}":\s*{re.escape(text)}[,}}\s]', body), (name, text, body)
    for text in NOTE_NUMBERS:
        assert re.search(rf":\s*{text}[,}}\s]", body), (text, body)
    assert "18.990000000000002" not in body and "1.2345678901234568e" not in body.lower()
    if dtype == "klaviyo_bulk_events":
        assert re.search(r'"value":\s*18\.99[,}]', body) and re.search(r'"value":\s*5\.00', body)


@pytest.mark.parametrize("dtype", sorted(DESTINATIONS))
def test_preview_shows_the_exact_decimal_text_and_big_integers(
    warehouse: Warehouse, dtype: str
) -> None:
    _amounts_table(warehouse)
    out = preview(_sync(warehouse, dtype), limit=10)
    assert out["rejects"] == []
    body = "\n".join(req["body"].decode() for req in out["requests"])
    _assert_exact(body, dtype)


def test_cli_preview_prints_the_numbers_with_their_exact_digits(
    duck: Warehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _amounts_table(duck)
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True)
    key, ident, extra = DESTINATIONS["klaviyo_bulk_events"]
    (syncs / "orders.yaml").write_text(
        AMOUNTS.format(
            name="orders",
            url=duck.url,
            dtype="klaviyo_bulk_events",
            key=key,
            sandbox="http://127.0.0.1:9",
            ident=ident,
            extra=extra,
        )
    )
    code = cli.main(["--config-dir", str(tmp_path / "config"), "preview", "orders"])
    out = capsys.readouterr().out
    assert code == 0
    assert '"amount": 18.99,' in out and '"total": 12345678901234567.89,' in out
    assert '"big": 9223372036854775807,' in out and '"amount": 5.00,' in out
    assert '"value": 18.99' in out and '"i": 123456789012345678901234567890' in out


@pytest.fixture
def recording_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(keep_bodies=True), host="127.0.0.1", port=0) as sb:
        yield sb


@pytest.mark.parametrize("dtype", sorted(DESTINATIONS))
def test_a_sync_sends_the_sandbox_the_exact_digits(
    warehouse: Warehouse,
    recording_sandbox: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    _amounts_table(warehouse)
    res = run_sync(_sync(warehouse, dtype, recording_sandbox.url), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 2, 0)
    bodies = recording_sandbox.bodies()
    assert {path for path, _ in bodies} == {SANDBOX_PATHS[dtype]}
    _assert_exact("\n".join(body.decode() for _, body in bodies), dtype)


def test_omnisend_v4_sends_1234567_8912_unrounded(
    duck: Warehouse, recording_sandbox: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    _amounts_table(duck)
    run_sync(_sync(duck, "omnisend_track", recording_sandbox.url), state=state, runtime=runtime)
    sent = b"\n".join(body for _, body in recording_sandbox.bodies())  # any arrival order
    assert b'"price":1234567.8912' in sent and b"1234570" not in sent


def test_duckdb_hugeint_and_decimal_38_0_stay_exact_on_both_paths(duck: Warehouse) -> None:
    huge = "170141183460469231731687303715884105727"
    duck.run(
        "CREATE TABLE amounts (id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, "
        "amount HUGEINT, total DECIMAL(38, 0), big UBIGINT, price REAL, note JSON)",
        f"INSERT INTO amounts VALUES (1, '2026-11-01 10:00:00+00', 'a@example.com', {huge}, "
        f"{'9' * 38}, 18446744073709551615, 0.1, "
        + """'{"a": 1e300, "b": 0.30000000000000004, "c": [1.50, 2e-9]}')""",
    )
    for dtype in ("klaviyo_bulk_events", "brevo_event"):  # column-wise, per row
        body = preview(_sync(duck, dtype), limit=1)["requests"][0]["body"].decode()
        assert f'"amount":{huge}' in body and f'"total":{"9" * 38}' in body, body
        assert '"big":18446744073709551615' in body and '"price":0.1,' in body  # REAL widened
        assert "0.30000000000000004" in body and "1e300" in body
        assert "1.50" in body and "2e-9" in body  # the JSON column's spelling, both paths


def test_the_reject_payload_keeps_the_exact_digits(duck: Warehouse) -> None:
    _amounts_table(duck)
    sync = _sync(duck, "brevo_event")
    table = pa.table(
        {
            "id": [1],
            "occurred_at": pa.array([datetime(2026, 11, 1)], pa.timestamp("us", tz="UTC")),
            "email": ["a@example.com"],
            "amount": pa.array([Decimal("18.99")], pa.decimal128(10, 2)),
            "total": pa.array([Decimal("12345678901234567.89")], pa.decimal128(38, 2)),
            "big": pa.array([2**63 - 1], pa.int64()),
            "price": [1234567.8912],
            "note": ['{"n": 12345678901234567.89}'],
        }
    )
    events = Mapper(sync).map(Chunk(table, frozenset({"note"})))
    payload = _payload(events, 0)
    assert payload is not None
    for text in (*EXACT_1.values(), '"n":12345678901234567.89'):
        assert text in payload, payload


# --------------------------------------------------------------------------- time zones

PARIS = """
name: paris
source: {{table: visits, cursor: id, primary_key: id, url: "{url}", timezone: Europe/Paris}}
destination:
  type: {dtype}
  api_key: "${{{key}}}"
  base_url: "http://127.0.0.1:9"
mapping:
  event_name: visited
  event_time: seen
  identifiers: {{{ident}: email}}
  event_properties: {{at: seen}}
"""


@pytest.mark.parametrize("dtype", ["klaviyo_bulk_events", "brevo_event"])
def test_dst_rule_holds_on_the_column_wise_and_the_per_row_path(
    warehouse: Warehouse, dtype: str
) -> None:
    warehouse.run(
        f"CREATE TABLE visits (id INTEGER, seen {warehouse.naive_timestamp()}, email VARCHAR(100))",
        "INSERT INTO visits VALUES "
        + ", ".join(f"({i}, '{k}', 'a{i}@example.com')" for i, k in enumerate(DST_CASES)),
    )
    key, ident, _ = DESTINATIONS[dtype]
    text = PARIS.format(url=warehouse.url, dtype=dtype, key=key, ident=ident)
    out = preview(parse_sync(textwrap.dedent(text), "syncs/paris.yaml"), limit=10)
    assert out["rejects"] == []
    body = b"".join(req["body"] for req in out["requests"]).decode()
    for utc in DST_CASES.values():
        # the event time and the property, both from the naive column
        assert len(re.findall(rf'"{utc}(\.000)?\+00:00"', body)) == 2, (utc, body)
    assert "00:59:59.999" not in body


# --------------------------------------------------------------------------- conversions

MIXED = """
name: mixed
source: {{table: mixed, cursor: id, primary_key: id, url: "{url}"}}
destination:
  type: klaviyo_bulk_events
  api_key: "${{KLAVIYO_API_KEY}}"
  base_url: "{sandbox}"
mapping:
  event_name: order_placed
  event_time: when_text
  identifiers: {{email: email, external_id: ext}}
  value: amount_text
"""


def test_values_that_cannot_be_converted_are_rejects_and_the_other_rows_go(
    duck: Warehouse,
    recording_sandbox: SandboxServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    duck.run(
        "CREATE TABLE mixed (id INTEGER, email VARCHAR, amount_text VARCHAR, "
        "ext STRUCT(a INTEGER), when_text VARCHAR)",
        """INSERT INTO mixed VALUES
            (1, 'a@example.com', '18.99', NULL, '2026-11-01T10:00:00Z'),
            (2, 'b@example.com', 'abc', NULL, '2026-11-01T10:00:00Z'),
            (3, 'c@example.com', ' 7 ', {'a': 1}, '2026-11-01T10:00:00Z'),
            (4, 'd@example.com', NULL, NULL, 'yesterday-ish'),
            (5, 'e@example.com', '12345678901234567.89', NULL, '2026-11-01 11:00:00')""",
    )
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True)
    text = MIXED.format(url=duck.url, sandbox=recording_sandbox.url)
    base = ["--config-dir", str(tmp_path / "config"), "--state-url", f"sqlite:///{tmp_path}/s.db"]

    # A struct identifier can never be text: the run refuses it as validate does (exit 2).
    (syncs / "mixed.yaml").write_text(text)
    assert cli.main([*base, "sync", "mixed"]) == 2
    assert "mapping.identifiers.external_id: column ext is a struct/list/map" in (
        capsys.readouterr().err
    )
    assert recording_sandbox.bodies() == []

    (syncs / "mixed.yaml").write_text(text.replace(", external_id: ext", ""))
    code = cli.main([*base, "sync", "mixed"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "delivered           3" in out and "rejected            2" in out

    assert cli.main([*base, "rejects", "mixed", "--format", "json"]) == 0
    reasons = {r["key"]: r["reason"] for r in json.loads(capsys.readouterr().out)}
    assert reasons == {
        "2": "value: column amount_text holds text that is not a number (e.g. 18.99)",
        "4": "event_time: column when_text holds text that is not an ISO 8601 time",
    }
    body = recording_sandbox.bodies()[0][1]
    assert b'"value":18.99' in body and b'"value":12345678901234567.89' in body
    times = [e["event"]["time"] for e in recording_sandbox.events("klaviyo_bulk_events")]
    assert sorted(times) == ["2026-11-01T10:00:00.000+00:00"] * 2 + [
        "2026-11-01T11:00:00.000+00:00"
    ]


def test_validate_warns_of_text_values_and_refuses_struct_identifiers(
    duck: Warehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    duck.run(
        "CREATE TABLE mixed (id INTEGER, email VARCHAR, amount_text VARCHAR, "
        "ext STRUCT(a INTEGER), when_text TIMESTAMP)"
    )
    syncs = tmp_path / "config" / "syncs"
    syncs.mkdir(parents=True)
    text = MIXED.format(url=duck.url, sandbox="http://127.0.0.1:9")
    (syncs / "mixed.yaml").write_text(text.replace(", external_id: ext", ""))
    code = cli.main(["--config-dir", str(tmp_path / "config"), "validate"])
    out, err = capsys.readouterr()
    assert code == 0 and "ok   mixed" in out
    assert (
        "warning: syncs/mixed.yaml: mapping.value: column amount_text is text; rows whose "
        "text is not a number (like 18.99) become rejects" in out
    )

    (syncs / "mixed.yaml").write_text(text)
    code = cli.main(["--config-dir", str(tmp_path / "config"), "validate"])
    out, err = capsys.readouterr()
    assert code == 2 and "FAIL mixed" in out
    assert (
        "mapping.identifiers.external_id: column ext is a struct/list/map, which has no text "
        "form; map a text column" in err
    )
