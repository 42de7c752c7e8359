"""Format 3's writes (bench/format3.md, plan step 3): save, delete, insert, insert_many and
restore accept a format-3 document (``\\x01<version>\\0<W>\\0<payload>``) and keep it in
format 3. Nothing writes format 3 yet (FORMAT is 2): the tests make one by hand from what
the ORM wrote (the key rewritten with the header, the meta hash deleted, or kept as a sweep
record, ``v`` and every index's fields without ``r``, for a document with an expiry).

* a save after ``get()``: the entries its loaded document has come from the client, the
  index entries move exactly, W chains the write ids (the newest first, the oldest
  dropped), the version and the change event as for format 2; a stale version is
  VERSION; a resent save is recognised at every position of W; a unique conflict;
* an instance loaded as format 2 whose document another writer converted since: the
  script answers ENTRIES, the client reads it and writes as loaded (or conflicts);
* delete as loaded and of whatever version is stored (``filter(id=).delete()``): the
  entries removed (client, or derived from the JSON in Lua), both keys gone; with an index
  Lua does not derive, the ENTRIES round trip; a compressed payload likewise;
* a damaged header: CorruptDocumentError, nothing written;
* an expiry set, kept and removed: the meta hash a sweep record exactly while the document
  expires, none otherwise; after the TTL, the sweep leaves no entry;
* wrong key types; insert over a taken format-3 id (resend: its version; else EXISTS);
* restore (a partition move's) of a format-3 document: its header as given;
* (transactions: test_format3_transactions.py)

After each, the whole keyspace is checked: every index holds exactly the entries of the
stored documents (read from their headers), and a meta hash exists exactly where the
format says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import time
from typing import Any

import pytest
from helpers import MODES, call, snapshot

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    EnumField,
    FloatField,
    CorruptDocumentError,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
    VersionConflict,
    WrongTypeError,
    compression,
    jsoncodec,
    sortable,
)
from quantumorm.backends.redis import commands, stored, twophase
try:  # (absent before step 3: the tests then fail on what they check, not on the import)
    from quantumorm.backends.redis.headed import Headed
except ImportError:  # pragma: no cover
    class Headed(int):  # type: ignore[no-redef]
        stored: dict[str, Any]
from quantumorm.backends.redis.calls import DeleteCall
from quantumorm.backends.redis.keys import KeySpace
try:  # (as Headed above)
    from quantumorm.backends.redis.headed import spec_items
except ImportError:  # pragma: no cover
    def spec_items(options: Any) -> list[list[bytes]]:  # type: ignore[misc]
        return [[b""] for _ in options.indexes]
from quantumorm.backends.redis.writes import WriteLayout, index_members
from quantumorm.engine import prepared
from quantumorm.engine.contract import Expiry, WriteRequest

NEWEST = b"00c0ffee12345678"
LONG_W = NEWEST + b"".join(b"%016x%016d" % (0xabc0 + k, 40 - k) for k in range(3))


class Item(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    email = StringField(unique=True)
    note = StringField()

    class Meta:
        collection = "f3w_items"
        indexes = [("name", "age")]
        changes = True


class Folded(Document):
    """An index Lua does not derive (case-folded): a delete of whatever version is stored
    reads the document first."""

    name = StringField(indexed=True)

    class Meta:
        collection = "f3w_folded"
        indexes = [{"fields": ["name"], "casefold": True}]


class Packed(Document):
    name = StringField(indexed=True)
    body = StringField()

    class Meta:
        collection = "f3w_packed"
        compress = {"codec": "zlib", "min_size": 1}


def _keys(model: Any) -> KeySpace:
    return KeySpace(model._meta)


def to_format3(rc: Any, model: Any, id: str, w: bytes = NEWEST) -> int:
    """The format-2 document ``id`` stored again in format 3 (version and payload kept, W
    ``w``, its expiry kept); its meta hash deleted, or kept as a sweep record (``v`` and
    every index's fields, no ``r``) when it expires. Its version."""
    keys = _keys(model)
    partition = keys.partition_of(id)
    doc_key, meta_key = keys.doc(partition, id), keys.meta(partition, id)
    version, payload = stored.split(rc.get(doc_key))
    assert rc.set(doc_key, b"\x01%d\x00%s\x00%s" % (version, w, payload), keepttl=True)
    if rc.pttl(doc_key) > 0:
        rc.hdel(meta_key, "r")
    else:  # (only the listed indexes' fields stay, if any)
        kept = listed_fields(model)
        gone = [k for k in rc.hkeys(meta_key) if bytes(k).decode() not in kept]
        if gone:
            rc.hdel(meta_key, *gone)
    return version


def listed_fields(model: Any) -> set[str]:
    """The meta fields of the model's listed indexes (bench/format3.md, section 1): what a
    format-3 document's meta hash keeps without an expiry."""
    return {manifests(model)[index.name] for index, spec in
            zip(model._meta.indexes, spec_items(model._meta), strict=True) if not spec}


def header(rc: Any, model: Any, id: str) -> tuple[int, bytes, bytes]:
    got = stored.header(rc.get(_keys(model).doc(0, id)))
    assert got is not None, "not a format-3 document"
    return got


def manifests(model: Any) -> dict[str, str]:
    """index name -> the meta field of its entries"""
    options = model._meta
    return {index.name: (f"x:{index.name}" if index.compound
                         else f"f:{options.fields[index.fields[0]].db_name}")
            for index in options.indexes}


def entries_of(model: Any, id: str, data: dict[str, Any]) -> dict[str, list[bytes]]:
    options = model._meta
    values = model.from_storage(id, 1, data)._values()
    return {index.name: sorted(index_members(options, index, values))
            for index in options.indexes}


def members_for(rc: Any, model: Any, id: str) -> dict[str, list[bytes]]:
    """Every index's members of the id ``id`` (its value encodings, the id key cut off)."""
    keys, id_key = _keys(model), sortable.id_key(id)
    out = {}
    for index in model._meta.indexes:
        out[index.name] = sorted(bytes(m)[:-len(id_key)] for m in
                                 rc.zrange(keys.index(0, index.name), 0, -1)
                                 if bytes(m).endswith(id_key))
    return out


def check_keyspace(rc: Any, model: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """The whole keyspace of ``model`` (one partition) is what the formats say: the id
    index names the documents; every index holds exactly the entries of the stored
    documents; a format-2 document's meta hash has its version and entries; a format-3
    document's exists only while it expires, as a sweep record (its version and every
    index's fields, no "r"), and it is scheduled exactly then. Returns the documents."""
    keys = _keys(model)
    docs: dict[str, tuple[int, dict[str, Any]]] = {}
    problems = []
    ids = {sortable.id_from_key(bytes(m)) for m in rc.zrange(keys.ids(0), 0, -1)}
    doc_keys = {bytes(k) for k in rc.scan_iter(match=keys.partition(0).doc_prefix + "*")}
    assert doc_keys == {keys.doc(0, id).encode() for id in ids}, (doc_keys, ids)
    expected: dict[str, set[bytes]] = {index.name: set() for index in model._meta.indexes}
    scheduled = {sortable.id_from_key(bytes(m)) for m in rc.zrange(keys.ttl(0), 0, -1)}
    for id in ids:
        raw = rc.get(keys.doc(0, id))
        version, payload = stored.split(raw)
        data = jsoncodec.decode(compression.decompress(payload))
        docs[id] = (version, data)
        entries = entries_of(model, id, data)
        for name, members in entries.items():
            expected[name].update(m + sortable.id_key(id) for m in members)
        meta = {bytes(k).decode(): bytes(v) for k, v in rc.hgetall(keys.meta(0, id)).items()}
        expiring = rc.pttl(keys.doc(0, id)) > 0
        if expiring != (id in scheduled):
            problems.append(f"{id}: expiring {expiring}, scheduled {id in scheduled}")
        if raw[:1] == b"\x01":
            if not expiring:  # (its listed indexes' fields only, exactly)
                want = {manifests(model)[name]: sortable.pack_list(entries[name])
                        for name in listed_names(model)}
                got = {k: sortable.pack_list(sorted(sortable.unpack_list(v)))
                       for k, v in meta.items()}
                if got != want:
                    problems.append(f"{id}: format 3 without expiry has a meta hash {meta}, "
                                    f"expected {want}")
                continue
            want = {"v": str(version).encode()}
            for name, field in manifests(model).items():
                want[field] = sortable.pack_list(entries[name])
            got = {k: (sortable.pack_list(sorted(sortable.unpack_list(v))) if k != "v" else v)
                   for k, v in meta.items()}
            if got != want:
                problems.append(f"{id}: sweep record {meta}, expected {want}")
        elif meta.get("v") != str(version).encode():
            problems.append(f"{id}: format 2 meta hash {meta}")
    for index in model._meta.indexes:
        actual = {bytes(m) for m in rc.zrange(keys.index(0, index.name), 0, -1)}
        if actual != expected[index.name]:
            problems.append(f"{index.name}: missing {expected[index.name] - actual}, "
                            f"extra {actual - expected[index.name]}")
    metas = {bytes(k) for k in rc.scan_iter(match=keys.partition(0).meta_prefix + "*")}
    for key in metas:
        if not any(key == keys.meta(0, id).encode() for id in ids):
            problems.append(f"a meta hash without document: {key!r}")
    assert not problems, "\n".join(problems)
    return docs


def listed_names(model: Any) -> list[str]:
    fields = listed_fields(model)
    return [name for name, field in manifests(model).items() if field in fields]


def script_calls(rc: Any) -> int:
    """Script calls the server has run (EVALSHA and EVAL)."""
    stats = rc.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def events(rc: Any, model: Any) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in rc.xrange(_keys(model).changes(0))]


async def _item(mode: str, id: str = "a", **kw: Any) -> Item:
    values = {"name": "ann", "age": 30, "tags": ["x", "y"], "email": f"{id}@e.x",
              "note": "n"}
    values.update(kw)
    return await call(Item(id=id, **values), "save", mode)


# -- save ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_save_after_get_moves_entries_and_chains_w(conn: Any, redis_client: Any,
                                                        mode: str) -> None:
    rc = redis_client
    await _item(mode, "a")
    await _item(mode, "b", name="bob", email="b@e.x")
    v0 = to_format3(rc, Item, "a", LONG_W)
    doc = await call(Item.objects, "get", mode, id="a")
    assert type(doc.version) is Headed and doc.version == v0
    doc.age, doc.tags = 31, ["y", "z"]
    calls_before = script_calls(rc)
    await call(doc, "save", mode)
    assert script_calls(rc) == calls_before + 1  # (its entries sent with it: one call)
    version, w, payload = header(rc, Item, "a")
    assert version == doc.version > v0
    # W: this write's id alone, then the previous newest's id with the old version, then
    # the older ones as they were, the oldest dropped (RECENT = 4)
    assert len(w) == 16 + 3 * 32
    assert w[16:48] == NEWEST + b"%016d" % v0
    assert w[48:] == LONG_W[16:16 + 64]
    assert jsoncodec.decode(payload)["age"] == 31
    assert members_for(rc, Item, "a") == entries_of(Item, "a", jsoncodec.decode(payload))
    assert not rc.exists(_keys(Item).meta(0, "a"))
    last = events(rc, Item)[-1]
    assert last[b"op"] == b"update" and last[b"v"] == str(version).encode()
    assert last[b"w"] == w[:16]
    check_keyspace(rc, Item)
    # the next save of the same instance sends its entries again (still format 3)
    assert type(doc.version) is Headed
    doc.name = "zed"
    await call(doc, "save", mode)
    version2, w2, _ = header(rc, Item, "a")
    assert w2[:16] != w[:16] and w2[16:48] == w[:16] + b"%016d" % version
    check_keyspace(rc, Item)
    # a list changed in place: the entries removed are the loaded ones, not the instance's
    doc.tags.append("w")
    doc.tags.remove("y")
    await call(doc, "save", mode)
    assert sorted(jsoncodec.decode(header(rc, Item, "a")[2])["tags"]) == ["w", "z"]
    check_keyspace(rc, Item)
    # an empty W (a document repair() re-stamped) gets this write's id alone
    to_format3(rc, Item, "b", b"")
    other = await call(Item.objects, "get", mode, id="b")
    other.note = "changed"  # (no index touched)
    await call(other, "save", mode)
    assert len(header(rc, Item, "b")[1]) == 16
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_save_with_a_stale_version_conflicts(conn: Any, redis_client: Any,
                                                   mode: str) -> None:
    rc = redis_client
    await _item(mode, "a")
    to_format3(rc, Item, "a")
    first = await call(Item.objects, "get", mode, id="a")
    second = await call(Item.objects, "get", mode, id="a")
    first.age = 40
    await call(first, "save", mode)
    before = rc.get(_keys(Item).doc(0, "a"))
    second.age = 50
    with pytest.raises(VersionConflict) as caught:
        await call(second, "save", mode)
    assert caught.value.actual == first.version
    assert rc.get(_keys(Item).doc(0, "a")) == before
    check_keyspace(rc, Item)


