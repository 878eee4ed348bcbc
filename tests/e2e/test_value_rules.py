"""One rule per value on every destination, event and contact (issue 19 items 5, 6, 10, 11).

- Numbers JSON or the vendor cannot carry (NaN, ±infinity, a text like ``1e999``, a JSON number
  beyond a 64-bit float, a Brevo ``contact_id`` beyond int64) are rejects of their row, naming
  the problem; the other rows leave.
- A DECIMAL leaves with its digits (``0.0000000001``, never ``1E-10``); a float with the same
  text on the batch and the single-event paths (``-0.0``, ``1.0``); a REAL with its shortest
  digits (``0.1``); a JSON column holding ``null`` is NULL, omitted everywhere.
- A standard field the vendor types as string (Klaviyo ``location.zip``, Omnisend
  ``postalCode``) receives a number's text, on event and contact syncs alike.

Real DuckDB file → run_sync → the sandbox over loopback HTTP, bodies kept byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import orjson
import pytest

from connector.config.sync_file import parse_sync
from connector.deliver.delivery import Runtime
from connector.run.sync import preview, run_sync
from connector.sandbox import SandboxOptions, SandboxServer
from connector.store.state import StateStore
from tests.conftest import Warehouse
from tests.helpers import BASE, CONTACT_SYNC

EVENT_SYNC = """
name: vals
source: {{table: vals, cursor: occurred_at, primary_key: id, url: "{url}"}}
destination:
  type: {dtype}
  api_key: "${{{key}}}"
  base_url: "{sandbox}"
