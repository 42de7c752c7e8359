"""A write reads its partition's TTL schedule and lock hash with one EXISTS of both
(``schedule_and_locks`` in ``lua/_write.lua``; an insert of a known id adds its document key
and meta hash): all absent, the usual case, spares the schedule's ZCARD, the lock hash's
EXISTS and the insert's EXISTS. Wherever one of them is there, the write gives the answers
and refusals of the checks made one by one: a schedule of another type, a taken id, an
expired document's leftovers, a lock, with and without a schedule beside it. And a write
that sets an expiry counts it from the TIME its version was taken at (``write_time_ms``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

from quantumorm import (
    BulkWriteError,
    Document,
    DocumentLocked,
    DuplicateIdError,
    IntField,
    StringField,
    VersionConflict,
    WrongTypeError,
)
from quantumorm.backends.redis import twophase, writes
from quantumorm.backends.redis.keys import KeySpace


class Lamp(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "wsl_lamps"


class Timer(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "wsl_timers"
        ttl = 30  # seconds; every write sets it


def _calls(redis_client: Any, command: str) -> int:
    return int(redis_client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def pending_lock(redis_client: Any, ks: KeySpace, name: str, id: str) -> None:
    """Document ``id`` locked by hand as a prepared transaction ``name`` would lock it: its
    record pending, ten minutes before its deadline."""
    record = twophase.record_key("qorm", name)
    (seconds, micros) = redis_client.time()
    redis_client.hset(record, mapping={"state": "pending", "parts": b"\x90",
                                       "deadline": seconds * 1000 + micros // 1000 + 600_000})
    redis_client.hset(twophase.locks_key(ks.tag(0)), writes.sortable.id_key(id), record)


async def _counted(redis_client: Any, write: Any) -> dict[str, int]:
    """The EXISTS and ZCARD commands the server ran for ``write()`` (scripts' commands
    are counted one by one)."""
    redis_client.config_resetstat()
    await write()
    return {c: _calls(redis_client, c) for c in ("exists", "zcard")}


@pytest.mark.parametrize("mode", MODES)
async def test_a_write_with_no_schedule_and_no_locks_reads_them_with_one_exists(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Lamp(id="warm", name="w", n=0), "save", mode)  # (scripts loaded)
    stale = await call(Lamp.objects, "get", mode, id="warm")
    await call(Lamp(name="auto", n=0), "save", mode)
    await call(Lamp.objects.filter(id="warm"), "update", mode, n=1)
    one_exists = {"exists": 1, "zcard": 0}
    # an insert of a known id: the schedule, the locks, its document key and meta hash
    assert await _counted(redis_client, lambda: call(Lamp(id="a", name="a", n=1), "save",
                                                      mode)) == one_exists
    doc = await call(Lamp.objects, "get", mode, id="a")
    doc.n = 2
    assert await _counted(redis_client, lambda: call(doc, "save", mode)) == one_exists
    assert await _counted(redis_client, lambda: call(
        Lamp.objects.filter(id="a"), "update", mode, n=3)) == one_exists
    doc = await call(Lamp.objects, "get", mode, id="a")
    assert await _counted(redis_client, lambda: call(doc, "delete", mode)) == one_exists
    # a batch: the schedule and the locks, then its documents' keys
    assert await _counted(redis_client, lambda: call(Lamp.objects, "bulk_create", mode, [
        Lamp(id=f"b{i}", name="b", n=i) for i in range(3)])) == {"exists": 2, "zcard": 0}
    # an allocation checks no lock: the schedule's ZCARD, and the new id's EXISTS
    assert await _counted(redis_client, lambda: call(Lamp(name="b", n=1), "save", mode)) \
        == {"exists": 1, "zcard": 1}
    # and every answer is what the checks one by one give
    stale.n = 9
    with pytest.raises(VersionConflict) as conflict:
        await call(stale, "save", mode)
    assert not isinstance(conflict.value, DocumentLocked)
    with pytest.raises(DuplicateIdError):
        await call(Lamp(id="warm", name="again", n=1), "save", mode)
    assert [d.n for d in await call(Lamp.objects.filter(name="w"), "all", mode)] == [1]
    assert_indexes_consistent(redis_client, Lamp)


@pytest.mark.parametrize("mode", MODES)
async def test_a_schedule_of_another_type_refuses_every_write_with_nothing_written(
        conn: Any, redis_client: Any, mode: str) -> None:
    ks = KeySpace(Lamp._meta)
    kept = await call(Lamp(id="k", name="k", n=1), "save", mode)
    stale = await call(Lamp.objects, "get", mode, id="k")
    await call(Lamp.objects.filter(id="k"), "update", mode, n=2)  # (stale is one behind)
    redis_client.set(ks.ttl(0), "written by someone else")
    before = snapshot(redis_client)
    kept = await call(Lamp.objects, "get", mode, id="k")
    kept.n = 5
    writes_to_refuse = [
        lambda: call(Lamp(id="new", name="x", n=1), "save", mode),  # insert, known id
        lambda: call(Lamp(id="k", name="x", n=1), "save", mode),  # insert of a taken id
        lambda: call(Lamp(name="x", n=1), "save", mode),  # allocation
        lambda: call(kept, "save", mode),  # update
        lambda: call(Lamp.objects.filter(id="k"), "update", mode, n=7),  # patch
        lambda: call(kept, "delete", mode),  # delete
        lambda: call(stale, "delete", mode),  # delete of an outdated copy (before VERSION)
        lambda: call(Lamp.objects, "bulk_create", mode, [Lamp(id="b", name="x", n=1)]),
    ]
    for write in writes_to_refuse:
        with pytest.raises((WrongTypeError, BulkWriteError)) as refused:
            await write()
        error = refused.value  # (filter().update() reports its documents' refusals)
        if isinstance(error, BulkWriteError):
            ((_, error),) = error.errors
        assert isinstance(error, WrongTypeError) and error.key == ks.ttl(0)
        assert snapshot(redis_client) == before
    redis_client.delete(ks.ttl(0))
    await call(kept, "save", mode)
    assert (await call(Lamp.objects, "get", mode, id="k")).n == 5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scheduled", [False, True])
@pytest.mark.parametrize("form", ["2", "3"])
async def test_an_insert_meets_a_taken_id_and_leftovers_with_or_without_a_schedule(
        conn: Any, redis_client: Any, request: Any, mode: str, scheduled: bool,
        form: str) -> None:
    """Format 2 keeps a meta hash for every document, format 3 (what inserts store) only
    while it expires (its sweep record): format 3's expired document had a TTL."""
    if form == "2":
        request.getfixturevalue("format2_writes")
    ks = KeySpace(Lamp._meta)
    if scheduled:  # (a document with an expiry: the partition's schedule is not empty)
        await call(Lamp(id="t", name="t", n=0), "save", mode, ttl=60)
        assert redis_client.zcard(ks.ttl(0)) == 1
    await call(Lamp(id="taken", name="a", n=1), "save", mode)
    with pytest.raises(DuplicateIdError):
        await call(Lamp(id="taken", name="b", n=2), "save", mode)
    assert (await call(Lamp.objects, "get", mode, id="taken")).name == "a"
    # an expired document's leftovers (its key gone, its meta hash and entries still
    # there): the insert purges them and takes the id
    await call(Lamp(id="gone", name="old", n=3), "save", mode,
               **({} if form == "2" else {"ttl": 600}))
    assert redis_client.hget(ks.meta(0, "gone"), "v")
    # (format 3's leftovers are always scheduled: its sweep record exists while it expires)
    assert (redis_client.zscore(ks.ttl(0), writes.sortable.id_key("gone")) is not None) == (
        form == "3")
    redis_client.delete(ks.doc(0, "gone"))
    fresh = await call(Lamp(id="gone", name="new", n=4), "save", mode)
    assert (await call(Lamp.objects, "get", mode, id="gone")).version == fresh.version
    assert await call(Lamp.objects.filter(name="old"), "count", mode) == 0
    assert [d.id for d in await call(Lamp.objects.filter(name="new"), "all", mode)] == ["gone"]
    assert redis_client.zscore(ks.ttl(0), writes.sortable.id_key("gone")) is None
    assert_indexes_consistent(redis_client, Lamp)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scheduled", [False, True])