def layout(model: Any) -> WriteLayout:
    return WriteLayout(model._meta, KeySpace(model._meta))


def run(rc: Any, record: Any) -> Any:
    """A script call record run as it is (EVAL of the script's text)."""
    c = record.call()
    return rc.eval(commands.script(c.script).source, len(c.keys), *c.keys, *c.args)


def save_record(doc: Document, expected: int, write_id: str,
                expire: Expiry | int = Expiry.KEEP) -> Any:
    """The save.lua call of ``doc``'s changes, expecting ``expected`` (a Headed of the
    instance's loaded data when ``expected`` is one), with the write id ``write_id``."""
    request = prepared.request(doc, _storage(doc), expire)
    assert request is not None
    if isinstance(doc.version, Headed) and not isinstance(expected, Headed):
        expected = Headed.of(expected, doc.version.stored)
    request = WriteRequest("update", doc.id, expected, request.data, request.values,
                           request.changed, request.expire, request.raw)
    record = layout(type(doc)).save(request)
    record.write_id, record.wire = write_id, None
    return record


def _storage(doc: Document) -> dict[str, Any]:
    return {field.db_name: field.to_storage(getattr(doc, name))
            for name, field in doc._fields.items()}


@pytest.mark.parametrize("position", [0, 1, 2, 3])
async def test_a_resent_save_is_recognised_at_every_position_of_w(
        conn: Any, redis_client: Any, position: int) -> None:
    """A save sent again whose write id is in W at ``position`` (0: the newest, whose
    version is the header's; k: the k-th older, its version beside it) answers the version
    that write gave, nothing written; another write id with the same stale version:
    VERSION."""
    rc = redis_client
    await _item("async", "a")
    to_format3(rc, Item, "a", LONG_W)
    doc = await call(Item.objects, "get", "async", id="a")
    version, w, _ = header(rc, Item, "a")
    doc.age = 77
    write_id = w[:16] if position == 0 else w[16 + 32 * (position - 1):32 * position]
    expected = version if position == 0 else int(w[32 * position:32 * position + 16])
    before = snapshot(rc)
    reply = run(rc, save_record(doc, version - 1, write_id.decode()))
    assert reply[0] == b"OK" and int(reply[1]) == expected
    assert snapshot(rc) == before
    reply = run(rc, save_record(doc, version - 1, "feedfacefeedface"))
    assert reply == [b"VERSION", str(version).encode()]
    assert snapshot(rc) == before
    # a format-2 client (no entries sent) meeting it: the same answers
    plain = save_record(doc, version - 1, write_id.decode())
    plain.headed = b""
    reply = run(rc, plain)
    assert reply[0] == b"OK" and int(reply[1]) == expected
    assert snapshot(rc) == before
    check_keyspace(rc, Item)