mapping:
  event_name: order_placed
  event_time: occurred_at
  identifiers: {{{ident}: email}}
  event_properties: {{{props}}}
{extra}"""

EVENT_TYPES = {
    # type: (api key variable, email identifier)
    "klaviyo_bulk_events": ("KLAVIYO_API_KEY", "email"),
    "brevo_events_batch": ("BREVO_API_KEY", "email_id"),
    "brevo_event": ("BREVO_API_KEY", "email_id"),
    "omnisend_events": ("OMNISEND_API_KEY", "email"),
    "omnisend_track": ("OMNISEND_TOKEN", "email"),
}
BATCH_TYPES = ("klaviyo_bulk_events", "brevo_events_batch")  # column-wise encoders


@pytest.fixture
def recording() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxOptions(keep_bodies=True), host="127.0.0.1", port=0) as sb:
        yield sb


def vals_table(wh: Warehouse, rows: list[str], extra_columns: str = "") -> None:
    """``vals`` (id, occurred_at, email, tiny DECIMAL(20,10), negz DOUBLE, one DOUBLE, r REAL,
    j JSON, zip INTEGER{extra}) with ``rows`` as SQL value tuples (the time and email filled
    in)."""
    wh.run(
        "DROP TABLE IF EXISTS vals",
        "CREATE TABLE vals (id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, "
        "tiny DECIMAL(20, 10), negz DOUBLE, one DOUBLE, r REAL, j JSON, zip INTEGER"
        f"{extra_columns})",
        "INSERT INTO vals VALUES "
        + ", ".join(
            f"({i}, TIMESTAMPTZ '{(BASE + timedelta(seconds=i)).isoformat()}', "
            f"'u{i}@example.com', {row})"
            for i, row in enumerate(rows)
        ),
    )


def event_sync(
    wh: Warehouse, dtype: str, sandbox: str, props: str, extra: str = "", ident: str = ""
) -> str:
    key, email = EVENT_TYPES[dtype]
    return EVENT_SYNC.format(
        url=wh.url,
        dtype=dtype,
        key=key,
        sandbox=sandbox,
        ident=ident or email,
        props=props,
        extra=extra,
    )


def sent(sandbox: SandboxServer) -> str:
    return "\n".join(body.decode() for _, body in sandbox.bodies())


# --------------------------------------------------------------------------- item 10


@pytest.mark.parametrize("dtype", sorted(EVENT_TYPES))
def test_decimals_floats_and_reals_leave_with_one_spelling_on_every_path(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    """DECIMAL 0.0000000001 used to leave as ``1E-10`` (both paths); DOUBLE -0.0 as ``-0`` on
    the batch types and ``-0.0`` on the single ones; REAL 0.1 as 0.10000000149011612 per row."""
    vals_table(
        duck,
        [
            "0.0000000001, CAST('-0.0' AS DOUBLE), 1.0, 0.1, NULL, 1",
            "0, 1e16, 1e-7, 1e20, NULL, 2",
        ],
    )
    props = "tiny: tiny, negz: negz, one: one, r: r"
    text = event_sync(duck, dtype, recording.url, props)
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 2, 0)
    body = sent(recording)
    for member in (
        '"tiny":0.0000000001',
        '"negz":-0.0',
        '"one":1.0',
        '"r":0.1',
        '"tiny":0.0000000000',  # DECIMAL(20,10) zero: its scale, not 0E-10
        '"negz":1e+16',
        '"one":1e-7',
        '"r":1e+20',  # REAL: its shortest digits
    ):
        assert re.search(re.escape(member) + r"[,}]", body), (member, body)
    assert "E-" not in body and "0.10000000149011612" not in body


@pytest.mark.parametrize("dtype", sorted(EVENT_TYPES))
def test_a_json_column_holding_null_is_omitted_like_null_everywhere(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    """It used to be sent as ``"j":null`` to Klaviyo (column-wise) and omitted elsewhere."""
    vals_table(duck, ["1, 1, 1, 1, 'null', 1", "1, 1, 1, 1, ' null ', 1", "1, 1, 1, 1, NULL, 1"])
    text = event_sync(duck, dtype, recording.url, "j: j, one: one")
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered) == ("success", 3)
    body = sent(recording)
    assert '"j"' not in body and body.count('"one":1.0') == 3


def test_klaviyo_null_profile_property_unset_treats_json_null_as_null(
    duck: Warehouse, recording: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    vals_table(duck, ["1, 1, 1, 1, 'null', 1"])
    text = event_sync(
        duck,
        "klaviyo_bulk_events",
        recording.url,
        "one: one",
        extra="  contact_properties: {tier: j}\n",
    ).replace("mapping:", "  options: {null_profile_properties: unset}\nmapping:")
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert res.delivered == 1
    [ev] = recording.events("klaviyo_bulk_events")
    assert ev["profile"]["meta"] == {"patch_properties": {"unset": ["tier"]}}
    assert "properties" not in ev["profile"]


# --------------------------------------------------------------------------- item 5


def test_a_klaviyo_value_beyond_a_double_is_a_reject_and_199_good_rows_leave(
    duck: Warehouse, recording: SandboxServer, state: StateStore, runtime: Runtime
) -> None:
    """Text '1e999' used to leave as ``"value":1E+999``: Klaviyo answered a request-level 400
    on every run and the other 199 rows never left."""
    duck.run(
        "CREATE TABLE vals AS SELECT i AS id, TIMESTAMPTZ '2026-11-01 00:00:00+00' "
        "+ to_seconds(i) AS occurred_at, 'u' || i || '@example.com' AS email, "
        "CASE WHEN i = 117 THEN '1e999' WHEN i = 118 THEN '-1E+309' ELSE i || '.99' END AS v "
        "FROM range(201) t(i)"
    )
    text = event_sync(duck, "klaviyo_bulk_events", recording.url, "", "  value: v\n")
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 199, 2)
    why = {r["key"]: r["reason"] for r in state.rejects("vals")}
    assert why == {
        "117": "value: column v holds a number beyond what JSON carries (±1.8e308, a 64-bit float)",
        "118": "value: column v holds a number beyond what JSON carries (±1.8e308, a 64-bit float)",
    }
    assert "E+999" not in sent(recording) and '"value":116.99' in sent(recording)


NON_FINITE = "holds NaN or infinity, which JSON cannot carry; send NULL instead (e.g. NULLIF)"


@pytest.mark.parametrize("dtype", sorted(EVENT_TYPES))
def test_nan_and_infinity_are_rejects_on_every_event_destination(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    """They used to be omitted silently: the property vanished and nothing said so."""
    vals_table(
        duck,
        [
            "1, CAST('nan' AS DOUBLE), 1, 1, NULL, 1",
            "1, 2.5, 1, CAST('inf' AS REAL), NULL, 1",
            "1, 2.5, 1, 1, '{\"n\": 1e999}', 1",
            "1, 2.5, 1, 1, NULL, 1",
        ],
    )
    text = event_sync(duck, dtype, recording.url, "negz: negz, r: r, j: j")
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 1, 3)
    why = {r["key"]: r["reason"] for r in state.rejects("vals")}
    assert why == {
        "0": f"event_properties.negz: column negz {NON_FINITE}",
        "1": f"event_properties.r: column r {NON_FINITE}",
        "2": "event_properties.j: column j holds a number beyond what JSON carries (±1.8e308, "
        "a 64-bit float)",
    }


def test_nan_inside_a_struct_is_a_reject_not_a_null(duck: Warehouse) -> None:
    """orjson writes a NaN inside a nested value as null: the value would change silently."""
    duck.run(
        "CREATE TABLE vals (id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, "
        "s STRUCT(x DOUBLE, ys DOUBLE[]))",
        "INSERT INTO vals VALUES (1, '2026-11-01 00:00:00+00', 'a@example.com', "
        "{'x': 1.5, 'ys': [1.0, CAST('nan' AS DOUBLE)]}), "
        "(2, '2026-11-01 00:00:01+00', 'b@example.com', {'x': 1.5, 'ys': [2.0]})",
    )
    for dtype in ("klaviyo_bulk_events", "brevo_event"):
        text = event_sync(duck, dtype, "http://127.0.0.1:9", "s: s")
        out = preview(parse_sync(text, "syncs/vals.yaml"))
        assert out["rejects"] == [("1", f"event_properties.s: column s {NON_FINITE}")]
        body = b"".join(r["body"] for r in out["requests"]).decode()
        assert '"ys":[2.0]' in body and "null" not in body


# --------------------------------------------------------------------------- item 6

BREVO_IDS = "{email_id: email, contact_id: cid}"


@pytest.mark.parametrize("dtype", ["brevo_events_batch", "brevo_event"])
def test_brevo_contact_id_is_int64_exactly_or_a_reject_naming_the_limit(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    """``brevo_events_batch`` used to drop a text contact_id of 19+ digits silently (the row
    left without it) while ``brevo_event`` sent it: one rule on both endpoints."""
    duck.run(
        "CREATE TABLE vals (id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, cid VARCHAR)",
        "INSERT INTO vals VALUES "
        "(0, '2026-11-01 00:00:00+00', 'a@example.com', '9223372036854775807'), "
        "(1, '2026-11-01 00:00:01+00', 'b@example.com', '9223372036854775808'), "
        "(2, '2026-11-01 00:00:02+00', 'c@example.com', '00000000000000000000042'), "
        "(3, '2026-11-01 00:00:03+00', 'd@example.com', '123456789012345678901234'), "
        "(4, '2026-11-01 00:00:04+00', 'e@example.com', '1234567890123456789')",
    )
    text = event_sync(duck, dtype, recording.url, "", ident="x").replace("{x: email}", BREVO_IDS)
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 3, 2)
    limit = "contact_id is beyond Brevo's limit (a 64-bit integer, at most 9223372036854775807)"
    assert {r["key"]: r["reason"] for r in state.rejects("vals")} == {"1": limit, "3": limit}
    body = sent(recording)
    for number in ("9223372036854775807", "42", "1234567890123456789"):
        assert f'"contact_id":{number}}}' in body, (number, body)
    ids = sorted(e["identifiers"]["contact_id"] for e in recording.events(dtype))
    assert ids == [42, 1234567890123456789, 9223372036854775807]


def test_an_unsigned_bigint_contact_id_over_int64_is_a_reject(duck: Warehouse) -> None:
    duck.run(
        "CREATE TABLE vals (id INTEGER, occurred_at TIMESTAMPTZ, email VARCHAR, cid UBIGINT)",
        "INSERT INTO vals VALUES (0, '2026-11-01 00:00:00+00', 'a@example.com', "
        "9223372036854775808), (1, '2026-11-01 00:00:01+00', 'b@example.com', 7)",
    )
    for dtype in ("brevo_events_batch", "brevo_event"):
        text = event_sync(duck, dtype, "http://127.0.0.1:9", "", ident="x")
        sync = parse_sync(text.replace("{x: email}", BREVO_IDS), "syncs/vals.yaml")
        out = preview(sync)
        assert [key for key, _ in out["rejects"]] == ["0"]
        assert "at most 9223372036854775807" in out["rejects"][0][1]
        assert b'"contact_id":7}' in b"".join(r["body"] for r in out["requests"])


# --------------------------------------------------------------------------- item 11

STRING_FIELD = {
    # event type: (contact property, how to read it back from the received event)
    "klaviyo_bulk_events": "location.zip",
    "omnisend_events": "postalCode",
}


@pytest.mark.parametrize("dtype", sorted(STRING_FIELD))
def test_an_integer_for_a_string_field_leaves_as_its_text_on_event_syncs(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
) -> None:
    vals_table(duck, ["1, 1, 1, 1, NULL, 75001"])
    field = STRING_FIELD[dtype]
    text = event_sync(
        duck, dtype, recording.url, "one: one", extra=f"  contact_properties: {{{field}: zip}}\n"
    )
    res = run_sync(parse_sync(text, "syncs/vals.yaml"), state=state, runtime=runtime)
    assert res.delivered == 1
    key = field.split(".")[-1]
    assert f'"{key}":"75001"' in sent(recording)


def people(wh: Warehouse) -> None:
    wh.run(
        "CREATE TABLE people (id INTEGER, email VARCHAR, zip INTEGER, vip BOOLEAN, "
        "score DOUBLE, tiny DECIMAL(20, 10), o JSON)",
        "INSERT INTO people VALUES "
        "(1, 'a@example.com', 75001, true, 1.0, 0.0000000001, NULL), "
        "(2, 'b@example.com', 2139, false, CAST('nan' AS DOUBLE), 1, NULL), "
        "(3, 'c@example.com', 10017, NULL, 2.5, 1, '{\"a\": 1}')",
    )


@pytest.mark.parametrize(
    ("dtype", "key", "props", "options", "stored_zip"),
    [
        (
            "klaviyo_profiles",
            "KLAVIYO_API_KEY",
            "location.zip: zip, organization: o, score: score, tiny: tiny",
            "",
            lambda c: c["location"]["zip"],
        ),
        (
            "omnisend_contacts",
            "OMNISEND_API_KEY",
            "postalCode: zip, city: o, score: score, tiny: tiny",
            ", null_fields: keep",
            lambda c: c["postalCode"],
        ),
    ],
    ids=["klaviyo_profiles", "omnisend_contacts"],
)
def test_contact_syncs_send_a_string_fields_number_as_its_text(
    duck: Warehouse,
    recording: SandboxServer,
    state: StateStore,
    runtime: Runtime,
    dtype: str,
    key: str,
    props: str,
    options: str,
    stored_zip: object,
) -> None:
    """An INTEGER zip used to leave as ``75001``: the sandbox (like the vendors' OpenAPI:
    ``zip``/``postalCode`` are strings) refused the Klaviyo job, so the whole sync failed."""
    people(duck)
    text = CONTACT_SYNC.format(
        table="people",
        url=duck.url,
        dtype=dtype,
        key=key,
        sandbox=recording.url,
        options=options,
        identifiers="{email: email}",
        contact="{" + props + "}",
    )
    res = run_sync(parse_sync(text, "syncs/people.yaml"), state=state, runtime=runtime)
    assert (res.status, res.delivered, res.rejected) == ("success", 1, 2)
    why = {r["key"]: r["reason"] for r in state.rejects("people")}
    assert why["2"] == f"contact_properties.score: column score {NON_FINITE}"
    assert "string" in why["3"] and "object or array" in why["3"]
    stored = recording.contact(dtype, "a@example.com")
    assert stored is not None
    assert stored_zip(stored) == "75001"  # type: ignore[operator]
    body = sent(recording)
    assert '"score":1.0' in body and '"tiny":0.0000000001' in body


def test_brevo_contacts_reject_nan_too(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck)
    opts = SandboxOptions(keep_bodies=True, brevo_attributes={"SCORE": "float"})
    with SandboxServer(opts, host="127.0.0.1", port=0) as sb:
        text = CONTACT_SYNC.format(
            table="people",
            url=duck.url,
            dtype="brevo_contacts",
            key="BREVO_API_KEY",
            sandbox=sb.url,
            options=", list_ids: [7]",
            identifiers="{email: email}",
            contact="{SCORE: score}",
        )
        res = run_sync(parse_sync(text, "syncs/people.yaml"), state=state, runtime=runtime)
        assert (res.status, res.delivered, res.rejected) == ("success", 2, 1)
        assert [r["key"] for r in state.rejects("people")] == ["2"]
        jobs = [orjson.loads(b) for p, b in sb.bodies() if p == "/v3/contacts/import"]
        assert [c["attributes"]["SCORE"] for c in jobs[0]["jsonBody"]] == [1.0, 2.5]
