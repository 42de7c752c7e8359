"""A transaction's inserts store format 3 (bench/format3.md, step 6), as ``insert.lua`` and
``insert_many.lua`` do: ``tx.lua`` (and the two-phase commit's apply, the same call from
its intent) stores a new document as ``\\x01<version>\\0<write id>\\0<payload>`` and writes
a meta hash only as a sweep record (an expiry: ``v`` and every index's fields) or with the
listed indexes' fields. The row says so by its expected version, "0" in 20 digits, a NUL,
then nothing, or the listed indexes' pairs as one flat array; ``writes.NEW_FORMAT = 2`` (the
``format2_writes`` fixture) still stores format 2.

* the document's header, W (its write id alone), no meta hash; reads, queries, a save
  (one call: the inserted version is a ``Headed`` holding the data written) and deletes;
  the change event; the keyspace (test_format3_writes.check_keyspace and helpers.py's
  assert_indexes_consistent);
* listed indexes (their fields kept), an expiry (a sweep record, then swept);
* a transaction refused (a stale version, a document read that changed, a unique value
  taken before or by an earlier row, an id taken) writes nothing;
* a resent transaction recognised by W (newest and older position), with nothing written
  again;
* two-phase commits: a commit over partitions, a coordinator dying at each phase settled
  by the sweeper, an apply whose reply is lost resent very late (the versions read from
  W), an intent made again after a schema change, and a damaged insert row in an intent
  refused.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import assert_indexes_consistent, snapshot
from test_format3_writes import (
    FoldedMix,
    Item,
    Placed,
    _expire_now,
    _listed_values,
    _storage,
    check_keyspace,
    events,
    header,
    layout,
    listed_fields,
    members_for,
    run,
    script_calls,
)
from test_two_phase_commit import applied_reply_lost, die_after, leftovers

from quantumorm import (
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
    VersionConflict,
    jsoncodec,
    sortable,
)
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.headed import Headed
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine import prepared


def _new(id: str, **kw: Any) -> Item:
    values = {"name": "ann", "age": 30, "tags": ["x", "y"], "email": f"{id}@e.x", "note": "n"}
    values.update(kw)
    return Item(id=id, **values)


def _is_write_id(w: bytes) -> bool:
    return len(w) == 16 and all(c in b"0123456789abcdef" for c in w)


# -- one partition (tx.lua) --------------------------------------------------------------


def test_an_inserted_document_is_format_3_and_reads_queries_saves_deletes(
        conn: Any, redis_client: Any) -> None:
    rc, keys = redis_client, KeySpace(Item._meta)
    _new("a").save_sync()  # (a plain insert beside it, format 3 too)
    with conn.transaction_sync() as tx:
        old = tx.get(Item, "a")
        assert old is not None
        old.age = 31
        tx.save(old)
        b = _new("b", name="bob", age=40, tags=["t", "u", "t"])
        tx.save(b)
    raw = rc.get(keys.doc(0, "b"))
    assert raw[:1] == b"\x01"
    version, w, body = header(rc, Item, "b")
    assert _is_write_id(w) and version == b.version
    assert jsoncodec.decode(body)["name"] == "bob"
    assert not rc.exists(keys.meta(0, "b"))
    # the version: a Headed holding the data written
    assert type(b.version) is Headed and b.version.stored == jsoncodec.decode(body)
    check_keyspace(rc, Item)
    assert_indexes_consistent(rc, Item)
    # the change event: a create with the write id and version
    created = [e for e in events(rc, Item) if e[b"op"] == b"create" and e[b"id"]
               == sortable.id_key("b")]
    assert len(created) == 1 and created[0][b"w"] == w
    assert created[0][b"v"] == str(version).encode()
    # reads and queries
    got = Item.objects.get_sync(id="b")
    assert got is not None and got.name == "bob" and got.version == version
    assert type(got.version) is Headed
    assert [d.id for d in Item.objects.filter(name="bob").all_sync()] == ["b"]
    assert [d.id for d in Item.objects.filter(age__gte=35).all_sync()] == ["b"]
    assert [d.id for d in Item.objects.filter(tags__contains="u").all_sync()] == ["b"]
    assert [d.id for d in Item.objects.filter(name="bob", age__gte=35).order_by("age")
            .all_sync()] == ["b"]
    assert Item.objects.filter(age__gte=35).count_sync() == 1
    # its next save is one call, and removes the inserted entries (not the instance's)
    b.tags.append("v")  # (changed in place: the old entries are the data written)
    b.age = 41
    before = script_calls(rc)
    b.save_sync()
    assert script_calls(rc) == before + 1
    version2, w2, _ = header(rc, Item, "b")
    assert version2 == b.version and w2[:16] != w and w2[16:32] == w
    assert int(w2[32:48]) == version
    check_keyspace(rc, Item)
    assert [d.id for d in Item.objects.filter(age__gte=35).all_sync()] == ["b"]
    assert Item.objects.filter(age=40).count_sync() == 0
    # deleted in a transaction, as loaded
    with conn.transaction_sync() as tx2:
        doc = tx2.get(Item, "b")
        assert doc is not None
        tx2.delete(doc)
    assert not rc.exists(keys.doc(0, "b"), keys.meta(0, "b"))
    check_keyspace(rc, Item)
    assert_indexes_consistent(rc, Item)
    assert Item.objects.filter(name="bob").count_sync() == 0


def test_an_insert_then_deleted_at_once(conn: Any, redis_client: Any) -> None:
    """An instance inserted by a transaction, deleted as it is (its Headed version)."""
    with conn.transaction_sync() as tx:
        doc = _new("c")
        tx.save(doc)
    assert type(doc.version) is Headed
    doc.delete_sync()
    assert Item.objects.filter(id="c").count_sync() == 0
    check_keyspace(redis_client, Item)
    assert Item.objects.filter(id="c").delete_sync() == 0


@pytest.mark.parametrize("model", [FoldedMix, Placed])
def test_listed_indexes_keep_their_fields(conn: Any, redis_client: Any, model: Any) -> None:
    rc, keys = redis_client, KeySpace(model._meta)
    with conn.transaction_sync() as tx:
        doc = model(id="a", name="n", age=1, **_listed_values(model, 1))
        tx.save(doc)
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    assert set(rc.hkeys(keys.meta(0, "a"))) == {f.encode() for f in listed_fields(model)}
    check_keyspace(rc, model)
    assert_indexes_consistent(rc, model)
    assert not model.objects.verify_sync().problems
    for name, value in _listed_values(model, 2).items():
        setattr(doc, name, value)
    doc.save_sync()
    check_keyspace(rc, model)
    assert model.objects.filter(id="a").delete_sync() == 1
    assert not rc.exists(keys.meta(0, "a"))
    check_keyspace(rc, model)


def test_an_expiring_insert_keeps_a_sweep_record_then_is_swept(
        conn: Any, redis_client: Any) -> None:
    rc, keys = redis_client, KeySpace(Item._meta)
    with conn.transaction_sync() as tx:
        doc = _new("a")
        tx.save(doc, ttl=100)
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    assert rc.hget(keys.meta(0, "a"), "v") == str(doc.version).encode()
    assert rc.hget(keys.meta(0, "a"), "r") is None
    assert 0 < rc.pttl(keys.doc(0, "a")) <= 100_000
    assert rc.zscore(keys.ttl(0), sortable.id_key("a")) is not None
    check_keyspace(rc, Item)
    assert_indexes_consistent(rc, Item)
    assert not Item.objects.verify_sync().problems
    _expire_now(rc, Item, "a")
    Item.objects.sweep_sync()
    assert not rc.exists(keys.meta(0, "a"))
    assert members_for(rc, Item, "a") == {index.name: [] for index in Item._meta.indexes}
    check_keyspace(rc, Item)


@pytest.mark.usefixtures("format2_writes")
def test_format2_writes_still_store_format_2(conn: Any, redis_client: Any) -> None:
    rc, keys = redis_client, KeySpace(Item._meta)
    with conn.transaction_sync() as tx:
        doc = _new("a")
        tx.save(doc)
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x00"
    assert rc.hget(keys.meta(0, "a"), "v") == str(doc.version).encode()
    assert rc.hget(keys.meta(0, "a"), "r")
    assert type(doc.version) is int
    check_keyspace(rc, Item)


def test_a_refused_transaction_writes_nothing(conn: Any, redis_client: Any) -> None:
    rc = redis_client
    _new("a").save_sync()
    held = _new("h", email="taken@e.x")
    held.save_sync()
    stale = Item.objects.get_sync(id="a")
    fresh = Item.objects.get_sync(id="a")
    assert stale is not None and fresh is not None
    fresh.age = 99
    fresh.save_sync()
    before = snapshot(rc)
    # a stale version beside the insert
    stale.age = 1
    with pytest.raises(VersionConflict):
        with conn.transaction_sync() as tx:
            tx.save(_new("n1"))
            tx.save(stale)
    assert snapshot(rc) == before
    # a document read in the transaction that changed since
    with pytest.raises(VersionConflict):
        with conn.transaction_sync() as tx:
            assert tx.get(Item, "h") is not None
            other = Item.objects.get_sync(id="h")
            assert other is not None
            other.age = 5
            other.save_sync()
            before = snapshot(rc)
            tx.save(_new("n2"))
    assert snapshot(rc) == before
    # a unique value held by another document, or by an earlier row of the transaction
    with pytest.raises(UniqueViolation):
        with conn.transaction_sync() as tx:
            tx.save(_new("n3", email="taken@e.x"))
    with pytest.raises(UniqueViolation):
        with conn.transaction_sync() as tx:
            tx.save(_new("n4", email="same@e.x"))
            tx.save(_new("n5", email="same@e.x"))
    # an id taken
    with pytest.raises(DuplicateIdError):
        with conn.transaction_sync() as tx:
            tx.save(_new("n6"))
            tx.save(_new("a"))
    assert snapshot(rc) == before
    check_keyspace(rc, Item)
    assert_indexes_consistent(rc, Item)


@pytest.mark.parametrize("position", [0, 1])
def test_a_resent_transaction_is_recognised_by_w(conn: Any, redis_client: Any,
                                                 position: int) -> None:
    """A transaction sent again (its reply lost) whose insert is in W, as the newest write
    (``position`` 0) or an older one (1: written once more since), answers the versions it
    wrote, nothing written again; its insert first or after an update."""
    rc = redis_client
    _new("u").save_sync()
    for first in (True, False):
        id = f"r{int(first)}"
        update = Item.objects.get_sync(id="u")
        assert update is not None
        update.age += 1
        insert = _new(id)
        requests = [prepared.request(insert, _storage(insert)),
                    prepared.request(update, _storage(update))]
        assert None not in requests
        if not first:
            requests.reverse()
        call = layout(Item).tx(0, [], requests)  # type: ignore[arg-type]
        assert all(len(row.argv()[1]) > 20 for row in call.rows)  # (both sent as format 3)
        reply = run(rc, call)
        assert reply[0] == b"OK"
        written = [int(v) for v in reply[1]]
        assert header(rc, Item, id)[:2] == (written[0 if first else 1],
                                            call.rows[0 if first else 1].document.write_id
                                            .encode())  # type: ignore[union-attr]
        if position == 1:  # another write since: the insert's id moves to W's second entry
            again = Item.objects.get_sync(id=id)
            assert again is not None
            again.age = 8
            again.save_sync()
            assert header(rc, Item, id)[1][16:32] == call.rows[
                0 if first else 1].document.write_id.encode()  # type: ignore[union-attr]
        before = snapshot(rc)
        assert run(rc, call) == [b"OK", written]
        assert snapshot(rc) == before
        check_keyspace(rc, Item)


def test_an_insert_of_a_taken_id_sent_again_with_another_write_id_is_refused(
        conn: Any, redis_client: Any) -> None:
    rc = redis_client
    insert = _new("a")
    request = prepared.request(insert, _storage(insert))
    assert request is not None
    call = layout(Item).tx(0, [], [request])
    assert run(rc, call)[0] == b"OK"
    call.rows[0].document.write_id = "0123456789abcdef"  # type: ignore[union-attr]
    before = snapshot(rc)
    assert run(rc, call)[:2] == [b"EXISTS", 1]
    assert snapshot(rc) == before


# -- two-phase commits (tx.lua's prepare, tx_apply.lua) -------------------------------------


class Wide(Document):
    name = StringField(indexed=True)
    amount = IntField(indexed=True, default=0)
    email = StringField()

    class Meta:
        collection = "f3x_wide"
        partitions = 4


def spread(prefix: str = "w") -> list[str]:
    """One id per partition of Wide, in partition order."""
    keys = KeySpace(Wide._meta)
    found: dict[int, str] = {}
    n = 0
    while len(found) < Wide._meta.partitions:
        found.setdefault(keys.partition_of(f"{prefix}{n}"), f"{prefix}{n}")
        n += 1
    return [found[p] for p in sorted(found)]


def check_wide(rc: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every document of Wide is format 3 with no meta hash (no expiry, nothing listed), and
    helpers.py's keyspace checks pass."""
    keys = KeySpace(Wide._meta)
    docs = assert_indexes_consistent(rc, Wide)
    for id in docs:
        p = keys.partition_of(id)
        assert rc.get(keys.doc(p, id))[:1] == b"\x01", id
        assert not rc.exists(keys.meta(p, id)), id
    return docs