@pytest.mark.usefixtures("format2_writes")  # (the instances are loaded as format 2)
@pytest.mark.parametrize("mode", MODES)
async def test_an_instance_loaded_as_format_2_and_converted_since(
        conn: Any, redis_client: Any, mode: str) -> None:
    """The script answers ENTRIES (nothing written) to a save or delete that sent no
    entries; the client reads the document and writes it as loaded, or conflicts when its
    version moved."""
    rc = redis_client
    await _item(mode, "a")
    await _item(mode, "b", email="b@e.x")
    doc = await call(Item.objects, "get", mode, id="a")
    assert type(doc.version) is int
    to_format3(rc, Item, "a")
    before = snapshot(rc)
    doc.age = 45
    plain = save_record(doc, doc.version, "0123456789abcdef")
    assert run(rc, plain) == [b"ENTRIES", str(doc.version).encode()]
    assert snapshot(rc) == before
    await call(doc, "save", mode)
    assert type(doc.version) is Headed
    assert header(rc, Item, "a")[0] == doc.version
    assert jsoncodec.decode(header(rc, Item, "a")[2])["age"] == 45
    check_keyspace(rc, Item)
    # a loaded delete likewise
    other = await call(Item.objects, "get", mode, id="b")
    to_format3(rc, Item, "b")
    assert await call(other, "delete", mode)
    assert not rc.exists(_keys(Item).doc(0, "b"), _keys(Item).meta(0, "b"))
    check_keyspace(rc, Item)
    # converted and written since: the usual conflict
    stale = await call(Item.objects, "get", mode, id="a")
    fresh = await call(Item.objects, "get", mode, id="a")
    fresh.age = 46
    await call(fresh, "save", mode)
    stale = Item.from_storage("a", int(stale.version), dict(stale.version.stored))
    stale.age = 47
    with pytest.raises(VersionConflict):
        await call(stale, "save", mode)
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_unique_conflict(conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    await _item(mode, "a")
    await _item(mode, "b", email="taken@e.x")
    to_format3(rc, Item, "a")
    doc = await call(Item.objects, "get", mode, id="a")
    before = snapshot(rc)
    doc.email, doc.age = "taken@e.x", 99
    with pytest.raises(UniqueViolation):
        await call(doc, "save", mode)
    assert snapshot(rc) == before
    doc.email = "free@e.x"
    await call(doc, "save", mode)
    check_keyspace(rc, Item)


# -- delete ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_delete_loaded_and_blind(conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    keys = _keys(Item)
    for id in "abc":
        await _item(mode, id, name=f"n{id}", tags=["x", id], email=f"{id}@e.x")
    for id in "abc":
        to_format3(rc, Item, id)
    doc = await call(Item.objects, "get", mode, id="a")
    calls_before = script_calls(rc)
    assert await call(doc, "delete", mode)
    assert script_calls(rc) == calls_before + 1  # (its entries sent with it: one call)
    assert not rc.exists(keys.doc(0, "a"), keys.meta(0, "a"))
    assert events(rc, Item)[-1][b"op"] == b"delete"
    check_keyspace(rc, Item)
    # whatever version is stored: derived from the JSON in Lua (one call)
    assert await call(Item.objects.filter(id="b"), "delete", mode) == 1
    assert not rc.exists(keys.doc(0, "b"), keys.meta(0, "b"))
    assert members_for(rc, Item, "b") == {index.name: [] for index in Item._meta.indexes}
    check_keyspace(rc, Item)
    # a soft delete: out of every index at once, its JSON kept aside, no meta hash
    doc = await call(Item.objects, "get", mode, id="c")
    assert await call(doc, "delete", mode, soft=True, ttl=100)
    assert not rc.exists(keys.doc(0, "c"), keys.meta(0, "c"))
    assert members_for(rc, Item, "c") == {index.name: [] for index in Item._meta.indexes}
    check_keyspace(rc, Item)
    await _item(mode, "c", name="nc", tags=["x", "c"], email="c2@e.x")
    to_format3(rc, Item, "c")
    # a stale loaded delete: VERSION, nothing written
    doc = await call(Item.objects, "get", mode, id="c")
    other = await call(Item.objects, "get", mode, id="c")
    other.age = 1
    await call(other, "save", mode)
    before = snapshot(rc)
    with pytest.raises(VersionConflict):
        await call(doc, "delete", mode)
    assert snapshot(rc) == before
    check_keyspace(rc, Item)


async def test_a_blind_delete_answers_entries(conn: Any, redis_client: Any) -> None:
    """delete.lua run by hand: a delete of whatever version is stored of a format-3
    document without a sweep record, sent without the model's spec, answers ENTRIES with
    its version, nothing written (the client reads it and deletes it as loaded)."""
    rc = redis_client
    await _item("async", "a", name='q"uote\\\\', tags=["é", "x"])
    version = to_format3(rc, Item, "a")
    before = snapshot(rc)
    blind = WriteRequest("delete", "a", 0)
    # (without the spec, ARGV[7]: what a caller sends for a model with a listed index)
    unspecified = layout(Item).delete(blind)
    unspecified = DeleteCall(*[getattr(unspecified, f.name) for f in
                               dataclasses.fields(DeleteCall) if f.name != "wire"])
    assert run(rc, unspecified) == [b"ENTRIES", str(version).encode()]
    assert snapshot(rc) == before
    # with a sweep record (an expiry), the record lists its entries: deleted by it
    keys = _keys(Item)
    rc.pexpire(keys.doc(0, "a"), 100_000)
    rc.zadd(keys.ttl(0), {sortable.id_key("a"): time.time() * 1000 + 100_000})
    stored_data = jsoncodec.decode(header(rc, Item, "a")[2])
    pairs = layout(Item).all_entries(Item.from_storage("a", version, stored_data)._values())[0]
    rc.hset(keys.meta(0, "a"), mapping={"v": str(version), **dict(zip(pairs[::2], pairs[1::2]))})
    check_keyspace(rc, Item)
    assert run(rc, layout(Item).delete(blind)) == [b"OK", str(version).encode()]
    assert not rc.exists(keys.doc(0, "a"), keys.meta(0, "a"))
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_blind_delete_of_other_models(conn: Any, redis_client: Any, mode: str) -> None:
    """A case-folded index, a compressed payload: the blind delete reads and deletes."""
    rc = redis_client
    keys = _keys(Folded)
    await call(Folded(id="a", name="MiXed"), "save", mode)
    await call(Folded(id="b", name="other"), "save", mode)
    to_format3(rc, Folded, "a")
    assert await call(Folded.objects.filter(id="a"), "delete", mode) == 1
    assert not rc.exists(keys.doc(0, "a"), keys.meta(0, "a"))
    check_keyspace(rc, Folded)
    await call(Packed(id="p", name="pp", body="x" * 50), "save", mode)
    to_format3(rc, Packed, "p")
    assert await call(Packed.objects.filter(id="p"), "delete", mode) == 1
    check_keyspace(rc, Packed)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Every(Document):
    """An index of every kind Lua derives (bench/format3.md, section 3), a compound one and
    a unique one: a delete of whatever version is stored derives them all in one call."""

    name = StringField(indexed=True)
    age = IntField(indexed=True)
    ok = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    nums = ArrayField(IntField(), indexed=True)
    score = FloatField(indexed=True)
    at = DateTimeField(indexed=True)
    price = DecimalField(indexed=True)
    color = EnumField(Color, indexed=True)
    email = StringField(unique=True)

    class Meta:
        collection = "f3w_every"
        indexes = [("name", "age"), ("ok", "color")]
        changes = True


def _every_values(n: int) -> dict[str, Any]:
    return [
        {"name": 'q"uote\\ \u00e9 \x00 nul \u2603', "age": -7, "ok": True,
         "tags": ["x", "x", "\u00e9", "x"], "nums": [3, 3, -1], "score": 0.1,
         "at": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456,
                                 tzinfo=datetime.timezone(datetime.timedelta(hours=5,
                                                                             minutes=30))),
         "price": decimal.Decimal("-12.340"), "color": Color.RED, "email": "a@e.x"},
        {"name": "", "age": 0, "ok": False, "tags": [], "nums": [], "score": -1e300,
         "at": datetime.datetime(1999, 12, 31, 23, 59, 59,
                                 tzinfo=datetime.timezone(datetime.timedelta(hours=-8))),
         "price": decimal.Decimal("1E+5"), "color": Color.BLUE, "email": "b\u00e9@e.x"},
        {"name": "n\u0000\U0001f600", "age": 2 ** 53, "ok": None, "tags": ["a\\b", "\""],
         "nums": [2 ** 40, -2 ** 40], "score": 1.5, "at": None, "price": None, "color": None,
         "email": None},
    ][n]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("soft", [False, True], ids=["delete", "trash"])
