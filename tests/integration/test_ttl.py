"""Expiry: an expired document is never returned, counted or matched, even before a sweep,
and sweeping (explicit, or a few per write) leaves no index entry behind. Real time, short
TTLs, a real server: no clock is mocked."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import (
    Document,
    IntField,
    StringField,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)

SHORT = 0.25  # seconds
WAIT = 0.4


class Session(Document):
    user = StringField(indexed=True)
    n = IntField(indexed=True)
    token = StringField(unique=True)

    class Meta:
        collection = "t_sessions"


class Cached(Document):
    key = StringField(indexed=True)

    class Meta:
        collection = "t_cached"
        ttl = 1  # seconds; every write refreshes it


async def pause(mode: str) -> None:
    if mode == "async":
        await asyncio.sleep(WAIT)
    else:
        time.sleep(WAIT)


@pytest.mark.parametrize("mode", MODES)
async def test_expired_documents_vanish_from_every_read_before_any_sweep(
        conn: Any, redis_client: Any, mode: str) -> None:
    keep = [await call(Session(id=f"k{i}", user="u", n=i, token=f"k{i}"), "save", mode)
            for i in range(3)]
    gone = [await call(Session(id=f"g{i}", user="u", n=10 + i, token=f"g{i}"), "save", mode,
                       ttl=SHORT) for i in range(3)]
    remaining = await call(gone[0], "ttl", mode)
    assert 0 < remaining <= SHORT and await call(keep[0], "ttl", mode) is None
    assert await call(Session.objects.filter(user="u"), "count", mode) == 6
    await pause(mode)
    ids = [d.id for d in keep]
    objects = Session.objects
    assert await call(objects.filter(user="u"), "count", mode) == 3
    assert await call(objects, "count", mode) == 3
    assert [d.id for d in await call(objects.filter(user="u"), "all", mode)] == ids
    assert [d.id for d in await call(objects.order_by("-n").limit(2), "all", mode)] == ["k2",
                                                                                       "k1"]
    assert await call(objects.filter(n__gte=10), "exists", mode) is False
    assert await call(objects, "get_many", mode, ["g0", "k0"]) == [None, keep[0]]
    assert redis_client.zcard("{qorm:t_sessions:p0}:ids") == 6  # leftovers, not yet swept
    assert await call(objects, "sweep", mode) == 3
    assert redis_client.zcard("{qorm:t_sessions:p0}:ids") == 3
    assert redis_client.zcard("{qorm:t_sessions:p0}:ttl") == 0
    assert_indexes_consistent(redis_client, Session)


@pytest.mark.parametrize("mode", MODES)
async def test_writes_meet_and_clear_the_leftovers(conn: Any, redis_client: Any,
                                                   mode: str) -> None:
    old = await call(Session(id="s", user="a", n=1, token="t1"), "save", mode, ttl=SHORT)
    await pause(mode)
    # the id and the unique value of an expired document are free again
    fresh = await call(Session(id="s", user="b", n=2, token="t1"), "save", mode)
    assert fresh.version > old.version > 0  # created again, under a version never used
    with pytest.raises(UniqueViolation):
        await call(Session(user="c", n=3, token="t1"), "save", mode)
    # an instance of the expired document cannot bring it back
    old.n = 5
    stale = await call(Session(id="x", user="x", n=0, token="x"), "save", mode, ttl=SHORT)
    await pause(mode)
    stale.n = 9
    with pytest.raises(VersionConflict) as caught:
        await call(stale, "save", mode)
    assert caught.value.actual is None
    assert await call(stale, "delete", mode) is False
    assert_indexes_consistent(redis_client, Session)


@pytest.mark.parametrize("mode", MODES)
async def test_each_write_sweeps_a_few_due_documents(conn: Any, redis_client: Any,
                                                     mode: str) -> None:
    await call(Session.objects, "bulk_create", mode,
               [Session(id=f"d{i}", user="d", n=i, token=f"d{i}") for i in range(5)])
    for i in range(5):
        doc = await call(Session.objects, "get", mode, id=f"d{i}")
        await call(doc, "touch", mode, SHORT)
    await pause(mode)
    await call(Session(id="w", user="w", n=0, token="w"), "save", mode)  # sweeps up to 8
    assert redis_client.zcard("{qorm:t_sessions:p0}:ids") == 1
    assert redis_client.zcard("{qorm:t_sessions:p0}:ttl") == 0
    assert_indexes_consistent(redis_client, Session)


@pytest.mark.parametrize("mode", MODES)
async def test_touch_persist_and_meta_ttl(conn: Any, redis_client: Any, mode: str) -> None:
    a = await call(Cached(key="a"), "save", mode)
    created = a.version
    assert 0.5 < await call(a, "ttl", mode) <= 1
    assert await call(a, "persist", mode) is True
    assert await call(a, "ttl", mode) is None and a.version == created > 0  # no new version
    assert await call(a, "touch", mode, SHORT) is True
    b = await call(Cached(key="b"), "save", mode, ttl=None)  # no expiry despite Meta.ttl
    bulk = await call(Cached.objects, "bulk_create", mode, [Cached(key="c"), Cached(key="d")])
    for doc in bulk:
        assert 0.5 < await call(doc, "ttl", mode) <= 1
    await pause(mode)
    assert [d.key for d in await call(Cached.objects.order_by("key"), "all", mode)] == [
        "b", "c", "d"]
    assert await call(b, "ttl", mode) is None
    assert await call(a, "touch", mode, 10) is False  # gone
    with pytest.raises(ValueError):
        await call(b, "touch", mode, 0)
    b.key = "b2"
    await call(b, "save", mode)  # Meta.ttl applies again on this write
    assert 0.5 < await call(b, "ttl", mode) <= 1
    assert_indexes_consistent(redis_client, Cached)


def test_backends_without_ttl_refuse_it(conn: Any) -> None:  # blocking calls only
    class Local(Document):
        name = StringField()

        class Meta:
            backend = "sqlite"
            collection = "t_local"

    class Expiring(Document):
        name = StringField()

        class Meta:
            backend = "sqlite"
            collection = "t_expiring"
            ttl = 5

    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="t-sqlite")
    doc = Local(name="x").save_sync()
    with pytest.raises(UnsupportedOperation, match="sqlite.*ttl"):
        Local(name="y").save_sync(ttl=3)
    with pytest.raises(UnsupportedOperation, match="ttl"):
        doc.touch_sync(3)
    with pytest.raises(UnsupportedOperation, match="ttl"):
        Expiring(name="z").save_sync()


@pytest.mark.parametrize("mode", MODES)
async def test_soft_delete_hides_at_once_and_removes_later(conn: Any, redis_client: Any,
                                                          mode: str) -> None:
    doc = await call(Session(id="soft", user="s", n=1, token="soft"), "save", mode)
    first_life = doc.version
    other = await call(Session(id="stay", user="s", n=2, token="stay"), "save", mode)
    assert await call(doc, "delete", mode, soft=True, ttl=SHORT) is True
    assert await call(Session.objects.filter(user="s"), "all", mode) == [other]
    assert await call(Session.objects, "count", mode) == 1
    assert await call(Session.objects, "get_many", mode, ["soft"]) == [None]
    trash = "{qorm:t_sessions:p0}:z:soft"
    assert redis_client.exists(trash) and 0 < redis_client.pttl(trash) <= SHORT * 1000
    assert_indexes_consistent(redis_client, Session)
    again = await call(Session(id="soft", user="s2", n=3, token="soft"), "save", mode)
    assert again.version > first_life > 0  # the id and its unique value are free at once
    await pause(mode)
    assert not redis_client.exists(trash)
    with pytest.raises(ValueError):
        await call(other, "delete", mode, soft=True)
    with pytest.raises(ValueError):
        await call(other, "delete", mode, ttl=5)


async def test_concurrent_updates_and_ttl_refreshes(conn: Any, redis_client: Any) -> None:
    """8 tasks increment one document while 8 others keep refreshing its expiry and saving
    other documents with short TTLs (which sweeps): no increment is lost, the document
    keeps an expiry, and every index entry matches a stored document."""
    counter = await Session(id="c", user="c", n=0, token="c").save(ttl=30)
    created = counter.version

    def bump(doc: Any) -> None:
        doc.n += 1

    async def incrementer() -> None:
        for _ in range(10):
            mine = (await Session.objects.get_many(["c"]))[0]
            await mine.update_with_retry(bump, attempts=200)

    async def toucher(k: int) -> None:
        for i in range(10):
            assert await counter.touch(30) is True
            await Session(id=f"e{k}-{i}", user="e", n=i, token=f"e{k}-{i}").save(ttl=0.05)

    await asyncio.gather(*(incrementer() for _ in range(8)), *(toucher(k) for k in range(8)))
    await counter.reload()
    assert counter.n == 80 and counter.version > created  # each write added exactly 1
    assert 0 < await counter.ttl() <= 30
    await asyncio.sleep(0.1)
    await Session.objects.sweep()
    assert await Session.objects.filter(user="e").count() == 0
    assert_indexes_consistent(redis_client, Session)