#: the ids a transaction inserts, one in each partition but the first
NEW = spread("y")[1:]


def inserting(conn: Any, ids: list[str], timeout: float = 5.0) -> Any:
    """A transaction (not committed) updating ids[0] and inserting a document (NEW) in
    each other partition."""
    tx = conn.transaction_sync(timeout=timeout)
    first = tx.get(Wide, ids[0])
    first.amount -= 10
    tx.save(first)
    for id in NEW:
        tx.save(Wide(id=id, name="new", amount=10, email=f"{id}@e.x"))
    return tx


@pytest.fixture
def wide(conn: Any) -> list[str]:
    ids = spread()
    Wide(id=ids[0], name="n", amount=100, email="w@e.x").save_sync()
    return ids


def test_two_phase_commit_inserts_format_3(conn: Any, redis_client: Any,
                                           wide: list[str]) -> None:
    rc = redis_client
    with inserting(conn, wide) as tx:
        pass
    docs = check_wide(rc)
    assert set(docs) == {wide[0], *NEW}
    assert leftovers(rc) == {}
    inserted = [doc for doc, _, _ in tx._work.writes.values() if doc.id != wide[0]]
    assert len(inserted) == 3
    for doc in inserted:
        assert type(doc.version) is Headed and doc.version == docs[doc.id][0]
        p = KeySpace(Wide._meta).partition_of(doc.id)
        assert _is_write_id(stored.header(rc.get(KeySpace(Wide._meta).doc(p, doc.id)))[1])
    # their next writes: a save (one call), a delete
    before = script_calls(rc)
    inserted[0].amount = 11
    inserted[0].save_sync()
    assert script_calls(rc) == before + 1
    inserted[1].delete_sync()
    check_wide(rc)
    assert Wide.objects.filter(amount=10).count_sync() == 1
    assert not Wide.objects.verify_sync().problems