async def test_a_blind_delete_derives_every_kind_in_one_call(
        conn: Any, redis_client: Any, mode: str, soft: bool) -> None:
    """``filter(id=).delete()`` of a format-3 document without a sweep record, every index
    derived: its entries derived from the stored JSON in Lua, both keys deleted (or the
    JSON kept aside, a soft delete), the delete event emitted, in exactly one script call;
    the other documents' entries untouched."""
    rc = redis_client
    keys = _keys(Every)
    assert all(spec_items(Every._meta))
    for n, id in enumerate("abc"):
        await call(Every(id=id, **_every_values(n)), "save", mode)
    await call(Every(id="z", **{**_every_values(0), "email": "z@e.x"}), "save", mode)
    for id in "abcz":
        to_format3(rc, Every, id)
    check_keyspace(rc, Every)
    for id in "abc":
        version = header(rc, Every, id)[0]
        calls_before = script_calls(rc)
        if soft:  # (a soft delete of whatever version is stored: the layout's call)
            trashed = WriteRequest("delete", id, 0, expire=100_000)
            assert run(rc, layout(Every).delete(trashed)) == [b"OK", str(version).encode()]
        else:
            assert await call(Every.objects.filter(id=id), "delete", mode) == 1
        assert script_calls(rc) == calls_before + 1, id
        assert not rc.exists(keys.doc(0, id), keys.meta(0, id))
        assert members_for(rc, Every, id) == {index.name: [] for index in Every._meta.indexes}
        last = events(rc, Every)[-1]
        assert (last[b"op"], last[b"id"], last[b"v"]) == (
            b"delete", sortable.id_key(id), str(version).encode())
        if soft:
            assert rc.get(keys.trash(0, id))[:1] == b"\x01"
        check_keyspace(rc, Every)
    assert set(check_keyspace(rc, Every)) == {"z"}


