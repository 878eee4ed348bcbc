"""The contact diff as an ordered merge with the stored hashes (``contacts.merge``): the same
counts as key lookups on DuckDB and PostgreSQL with integer, text and composite keys, removed
rows, ``on_removed: unlist`` (engine side, fake vendor), the hashes table's migration from
the layout the first contact release made on first use, and the fallback to lookups."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from connector.contacts.hashes import HashStore
from connector.contacts.keyorder import KeyOrder
from connector.core.errors import ConnectorError, RequestError
from connector.deliver.delivery import Runtime
from connector.destinations.contact_endpoint import Gone
from connector.read.source import Reader
from connector.run.contacts import ContactRun
from connector.store import migrate
from connector.store.schema import MIGRATIONS
from connector.store.state import StateStore, now
from tests.conftest import Warehouse, make_sync
from tests.contacts_fakes import FakeKlaviyo

NAME = "merge_k"
SYNC = """
name: merge_k
source: {{table: people, primary_key: [{pk}], url: "{url}", chunk_size: 100{cursor}}}
destination:
  type: klaviyo_profiles
  api_key: ${{KLAVIYO_API_KEY}}
  base_url: http://klaviyo.test
  options: {{poll_interval_s: 1}}
mapping:
  identifiers: {{email: email}}
  contact_properties: {{plan: plan}}