async def test_a_lock_refuses_every_write_of_its_document_with_or_without_a_schedule(
        conn: Any, redis_client: Any, mode: str, scheduled: bool) -> None:
    """A lock put in the lock hash by hand, as a prepared transaction would, with its
    record, pending and long before its deadline: the writer meets it and settles nothing."""
    ks = KeySpace(Lamp._meta)
    if scheduled:
        await call(Lamp(id="t", name="t", n=0), "save", mode, ttl=60)
    doc = await call(Lamp(id="held", name="h", n=1), "save", mode)
    free = await call(Lamp(id="free", name="f", n=1), "save", mode)
    pending_lock(redis_client, ks, "wsl-pending", "held")
    before = snapshot(redis_client)
    doc.n = 2
    for write in (lambda: call(doc, "save", mode), lambda: call(doc, "delete", mode),
                  lambda: call(Lamp(id="held", name="x", n=1), "save", mode),
                  lambda: call(Lamp.objects, "bulk_create", mode, [Lamp(id="held", n=1)])):
        with pytest.raises((DocumentLocked, BulkWriteError)) as refused:
            await write()
        if isinstance(refused.value, BulkWriteError):  # (a batch reports each document's)
            ((_, error),) = refused.value.errors
            assert isinstance(error, DocumentLocked)
        assert snapshot(redis_client) == before
    free.n = 2  # (another document of the partition is not held)
    await call(free, "save", mode)
    assert (await call(Lamp.objects, "get", mode, id="free")).n == 2