def test_a_two_phase_insert_of_a_taken_id_writes_nothing(conn: Any, redis_client: Any,
                                                         wide: list[str]) -> None:
    rc = redis_client
    Wide(id=NEW[1], name="there").save_sync()
    before = snapshot(rc)
    with pytest.raises(DuplicateIdError):
        with inserting(conn, wide):
            pass
    assert snapshot(rc) == before
    assert leftovers(rc) == {}
    check_wide(rc)


@pytest.mark.parametrize("round_trips", [1, 2, 3, 4])
def test_a_coordinator_dying_at_each_phase_is_settled(
        conn: Any, redis_client: Any, wide: list[str], round_trips: int) -> None:
    rc = redis_client
    die_after(conn, inserting(conn, wide, 0.3), round_trips)
    committed = round_trips >= 3  # (the commit round trip is the decision)
    time.sleep(0.4)  # past the deadline
    Wide.objects.sweep_sync()
    assert leftovers(rc) == {}
    docs = check_wide(rc)
    assert (NEW[0] in docs) is committed
    assert docs[wide[0]][1]["amount"] == (90 if committed else 100)


def test_a_very_late_apply_resend_reads_the_versions_from_w(
        conn: Any, redis_client: Any) -> None:
    """test_two_phase_commit's transfer (two purses and an Entry inserted), its apply's
    reply lost and its applied intents expired: the resend learns the versions from the
    documents' W, the inserted Entry's too, stored in format 3."""
    from test_two_phase_commit import Entry, Purse, spread_ids

    ids = spread_ids(1)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()
    pair = [ids[0], ids[2]]
    tx, op, plan, executor = applied_reply_lost(conn, pair, redis_client)
    keys = KeySpace(Entry._meta)
    raw = redis_client.get(keys.doc(0, f"e-{pair[0]}-10"))
    assert raw[:1] == b"\x01" and not redis_client.exists(keys.meta(0, f"e-{pair[0]}-10"))
    plan = op.send(executor.execute(plan))  # the resend finds its locks gone
    with pytest.raises(StopIteration):
        while True:
            plan = op.send(executor.execute(plan))
    entry = [doc for doc, _, _ in tx._work.writes.values() if isinstance(doc, Entry)]
    assert len(entry) == 1 and entry[0].version == stored.header(raw)[0]
    assert leftovers(redis_client) == {}
    assert_indexes_consistent(redis_client, Entry)