@pytest.mark.parametrize("mode", MODES)
async def test_loaded_writes_of_every_kind_send_the_loaded_entries(
        conn: Any, redis_client: Any, mode: str) -> None:
    """A save after a load that changes every indexed field, then a delete after a load,
    of format-3 documents with an index of every kind (repeated array elements, NUL in a
    string, empty arrays, nulls, a compound and a unique index): each one script call, the
    loaded entries sent by the client, every index exact after each (the entries of the
    loaded values come from the bulk insert's memos: loaded values seen before, by a load
    or a delete, and values never seen)."""
    rc = redis_client
    keys = _keys(Every)
    for n, id in enumerate("abc"):
        await call(Every(id=id, **_every_values(n)), "save", mode)
    for id in "abc":
        to_format3(rc, Every, id)
    check_keyspace(rc, Every)
    for n, id in enumerate("abc"):  # (each one given the next one's values)
        doc = await call(Every.objects, "get", mode, id=id)
        for name, value in _every_values((n + 1) % 3).items():
            setattr(doc, name, value)
        doc.email = f"{id}-moved@e.x"
        calls_before = script_calls(rc)
        await call(doc, "save", mode)
        assert script_calls(rc) == calls_before + 1, id
        assert header(rc, Every, id)[0] == doc.version
        check_keyspace(rc, Every)
    for id in "abc":
        doc = await call(Every.objects, "get", mode, id=id)
        calls_before = script_calls(rc)
        assert await call(doc, "delete", mode)
        assert script_calls(rc) == calls_before + 1, id
        assert not rc.exists(keys.doc(0, id), keys.meta(0, id))
        assert members_for(rc, Every, id) == {index.name: [] for index in Every._meta.indexes}
        check_keyspace(rc, Every)


def _commands(rc: Any, names: tuple[str, ...]) -> dict[str, int]:
    stats = rc.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names}


@pytest.mark.parametrize("scheduled", [False, True], ids=["nothing-expires", "a-schedule"])
def test_a_loaded_write_asks_of_the_meta_hash_in_the_schedules_exists(
        conn: Any, redis_client: Any, scheduled: bool) -> None:
    """A save and a delete of a document loaded as format 3 ask whether its meta hash
    exists in the schedule's EXISTS: in a partition where nothing expires no TYPE of it is
    asked; where the schedule exists (another document expires), its TYPE tells which key
    answered, with no second EXISTS: never a command more than a format-2-era write."""
    rc = redis_client
    Item(id="a", name="n", age=1, tags=["x"], email="a@e.x").save_sync()
    if scheduled:
        Item(id="t", name="t", age=2, tags=[], email="t@e.x").save_sync(ttl=100)
    names = ("exists", "type")
    doc = Item.get_sync(id="a")
    doc.tags = ["y"]  # (one index touched: the common save's form)
    before = _commands(rc, names)
    doc.save_sync()
    after = _commands(rc, names)
    # (TYPE: the id index's, and the meta hash's only where the schedule exists)
    assert {n: after[n] - before[n] for n in names} == {
        "exists": 1, "type": 2 if scheduled else 1}
    check_keyspace(rc, Item)
    doc = Item.get_sync(id="a")
    before = _commands(rc, names)
    assert doc.delete_sync()
    after = _commands(rc, names)
    # (TYPE: the document's, and the meta hash's only where the schedule exists)
    assert {n: after[n] - before[n] for n in names} == {
        "exists": 1, "type": 2 if scheduled else 1}
    check_keyspace(rc, Item)


