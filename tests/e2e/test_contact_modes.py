"""Contact sync semantics of issue 19 item 15, through the CLI: ``on_removed: unlist`` where
removed rows cannot be found is a config error (c). Klaviyo external ids shared by two syncs
(b) are tested in contacts/test_external_ids.py."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.cli.main import main
from connector.sandbox import SandboxOptions, SandboxServer
from tests.conftest import Warehouse

POLLING = "poll_interval_s: 0.01, poll_max_interval_s: 0.05"


@pytest.fixture
def sb() -> Iterator[SandboxServer]:
    options = SandboxOptions(
        contact_job_polls=0, brevo_attributes={"FIRSTNAME": "text", "EXT_ID": "text"}
    )
    with SandboxServer(options, host="127.0.0.1", port=0) as server:
        yield server


def configure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, destination: str, mapping: str
) -> None:
    config = tmp_path / "config"
    (config / "syncs").mkdir(parents=True, exist_ok=True)
    (config / "syncs" / "c.yaml").write_text(
        f"name: customers\nsource: {source}\ndestination: {destination}\nmapping: {mapping}\n"
    )
    monkeypatch.setenv("CONNECTOR_CONFIG_DIR", str(config))
    monkeypatch.setenv("CONNECTOR_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_sandbox")
    monkeypatch.setenv("BREVO_API_KEY", "sandbox-brevo-key")
    monkeypatch.setenv("OMNISEND_API_KEY", "sandbox-omnisend-key")


KLAVIYO_UNLIST = (
    "{type: klaviyo_profiles, api_key: '${KLAVIYO_API_KEY}', base_url: 'URL', "
    f"options: {{{POLLING}, list_id: L1, on_removed: unlist}}}}"
)
KLAVIYO_MAPPING = "{identifiers: {email: email}, contact_properties: {first_name: first_name}}"


# --------------------------------------------------------------------------- (c) unlist


@pytest.mark.parametrize("key_type", ["DATE", "TIMESTAMP", "DECIMAL(10, 2)"])
def test_unlist_on_a_key_the_merge_cannot_order_is_a_config_error(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_type: str,
) -> None:
    """Failed on main: validate said ok and every run counted 0 removed (a warning in the
    log), a deleted row never came off the list."""
    duck.run(
        "DROP TABLE IF EXISTS customers",
        f"CREATE TABLE customers (k {key_type}, email VARCHAR, first_name VARCHAR)",
        "INSERT INTO customers VALUES ('2026-01-01', 'a@example.com', 'A')"
        if key_type.startswith(("DATE", "TIME"))
        else "INSERT INTO customers VALUES (1.5, 'a@example.com', 'A')",
    )
    duck.dispose()
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [k], url: '{duck.url}'}}",
        KLAVIYO_UNLIST.replace("URL", sb.url),
        KLAVIYO_MAPPING,
    )
    assert main(["validate"]) == 2
    out, err = capsys.readouterr()
    said = out + err
    assert "on_removed: unlist cannot find removed rows" in said and "c.yaml" in said
    assert "integer or text" in said and "on_removed: keep" in said  # why, and the fixes
    assert main(["sync", "customers"]) == 2  # a run refuses too, before sending anything
    out, err = capsys.readouterr()
    assert "on_removed: unlist cannot find removed rows" in out + err
    assert not any(r.method == "POST" for r in sb.requests)


def test_unlist_on_a_warehouse_without_byte_order_is_a_config_error(
    tmp_path: Path,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "wh.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (customer_id INTEGER, email TEXT, first_name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'a@example.com', 'A')")
    con.commit()
    con.close()
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [customer_id], url: 'sqlite:///{db}'}}",
        KLAVIYO_UNLIST.replace("URL", sb.url),
        KLAVIYO_MAPPING,
    )
    assert main(["validate"]) == 2
    out, err = capsys.readouterr()
    assert "does not return keys in byte order" in out + err and "on_removed: keep" in out + err
    assert main(["sync", "customers"]) == 2
    capsys.readouterr()
    assert sb.requests == []


# --------------------------------------------------------------------------- (a) e-mail change

VENDORS: dict[str, tuple[str, str, str, str]] = {
    # kind, destination, mapping, the stored record's first-name field
    "klaviyo": (
        "klaviyo_profiles",
        "{type: klaviyo_profiles, api_key: '${KLAVIYO_API_KEY}', base_url: 'URL', "
        f"options: {{{POLLING}}}}}",
        "{identifiers: {email: email, external_id: customer_id}, "
        "contact_properties: {first_name: first_name}}",
        "first_name",
    ),
    "brevo": (
        "brevo_contacts",
        "{type: brevo_contacts, api_key: '${BREVO_API_KEY}', base_url: 'URL', "
        f"options: {{{POLLING}, list_ids: [7]}}}}",
        "{identifiers: {email: email, ext_id: customer_id}, "
        "contact_properties: {FIRSTNAME: first_name}}",
        "FIRSTNAME",
    ),
    "omnisend": (
        "omnisend_contacts",
        "{type: omnisend_contacts, api_key: '${OMNISEND_API_KEY}', base_url: 'URL', "
        f"options: {{{POLLING}, null_fields: keep}}}}",
        "{identifiers: {email: email}, contact_properties: {firstName: first_name}}",
        "firstName",
    ),
}


def first_name(record: dict[str, Any], field: str) -> Any:
    for where in (record, record.get("attributes") or {}):
        if field in where:
            return where[field]
    raise AssertionError(f"{field} not in {record}")


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_a_row_whose_email_changes_updates_its_profile_or_is_told(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    vendor: str,
) -> None:
    """Klaviyo and Brevo resolve the profile by the key mapped to external_id / ext_id: the
    same profile takes the new address. Omnisend finds contacts by e-mail only: the row
    becomes a second contact, and the run says so (a warning naming the key, counted as
    ``email_changed``). Failed on main: nothing was counted or said."""
    kind, destination, mapping, field = VENDORS[vendor]
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR, first_name VARCHAR)",
    )
    duck.insert(
        "customers",
        [
            {"customer_id": 1, "email": "old@example.com", "first_name": "Before"},
            {"customer_id": 2, "email": "two@example.com", "first_name": "Two"},
        ],
    )
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [customer_id], url: '{duck.url}'}}",
        destination.replace("URL", sb.url),
        mapping,
    )

    def sync() -> dict[str, Any]:
        duck.dispose()
        code = main(["sync", "customers", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        result: dict[str, Any] = json.loads(out)
        return result

    sync()
    duck.run(
        "UPDATE customers SET email = 'New@Example.com', first_name = 'After' WHERE customer_id = 1"
    )
    caplog.clear()
    res = sync()
    assert (res["changed"], res["delivered"], res["email_changed"]) == (1, 1, 1)
    new = sb.contact(kind, "new@example.com")
    assert new is not None and first_name(new, field) == "After"
    warned = [r.getMessage() for r in caplog.records if "changed their e-mail" in r.getMessage()]
    if vendor == "omnisend":
        assert len(sb.contacts(kind)) == 3  # a second contact; the old one keeps its values
        old = sb.contact(kind, "old@example.com")
        assert old is not None and first_name(old, field) == "Before"
        assert warned and "key 1" in warned[0] and "new profile" in warned[0]
        assert "example.com" not in warned[0]  # keys, never addresses, in the log
    else:
        assert len(sb.contacts(kind)) == 2  # the same profile took the new address
        assert (
            sb.contact(kind, "old@example.com") is None
            or sb.contact(kind, "old@example.com") == new
        )
        assert warned == []
    again = sync()
    assert (again["sent"], again["email_changed"]) == (0, 0)


@pytest.mark.parametrize(
    ("vendor", "expected"), [("klaviyo", "external_id or id"), ("brevo", "ext_id")]
)
def test_validate_warns_when_an_email_change_would_make_a_new_profile(
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    vendor: str,
    expected: str,
) -> None:
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR, first_name VARCHAR)",
    )
    duck.dispose()
    _, destination, mapping, _ = VENDORS[vendor]
    email_only = mapping.replace(", external_id: customer_id", "").replace(
        ", ext_id: customer_id", ""
    )
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [customer_id], url: '{duck.url}'}}",
        destination.replace("URL", "http://127.0.0.1:9"),
        email_only,
    )
    if vendor == "brevo":  # its attribute check asks the account: not this test's subject
        monkeypatch.setattr(
            "connector.destinations.brevo.contacts.BrevoContacts.has_preflight", lambda self: False
        )
    assert main(["validate"]) == 0
    out, _ = capsys.readouterr()
    assert "a row whose e-mail changes (same key) makes a new" in out and expected in out


# --------------------------------------------------------------------------- (d) update-only


def test_omnisend_update_only_updates_existing_contacts_and_creates_none(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``on_missing: skip``: ``PATCH /api/contacts?email=`` per row; a row whose contact does
    not exist is a reject (404), tried again next run. Failed on main: no such option."""
    created = httpx.post(
        f"{sb.url}/api/contacts",
        headers={
            "Authorization": "Omnisend-API-Key sandbox-omnisend-key",
            "Omnisend-Version": "2026-03-15",
        },
        json={
            "identifiers": [{"type": "email", "id": "known@example.com", "channels": {}}],
            "firstName": "Old",
        },
    )
    assert created.status_code == 201, created.text
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR, phone VARCHAR, "
        "first_name VARCHAR)",
    )
    duck.insert(
        "customers",
        [
            {
                "customer_id": 1,
                "email": "Known@Example.com",
                "phone": None,
                "first_name": "Updated",
            },
            {"customer_id": 2, "email": "stranger@example.com", "phone": None, "first_name": "X"},
            {"customer_id": 3, "email": None, "phone": "+15005550006", "first_name": "No address"},
        ],
    )
    duck.dispose()
    _, destination, mapping, _ = VENDORS["omnisend"]
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [customer_id], url: '{duck.url}'}}",
        destination.replace("URL", sb.url).replace(
            "null_fields: keep", "null_fields: keep, on_missing: skip"
        ),
        mapping.replace("{email: email}", "{email: email, phone: phone}"),
    )
    mark = len(sb.requests)
    assert main(["sync", "customers", "--json"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert (res["delivered"], res["rejected"]) == (1, 2), out + err
    assert len(sb.contacts("omnisend_contacts")) == 1  # nobody created
    known = sb.contact("omnisend_contacts", "known@example.com")
    assert known is not None and known["firstName"] == "Updated"
    calls = {(r.method, r.path) for r in sb.requests[mark:]}
    assert calls == {("PATCH", "/api/contacts")}, calls
    assert main(["rejects", "customers"]) == 0
    listed = capsys.readouterr().out
    assert "no Omnisend contact has this e-mail" in listed and "on_missing: skip" in listed
    assert "no email" in listed
    assert main(["sync", "customers", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["sent"], again["rejected"]) == (1, 2)  # the missing one is tried again
    assert len(sb.contacts("omnisend_contacts")) == 1


@pytest.mark.parametrize("vendor", ["klaviyo", "brevo"])
def test_update_only_where_the_vendor_has_none_is_a_config_error(
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    vendor: str,
) -> None:
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR, first_name VARCHAR)",
    )
    duck.dispose()
    _, destination, mapping, _ = VENDORS[vendor]
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [customer_id], url: '{duck.url}'}}",
        destination.replace("URL", "http://127.0.0.1:9").replace("}}", ", on_missing: skip}}"),
        mapping,
    )
    assert main(["validate"]) == 2
    out, err = capsys.readouterr()
    assert "on_missing: skip (update-only) is not available" in out + err
    assert "on_missing: create" in out + err