@pytest.mark.parametrize("mode", MODES)
async def test_an_expiry_counts_from_the_time_the_version_was_taken_at(
        conn: Any, redis_client: Any, mode: str) -> None:
    """A write that sets an expiry reads the server's TIME once, for its version, its
    expiry (set with the value: SET ... PXAT) and its sweep of due documents."""
    ks = KeySpace(Timer._meta)
    await call(Timer(id="warm", name="w"), "save", mode)  # (scripts loaded)
    redis_client.delete(ks.ttl(0))
    cases = [(lambda: call(Timer(id="a", name="a"), "save", mode), "a"),
             (lambda: call(Timer.objects, "bulk_create", mode, [Timer(id="b", name="b")]), "b")]
    for write, id in cases:
        before = redis_client.time()
        redis_client.config_resetstat()
        await write()
        assert _calls(redis_client, "time") == 1
        assert _calls(redis_client, "pexpireat") == 0  # (SET ... PXAT)
        after = redis_client.time()
        at = redis_client.pexpiretime(ks.doc(0, id))
        low, high = (s * 1000 + us // 1000 + 30_000 for s, us in (before, after))
        assert low <= at <= high
        assert redis_client.zscore(ks.ttl(0), writes.sortable.id_key(id)) == at
        redis_client.delete(ks.ttl(0))  # (no sweep for the next write)
    doc = await call(Timer.objects, "get", mode, id="a")
    assert 0 < await call(doc, "ttl", mode) <= 30
    # with a schedule, a write sweeps what is due by that same time: here a document whose
    # key is gone (as an expired one's) is purged, one still alive stays scheduled
    await call(Timer(id="due", name="due"), "save", mode)
    redis_client.delete(ks.doc(0, "due"))
    redis_client.zadd(ks.ttl(0), {writes.sortable.id_key("due"): 1})
    redis_client.config_resetstat()
    await call(doc, "save", mode)
    assert _calls(redis_client, "time") == 1
    assert redis_client.zscore(ks.ttl(0), writes.sortable.id_key("due")) is None
    assert not redis_client.exists(ks.meta(0, "due"))
    assert [d.id for d in await call(Timer.objects.filter(name="due"), "all", mode)] == []
    assert redis_client.zcard(ks.ttl(0)) == 1  # ("a", rescheduled by its save)
    assert_indexes_consistent(redis_client, Timer)


def _transfer(conn: Any) -> None:
    """Two documents read and written in one transaction (tx.lua)."""
    with conn.transaction_sync() as tx:
        a, b = tx.get(Lamp, "x"), tx.get(Lamp, "y")
        a.n, b.n = a.n + 1, b.n - 1
        tx.save(a)
        tx.save(b)


async def test_a_transaction_reads_the_schedule_and_the_locks_with_one_exists(
        conn: Any, redis_client: Any) -> None:
    ks = KeySpace(Lamp._meta)
    await call(Lamp(id="x", name="x", n=10), "save", "async")
    await call(Lamp(id="y", name="y", n=10), "save", "async")
    await asyncio.to_thread(_transfer, conn)  # (scripts loaded)
    redis_client.config_resetstat()
    await asyncio.to_thread(_transfer, conn)
    assert _calls(redis_client, "zcard") == 0
    assert {d.id: d.n for d in await call(Lamp.objects, "all", "async")} == {"x": 12, "y": 8}
    # a schedule of another type: refused, nothing written
    redis_client.set(ks.ttl(0), "written by someone else")
    before = snapshot(redis_client)
    with pytest.raises(WrongTypeError) as refused:
        await asyncio.to_thread(_transfer, conn)
    assert refused.value.key == ks.ttl(0) and snapshot(redis_client) == before
    redis_client.delete(ks.ttl(0))
    # with a schedule: one TIME for the versions, the expiry and the sweep
    await call(Lamp(id="t", name="t", n=0), "save", "async", ttl=60)
    redis_client.config_resetstat()
    await asyncio.to_thread(_transfer, conn)
    assert _calls(redis_client, "time") == 1 and _calls(redis_client, "zrangebyscore") == 1
    assert {d.id: d.n for d in await call(Lamp.objects.filter(id__in=["x", "y"]), "all",
                                          "async")} == {"x": 13, "y": 7}
    # a lock on one of them (with a schedule beside it: the EXISTS counts both)
    pending_lock(redis_client, ks, "wsl-tx", "y")
    before = snapshot(redis_client)
    with pytest.raises(DocumentLocked):
        await asyncio.to_thread(_transfer, conn)
    assert snapshot(redis_client) == before