async def test_a_blind_delete_refuses_what_does_not_derive(conn: Any,
                                                          redis_client: Any) -> None:
    """delete.lua run by hand with the spec: a member absent from the JSON, a value in a
    form Python never writes, a member name written with an escape (``"\\u0061ge"`` is
    ``"age"`` again, which Python reads last): ENTRIES, nothing written."""
    rc = redis_client
    keys = _keys(Item)
    await _item("async", "a")
    version = to_format3(rc, Item, "a")
    raw = rc.get(keys.doc(0, "a"))
    head, payload = raw[:raw.index(b"\x00", raw.index(b"\x00") + 1) + 1], header(rc, Item, "a")[2]
    blind = WriteRequest("delete", "a", 0)
    for damaged in (payload.replace(b'"age":30', b'"agx":30'),
                    payload.replace(b'"age":30', b'"age":30.0'),
                    payload.replace(b'"age":30', b'"age":"30"'),
                    payload[:-1] + b',"\\u0061ge":31}'):
        assert damaged != payload
        rc.set(keys.doc(0, "a"), head + damaged)
        before = snapshot(rc)
        assert run(rc, layout(Item).delete(blind)) == [b"ENTRIES", str(version).encode()]
        assert snapshot(rc) == before
    rc.set(keys.doc(0, "a"), raw)
    assert run(rc, layout(Item).delete(blind)) == [b"OK", str(version).encode()]
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_a_blind_delete_reads_first_for_a_listed_or_compressed_model(
        conn: Any, redis_client: Any, mode: str) -> None:
    """A case-folded (listed) index: no spec is sent, the ENTRIES round trip (three
    calls: the delete, the read, the delete as loaded); a compressed model: every index
    listed (Lua cannot read the payload), no spec either, the same round trip. Both
    right."""
    rc = redis_client
    assert layout(Folded).blind_spec() == b""
    await call(Folded(id="a", name="MiXed"), "save", mode)
    await call(Folded(id="b", name="other"), "save", mode)
    to_format3(rc, Folded, "a")
    before = script_calls(rc)
    assert await call(Folded.objects.filter(id="a"), "delete", mode) == 1
    assert script_calls(rc) == before + 2  # (the delete, ENTRIES; the delete as loaded)
    check_keyspace(rc, Folded)
    assert layout(Packed).blind_spec() == b""
    await call(Packed(id="p", name="pp", body="x" * 50), "save", mode)
    to_format3(rc, Packed, "p")
    before = script_calls(rc)
    assert await call(Packed.objects.filter(id="p"), "delete", mode) == 1
    assert script_calls(rc) == before + 2
    assert not rc.exists(_keys(Packed).doc(0, "p"))
    check_keyspace(rc, Packed)


# -- damaged headers, wrong types ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_header_is_refused_with_nothing_written(
        conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    keys = _keys(Item)
    await _item(mode, "a")
    to_format3(rc, Item, "a")
    doc = await call(Item.objects, "get", mode, id="a")
    doc.age = 5
    v = str(int(doc.version)).encode()
    older = NEWEST + b"abcdef0123456789"  # (an older write's id, then its version slot)
    for damage in (b"\x01" + v + b"\x00abc\x00{}",
                   b"\x01" + v + b"\x00" + NEWEST + b"{}",
                   # (an older write's version with hex letters, or all zero; a version of
                   # more than 16 digits: header_of's written-out copies refuse them too)
                   b"\x01" + v + b"\x00" + older + b"00000000000000ab\x00{}",
                   b"\x01" + v + b"\x00" + older + b"0" * 16 + b"\x00{}",
                   b"\x01" + b"1" * 17 + b"\x00" + NEWEST + b"\x00{}"):
        rc.set(keys.doc(0, "a"), damage)
        before = snapshot(rc)
        with pytest.raises(CorruptDocumentError):
            await call(doc, "save", mode)
        with pytest.raises(CorruptDocumentError):
            await call(doc, "delete", mode)
        with pytest.raises(CorruptDocumentError):
            await call(Item.objects.filter(id="a"), "delete", mode)
        assert snapshot(rc) == before
        # (a format-2 client's save too)
        plain = save_record(doc, int(doc.version), "0123456789abcdef")
        plain.headed = b""
        assert run(rc, plain) == [b"CORRUPT"]
        assert snapshot(rc) == before