# --------------------------------------------------------------------------- (e) untag


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_omnisend_untag_removes_the_sync_tag_from_vanished_rows_only(
    tmp_path: Path,
    duck: Warehouse,
    sb: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    """``on_removed: untag``: every contact sent carries ``removed_tag`` (beside its mapped
    tags); a row deleted from the source loses it (``DELETE /api/contacts/tags``), its contact
    and other tags stay. Failed on main: untag was no option (unlist a config error)."""
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR, first_name VARCHAR, "
        "tags VARCHAR[])",
    )
    duck.insert(
        "customers",
        [
            {"customer_id": i, "email": f"c{i}@example.com", "first_name": f"N{i}", "tags": ["vip"]}
            for i in range(4)
        ],
    )
    duck.dispose()
    configure(
        tmp_path,
        monkeypatch,
        f"{{table: customers, primary_key: [customer_id], url: '{duck.url}'}}",
        "{type: omnisend_contacts, api_key: '${OMNISEND_API_KEY}', base_url: "
        f"'{sb.url}', options: {{{POLLING}, null_fields: keep, mode: {mode}, "
        "on_removed: untag, removed_tag: synced}}",
        "{identifiers: {email: email}, contact_properties: {firstName: first_name, tags: tags}}",
    )

    def sync() -> dict[str, Any]:
        duck.dispose()
        code = main(["sync", "customers", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        result: dict[str, Any] = json.loads(out)
        return result

    def tags(i: int) -> list[str]:
        record = sb.contact("omnisend_contacts", f"c{i}@example.com")
        assert record is not None
        return sorted(record["tags"])

    assert sync()["delivered"] == 4
    assert all(tags(i) == ["synced", "vip"] for i in range(4))
    duck.run("DELETE FROM customers WHERE customer_id = 2")
    mark = len(sb.requests)
    second = sync()
    assert (second["removed"], second["unlisted"], second["sent"]) == (1, 1, 0), second
    assert tags(2) == ["vip"] and [tags(i) for i in (0, 1, 3)] == [["synced", "vip"]] * 3
    assert len(sb.contacts("omnisend_contacts")) == 4  # nobody deleted
    assert [(r.method, r.path) for r in sb.requests[mark:]] == [("DELETE", "/api/contacts/tags")]
    third = sync()
    assert (third["removed"], third["unlisted"], third["sent"]) == (0, 0, 0)


def test_untag_is_omnisend_s_and_needs_a_tag(
    tmp_path: Path,
    duck: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    duck.run(
        "DROP TABLE IF EXISTS customers",
        "CREATE TABLE customers (customer_id INTEGER, email VARCHAR, first_name VARCHAR)",
    )
    duck.dispose()
    source = f"{{table: customers, primary_key: [customer_id], url: '{duck.url}'}}"
    for vendor, option, expected in [
        ("omnisend", "on_removed: untag", "set options.removed_tag"),
        ("klaviyo", "on_removed: untag", "use on_removed: unlist or keep"),
        ("omnisend", "on_removed: unlist", "on_removed: untag with options.removed_tag"),
    ]:
        _, destination, mapping, _ = VENDORS[vendor]
        configure(
            tmp_path,
            monkeypatch,
            source,
            destination.replace("URL", "http://127.0.0.1:9").replace("}}", f", {option}}}}}"),
            mapping,
        )
        assert main(["validate"]) == 2, (vendor, option)
        out, err = capsys.readouterr()
        assert expected in out + err, (vendor, option, out + err)
