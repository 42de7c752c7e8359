"""A document whose meta hash does not read (a damaged list of index entries, a damaged
version, another type at its key): every write of it is refused with a typed error that
names the key and the field, with nothing written; ``verify()`` reports it as
``damaged_meta`` instead of failing; ``repair()`` rebuilds the meta hash and the index
entries from the document (the entries the damaged record listed are found in the walk of
every index, and removed), and the document works again.

Damage is made by hand, as test_sweep_damaged.py and test_lua_unpack_list.py make it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

from quantumorm import (
    BulkWriteError,
    CorruptDocumentError,
    DamagedMetaError,
    Document,
    IntField,
    StringField,
    WrongTypeError,
    sortable,
)
from quantumorm.backends.redis.keys import KeySpace

# (format-2 documents: what these tests damage is their meta hash, which format 3 keeps
# only as a sweep record)
pytestmark = pytest.mark.usefixtures("format2_writes")


class Pet(Document):
    n = IntField(indexed=True)
    name = StringField(indexed=True)
    code = StringField(unique=True)

    class Meta:
        collection = "dm_pets"
        indexes = [("name", "n")]


KEYS = KeySpace(Pet._meta)
META = KEYS.meta(0, "a")

#: damage to one list of entries (the "f:n" field, which every write of ``n`` reads)
#: (a length padded to 13 digits reads as a number in Lua and Python alike, but sortable's
#: unpack_list, which verify() reads with, refuses more than 12: the scripts refuse it too)
LIST_DAMAGE = ("stray byte", "sign", "blank", "cut short", "long length")
#: damage to the version ("+13" and " 13" would read as 13 to int() and tonumber())
VERSION_DAMAGE = ("version sign", "version blank", "version text")


def damage(redis_client: Any, how: str, id: str = "a") -> None:
    meta = KEYS.meta(0, id)
    listed = redis_client.hget(meta, "f:n")
    version = redis_client.hget(meta, "v")
    assert listed and version
    if how == "stray byte":
        redis_client.hset(meta, "f:n", listed + b"x")
    elif how == "sign":
        redis_client.hset(meta, "f:n", b"+" + listed)
    elif how == "blank":
        redis_client.hset(meta, "f:n", b" " + listed)
    elif how == "cut short":
        redis_client.hset(meta, "f:n", listed[:-1])
    elif how == "long length":
        size, _, rest = listed.partition(b":")
        redis_client.hset(meta, "f:n", size.rjust(13, b"0") + b":" + rest)
    elif how == "version sign":
        redis_client.hset(meta, "v", b"+" + version)
    elif how == "version blank":
        redis_client.hset(meta, "v", b" " + version)
    elif how == "version text":
        redis_client.hset(meta, "v", b"garbage")
    else:
        assert how == "foreign type"
        redis_client.delete(meta)
        redis_client.set(meta, b"not ours")


async def _seed(mode: str) -> Pet:
    await call(Pet.objects, "bulk_create", mode, [Pet(id="a", n=13, name="x", code="ca"),
                                                  Pet(id="b", n=13, name="x", code="cb")])
    doc: Pet = await call(Pet.objects, "get", mode, id="a")
    return doc


def _expected_field(how: str) -> str:
    return "v" if how in VERSION_DAMAGE else "f:n"


async def _write(conn: Any, mode: str, doc: Pet, op: str) -> None:
    if op == "save":
        doc.n = 14
        await call(doc, "save", mode)
    elif op == "delete":
        await call(doc, "delete", mode)
    elif op == "patch":
        await call(Pet.objects.filter(id="a"), "update", mode, n=5)
    elif op == "delete where":
        await call(Pet.objects.filter(id="a"), "delete", mode)
    elif mode == "sync":  # a transaction: save, delete, or a read of it and a save of b
        def block() -> None:
            with conn.transaction_sync() as tx:
                _queue(tx, doc, op, tx.get(Pet, "a"))
        await asyncio.to_thread(block)
    else:
        async with conn.transaction() as tx:
            _queue(tx, doc, op, await tx.get(Pet, "a"))


def _queue(tx: Any, doc: Pet, op: str, read: Pet | None) -> None:
    if op == "transaction save":
        doc.n = 14
        tx.save(doc)
    elif op == "transaction delete":
        tx.delete(doc)
    else:  # (the read of "a" is checked at commit: its version must be the one read)
        assert op == "transaction read" and read is not None
        tx.save(Pet(id="c", n=1, name="z", code="cc"))


def _unwrap(error: BaseException) -> BaseException:
    if isinstance(error, BulkWriteError):  # (a patch of several ids reports each)
        assert len(error.errors) == 1
        return error.errors[0][1]
    return error


@pytest.mark.parametrize("how", LIST_DAMAGE + VERSION_DAMAGE)
@pytest.mark.parametrize("op", ["save", "delete", "patch", "delete where", "transaction save",
                                "transaction delete", "transaction read"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_write_of_a_damaged_document_is_refused_typed_with_nothing_written(
        conn: Any, redis_client: Any, mode: str, op: str, how: str) -> None:
    doc = await _seed(mode)
    damage(redis_client, how)
    if op == "transaction read" and how in LIST_DAMAGE:
        # a read checks the version alone (see the version damages): it commits
        await _write(conn, mode, doc, op)
        assert (await call(Pet.objects, "get", mode, id="c")).n == 1
        return
    before = snapshot(redis_client)
    with pytest.raises((DamagedMetaError, BulkWriteError)) as raised:
        await _write(conn, mode, doc, op)
    error = _unwrap(raised.value)
    assert isinstance(error, DamagedMetaError) and isinstance(error, CorruptDocumentError)
    assert error.key == META and error.field == _expected_field(how)
    assert error.model == "Pet" and error.id == "a"
    assert META in str(error) and repr(error.field) in str(error)
    assert snapshot(redis_client) == before  # nothing written
    # the other document of the same values is untouched by the refusal, and writable
    other = await call(Pet.objects, "get", mode, id="b")
    other.n = 15
    await call(other, "save", mode)


@pytest.mark.parametrize("mode", MODES)
async def test_a_foreign_type_at_the_meta_key_is_refused_typed(
        conn: Any, redis_client: Any, mode: str) -> None:
    doc = await _seed(mode)
    damage(redis_client, "foreign type")
    before = snapshot(redis_client)
    for op in ("save", "delete", "patch", "delete where"):
        with pytest.raises((WrongTypeError, BulkWriteError)) as raised:
            await _write(conn, mode, doc, op)
        error = _unwrap(raised.value)
        assert isinstance(error, WrongTypeError) and error.key == META
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("how", LIST_DAMAGE + VERSION_DAMAGE + ("foreign type",))
@pytest.mark.parametrize("mode", MODES)
async def test_verify_reports_it_and_repair_rebuilds_it_from_the_document(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    doc = await _seed(mode)
    # the document changes behind the meta hash's back (as damage may come with drift):
    # the document is the truth, its old entries must go
    doc.n = 21
    await call(doc, "save", mode)
    doc = await call(Pet.objects, "get", mode, id="a")
    damage(redis_client, how)
    report = await call(Pet.objects, "verify", mode)
    assert not report.ok
    kind = "bad_meta" if how in VERSION_DAMAGE else "damaged_meta"
    assert report.problems.get(kind) == 1 and report.samples[kind] == ["a"], str(report)
    assert report.documents == 2

    repaired = await call(Pet.objects, "repair", mode)
    assert repaired.ok, str(repaired)
    assert repaired.fixed.get(kind) == 1
    assert (await call(Pet.objects, "verify", mode)).ok
    assert_indexes_consistent(redis_client, Pet)
    # the index entries answer what the documents say
    assert [p.id for p in await call(Pet.objects.filter(n=21), "all", mode)] == ["a"]
    assert [p.id for p in await call(Pet.objects.filter(n=13), "all", mode)] == ["b"]
    assert [p.id for p in await call(Pet.objects.filter(name="x", n=21), "all", mode)] == ["a"]
    # and the document works again: save, patch, delete
    fresh = await call(Pet.objects, "get", mode, id="a")
    fresh.n = 30
    await call(fresh, "save", mode)
    assert await call(Pet.objects.filter(id="a"), "update", mode, n=31) == 1
    assert [p.id for p in await call(Pet.objects.filter(n=31), "all", mode)] == ["a"]
    fresh = await call(Pet.objects, "get", mode, id="a")
    await call(fresh, "delete", mode)
    assert await call(Pet.objects, "count", mode) == 1
    assert_indexes_consistent(redis_client, Pet)


@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_compound_record_is_repaired_too(
        conn: Any, redis_client: Any, mode: str) -> None:
    await _seed(mode)
    field = "x:name__n" if redis_client.hexists(META, "x:name__n") else next(
        f.decode() for f in redis_client.hkeys(META) if f.startswith(b"x:"))
    redis_client.hset(META, field, redis_client.hget(META, field)[:-2])
    with pytest.raises(DamagedMetaError) as raised:
        await call(await call(Pet.objects, "get", mode, id="a"), "delete", mode)
    assert raised.value.field == field
    report = await call(Pet.objects, "verify", mode)
    assert report.problems.get("damaged_meta") == 1
    assert (await call(Pet.objects, "repair", mode)).ok
    await call(await call(Pet.objects, "get", mode, id="a"), "delete", mode)
    assert_indexes_consistent(redis_client, Pet)


@pytest.mark.parametrize("how", ["cut short", "foreign type"])
@pytest.mark.parametrize("mode", MODES)
async def test_an_expired_damaged_document_is_reported_and_discarded(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    """The sweep leaves an expired document whose meta hash does not read (it cannot know
    its entries; test_sweep_damaged.py): verify() reports it, repair() removes the meta
    hash, the id and the schedule entry, and the entries the walk of the indexes finds."""
    await _seed(mode)
    doc = await call(Pet.objects, "get", mode, id="a")
    await call(doc, "save", mode, ttl=60)
    if how != "foreign type":
        damage(redis_client, how)
    redis_client.zadd(KEYS.ttl(0), {sortable.id_key("a"): 1000})  # due
    redis_client.delete(KEYS.doc(0, "a"))  # expired
    if how == "foreign type":
        damage(redis_client, how)
    # a write of the partition sweeps: the damaged one stays due, the write reports its own
    other = await call(Pet.objects, "get", mode, id="b")
    other.n = 40
    await call(other, "save", mode)
    assert redis_client.zscore(KEYS.ttl(0), sortable.id_key("a")) == 1000
    # an insert of that id meets its leftovers, which it cannot purge: refused, typed
    if how != "foreign type":
        before = snapshot(redis_client)
        with pytest.raises(DamagedMetaError):
            await call(Pet(id="a", n=1, name="y", code="cz"), "save", mode)
        with pytest.raises(BulkWriteError) as raised:
            await call(Pet.objects, "bulk_create", mode, [Pet(id="a", n=1, name="y",
                                                                code="cz")])
        assert isinstance(_unwrap(raised.value), DamagedMetaError)
        assert snapshot(redis_client) == before
    report = await call(Pet.objects, "verify", mode)
    assert report.problems.get("damaged_meta") == 1, str(report)
    assert report.documents == 1
    repaired = await call(Pet.objects, "repair", mode)
    assert repaired.ok, str(repaired)
    assert not redis_client.exists(META)
    assert redis_client.zscore(KEYS.ttl(0), sortable.id_key("a")) is None
    assert_indexes_consistent(redis_client, Pet)
    # the id is free again
    await call(Pet(id="a", n=1, name="y", code="cz"), "save", mode)
    assert [p.id for p in await call(Pet.objects.filter(n=1), "all", mode)] == ["a"]


@pytest.mark.parametrize("how", ["stray byte", "cut short"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_patch_without_a_read_is_refused_typed_too(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    """``filter(id=x).update(code=...)`` is one patch.lua call (no compound index holds
    "code"), which reads the list of entries it moves."""
    await _seed(mode)
    listed = redis_client.hget(META, "f:code")
    redis_client.hset(META, "f:code", listed + b"x" if how == "stray byte" else listed[:-1])
    before = snapshot(redis_client)
    with pytest.raises((DamagedMetaError, BulkWriteError)) as raised:
        await call(Pet.objects.filter(id="a"), "update", mode, code="new")
    error = _unwrap(raised.value)
    assert isinstance(error, DamagedMetaError)
    assert error.key == META and error.field == "f:code"
    assert snapshot(redis_client) == before
    assert (await call(Pet.objects, "repair", mode)).ok
    assert await call(Pet.objects.filter(id="a"), "update", mode, code="new") == 1
    assert [p.id for p in await call(Pet.objects.filter(code="new"), "all", mode)] == ["a"]
    assert_indexes_consistent(redis_client, Pet)


@pytest.mark.parametrize("mode", MODES)
async def test_a_patch_writes_a_version_over_a_damaged_one(
        conn: Any, redis_client: Any, mode: str) -> None:
    """A patch compares no version: it writes the next one, and the damage is gone."""
    await _seed(mode)
    damage(redis_client, "version sign")
    assert await call(Pet.objects.filter(id="a"), "update", mode, code="new") == 1
    assert redis_client.hget(META, "v").isdigit()
    assert (await call(Pet.objects, "verify", mode)).ok


class Pair(Document):
    a = StringField()
    b = IntField()

    class Meta:
        collection = "dm_pairs"
        indexes = [("a", "b")]  # (b has no index of its own: a query tests its values)


@pytest.mark.parametrize("mode", MODES)
async def test_a_query_that_reads_a_damaged_list_raises_typed(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Pair.objects, "bulk_create", mode, [Pair(id="p", a="x", b=1),
                                                   Pair(id="q", a="x", b=3)])
    query = Pair.objects.filter(a="x", b__ne=2)
    assert sorted(p.id for p in await call(query, "all", mode)) == ["p", "q"]
    meta = KeySpace(Pair._meta).meta(0, "p")
    redis_client.hset(meta, "f:b", redis_client.hget(meta, "f:b") + b"x")
    with pytest.raises(DamagedMetaError) as raised:
        await call(query, "all", mode)
    assert raised.value.key == meta and raised.value.field == "f:b"
    assert raised.value.id == "p" and "dm_pairs" in raised.value.model
    report = await call(Pair.objects, "verify", mode)
    assert report.problems == {"damaged_meta": 1}
    assert (await call(Pair.objects, "repair", mode)).ok
    assert sorted(p.id for p in await call(query, "all", mode)) == ["p", "q"]
