"""Format 3 written (bench/format3.md, plan step 6): every insert stores a new document as
``\\x01<version>\\0<W>\\0<payload>``, W its write id alone, and writes a meta hash only
where format 3 keeps one: a sweep record (``v`` and every index's fields, no ``r``) for a
document with an expiry, the listed indexes' fields for a model with one, none otherwise.

* single inserts (an allocated id, a known id) and ``bulk_create`` (a batch written whole,
  a batch with refusals): the header, W, the meta hash exactly as the format says, and the
  whole keyspace consistent (test_format3_writes.check_keyspace);
* the version an insert gives back is a :class:`Headed` holding the data written, so the
  next save of the instance is one call whose old entries are the inserted ones, never the
  instance's values changed since (a list changed in place);
* an expiring insert's sweep record, and the sweep after its TTL: no entry left;
* ``verify()`` finds nothing on a collection written so;
* the schema is stored with format 3; ``writes.NEW_FORMAT = 2`` (the ``format2_writes``
  fixture, for tests of documents stored by earlier releases) stores format 2 still.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import MODES, call
from test_format3_writes import (
    Folded,
    Item,
    check_keyspace,
    entries_of,
    events,
    header,
    manifests,
    members_for,
    script_calls,
)

from quantumorm import (
    BulkWriteError,
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    jsoncodec,
)
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.headed import Headed
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.writes import WriteLayout
from quantumorm.schema import FORMAT


class Lasting(Document):
    """Every document expires (Meta.ttl): bulk_create's sweep records."""

    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        collection = "f3i_lasting"
        ttl = 100


class Counter(Document):
    """Ids allocated by the script (one partition)."""

    n = IntField(indexed=True)
    label = StringField(indexed=True)

    class Meta:
        collection = "f3i_counters"


def _values(id: str, **kw: Any) -> dict[str, Any]:
    values = {"name": "ann", "age": 30, "tags": ["x", "y"], "email": f"{id}@e.x", "note": "n"}
    values.update(kw)
    return values


def _is_write_id(w: bytes) -> bool:
    return len(w) == 16 and all(c in b"0123456789abcdef" for c in w)


@pytest.mark.parametrize("mode", MODES)
async def test_an_insert_stores_format_3_and_no_meta_hash(conn: Any, redis_client: Any,
                                                          mode: str) -> None:
    rc = redis_client
    doc = await call(Item(id="a", **_values("a")), "save", mode)
    version, w, payload = header(rc, Item, "a")
    assert version == doc.version and _is_write_id(w)
    assert jsoncodec.decode(payload)["name"] == "ann"
    assert not rc.exists(KeySpace(Item._meta).meta(0, "a"))
    assert members_for(rc, Item, "a") == entries_of(Item, "a", jsoncodec.decode(payload))
    assert events(rc, Item)[-1][b"w"] == w  # (the event's write id is the header's)
    check_keyspace(rc, Item)
    # an id the script allocates
    made = await call(Counter(n=5, label="five"), "save", mode)
    keys = KeySpace(Counter._meta)
    raw = rc.get(keys.doc(0, made.id))
    assert raw[:1] == b"\x01" and stored.header(raw)[0] == made.version
    assert not rc.exists(keys.meta(0, made.id))
    assert [d.id for d in await call(Counter.objects.filter(label="five"), "all", mode)] \
        == [made.id]


