"""Format 3's transactions (bench/format3.md, plan step 3, the ``_tx.lua`` row): a
transaction (``tx.lua``) and a two-phase one (``tx_begin`` ... ``tx_apply``,
``twophase.py``) accept a format-3 document (``\\x01<version>\\0<W>\\0<payload>``) and
keep it in format 3. The documents are made by hand from the format-2 documents the ORM
wrote (``format2_writes``: inserts store format 2; ``to_format3`` of
test_format3_writes.py), so that both formats meet in one transaction.

* each row's version comes from the header; an update or a delete of a document loaded as
  format 3 sends the entries its loaded document has (a ``Headed`` version), W chains the
  write ids, the meta hash is a sweep record only while the document expires;
* format-3 and format-2 documents updated, inserted and deleted in one transaction;
* a stale version (VERSION), a document read in the transaction that changed since, a
  resent transaction recognised by W (at the newest position and an older one), an expiry
  set, kept and removed, a unique conflict, a damaged header (nothing written);
* a row sent without entries (the instance loaded as format 2, converted since at the same
  version): refused with nothing written (``ENTRIES``, raised as a VersionConflict: a
  transaction's writes follow its reads, which run_transaction makes again), then
  ``run_transaction``'s next attempt reads it as format 3 and commits;
* two-phase over partitions with a format-3 document: commit, abort, and a coordinator
  dying at each phase settled by the sweeper.

After each, the keyspace is checked as test_format3_writes.py checks it (every index holds
exactly the entries of the stored documents; a meta hash exists exactly where the format
says), per partition for the two-phase ones.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import snapshot
from test_format3_writes import (
    LONG_W,
    NEWEST,
    FoldedMix,
    Item,
    Placed,
    _item,
    _listed_values,
    _storage,
    check_keyspace,
    entries_of,
    header,
    layout,
    listed_fields,
    manifests,
    run,
    to_format3,
)
from test_two_phase_commit import die_after, leftovers

from quantumorm import (
    CorruptDocumentError,
    Document,
    IntField,
    StringField,
    UniqueViolation,
    VersionConflict,
    compression,
    jsoncodec,
    sortable,
)
from quantumorm.backends.redis import stored

try:  # (absent before step 3: the tests then fail on what they check, not on the import)
    from quantumorm.backends.redis.headed import Headed
except ImportError:  # pragma: no cover
    class Headed(int):  # type: ignore[no-redef]
        stored: dict[str, Any]
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine import prepared
from quantumorm.engine.contract import WriteRequest

#: every test starts from format-2 documents, some converted by hand (to_format3)
pytestmark = pytest.mark.usefixtures("format2_writes")


def get(id: str) -> Item:
    found = Item.objects.get_sync(id=id)
    assert found is not None
    return found


def payload(rc: Any, model: Any, id: str, partition: int = 0) -> dict[str, Any]:
    raw = rc.get(KeySpace(model._meta).doc(partition, id))
    return jsoncodec.decode(compression.decompress(stored.split(raw)[1]))


# -- one partition -----------------------------------------------------------------------


async def test_updates_inserts_and_deletes_of_both_formats_together(
        conn: Any, redis_client: Any) -> None:
    rc = redis_client
    for id in "abcdr":
        await _item("async", id, name=f"n{id}", age=10, tags=[id, "t"])
    va = to_format3(rc, Item, "a", LONG_W)
    to_format3(rc, Item, "b")
    to_format3(rc, Item, "r")
    keys = KeySpace(Item._meta)
    async with conn.transaction() as tx:
        a, b = await tx.get(Item, "a"), await tx.get(Item, "b")
        c, d = await tx.get(Item, "c"), await tx.get(Item, "d")
        read_only = await tx.get(Item, "r")  # (a check of a format-3 document's version)
        assert a is not None and b is not None and c is not None and d is not None
        assert read_only is not None and type(read_only.version) is Headed
        assert type(a.version) is Headed and type(c.version) is int
        a.name, a.age, a.tags = "changed", 11, ["u", "a"]
        c.name, c.age = "c2", 12
        tx.save(a)
        tx.delete(b)
        tx.save(c)
        tx.delete(d)
        tx.save(Item(id="e", name="ne", age=13, tags=[], email="e@e.x", note=""))
    assert type(a.version) is Headed and a.version > va
    version, w, body = header(rc, Item, "a")
    assert version == a.version
    # W: this write's id, then the newest before it with its version, then the older two
    assert w[16:32] == NEWEST and int(w[32:48]) == va and w[48:] == LONG_W[16:80]
    assert jsoncodec.decode(body)["name"] == "changed"
    assert not rc.exists(keys.doc(0, "b"), keys.meta(0, "b"), keys.doc(0, "d"),
                         keys.meta(0, "d"))
    assert rc.get(keys.doc(0, "c"))[:1] == b"\x00" and rc.hget(keys.meta(0, "c"), "r")
    assert rc.get(keys.doc(0, "e"))[:1] == b"\x00"
    assert not rc.exists(keys.meta(0, "a"))
    docs = check_keyspace(rc, Item)
    assert set(docs) == {"a", "c", "e", "r"}
    # its next write (a plain save) sends the entries of what the transaction wrote
    a.age = 14
    await a.save()
    assert header(rc, Item, "a")[0] == a.version and header(rc, Item, "a")[1][16:32] == w[:16]
    check_keyspace(rc, Item)
    # the change events: the update's, the deletes', the insert's, as for format 2
    kinds = [fields[b"op"] for _, fields in rc.xrange(keys.changes(0))][-6:]
    assert kinds == [b"update", b"delete", b"update", b"delete", b"create", b"update"]


def test_a_stale_version_or_a_changed_read_conflicts(conn: Any, redis_client: Any) -> None:
    rc = redis_client
    Item(id="a", name="x", age=1, tags=["p"], email="a@e.x", note="").save_sync()
    Item(id="b", name="y", age=2, tags=[], email="b@e.x", note="").save_sync()
    to_format3(rc, Item, "a")
    to_format3(rc, Item, "b")
    stale, read = get("a"), get("b")
    fresh = get("a")
    fresh.age = 3
    fresh.save_sync()  # (format 3 kept: the stored version moves on)
    before = snapshot(rc)
    stale.age = 4
    with pytest.raises(VersionConflict) as caught:
        with conn.transaction_sync() as tx:
            tx.save(stale)
    assert caught.value.actual == fresh.version
    with pytest.raises(VersionConflict):
        with conn.transaction_sync() as tx:
            tx.delete(stale)
    # a document read in the transaction (a check row) that changed since
    with pytest.raises(VersionConflict):
        with conn.transaction_sync() as tx:
            assert tx.get(Item, "b") is not None
            other = get("b")
            other.age = 9
            other.save_sync()
            before = snapshot(rc)
            fresh.age = 5
            tx.save(fresh)
    assert snapshot(rc) == before
    assert read.version < get("b").version
    check_keyspace(rc, Item)


@pytest.mark.parametrize("position", [0, 1])
def test_a_resent_transaction_is_recognised_by_w(conn: Any, redis_client: Any,
                                                 position: int) -> None:
    """A transaction sent again (its reply lost) whose update of a format-3 document is in
    W, as the newest write (``position`` 0) or an older one (1: written once more since),
    answers the versions it wrote, nothing written again."""
    rc = redis_client
    Item(id="a", name="x", age=1, tags=["p"], email="a@e.x", note="").save_sync()
    Item(id="b", name="y", age=2, tags=[], email="b@e.x", note="").save_sync()
    to_format3(rc, Item, "a")
    doc = get("a")
    doc.age = 7
    request = prepared.request(doc, _storage(doc))
    assert request is not None and type(request.expected_version) is Headed
    delete = WriteRequest("delete", "b", get("b").version)
    call = layout(Item).tx(0, [], [request, delete])
    call.rows[0].document.write_id = "0123456789abcdef"  # type: ignore[union-attr]
    first = run(rc, call)
    assert first[0] == b"OK"
    written = int(first[1][0])
    assert header(rc, Item, "a")[:2] == (written, b"0123456789abcdef" + NEWEST
                                         + b"%016d" % int(doc.version))
    if position == 1:  # another write since: this one's id moves to W's second entry
        again = get("a")
        again.age = 8
        again.save_sync()
    before = snapshot(rc)
    assert run(rc, call) == [b"OK", [written, 0]]
    assert snapshot(rc) == before
    check_keyspace(rc, Item)


def test_an_expiry_set_kept_and_removed(conn: Any, redis_client: Any) -> None:
    rc = redis_client
    keys = KeySpace(Item._meta)
    Item(id="a", name="x", age=1, tags=["p"], email="a@e.x", note="").save_sync()
    to_format3(rc, Item, "a")

    def save(doc: Item, **ttl: Any) -> None:
        with conn.transaction_sync() as tx:
            tx.save(doc, **ttl)

    doc = get("a")
    doc.age = 2
    save(doc, ttl=60)
    assert 0 < rc.pttl(keys.doc(0, "a")) <= 60_000
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    meta = rc.hgetall(keys.meta(0, "a"))
    assert meta[b"v"] == str(doc.version).encode() and b"r" not in meta
    check_keyspace(rc, Item)  # (the sweep record lists every index's entries)
    doc.name, doc.tags = "y", ["q", "r"]
    save(doc)  # (kept)
    assert rc.pttl(keys.doc(0, "a")) > 0
    assert rc.hget(keys.meta(0, "a"), "v") == str(doc.version).encode()
    check_keyspace(rc, Item)
    doc.age = 3
    save(doc, ttl=None)  # (removed: no sweep record)
    assert rc.pttl(keys.doc(0, "a")) == -1 and not rc.exists(keys.meta(0, "a"))
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    check_keyspace(rc, Item)
    # a delete of an expiring format-3 document takes its sweep record with it
    doc.age = 4
    save(doc, ttl=60)
    with conn.transaction_sync() as tx:
        tx.delete(doc)
    assert not rc.exists(keys.doc(0, "a"), keys.meta(0, "a"))
    assert rc.zcard(keys.ttl(0)) == 0
    check_keyspace(rc, Item)


def test_a_unique_conflict(conn: Any, redis_client: Any) -> None:
    rc = redis_client
    Item(id="a", name="x", age=1, tags=[], email="a@e.x", note="").save_sync()
    Item(id="b", name="y", age=2, tags=[], email="b@e.x", note="").save_sync()
    to_format3(rc, Item, "a")
    to_format3(rc, Item, "b")
    a, b = get("a"), get("b")
    before = snapshot(rc)
    a.email = "b@e.x"
    with pytest.raises(UniqueViolation):
        with conn.transaction_sync() as tx:
            tx.save(a)
    assert snapshot(rc) == before
    # the value released by an earlier operation of the same transaction is free
    b.email = "c@e.x"
    with conn.transaction_sync() as tx:
        tx.save(b)
        tx.save(a)
    assert payload(rc, Item, "a")["email"] == "b@e.x"
    assert rc.get(KeySpace(Item._meta).doc(0, "b"))[:1] == b"\x01"
    check_keyspace(rc, Item)


def test_a_row_without_entries_is_refused_then_read_again(conn: Any,
                                                          redis_client: Any) -> None:
    """An instance loaded as format 2 whose document was stored in format 3 since, at the
    same version: its update or delete sends no entries; the script refuses it with
    nothing written (ENTRIES), raised as a VersionConflict; run_transaction's next attempt
    reads it again (now as format 3) and commits."""
    rc = redis_client
    keys = KeySpace(Item._meta)
    Item(id="a", name="x", age=1, tags=["p"], email="a@e.x", note="").save_sync()
    Item(id="b", name="y", age=2, tags=[], email="b@e.x", note="").save_sync()
    a, b = get("a"), get("b")
    assert type(a.version) is int
    to_format3(rc, Item, "a")
    to_format3(rc, Item, "b")
    before = snapshot(rc)
    a.age = 5
    with pytest.raises(VersionConflict, match="format 3"):
        with conn.transaction_sync() as tx:
            tx.save(a)
    with pytest.raises(VersionConflict, match="format 3"):
        with conn.transaction_sync() as tx:
            tx.delete(b)
    assert snapshot(rc) == before
    # the script's reply itself
    request = prepared.request(a, _storage(a))
    assert request is not None
    reply = run(rc, layout(Item).tx(0, [], [request]))
    assert reply == [b"ENTRIES", 1, str(a.version).encode()]
    # with a sweep record (an expiring document: its meta hash has a version): the same
    rc.pexpire(keys.doc(0, "b"), 60_000)
    rc.zadd(keys.ttl(0), {sortable.id_key("b"): int(time.time() * 1000) + 60_000})
    data = payload(rc, Item, "b")
    fields = {manifests(Item)[name]: sortable.pack_list(members)
              for name, members in entries_of(Item, "b", data).items()}
    rc.hset(keys.meta(0, "b"), mapping={"v": str(b.version), **fields})
    before = snapshot(rc)
    reply = run(rc, layout(Item).tx(0, [], [WriteRequest("delete", "b", int(b.version))]))
    assert reply == [b"ENTRIES", 1, str(b.version).encode()]
    assert snapshot(rc) == before
    attempts = []

    def work(tx: Any) -> None:
        doc = tx.get(Item, "a")
        attempts.append(type(doc.version))
        doc.age = 6 if attempts[0] is Headed else 5
        tx.save(doc)
        tx.delete(tx.get(Item, "b"))

    conn.run_transaction_sync(work)
    assert attempts == [Headed]
    assert header(rc, Item, "a")[0] == get("a").version
    assert not rc.exists(keys.doc(0, "b"), keys.meta(0, "b"))
    check_keyspace(rc, Item)


def test_a_damaged_header_is_refused_with_nothing_written(conn: Any,
                                                          redis_client: Any) -> None:
    rc = redis_client
    keys = KeySpace(Item._meta)
    Item(id="a", name="x", age=1, tags=[], email="a@e.x", note="").save_sync()
    Item(id="b", name="y", age=2, tags=[], email="b@e.x", note="").save_sync()
    to_format3(rc, Item, "a")
    to_format3(rc, Item, "b")
    a, b = get("a"), get("b")
    raw = rc.get(keys.doc(0, "a"))
    rc.set(keys.doc(0, "a"), raw.replace(NEWEST, b"xyz"))
    before = snapshot(rc)
    a.age, b.age = 2, 3
    for rows in ([a, b], [b, a]):
        with pytest.raises(CorruptDocumentError):
            with conn.transaction_sync() as tx:
                for doc in rows:
                    tx.save(doc)
    with pytest.raises(CorruptDocumentError):
        with conn.transaction_sync() as tx:
            tx.delete(a)
    assert snapshot(rc) == before


# -- two-phase, over partitions ------------------------------------------------------------


class Wide(Document):
    name = StringField(indexed=True)
    amount = IntField(indexed=True, default=0)

    class Meta:
        collection = "f3t_wide"
        partitions = 4


def spread() -> list[str]:
    """One id per partition of Wide, in partition order."""
    keys = KeySpace(Wide._meta)
    found: dict[int, str] = {}
    n = 0
    while len(found) < Wide._meta.partitions:
        found.setdefault(keys.partition_of(f"w{n}"), f"w{n}")
        n += 1
    return [found[p] for p in sorted(found)]


def to_format3_at(rc: Any, id: str) -> int:
    """``to_format3`` for a document of Wide (its partition's keys)."""
    keys = KeySpace(Wide._meta)
    p = keys.partition_of(id)
    doc_key, meta_key = keys.doc(p, id), keys.meta(p, id)
    version, body = stored.split(rc.get(doc_key))
    assert rc.set(doc_key, b"\x01%d\x00%s\x00%s" % (version, NEWEST, body), keepttl=True)
    rc.delete(meta_key)
    return version


def check_partitions(rc: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """check_keyspace's checks over every partition of Wide (no expiry here)."""
    keys = KeySpace(Wide._meta)
    docs: dict[str, tuple[int, dict[str, Any]]] = {}
    problems: list[str] = []
    for p in range(Wide._meta.partitions):
        ids = {sortable.id_from_key(bytes(m)) for m in rc.zrange(keys.ids(p), 0, -1)}
        doc_keys = {bytes(k) for k in rc.scan_iter(match=keys.partition(p).doc_prefix + "*")}
        assert doc_keys == {keys.doc(p, id).encode() for id in ids}
        expected: dict[str, set[bytes]] = {index.name: set() for index in Wide._meta.indexes}
        for id in ids:
            raw = rc.get(keys.doc(p, id))
            version, body = stored.split(raw)
            data = jsoncodec.decode(body)
            docs[id] = (version, data)
            for name, members in entries_of(Wide, id, data).items():
                expected[name].update(m + sortable.id_key(id) for m in members)
            meta = {bytes(k): bytes(v) for k, v in rc.hgetall(keys.meta(p, id)).items()}
            if raw[:1] == b"\x01":
                if meta:
                    problems.append(f"{id}: format 3 without expiry has a meta hash {meta}")
            elif meta.get(b"v") != str(version).encode():
                problems.append(f"{id}: format 2 meta hash {meta}")
        for index in Wide._meta.indexes:
            actual = {bytes(m) for m in rc.zrange(keys.index(p, index.name), 0, -1)}
            if actual != expected[index.name]:
                problems.append(f"partition {p} {index.name}: missing "
                                f"{expected[index.name] - actual}, extra "
                                f"{actual - expected[index.name]}")
    assert not problems, "\n".join(problems)
    return docs


@pytest.fixture
def wide(conn: Any, redis_client: Any) -> list[str]:
    ids = spread()
    for id in ids:
        Wide(id=id, name="n", amount=100).save_sync()
    to_format3_at(redis_client, ids[0])
    to_format3_at(redis_client, ids[2])
    return ids


def transfer(conn: Any, ids: list[str], amount: int, timeout: float = 5.0) -> Any:
    """A transaction (not committed) moving ``amount`` from ids[0] (format 3) to ids[1]
    (format 2), deleting ids[2] (format 3) and inserting a document."""
    tx = conn.transaction_sync(timeout=timeout)
    first, second, third = (tx.get(Wide, id) for id in ids[:3])
    assert type(first.version) is Headed and type(second.version) is int
    first.amount -= amount
    first.name = "paid"
    second.amount += amount
    tx.save(first)
    tx.save(second)
    tx.delete(third)
    tx.save(Wide(id=ids[3] + "x", name="new", amount=amount))
    return tx


def test_two_phase_commit_over_a_format_3_document(conn: Any, redis_client: Any,
                                                   wide: list[str]) -> None:
    rc = redis_client
    keys = KeySpace(Wide._meta)
    with transfer(conn, wide, 30) as tx:
        pass
    assert tx is not None
    docs = check_partitions(rc)
    assert docs[wide[0]][1]["amount"] == 70 and docs[wide[1]][1]["amount"] == 130
    assert wide[2] not in docs and docs[wide[3] + "x"][1]["amount"] == 30
    raw = rc.get(keys.doc(keys.partition_of(wide[0]), wide[0]))
    assert raw[:1] == b"\x01"  # (kept format 3: W chains the write)
    assert stored.header(raw)[1][16:32] == NEWEST
    assert rc.get(keys.doc(keys.partition_of(wide[1]), wide[1]))[:1] == b"\x00"
    assert leftovers(rc) == {}
    # the instance stays format 3 for its next write
    again = Wide.objects.get_sync(id=wide[0])
    assert again is not None and type(again.version) is Headed
    again.amount = 1
    again.save_sync()
    check_partitions(rc)


def test_two_phase_abort_leaves_a_format_3_document_as_it_was(
        conn: Any, redis_client: Any, wide: list[str]) -> None:
    rc = redis_client
    tx = transfer(conn, wide, 30)
    other = Wide.objects.get_sync(id=wide[1])  # (a format-2 document, changed meanwhile)
    assert other is not None
    other.amount = 5
    other.save_sync()
    before = snapshot(rc)
    with pytest.raises(VersionConflict):
        tx.commit()
    assert snapshot(rc) == before
    assert leftovers(rc) == {}
    check_partitions(rc)
    # a delete of a format-3 document whose version moved: every partition aborts
    moved = Wide.objects.get_sync(id=wide[2])
    tx = transfer(conn, wide, 30)
    assert moved is not None
    moved.amount = 6
    moved.save_sync()
    assert rc.get(KeySpace(Wide._meta).doc(KeySpace(Wide._meta).partition_of(wide[2]),
                                           wide[2]))[:1] == b"\x01"
    before = snapshot(rc)
    with pytest.raises(VersionConflict):
        tx.commit()
    assert snapshot(rc) == before
    assert leftovers(rc) == {}
    check_partitions(rc)


@pytest.mark.parametrize("round_trips", [1, 2, 3, 4])
def test_a_coordinator_dying_at_each_phase_is_settled(
        conn: Any, redis_client: Any, wide: list[str], round_trips: int) -> None:
    rc = redis_client
    die_after(conn, transfer(conn, wide, 10, 0.3), round_trips)
    committed = round_trips >= 3  # (the commit round trip is the decision)
    assert leftovers(rc)
    time.sleep(0.4)  # past the deadline
    Wide.objects.sweep_sync()
    assert leftovers(rc) == {}
    docs = check_partitions(rc)
    if committed:
        assert docs[wide[0]][1]["amount"] == 90 and docs[wide[1]][1]["amount"] == 110
        assert wide[2] not in docs and wide[3] + "x" in docs
    else:
        assert docs[wide[0]][1]["amount"] == 100 and wide[2] in docs
        assert wide[3] + "x" not in docs
    keys = KeySpace(Wide._meta)
    assert rc.get(keys.doc(keys.partition_of(wide[0]), wide[0]))[:1] == b"\x01"


def _headed_damage(intent: bytes) -> dict[str, bytes]:
    """Damages of the entries a format-3 row's expected version carries in a stored intent
    (its first such row): each refused alike by tx_apply.lua and twophase._stored_call."""
    from quantumorm.backends.redis import wire

    flat = wire.unpack(intent)
    args = 2 + int(flat[1])
    at = next(args + 6 + 9 * n + 1 for n in range((len(flat) - args - 6) // 9)
              if b"\0" in flat[args + 6 + 9 * n + 1])
    version, _, given = flat[at].partition(b"\0")
    lists, pairs = given[1:], b"\x90"  # (the nested array: its lists' array, then pairs)

    def put(expected: bytes) -> bytes:
        damaged = list(flat)
        damaged[at] = expected
        return wire.pack(damaged)

    return {
        "a list fewer": put(version + b"\0\x92\x90" + pairs),
        "one part": put(version + b"\0\x91" + lists[:-1]),
        "pairs odd": put(version + b"\0\x92" + lists[:-1] + b"\x91\xa1a"),
        "a list a number": put(version + b"\0\x92\x92\x05\xa0" + pairs),
        # (strings, but not packed lists: "9:a" claims 9 bytes; a NUL in a short row)
        "a list that does not read": put(version + b"\0\x92\x92\xa39:a\xa0\x90"),
        "short, with a NUL": put(b"5\0\x92\x92\xa0\xa0\x90"),
        "a map": put(version + b"\0\x81\xa1a\xa1b"),
        "bytes after": put(flat[at] + b"\xa1x"),
        "version signed": put(b"+" + flat[at]),
        "not msgpack": put(version + b"\0\xc1"),
        "on a check row": wire.pack([*flat[:at - 1], b"check", *flat[at:]]),
    }


def rebuilt_intents(monkeypatch: Any) -> list[Any]:
    """The intents the two-phase commit makes again (``TwoPhase._rebuilt``: after a schema
    change), listed as they are made."""
    from quantumorm.backends.redis.twophase import TwoPhase

    rebuilt: list[Any] = []
    made_again = TwoPhase._rebuilt

    def counted(self: Any, keys: Any, args: Any) -> Any:
        made = yield from made_again(self, keys, args)
        rebuilt.append(made)
        return made

    monkeypatch.setattr(TwoPhase, "_rebuilt", counted)
    return rebuilt


def refuses_damaged_intents(conn: Any, rc: Any, record: Any, intent: str,
                            damages: dict[str, bytes]) -> None:
    """Each of ``damages`` (a name: the intent's damaged bytes) in place of the committed
    transaction's intent ``intent``: refused by the settle (DamagedTransactionError naming
    the intent) and by tx_apply.lua itself, nothing written."""
    from quantumorm import DamagedTransactionError
    from quantumorm.backends.redis.commands import Call, RedisPlan

    for how, damage in damages.items():
        rc.set(intent, damage)
        before = snapshot(rc)
        with pytest.raises(DamagedTransactionError) as raised:
            conn.run(lambda b: conn.backend.settle(record, None))
        assert raised.value.key == intent, how
        with pytest.raises(DamagedTransactionError):
            conn.run(lambda b: (yield RedisPlan((Call("tx_apply", (intent,), (b"",)),))))
        assert snapshot(rc) == before, how


def test_a_damaged_format_3_row_in_an_intent_is_refused(conn: Any, redis_client: Any,
                                                        wide: list[str]) -> None:
    """A committed transaction whose intent's format-3 row does not read is refused by
    the settle (DamagedTransactionError naming the intent) and by tx_apply.lua itself,
    nothing written; put back, it is applied."""
    from test_damaged_transaction import _record

    rc = redis_client
    keys = KeySpace(Wide._meta)
    die_after(conn, transfer(conn, wide, 10, 30.0), 3)  # (committed, not applied)
    record = _record(rc)
    (intent,) = [k.decode() for k in rc.scan_iter(
        f"{keys.tag(keys.partition_of(wide[0]))}:2pc:*")]
    good = rc.get(intent)
    refuses_damaged_intents(conn, rc, record, intent, _headed_damage(good))
    rc.set(intent, good)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert leftovers(rc) == {}
    docs = check_partitions(rc)
    assert docs[wide[0]][1]["amount"] == 90 and wide[2] not in docs


def test_an_intent_made_again_after_a_schema_change_keeps_format_3(
        conn: Any, redis_client: Any, wide: list[str], monkeypatch: Any) -> None:
    """The layout changed between the commit and the apply: the intent is made again with
    the schema of now (twophase._rebuilt), the format-3 row's loaded entries made again
    from its document (locked since its prepare checked it at that version): applied, the
    document stays format 3 and its entries move exactly."""
    from test_two_phase_commit import older_client

    rc = redis_client
    die_after(conn, transfer(conn, wide, 10, 30.0), 3)  # (committed, not applied)
    older_client(conn, monkeypatch)
    rebuilt = rebuilt_intents(monkeypatch)

    class Wider(Document):
        name = StringField(indexed=True)
        amount = IntField(indexed=True, default=0)
        note = StringField(indexed=True)

        class Meta:
            collection = "f3t_wide"
            partitions = 4

    keys = KeySpace(Wider._meta)
    # (the layout of the format-3 document's partition moves on: its apply is refused, and
    # the intent made again)
    z = next(f"z{n}" for n in range(999)
             if keys.partition_of(f"z{n}") == keys.partition_of(wide[0]))
    Wider(id=z, name="z", amount=1, note="n").save_sync()
    assert Wider.objects.sweep_sync() >= 0
    assert leftovers(rc) == {}
    raw = rc.get(keys.doc(keys.partition_of(wide[0]), wide[0]))
    assert raw[:1] == b"\x01" and jsoncodec.decode(stored.payload(raw))["amount"] == 90
    for p in range(Wider._meta.partitions):  # (name and amount: as check_partitions)
        for index in ("name", "amount"):
            members = {bytes(m) for m in rc.zrange(keys.index(p, index), 0, -1)}
            expected = set()
            for id in {sortable.id_from_key(bytes(m)) for m in rc.zrange(keys.ids(p), 0, -1)}:
                version, body = stored.split(rc.get(keys.doc(p, id)))
                data = jsoncodec.decode(body)
                expected.update(m + sortable.id_key(id)
                                for m in entries_of(Wide, id, data)[index])
            assert members == expected, (p, index)
    assert any(made is not None for made in rebuilt), "the intent was not made again"


@pytest.mark.parametrize("model", [FoldedMix, Placed])
def test_listed_indexes_in_transactions(conn: Any, redis_client: Any, model: Any) -> None:
    """A model with a listed index (case-folded, an embedded path): a transaction's writes
    keep exactly the listed fields in a format-3 document's meta hash, or the sweep record
    while it expires, and a row sent without entries is a conflict, nothing written."""
    rc, keys = redis_client, KeySpace(model._meta)
    for n, id in enumerate("abcd"):
        model(id=id, name=f"n{n}", age=n, **_listed_values(model, n)).save_sync()
    for id in "abcd":
        to_format3(rc, model, id)
    check_keyspace(rc, model)
    lf = {f.encode() for f in listed_fields(model)}

    def tx_save(doc: Any, **ttl: Any) -> None:
        with conn.transaction_sync() as tx:
            tx.save(doc, **ttl)

    # listed + derived field changed, no expiry
    a = model.get_sync(id="a")
    assert type(a.version) is Headed
    for name, value in _listed_values(model, 7).items():
        setattr(a, name, value)
    a.age = 70
    tx_save(a)
    assert header(rc, model, "a")[0] == a.version
    assert set(rc.hkeys(keys.meta(0, "a"))) == lf
    check_keyspace(rc, model)
    # only the listed field changed
    for name, value in _listed_values(model, 8).items():
        setattr(a, name, value)
    tx_save(a)
    check_keyspace(rc, model)
    # expiry set: sweep record
    a.age = 71
    tx_save(a, ttl=60)
    assert rc.hget(keys.meta(0, "a"), "v") == str(a.version).encode()
    check_keyspace(rc, model)
    # kept
    for name, value in _listed_values(model, 9).items():
        setattr(a, name, value)
    tx_save(a)
    assert rc.pttl(keys.doc(0, "a")) > 0
    check_keyspace(rc, model)
    # removed
    a.age = 72
    tx_save(a, ttl=None)
    assert rc.pttl(keys.doc(0, "a")) == -1
    assert set(rc.hkeys(keys.meta(0, "a"))) == lf
    check_keyspace(rc, model)
    # two documents, a delete of one with a listed index, a check of another
    b, c, d = (model.get_sync(id=i) for i in "bcd")
    for name, value in _listed_values(model, 11).items():
        setattr(b, name, value)
    with conn.transaction_sync() as tx:
        tx.get(model, "d")
        tx.save(b)
        tx.delete(c)
    assert not rc.exists(keys.doc(0, "c"), keys.meta(0, "c"))
    check_keyspace(rc, model)
    # a row sent without entries (loaded as format 2 then converted) -> conflict, nothing
    e = model(id="e", name="ne", age=5, **_listed_values(model, 5))
    e.save_sync()
    e = model.get_sync(id="e")
    to_format3(rc, model, "e")
    e.age = 55
    with pytest.raises(VersionConflict):
        tx_save(e)
    check_keyspace(rc, model)


def test_run_transaction_retries_after_entries(conn: Any, redis_client: Any) -> None:
    """The ENTRIES refusal is a VersionConflict that run_transaction answers by running the
    work again: the first attempt reads format 2, the doc is converted before commit."""
    rc = redis_client
    Item(id="a", name="x", age=1, tags=["p"], email="a@e.x", note="").save_sync()
    attempts: list[type] = []

    def work(tx: Any) -> None:
        doc = tx.get(Item, "a")
        attempts.append(type(doc.version))
        if len(attempts) == 1:
            to_format3(rc, Item, "a")
        doc.age = 7
        tx.save(doc)

    conn.run_transaction_sync(work)
    assert attempts == [int, Headed]
    assert header(rc, Item, "a")[0] == Item.objects.get_sync(id="a").version
    check_keyspace(rc, Item)