"""

# Text keys whose byte order (B < a < b < é) differs from a locale's (a < b < B < é).
TEXT_KEYS = ["a", "B", "é", "b", "ab", "A", "a b", "z", "Z", "ß", "0", "10", "9", "émile"]


def people(wh: Warehouse, kind: str, keys: list[Any]) -> None:
    # Text key columns get a collation whose order is not byte order (a < B): the reader
    # orders them bytewise anyway.
    coll = 'COLLATE "und-x-icu"' if wh.kind == "postgresql" else "COLLATE NOCASE"
    cols = {
        "int": "id BIGINT, seq INTEGER",
        "text": f"code VARCHAR(20) {coll}",
        "composite": f"region VARCHAR(20) {coll}, n INTEGER",
    }[kind]
    wh.run(
        "DROP TABLE IF EXISTS people",
        f"CREATE TABLE people ({cols}, email VARCHAR(100), plan VARCHAR(20))",
    )
    wh.insert("people", [person(kind, k, f"p{i}@example.com") for i, k in enumerate(keys)])


def person(kind: str, key: Any, email: str) -> dict[str, Any]:
    row: dict[str, Any] = {"email": email, "plan": "free"}
    if kind == "int":
        row["id"], row["seq"] = key, 1
    elif kind == "text":
        row["code"] = key
    else:
        row["region"], row["n"] = key
    return row


def byte_order(kind: str, key: Any) -> Any:
    if kind == "composite":
        return (key[0].encode(), key[1])
    return key if kind == "int" else key.encode()


def keys_for(kind: str) -> list[Any]:
    """About 250 keys (pages of 100), the edge values among them."""
    if kind == "int":
        return [-(2**62), -(2**40), -7, -1, 0, 2**40, 2**62, *range(1, 250, 1)]
    if kind == "text":
        return TEXT_KEYS + [f"{b}{i}" for b in ("a", "B", "é", "Z ") for i in range(60)]
    return [(r, n) for r in ("a", "B", "é") for n in range(-40, 40)]


def where(kind: str, key: Any) -> str:
    if kind == "int":
        return f"id = {key}"
    if kind == "text":  # byte comparison: NOCASE would match 'A' too
        return f"code COLLATE \"C\" = '{key}'"
    return f"region COLLATE \"C\" = '{key[0]}' AND n = {key[1]}"


def sync_for(wh: Warehouse, kind: str, cursor: bool = False) -> Any:
    pk = {"int": "id", "text": "code", "composite": "region, n"}[kind]
    return make_sync(SYNC.format(url=wh.url, pk=pk, cursor=", cursor: seq" if cursor else ""))


def run(
    wh: Warehouse, state: StateStore, fake: FakeKlaviyo, rt: Runtime, kind: str, **kw: Any
) -> ContactRun:
    r = ContactRun(sync_for(wh, kind), state, runtime=rt, transport=fake.transport, **kw)
    r.execute()
    return r


@pytest.mark.parametrize("kind", ["int", "text", "composite"])
def test_merge_counts_match_lookups_and_removed_rows_are_counted(
    warehouse: Warehouse,
    state: StateStore,
    runtime: Runtime,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = keys_for(kind)
    people(warehouse, kind, keys)
    fake = FakeKlaviyo()
    first = run(warehouse, state, fake, runtime, kind)
    assert first.merge is not None and first.res.added == len(keys) and first.res.removed == 0

    again = run(warehouse, state, fake, runtime, kind)
    assert (again.res.unchanged, again.res.sent, again.res.removed) == (len(keys), 0, 0)
    assert again.merge is not None and again.merge.fast == again.merge.pages > 1

    # Change two rows, delete the first, a middle and the last key (in byte order), add one.
    order = sorted(keys, key=lambda k: byte_order(kind, k))
    gone = [order[0], order[len(order) // 2], order[-1]]
    changed = [order[1], order[-3]]
    warehouse.run(
        *(f"UPDATE people SET plan = 'vip' WHERE {where(kind, k)}" for k in changed),
        *(f"DELETE FROM people WHERE {where(kind, k)}" for k in gone),
    )
    new: Any = {"int": 500, "text": "Ab", "composite": ("B", 500)}[kind]
    warehouse.insert("people", [person(kind, new, "new@example.com")])

    # What key lookups say (the diff before the merge), without sending anything.
    with monkeypatch.context() as m:
        m.setattr(Reader, "key_order", property(lambda _self: False))
        looked = run(warehouse, state, fake, runtime, kind, dry_run=True)
    assert looked.merge is None

    merged = run(warehouse, state, fake, runtime, kind)
    assert merged.merge is not None
    res = merged.res
    assert (res.added, res.changed, res.unchanged) == (
        looked.res.added,
        looked.res.changed,
        looked.res.unchanged,
    )
    assert (res.added, res.changed, res.unchanged) == (1, 2, len(keys) - 5)
    assert res.removed == 3 and res.sent == 3
    # Removed rows are counted, nothing else: their hashes stay (on_removed: keep).
    assert HashStore(state).count(NAME) == len(keys) + 1
    assert run(warehouse, state, fake, runtime, kind).res.removed == 3


def test_everything_removed_and_empty_source(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", list(range(1, 8)))
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    duck.run("DELETE FROM people WHERE id > 2")
    assert run(duck, state, fake, runtime, "int").res.removed == 5
    duck.run("DELETE FROM people")
    res = run(duck, state, fake, runtime, "int").res
    assert (res.rows_read, res.removed) == (0, 7)


def test_limit_and_full_refresh_count_no_removed_rows(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", list(range(1, 8)))
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    duck.run("DELETE FROM people WHERE id = 7")
    limited = run(duck, state, fake, runtime, "int", limit=4)
    assert (limited.res.rows_read, limited.res.unchanged, limited.res.removed) == (4, 4, 0)
    full = run(duck, state, fake, runtime, "int", full_refresh=True)
    assert (full.res.sent, full.res.removed) == (6, 0)


# --------------------------------------------------------------------------- unlist


class Unlister:
    """Stands in for a destination's ``unlist`` (the vendor side is another module's)."""

    def __init__(self, refuse: set[str] | None = None, fail: bool = False) -> None:
        self.calls: list[list[Gone]] = []
        self.refuse = refuse or set()
        self.fail = fail

    def __call__(self, rows: list[Gone]) -> dict[int, str]:
        if self.fail:
            raise RequestError("list removal answered 500: boom")
        self.calls.append(rows)
        return {i: "refused: on another list" for i, g in enumerate(rows) if g.key in self.refuse}


def unlisting_run(
    wh: Warehouse,
    state: StateStore,
    fake: FakeKlaviyo,
    rt: Runtime,
    unlister: Unlister,
    *,
    cursor: bool = False,
    max_unlist_ratio: float = 0.5,
) -> ContactRun:
    r = ContactRun(sync_for(wh, "int", cursor=cursor), state, runtime=rt, transport=fake.transport)
    r.dest.options = r.dest.options.model_copy(
        update={"on_removed": "unlist", "max_unlist_ratio": max_unlist_ratio}
    )
    r.dest.unlist = unlister  # type: ignore[method-assign]
    r.dest.max_unlist_per_request = 2  # type: ignore[misc]
    r.execute()
    return r


def test_unlist_removes_vanished_contacts_in_groups_and_forgets_them(
    warehouse: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(warehouse, "int", list(range(1, 11)))
    fake = FakeKlaviyo()
    run(warehouse, state, fake, runtime, "int")
    warehouse.run("DELETE FROM people WHERE id IN (1, 2, 5, 9, 10)")
    unlister = Unlister(refuse={"5"})
    r = unlisting_run(warehouse, state, fake, runtime, unlister)
    assert (r.res.removed, r.res.unlisted, r.res.rejected) == (5, 4, 1)
    assert [[g.key for g in call] for call in unlister.calls] == [["1", "2"], ["5", "9"], ["10"]]
    assert unlister.calls[0][0].identifiers == {"email": "p0@example.com"}
    assert r.res.sample_rejects == [("5", "refused: on another list")]
    assert HashStore(state).count(NAME) == 6  # 10 - the 4 unlisted

    # The refused one is tried again; then it is gone too.
    again = unlisting_run(warehouse, state, fake, runtime, Unlister())
    assert (again.res.removed, again.res.unlisted, again.res.rejected) == (1, 1, 0)
    assert state.rejects(NAME) == []
    # A row that comes back is new: sent again.
    warehouse.insert("people", [person("int", 2, "p1@example.com")])
    back = unlisting_run(warehouse, state, fake, runtime, Unlister())
    assert (back.res.added, back.res.sent, back.res.removed) == (1, 1, 0)


def test_unlist_refuses_when_more_than_max_unlist_ratio_vanished(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", list(range(1, 11)))
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    duck.run("DELETE FROM people WHERE id > 4")  # 6 of 10 vanished: a half-loaded table?
    unlister = Unlister()
    with pytest.raises(
        ConnectorError, match=r"6 of the 10 contacts .* options\.max_unlist_ratio \(0.5\)"
    ):
        unlisting_run(duck, state, fake, runtime, unlister)
    assert unlister.calls == [] and HashStore(state).count(NAME) == 10
    assert state.runs(NAME, limit=1)[0]["status"] == "failed"
    # The user says the source is right: the guard is lifted, all 6 are unlisted.
    r = unlisting_run(duck, state, fake, runtime, unlister, max_unlist_ratio=1.0)
    assert (r.res.removed, r.res.unlisted) == (6, 6) and HashStore(state).count(NAME) == 4


def test_unlist_request_error_fails_the_run_and_keeps_the_hashes(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", list(range(1, 6)))
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    duck.run("DELETE FROM people WHERE id = 3")
    with pytest.raises(RequestError, match="boom"):
        unlisting_run(duck, state, fake, runtime, Unlister(fail=True))
    assert HashStore(state).count(NAME) == 5
    assert state.runs(NAME, limit=1)[0]["status"] == "failed"


def test_cursor_run_finds_removed_rows_by_a_key_scan_only_when_unlisting(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", list(range(1, 8)))
    fake = FakeKlaviyo()
    sync = sync_for(duck, "int", cursor=True)
    ContactRun(sync, state, runtime=runtime, transport=fake.transport).execute()
    duck.run("DELETE FROM people WHERE id IN (2, 7)")
    keep = ContactRun(sync, state, runtime=runtime, transport=fake.transport)
    keep.execute()
    assert keep.res.removed == 0  # keep: a cursor run reads no keys it does not need
    unlister = Unlister()
    r = unlisting_run(duck, state, fake, runtime, unlister, cursor=True)
    assert (r.res.removed, r.res.unlisted) == (2, 2)
    assert sorted(g.key for call in unlister.calls for g in call) == ["2", "7"]


# --------------------------------------------------------------------------- migration


def old_layout_store(url: str, rows: list[tuple[str, str, str]]) -> None:
    """A store as the first contact release left it: schema version 4 and the hashes table
    it made on first use (no ord, no identifiers)."""
    engine = sa.create_engine(url)
    try:
        migrate.prepare(engine, MIGRATIONS[:4], url)
        meta = sa.MetaData()
        old = sa.Table(
            "connector_contact_hashes",
            meta,
            sa.Column("sync", sa.String(128), primary_key=True),
            sa.Column("key", sa.String(1000), primary_key=True),
            sa.Column("hash", sa.String(32), nullable=False),
            sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
        )
        meta.create_all(engine)
        with engine.begin() as c:
            c.execute(
                old.insert(),
                [{"sync": s, "key": k, "hash": h, "confirmed_at": now()} for s, k, h in rows],
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_old_layout_store_migrates_and_loses_nothing(
    duck: Warehouse, runtime: Runtime, tmp_path: Any, store: str, request: pytest.FixtureRequest
) -> None:
    people(duck, "int", list(range(1, 9)))
    fake = FakeKlaviyo()
    scratch = StateStore(f"sqlite:///{tmp_path / 'scratch.db'}")
    run(duck, scratch, fake, runtime, "int")
    with scratch.engine.connect() as c:
        rows = [
            tuple(r)
            for r in c.exec_driver_sql("SELECT sync, key, hash FROM connector_contact_hashes")
        ]
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if store == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    old_layout_store(url, rows)

    upgraded = StateStore(url)  # runs migration 5
    with upgraded.engine.connect() as c:
        assert c.execute(sa.text("SELECT version FROM connector_schema_version")).scalar() == len(
            MIGRATIONS
        )
        cols = {col["name"] for col in sa.inspect(c).get_columns("connector_contact_hashes")}
    assert {"ord", "identifiers"} <= cols
    hashes = HashStore(upgraded)
    assert hashes.count(NAME) == 8

    duck.run("DELETE FROM people WHERE id IN (1, 8)")
    r = run(duck, upgraded, fake, runtime, "int")
    # Nothing re-sent: the ords were filled from the stored keys, the merge found all rows.
    assert r.merge is not None
    assert (r.res.unchanged, r.res.sent, r.res.removed) == (6, 0, 2)
    order = KeyOrder("i")
    with upgraded.engine.connect() as c:
        stored = {
            str(k): bytes(v)
            for k, v in c.execute(sa.text("SELECT key, ord FROM connector_contact_hashes"))
        }
    assert stored == {str(i): order.from_key(str(i)) for i in range(1, 9)}
    # Unlisting a contact confirmed before identifiers were stored: a reject, hash kept.
    u = unlisting_run(duck, upgraded, fake, runtime, Unlister())
    assert (u.res.removed, u.res.unlisted, u.res.rejected) == (2, 0, 2)
    assert "identifiers" in u.res.sample_rejects[0][1]
    assert hashes.count(NAME) == 8
    upgraded.engine.dispose()


def test_key_type_change_encodes_stored_keys_again(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", [1, 2, 3, 10])
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    # The same keys as text now ("10" < "2" bytewise): stored rows get text ords, no re-send.
    duck.run(
        "CREATE TABLE p2 AS SELECT CAST(id AS VARCHAR) AS code, email, plan FROM people",
        "DROP TABLE people",
        "CREATE TABLE people AS SELECT * FROM p2",
        "DROP TABLE p2",
    )
    r = run(duck, state, fake, runtime, "text")
    assert (r.res.unchanged, r.res.sent, r.res.removed) == (4, 0, 0)
    assert r.merge is not None


# --------------------------------------------------------------------------- fallback


def test_key_without_order_encoding_diffs_by_lookups(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    duck.run(
        "CREATE TABLE people (id DECIMAL(10, 0), email VARCHAR, plan VARCHAR)",
        "INSERT INTO people SELECT i, 'p' || i || '@example.com', 'free' FROM range(1, 8) t(i)",
    )
    fake = FakeKlaviyo()
    first = run(duck, state, fake, runtime, "int")
    assert first.merge is None and first.res.added == 7
    duck.run("UPDATE people SET plan = 'vip' WHERE id = 3", "DELETE FROM people WHERE id = 5")
    r = run(duck, state, fake, runtime, "int")
    assert r.merge is None
    assert (r.res.changed, r.res.unchanged, r.res.removed) == (1, 5, 0)  # removed: not found


def test_source_out_of_byte_order_falls_back_to_lookups(
    duck: Warehouse,
    state: StateStore,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    people(duck, "text", TEXT_KEYS)
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "text")
    duck.run(
        "UPDATE people SET plan = 'vip' WHERE code = 'é'", "DELETE FROM people WHERE code = '0'"
    )
    # Without COLLATE "C" the NOCASE column comes in a locale-like order (a, A, B, ...).
    from connector.read.source import Reader

    monkeypatch.setattr(Reader, "_k", Reader._q)
    r = run(duck, state, fake, runtime, "text")
    assert r.merge is None  # switched to lookups at the first page out of order
    assert (r.res.changed, r.res.unchanged, r.res.sent, r.res.removed) == (
        1,
        len(TEXT_KEYS) - 2,
        1,
        0,
    )
    assert "byte order" in caplog.text
    # The run's records name it (logcontext), as an event run's do.
    (warned,) = [rec for rec in caplog.records if "byte order" in rec.getMessage()]
    assert (warned.sync_name, warned.run_id) == ("merge_k", r.res.run_id)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- hashing cost


@pytest.mark.parametrize(
    "values",
    [
        ["plain", None, "é"],
        ['a "quoted" one', "plain"],
        ["back\\slash", "plain"],
        ["tab\there", "nl\nx", "plain", None],
        ['all: "\\\x01', ""],
    ],
)
def test_json_strings_skip_only_escapes_a_column_does_not_need(values: list[Any]) -> None:
    import orjson
    import pyarrow as pa

    from connector.model.jsonfrag import strings

    arr = pa.array(['x"\\\x02', *values], pa.string())
    for a in (pa.array(values, pa.string()), arr.slice(1)):  # a slice shares a dirty buffer
        got = strings(a).to_pylist()
        assert got == [None if v is None else orjson.dumps(v).decode() for v in values]


@pytest.mark.parametrize("kind", ["int", "text"])
def test_a_gap_wider_than_the_page_is_read_in_slices(
    duck: Warehouse, state: StateStore, runtime: Runtime, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.contacts import merge as merge_module

    keys = keys_for(kind)
    people(duck, kind, keys)
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, kind)
    order = sorted(keys, key=lambda k: byte_order(kind, k))
    gap = order[20:190]  # 170 stored rows between two keys of one page
    duck.run(
        *(f"DELETE FROM people WHERE {where(kind, k)}" for k in gap),
        f"UPDATE people SET plan = 'vip' WHERE {where(kind, order[-1])}",
    )
    monkeypatch.setattr(merge_module, "_SPARE", 0)
    monkeypatch.setattr(merge_module, "_SLICE", 7)
    r = run(duck, state, fake, runtime, kind)
    assert (r.res.removed, r.res.changed, r.res.unchanged, r.res.added) == (
        len(gap),
        1,
        len(keys) - len(gap) - 1,
        0,
    )


def test_a_re_keyed_row_is_not_unlisted(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    people(duck, "int", list(range(1, 6)))
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    # Key 3 becomes key 300 with the same email (case aside); key 5 really goes.
    duck.run(
        "UPDATE people SET id = 300, email = 'P2@example.com' WHERE id = 3",
        "DELETE FROM people WHERE id = 5",
    )
    unlister = Unlister()
    r = unlisting_run(duck, state, fake, runtime, unlister)
    assert (r.res.added, r.res.removed, r.res.unlisted) == (1, 2, 1)
    assert [g.key for call in unlister.calls for g in call] == ["5"]
    with state.engine.connect() as c:
        keys = {k for (k,) in c.execute(sa.text("SELECT key FROM connector_contact_hashes"))}
    assert keys == {"1", "2", "4", "300"}  # 3 forgotten (still a contact), 5 unlisted


@pytest.mark.parametrize("kind", ["text", "composite"])
def test_merge_with_the_state_store_on_postgresql(
    duck: Warehouse, pg_url: str, runtime: Runtime, kind: str
) -> None:
    state = StateStore(pg_url)
    keys = keys_for(kind)
    people(duck, kind, keys)
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, kind)
    assert run(duck, state, fake, runtime, kind).merge.fast == 3  # type: ignore[union-attr]
    order = sorted(keys, key=lambda k: byte_order(kind, k))
    duck.run(
        f"DELETE FROM people WHERE {where(kind, order[150])}",
        f"UPDATE people SET plan = 'vip' WHERE {where(kind, order[7])}",
    )
    r = run(duck, state, fake, runtime, kind)
    assert (r.res.removed, r.res.changed, r.res.unchanged) == (1, 1, len(keys) - 2)
    state.engine.dispose()


def test_a_removed_row_whose_contact_another_stored_row_carries_is_not_unlisted(
    duck: Warehouse, state: StateStore, runtime: Runtime
) -> None:
    """Two rows, one contact: row 6 joins later with row 3's e-mail (in another case; one
    profile at the vendor). Row 3 vanishing must not take that profile off the list while
    row 6 is still in the source; row 5, whose contact nobody else carries, is unlisted."""
    people(duck, "int", list(range(1, 6)))
    fake = FakeKlaviyo()
    run(duck, state, fake, runtime, "int")
    duck.insert("people", [person("int", 6, "P2@Example.com")])  # row 3 is p2@example.com
    assert run(duck, state, fake, runtime, "int").res.added == 1  # confirmed in its own job
    duck.run("DELETE FROM people WHERE id IN (3, 5)")

    unlister = Unlister()
    r = unlisting_run(duck, state, fake, runtime, unlister)
    assert (r.res.removed, r.res.unlisted) == (2, 1)
    assert [g.key for call in unlister.calls for g in call] == ["5"]
    with state.engine.connect() as c:
        keys = {k for (k,) in c.execute(sa.text("SELECT key FROM connector_contact_hashes"))}
    assert keys == {"1", "2", "4", "6"}  # 3 forgotten (its contact is row 6's), 5 unlisted

    # Rows 7 and 8 share a contact too: 8 is an identifier conflict (7 owns the address,
    # issue 19 item 4), never confirmed. Row 6 goes, and 7 and 8 both go: nobody in the
    # source carries those contacts any more, so both confirmed ones come off the list (a
    # vanished row never keeps another vanished row's contact).
    for key, email in ((7, "q@example.com"), (8, "Q@EXAMPLE.com")):
        duck.insert("people", [person("int", key, email)])
        assert run(duck, state, fake, runtime, "int").res.added == 1
    duck.run("DELETE FROM people WHERE id IN (6, 7, 8)")
    again = unlisting_run(duck, state, fake, runtime, Unlister(), max_unlist_ratio=1)
    assert (again.res.removed, again.res.unlisted) == (2, 2)