@pytest.mark.parametrize("mode", MODES)
async def test_the_inserted_version_carries_the_data_written(conn: Any, redis_client: Any,
                                                             mode: str) -> None:
    rc = redis_client
    doc = await call(Item(id="a", **_values("a", tags=["x", "y"])), "save", mode)
    assert type(doc.version) is Headed
    # the next save is one call: the entries it removes are the inserted ones, never the
    # instance's values, here a list changed in place since
    doc.tags.append("w")
    doc.tags.remove("x")
    doc.age = 31
    before = script_calls(rc)
    await call(doc, "save", mode)
    assert script_calls(rc) == before + 1
    assert type(doc.version) is Headed
    check_keyspace(rc, Item)
    found = await call(Item.objects.filter(tags__contains="w"), "all", mode)
    assert [d.id for d in found] == ["a"]
    assert await call(Item.objects.filter(tags__contains="x"), "count", mode) == 0
    assert await call(Item.objects.filter(age=30), "count", mode) == 0
    # a delete of the instance: its entries sent, all gone
    await call(doc, "delete", mode)
    assert members_for(rc, Item, "a") == {index.name: [] for index in Item._meta.indexes}
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_bulk_create_stores_format_3(conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    docs = [Item(id=f"b{i}", **_values(f"b{i}", age=i, tags=[f"t{i % 3}"])) for i in range(30)]
    await call(Item.objects, "bulk_create", mode, docs)
    for doc in docs:
        version, w, _ = header(rc, Item, doc.id)
        assert version == doc.version and _is_write_id(w)
        assert type(doc.version) is Headed
    assert len({header(rc, Item, d.id)[1] for d in docs}) == 30  # (a write id each)
    keys = KeySpace(Item._meta)
    assert not any(rc.exists(keys.meta(0, d.id)) for d in docs)
    check_keyspace(rc, Item)
    # a batch with a refusal (a taken id): its other documents as a whole batch's
    again = [Item(id="b0", **_values("x0")), Item(id="c1", **_values("c1", name="cat"))]
    with pytest.raises(BulkWriteError) as refused:
        await call(Item.objects, "bulk_create", mode, again)
    assert [(position, type(error)) for position, error in refused.value.errors] == [
        (0, DuplicateIdError)]
    assert header(rc, Item, "c1")[0] == again[1].version
    assert type(again[1].version) is Headed
    check_keyspace(rc, Item)
    # each saved again: one call each, the entries moved
    for doc in docs[:5]:
        doc.name = "renamed"
        await call(doc, "save", mode)
    assert await call(Item.objects.filter(name="renamed"), "count", mode) == 5
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_an_expiring_insert_keeps_a_sweep_record(conn: Any, redis_client: Any,
                                                       mode: str) -> None:
    rc = redis_client
    keys = KeySpace(Item._meta)
    doc = await call(Item(id="a", **_values("a")), "save", mode, ttl=100)
    assert rc.pttl(keys.doc(0, "a")) > 0
    meta = {bytes(k).decode(): bytes(v) for k, v in rc.hgetall(keys.meta(0, "a")).items()}
    assert meta["v"] == str(doc.version).encode() and "r" not in meta
    assert set(meta) == {"v", *manifests(Item).values()}
    check_keyspace(rc, Item)
    many = [Lasting(id=f"e{i}", name=f"n{i}", age=i) for i in range(3)]
    await call(Lasting.objects, "bulk_create", mode, many)
    lasting = KeySpace(Lasting._meta)
    for each in many:
        assert rc.pttl(lasting.doc(0, each.id)) > 0
        meta = {bytes(k).decode(): bytes(v)
                for k, v in rc.hgetall(lasting.meta(0, each.id)).items()}
        assert meta["v"] == str(each.version).encode()
        assert set(meta) == {"v", *manifests(Lasting).values()}
    check_keyspace(rc, Lasting)


@pytest.mark.parametrize("mode", MODES)
async def test_an_expired_inserted_document_leaves_no_entry(conn: Any, redis_client: Any,
                                                            mode: str) -> None:
    rc = redis_client
    keys = KeySpace(Item._meta)
    await call(Item(id="a", **_values("a", tags=["t1", "t2"])), "save", mode, ttl=0.05)
    await call(Item(id="c", **_values("c", name="cid")), "save", mode, ttl=0.05)
    other = await call(Item(id="b", **_values("b")), "save", mode)
    deadline = time.monotonic() + 5
    while (rc.exists(keys.doc(0, "a")) or rc.exists(keys.doc(0, "c"))) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    other.age = 2  # (a write sweeps what is due)
    await call(other, "save", mode)
    for gone in ("a", "c"):
        assert members_for(rc, Item, gone) == {index.name: [] for index in Item._meta.indexes}
        assert not rc.exists(keys.meta(0, gone))
    assert [d.id for d in await call(Item.objects.filter(name="ann"), "all", mode)] == ["b"]
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_a_listed_index_keeps_its_fields(conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    keys = KeySpace(Folded._meta)
    doc = await call(Folded(id="a", name="Ann"), "save", mode)
    assert stored.header(rc.get(keys.doc(0, "a"))) is not None
    listed = WriteLayout(Folded._meta, keys).listed()
    assert listed and set(rc.hgetall(keys.meta(0, "a"))) == listed
    check_keyspace(rc, Folded)
    await call(Folded.objects, "bulk_create", mode, [Folded(id="b", name="BOB")])
    assert set(rc.hgetall(keys.meta(0, "b"))) == listed
    check_keyspace(rc, Folded)
    doc.name = "ANNA"
    await call(doc, "save", mode)
    assert [d.id for d in await call(Folded.objects.filter(name__iexact="anna"), "all",
                                     mode)] == ["a"]
    check_keyspace(rc, Folded)


async def test_verify_finds_nothing_on_inserted_documents(conn: Any, redis_client: Any) -> None:
    await call(Item(id="a", **_values("a")), "save", "async")
    await call(Item(id="t", **_values("t")), "save", "async", ttl=100)
    await call(Item.objects, "bulk_create", "async",
               [Item(id=f"b{i}", **_values(f"b{i}")) for i in range(5)])
    await call(Folded(id="f", name="Fay"), "save", "async")
    for model in (Item, Folded):
        report = await call(model.objects, "verify", "async")
        assert report.ok, report


def test_the_schema_is_stored_with_format_3(conn: Any, redis_client: Any) -> None:
    assert FORMAT == 3
    Counter(n=1, label="one").save_sync()
    raw = redis_client.hgetall(KeySpace(Counter._meta).schema)
    assert raw, "no schema stored"
    assert raw[b"format"] == b"3"


def test_format2_writes_still_store_format_2(conn: Any, redis_client: Any,
                                             format2_writes: None) -> None:
    rc = redis_client
    doc = Item(id="a", **_values("a")).save_sync()
    keys = KeySpace(Item._meta)
    raw = rc.get(keys.doc(0, "a"))
    assert raw[:1] == b"\0" and stored.header(raw) is None
    meta = rc.hgetall(keys.meta(0, "a"))
    assert meta[b"v"] == str(doc.version).encode() and len(meta[b"r"]) == 32
    assert type(doc.version) is int
    Item.objects.bulk_create_sync([Item(id="b", **_values("b"))])
    assert rc.get(keys.doc(0, "b"))[:1] == b"\0" and rc.hexists(keys.meta(0, "b"), "r")
    check_keyspace(rc, Item)


class Squeezed(Document):
    """Every index listed: the model compresses its documents (Lua cannot read them)."""

    name = StringField(indexed=True)
    n = IntField(indexed=True)
    body = StringField()

    class Meta:
        collection = "f3i_squeezed"
        compress = {"codec": "zlib", "min_size": 1}


@pytest.mark.parametrize("mode", MODES)
async def test_persist_keeps_a_listed_indexs_fields(conn: Any, redis_client: Any,
                                                    mode: str) -> None:
    """A persist (or a touch, then a persist) removes the sweep record's version and the
    derived indexes' fields, never a listed index's: a compressed model's, all of them."""
    rc = redis_client
    keys = KeySpace(Squeezed._meta)
    listed = WriteLayout(Squeezed._meta, keys).listed()
    assert len(listed) == 2
    await call(Squeezed(id="a", name="ann", n=1, body="x" * 40), "save", mode, ttl=30)
    assert set(rc.hgetall(keys.meta(0, "a"))) == {b"v", *listed}
    doc = await call(Squeezed.objects, "get", mode, id="a")
    await call(doc, "persist", mode)
    assert rc.pttl(keys.doc(0, "a")) == -1
    assert set(rc.hgetall(keys.meta(0, "a"))) == listed
    check_keyspace(rc, Squeezed)
    await call(Squeezed(id="b", name="bob", n=2, body="y" * 40), "save", mode)
    doc = await call(Squeezed.objects, "get", mode, id="b")
    await call(doc, "touch", mode, 30)
    assert set(rc.hgetall(keys.meta(0, "b"))) == {b"v", *listed}
    await call(doc, "persist", mode)
    assert set(rc.hgetall(keys.meta(0, "b"))) == listed
    check_keyspace(rc, Squeezed)
    assert [d.id for d in await call(Squeezed.objects.filter(n__gte=1), "all", mode)] \
        == ["a", "b"]