def _insert_damage(intent: bytes) -> dict[str, bytes]:
    """Damages of an insert row sent as format 3 in a stored intent (its first insert row:
    "0" in 20 digits, a NUL, then nothing for a model with no listed index, else the listed
    pairs, a flat array): each refused alike by tx_apply.lua and twophase._stored_call."""
    from quantumorm.backends.redis import wire

    flat = wire.unpack(intent)
    args = 2 + int(flat[1])
    at = next(args + 6 + 9 * n + 1 for n in range((len(flat) - args - 6) // 9)
              if flat[args + 6 + 9 * n] == b"insert")
    assert flat[at] == b"0" * 20 + b"\0", "the insert row is not sent as format 3"

    def put(expected: bytes) -> bytes:
        damaged = list(flat)
        damaged[at] = expected
        return wire.pack(damaged)

    return {
        "pairs odd": put(flat[at] + b"\x91\xa1a"),
        "not msgpack": put(flat[at] + b"\xc1"),
        "a list that does not read": put(flat[at] + b"\x92\xa1a\xa39:a"),
        "a map": put(flat[at] + b"\x81\xa1a\xa1b"),
        "a number": put(flat[at] + b"\x92\xa1a\x05"),
        "version signed": put(b"+" + flat[at][1:]),
        "version not digits": put(b"0" * 19 + b"x\0"),
    }


def test_an_intent_with_a_damaged_insert_row_is_refused(conn: Any, redis_client: Any,
                                                        wide: list[str]) -> None:
    """A committed transaction whose intent's insert row (sent as format 3) does not read
    is refused by the settle and by tx_apply.lua, nothing written; put back, it is applied
    and the document stored in format 3."""
    from test_damaged_transaction import _record
    from test_format3_transactions import refuses_damaged_intents

    rc = redis_client
    keys = KeySpace(Wide._meta)
    die_after(conn, inserting(conn, wide, 30.0), 3)  # (committed, not applied)
    record = _record(rc)
    (intent,) = [k.decode() for k in rc.scan_iter(
        f"{keys.tag(keys.partition_of(NEW[0]))}:2pc:*")]
    good = rc.get(intent)
    refuses_damaged_intents(conn, rc, record, intent, _insert_damage(good))
    rc.set(intent, good)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert leftovers(rc) == {}
    docs = check_wide(rc)
    assert NEW[0] in docs and docs[wide[0]][1]["amount"] == 90


def test_an_intent_made_again_after_a_schema_change_inserts_format_3(
        conn: Any, redis_client: Any, wide: list[str], monkeypatch: Any) -> None:
    """The layout changed between the commit and the apply: the intent is made again with
    the schema of now (twophase._rebuilt); its inserts are stored in format 3."""
    from test_two_phase_commit import older_client

    rc = redis_client
    die_after(conn, inserting(conn, wide, 30.0), 3)  # (committed, not applied)
    older_client(conn, monkeypatch)
    from test_format3_transactions import rebuilt_intents

    rebuilt = rebuilt_intents(monkeypatch)

    class Wider(Document):
        name = StringField(indexed=True)
        amount = IntField(indexed=True, default=0)
        email = StringField()
        note = StringField(indexed=True)

        class Meta:
            collection = "f3x_wide"
            partitions = 4

    keys = KeySpace(Wider._meta)
    z = next(f"z{n}" for n in range(999)
             if keys.partition_of(f"z{n}") == keys.partition_of(NEW[0]))
    Wider(id=z, name="z", amount=1, note="n", email="z@e.x").save_sync()
    assert Wider.objects.sweep_sync() >= 0
    assert leftovers(rc) == {}
    assert any(made is not None for made in rebuilt), "the intent was not made again"
    for id in NEW:
        p = keys.partition_of(id)
        raw = rc.get(keys.doc(p, id))
        assert raw is not None and raw[:1] == b"\x01", id
        assert not rc.exists(keys.meta(p, id))
    assert_indexes_consistent(rc, Wide)  # (its indexes: the new one is not built yet)


class WideListed(Document):
    name = StringField(indexed=True)  # (derived)
    title = StringField()

    class Meta:
        collection = "f3x_widelisted"
        partitions = 4
        indexes = [{"fields": ["title"], "casefold": True}]  # (listed)


def test_two_phase_inserts_of_a_model_with_a_listed_index(conn: Any,
                                                          redis_client: Any) -> None:
    """The listed pairs travel in the intent (checked by the settle and by tx_apply.lua)
    and are the new documents' meta hashes; a damaged pair in an intent is refused."""
    from test_damaged_transaction import _record

    from quantumorm import DamagedTransactionError
    from quantumorm.backends.redis import wire
    from quantumorm.backends.redis.commands import Call, RedisPlan

    rc, keys = redis_client, KeySpace(WideListed._meta)
    ids = spread("l")
    WideListed(id="base", name="b", title="Base").save_sync()
    tx = conn.transaction_sync(timeout=30.0)
    assert tx.get(WideListed, "base") is not None  # (a read: the commit's usual rounds)
    for n, id in enumerate(ids):
        tx.save(WideListed(id=id, name=f"n{n}", title=f"Title{n}"))
    die_after(conn, tx, 3)  # (committed, not applied)
    record = _record(rc)
    intent = next(k.decode() for k in rc.scan_iter(
        f"{keys.tag(keys.partition_of(ids[0]))}:2pc:*"))
    good = rc.get(intent)
    flat = wire.unpack(good)
    (at,) = [n for n, item in enumerate(flat) if item.startswith(b"0" * 20 + b"\0")]
    assert wire.unpack(flat[at][21:])[0] == b"f:title__casefold"
    for damaged in (wire.pack([b"f:title__casefold", b"9:a"]),  # (a list that does not read)
                    wire.pack([b"f:title__casefold"])):  # (pairs odd)
        rc.set(intent, wire.pack([*flat[:at], flat[at][:21] + damaged, *flat[at + 1:]]))
        before = snapshot(rc)
        with pytest.raises(DamagedTransactionError):
            conn.run(lambda b: conn.backend.settle(record, None))
        with pytest.raises(DamagedTransactionError):
            conn.run(lambda b: (yield RedisPlan((Call("tx_apply", (intent,), (b"",)),))))
        assert snapshot(rc) == before
    rc.set(intent, good)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert leftovers(rc) == {}
    assert_indexes_consistent(rc, WideListed)
    for id in ids:
        p = keys.partition_of(id)
        assert rc.get(keys.doc(p, id))[:1] == b"\x01"
        assert rc.hkeys(keys.meta(p, id)) == [b"f:title__casefold"]
    assert not WideListed.objects.verify_sync().problems


def test_an_apply_that_finds_its_insert_s_document_there_writes_it_over(
        conn: Any, redis_client: Any, wide: list[str]) -> None:
    """The decision is taken, but a document appeared at an insert's id before the apply
    (written by hand here: every writer waits for the lock): the apply writes the insert
    over it as an update (check_apply), its row no longer read as format 3's insert."""
    from test_damaged_transaction import _record

    rc, keys = redis_client, KeySpace(Wide._meta)
    die_after(conn, inserting(conn, wide, 30.0), 3)  # (committed, not applied)
    record = _record(rc)
    p = keys.partition_of(NEW[0])
    assert rc.set(keys.doc(p, NEW[0]), b"\x01%d\x00%s\x00{}" % (1, b"00c0ffee12345678"))
    rc.zadd(keys.ids(p), {sortable.id_key(NEW[0]): 0})
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert leftovers(rc) == {}
    found = Wide.objects.get_sync(id=NEW[0])
    assert found is not None and found.name == "new" and found.amount == 10
    assert_indexes_consistent(rc, Wide)