@pytest.mark.parametrize("mode", MODES)
async def test_wrong_key_types(conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    keys = _keys(Item)
    await _item(mode, "a")
    to_format3(rc, Item, "a")
    doc = await call(Item.objects, "get", mode, id="a")
    doc.age = 5
    rc.sadd(keys.meta(0, "a"), "x")
    before = snapshot(rc)
    with pytest.raises(WrongTypeError):
        await call(doc, "save", mode)
    with pytest.raises(WrongTypeError):
        await call(doc, "delete", mode)
    assert snapshot(rc) == before
    rc.delete(keys.meta(0, "a"), keys.index(0, "age"))
    rc.sadd(keys.index(0, "age"), "x")
    before = snapshot(rc)
    with pytest.raises(WrongTypeError):
        await call(doc, "save", mode)
    assert snapshot(rc) == before


# -- expiry ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_expiry_set_kept_and_removed(conn: Any, redis_client: Any, mode: str) -> None:
    rc = redis_client
    keys = _keys(Item)
    await _item(mode, "a")
    to_format3(rc, Item, "a")
    doc = await call(Item.objects, "get", mode, id="a")
    doc.age = 31
    await call(doc, "save", mode, ttl=100)
    assert rc.pttl(keys.doc(0, "a")) > 0
    meta = rc.hgetall(keys.meta(0, "a"))
    assert meta[b"v"] == str(doc.version).encode() and b"r" not in meta
    check_keyspace(rc, Item)
    doc.name = "kept"  # (the expiry kept: the sweep record follows the entries)
    await call(doc, "save", mode)
    assert rc.pttl(keys.doc(0, "a")) > 0
    assert rc.hget(keys.meta(0, "a"), "v") == str(doc.version).encode()
    check_keyspace(rc, Item)
    doc.age = 33
    await call(doc, "save", mode, ttl=None)  # (persist: no expiry, no meta hash)
    assert rc.pttl(keys.doc(0, "a")) == -1
    assert not rc.exists(keys.meta(0, "a"))
    assert header(rc, Item, "a")[0] == doc.version
    check_keyspace(rc, Item)


@pytest.mark.parametrize("mode", MODES)
async def test_an_expired_format_3_document_leaves_no_entry(conn: Any, redis_client: Any,
                                                            mode: str) -> None:
    rc = redis_client
    keys = _keys(Item)
    await _item(mode, "a")
    await _item(mode, "b", email="b@e.x")
    to_format3(rc, Item, "a")
    doc = await call(Item.objects, "get", mode, id="a")
    doc.tags = ["t1", "t2"]
    await call(doc, "save", mode, ttl=0.05)
    deadline = time.monotonic() + 5
    while rc.exists(keys.doc(0, "a")) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    # a write of another document sweeps what is due
    other = await call(Item.objects, "get", mode, id="b")
    other.age = 2
    await call(other, "save", mode)
    assert members_for(rc, Item, "a") == {index.name: [] for index in Item._meta.indexes}
    assert not rc.exists(keys.meta(0, "a"))
    check_keyspace(rc, Item)


# -- inserts over a taken format-3 id, restore -------------------------------------


async def test_insert_over_a_taken_format_3_id(conn: Any, redis_client: Any) -> None:
    rc = redis_client
    await _item("async", "a")
    version = to_format3(rc, Item, "a", LONG_W)
    before = snapshot(rc)
    new = Item(id="a", name="x", age=1, tags=[], email="z@e.x", note="")
    request = prepared.request(new, _storage(new))
    assert request is not None
    for write_id, position in ((NEWEST, 0), (LONG_W[48:64], 2)):
        record = layout(Item).save(request)
        record.write_id, record.wire = write_id.decode(), None
        reply = run(rc, record)
        expected = version if position == 0 else int(LONG_W[64:80])
        assert reply[0] == b"OK" and int(reply[1]) == expected
        assert snapshot(rc) == before
    with pytest.raises(DuplicateIdError):
        await call(new, "save", "async")
    # insert_many: the same resend check (check_version), else EXISTS
    many = layout(Item).insert_many(0, [request])
    assert run(rc, many) == [[b"EXISTS"]]
    many.documents[0].write_id = LONG_W[16:32].decode()
    assert run(rc, many) == [[b"OK", int(LONG_W[32:48])]]
    assert snapshot(rc) == before
    assert snapshot(rc) == before
    check_keyspace(rc, Item)


def test_restore_of_a_format_3_document(conn: Any, redis_client: Any) -> None:
    rc = redis_client
    keys = _keys(Item)
    Item(id="a", name="r", age=3, tags=["q"], email="r@e.x", note="").save_sync()
    version = to_format3(rc, Item, "a", LONG_W)
    raw = rc.get(keys.doc(0, "a"))
    data = jsoncodec.decode(stored.payload(raw))
    rc.delete(keys.doc(0, "a"))
    for index in Item._meta.indexes:
        rc.delete(keys.index(0, index.name))
    rc.zrem(keys.ids(0), sortable.id_key("a"))
    doc = Item.from_storage("a", version, data)
    assert run(rc, _Restore(layout(Item).restore_call("a", raw, version, doc._values(), None))
               ) == [b"OK"]
    assert rc.get(keys.doc(0, "a")) == raw
    assert not rc.exists(keys.meta(0, "a"))
    check_keyspace(rc, Item)
    # a resumed move finds it there at its version
    assert run(rc, _Restore(layout(Item).restore_call("a", raw, version, doc._values(), None))
               ) == [b"EXISTS", str(version).encode()]
    # with an expiry: a sweep record
    rc.delete(keys.doc(0, "a"))
    for index in Item._meta.indexes:
        rc.delete(keys.index(0, index.name))
    rc.zrem(keys.ids(0), sortable.id_key("a"))
    assert run(rc, _Restore(layout(Item).restore_call("a", raw, version, doc._values(),
                                                      100_000))) == [b"OK"]
    assert rc.get(keys.doc(0, "a")) == raw and rc.pttl(keys.doc(0, "a")) > 0
    check_keyspace(rc, Item)


class _Restore:
    def __init__(self, c: Any) -> None:
        self.c = c

    def call(self) -> Any:
        return self.c


# -- listed indexes (bench/format3.md, section 1): a case-folded index, a path into an
# embedded document; their fields stay in a format-3 document's meta hash ----------------


class FoldedMix(Document):
    name = StringField(indexed=True)  # (derived)
    title = StringField()
    age = IntField(indexed=True)  # (derived)

    class Meta:
        collection = "f3w_foldedmix"
        indexes = [{"fields": ["title"], "casefold": True}]  # (listed)


class Place(EmbeddedDocument):
    city = StringField()


class Placed(Document):
    name = StringField(indexed=True)  # (derived)
    age = IntField(indexed=True)  # (derived)
    address = EmbeddedDocumentField(Place)

    class Meta:
        collection = "f3w_placed"
        indexes = ["address__city"]  # (listed)


def _listed_values(model: Any, n: int) -> dict[str, Any]:
    if model is FoldedMix:
        return {"title": f"Title{n}"}
    return {"address": Place(city=f"City{n}")}


def _expire_now(rc: Any, model: Any, id: str) -> None:
    keys = _keys(model)
    rc.pexpire(keys.doc(0, id), 1)
    rc.zadd(keys.ttl(0), {sortable.id_key(id): 1})
    deadline = time.monotonic() + 5
    while rc.exists(keys.doc(0, id)) and time.monotonic() < deadline:
        time.sleep(0.002)


@pytest.mark.parametrize("model", [FoldedMix, Placed])
def test_listed_indexes_through_every_write_of_a_format_3_document(
        conn: Any, redis_client: Any, model: Any) -> None:
    rc, keys = redis_client, _keys(model)
    assert listed_names(model) and len(listed_names(model)) < len(model._meta.indexes)
    for n, id in enumerate("abc"):
        model(id=id, name=f"n{n}", age=n, **_listed_values(model, n)).save_sync()
    for id in "abc":
        to_format3(rc, model, id)
    check_keyspace(rc, model)
    # a save of a listed and a derived field: format 3 kept, the listed fields rewritten
    doc = model.get_sync(id="a")
    for name, value in _listed_values(model, 7).items():
        setattr(doc, name, value)
    doc.age = 70
    doc.save_sync()
    assert header(rc, model, "a")[0] == doc.version
    assert set(rc.hkeys(keys.meta(0, "a"))) == {f.encode() for f in listed_fields(model)}
    check_keyspace(rc, model)
    # patches (filter(id=).update): a derived index (derived in Lua), then a listed one
    # (ENTRIES: read and written whole)
    assert model.objects.filter(id="a").update_sync(age=71) == 1
    check_keyspace(rc, model)
    assert model.objects.filter(id="a").update_sync(**_listed_values(model, 8)) == 1
    assert header(rc, model, "a")[2].count(b"8") >= 1
    check_keyspace(rc, model)
    # touch: a sweep record (v and every index's fields) where only the listed fields were
    doc = model.get_sync(id="a")
    assert doc.touch_sync(60) is True
    assert rc.hget(keys.meta(0, "a"), "v") == str(header(rc, model, "a")[0]).encode()
    check_keyspace(rc, model)
    # a patch and a save while it expires: the sweep record follows
    assert model.objects.filter(id="a").update_sync(name="renamed") == 1
    check_keyspace(rc, model)
    doc = model.get_sync(id="a")
    doc.age = 72
    doc.save_sync()
    check_keyspace(rc, model)
    # persist: the listed fields stay, the rest of the sweep record goes
    assert doc.persist_sync() is True
    assert rc.pttl(keys.doc(0, "a")) == -1
    assert set(rc.hkeys(keys.meta(0, "a"))) == {f.encode() for f in listed_fields(model)}
    check_keyspace(rc, model)
    # a save with an expiry, a save that removes it
    doc.age = 73
    doc.save_sync(ttl=100)
    check_keyspace(rc, model)
    doc.age = 74
    doc.save_sync(ttl=None)
    check_keyspace(rc, model)
    assert header(rc, model, "a")[0] == doc.version
    # delete as loaded (b) and of whatever version is stored (c)
    model.get_sync(id="b").delete_sync()
    assert model.objects.filter(id="c").delete_sync() == 1
    assert not rc.exists(keys.meta(0, "b"), keys.meta(0, "c"))
    check_keyspace(rc, model)
    # touched, expired and swept: no entry left, no meta hash
    assert model.get_sync(id="a").touch_sync(60) is True
    check_keyspace(rc, model)
    _expire_now(rc, model, "a")
    model.objects.sweep_sync()
    assert not rc.exists(keys.meta(0, "a"))
    assert members_for(rc, model, "a") == {index.name: [] for index in model._meta.indexes}
    check_keyspace(rc, model)


@pytest.mark.parametrize("model", [Item, FoldedMix])
@pytest.mark.parametrize("ttl", [None, 100])
def test_a_plain_int_version_saves_a_format_3_document_as_format_3(
        conn: Any, redis_client: Any, model: Any, ttl: Any) -> None:
    """A version without its header (a cached read's Row: a plain int) of a format-3
    document, whose sweep record's "v" is that version: the script reads the document and
    answers ENTRIES, the client reads it and writes it in format 3 (W kept), never format 2."""
    rc, keys = redis_client, _keys(model)
    extra = {"tags": ["x"], "email": "a@e.x"} if model is Item else _listed_values(model, 1)
    model(id="a", name="ann", age=1, **extra).save_sync(ttl=ttl)
    version = to_format3(rc, model, "a", LONG_W)
    doc = model.get_sync(id="a")
    doc._version = int(doc._version)  # (as the cache gives it)
    assert type(doc.version) is int
    doc.name = "bob"
    doc.save_sync()
    got = header(rc, model, "a")
    assert got[0] == doc.version > version
    assert got[1][16:48] == NEWEST + b"%016d" % version  # (W chained, not lost)
    assert (rc.pttl(keys.doc(0, "a")) > 0) == (ttl is not None)
    check_keyspace(rc, model)
    # a stale plain version: VersionConflict, nothing written
    stale = model.get_sync(id="a")
    stale._version = int(version)
    stale.name = "zed"
    before = rc.get(keys.doc(0, "a"))
    with pytest.raises(VersionConflict):
        stale.save_sync()
    assert rc.get(keys.doc(0, "a")) == before


async def test_a_resend_under_a_transactions_lock_is_recognised_from_the_header(
        conn: Any, redis_client: Any) -> None:
    """A save or an insert sent again (its write id in W) while a prepared transaction holds
    the format-3 document answers the version it gave, as with "r"; any other write is
    LOCKED, nothing written (before: LOCKED for the resend too)."""
    rc = redis_client
    keys = _keys(Item)
    await _item("async", "a")
    version = to_format3(rc, Item, "a", LONG_W)
    doc = await call(Item.objects, "get", "async", id="a")
    doc.age = 77
    record_key = twophase.record_key("qorm", "t1")
    rc.hset(twophase.locks_key(keys.tag(0)), sortable.id_key("a"), record_key)
    before = snapshot(rc)
    for headed in (True, False):  # (with the loaded entries, and as a format-2 client)
        resend = save_record(doc, version - 1, LONG_W[16:32].decode())
        other = save_record(doc, version, "feedfacefeedface")
        if not headed:
            resend.headed = other.headed = b""
        reply = run(rc, resend)
        if headed:
            assert reply[0] == b"OK" and int(reply[1]) == int(LONG_W[32:48])
        else:  # (not looked for under the lock: LOCKED, and found once it is gone, below)
            assert reply == [b"LOCKED", record_key.encode()]
        assert run(rc, other) == [b"LOCKED", record_key.encode()]
        assert snapshot(rc) == before
    rc.hdel(twophase.locks_key(keys.tag(0)), sortable.id_key("a"))
    reply = run(rc, resend)  # (the format-2 client's resend, the lock gone)
    assert reply[0] == b"OK" and int(reply[1]) == int(LONG_W[32:48])
    rc.hset(twophase.locks_key(keys.tag(0)), sortable.id_key("a"), record_key)
    assert snapshot(rc) == before
    new = Item(id="a", name="x", age=1, tags=[], email="z@e.x", note="")
    request = prepared.request(new, _storage(new))
    assert request is not None
    for write_id, answer in ((NEWEST, [b"OK", version]),
                             (b"feedfacefeedface", [b"LOCKED", record_key.encode()])):
        insert = layout(Item).save(request)
        insert.write_id, insert.wire = write_id.decode(), None
        reply = run(rc, insert)
        assert reply[:2] == answer
        assert snapshot(rc) == before
    # a format-2 document under the lock: as before (its "r")
    await _item("async", "b", email="b@e.x")
    plain = await call(Item.objects, "get", "async", id="b")
    rc.hset(twophase.locks_key(keys.tag(0)), sortable.id_key("b"), record_key)
    plain.age = 5
    assert run(rc, save_record(plain, int(plain.version), "feedfacefeedface")) == [
        b"LOCKED", record_key.encode()]
