"""A document's lives on Redis: what an earlier life leaves behind never fools a later one.

* A stale instance (loaded before its document expired, or before the database was
  flushed) cannot save or delete once the id lives again: versions never repeat for an id.
* A unique value whose earlier holders expired without being swept yet is free, however
  many such holders wait; and a live holder is still found behind any number of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import BulkWriteError, Document, StringField, UniqueViolation, VersionConflict
from quantumorm.backends.redis.keys import KeySpace


class Badge(Document):
    label = StringField(indexed=True)
    code = StringField(unique=True)

    class Meta:
        collection = "lives_badges"


async def pause(mode: str, seconds: float) -> None:
    if mode == "async":
        await asyncio.sleep(seconds)
    else:
        time.sleep(seconds)


async def assert_second_life_intact(mode: str, stale: Badge, reborn: Badge,
                                    redis_client: Any) -> None:
    stale.label = "L3"
    with pytest.raises(VersionConflict):
        await call(stale, "save", mode)
    with pytest.raises(VersionConflict):
        await call(stale, "delete", mode)
    assert [b.id for b in await call(Badge.objects.filter(label=reborn.label), "all", mode)] \
        == ["x"]
    assert await call(Badge.objects.filter(label="L3"), "count", mode) == 0
    assert await call(Badge.objects.filter(label="L1"), "count", mode) == 0
    assert_indexes_consistent(redis_client, Badge)


@pytest.mark.parametrize("mode", MODES)
async def test_stale_save_after_expiry_and_recreate(conn: Any, redis_client: Any,
                                                    mode: str) -> None:
    await call(Badge(id="x", label="L1", code="c1"), "save", mode, ttl=0.2)
    stale = await call(Badge.objects, "get", mode, id="x")
    await pause(mode, 0.35)
    assert await call(Badge.objects, "get_many", mode, ["x"]) == [None]
    reborn = await call(Badge(id="x", label="L2", code="c1"), "save", mode)
    assert reborn.version > stale.version
    await assert_second_life_intact(mode, stale, reborn, redis_client)


@pytest.mark.parametrize("mode", MODES)
async def test_stale_save_after_flushall_and_recreate(conn: Any, redis_client: Any,
                                                      mode: str) -> None:
    first = await call(Badge(id="x", label="L1", code="c1"), "save", mode)
    for label in ("L1b", "L1c", "L1"):  # a few versions, so the clock has moved on
        first.label = label
        await call(first, "save", mode)
    stale = await call(Badge.objects, "get", mode, id="x")
    redis_client.flushall()  # documents, indexes and the version clock are all gone
    reborn = await call(Badge(id="x", label="L2", code="c1"), "save", mode)
    assert reborn.version > stale.version
    await assert_second_life_intact(mode, stale, reborn, redis_client)


@pytest.mark.parametrize("mode", MODES)
async def test_stale_save_after_the_clock_alone_is_lost(conn: Any, redis_client: Any,
                                                        mode: str) -> None:
    """Even with only the clock key gone (a partial restore, an eviction), a re-created
    document's versions stay above its earlier life's: they follow the server time."""
    await call(Badge(id="x", label="L1", code="c1"), "save", mode)
    stale = await call(Badge.objects, "get", mode, id="x")
    await call(await call(Badge.objects, "get", mode, id="x"), "delete", mode)
    redis_client.delete(KeySpace(Badge._meta).state(0))
    reborn = await call(Badge(id="x", label="L2", code="c1"), "save", mode)
    assert reborn.version > stale.version
    await assert_second_life_intact(mode, stale, reborn, redis_client)


def expire_now(redis_client: Any, ids: list[str]) -> None:
    """Expire documents early, the way the server does it (as an eviction under a
    volatile-* policy would): their keys go, their schedule entries still say later, so no
    sweep purges them soon."""
    keys = KeySpace(Badge._meta)
    for id in ids:
        redis_client.pexpire(keys.doc(0, id), 1)
    deadline = time.monotonic() + 5
    while any(redis_client.exists(keys.doc(0, id)) for id in ids):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def save_in_transaction(connection: Any, *docs: Any) -> None:
    with connection.transaction_sync() as tx:
        for doc in docs:
            tx.save(doc)


def expired_holders(redis_client: Any, count: int) -> None:
    """``count`` documents, each of which held code "same" in turn and expired unswept."""
    for n in range(count):
        Badge(id=f"old{n:02}", label="old", code="same").save_sync(ttl=3600)
        expire_now(redis_client, [f"old{n:02}"])
    index = KeySpace(Badge._meta).index(0, "code")
    assert redis_client.zcard(index) == count  # every leftover entry is still there


@pytest.mark.parametrize("mode", MODES)
async def test_unique_value_with_50_expired_unswept_holders(conn: Any, redis_client: Any,
                                                            mode: str) -> None:
    await asyncio.to_thread(expired_holders, redis_client, 50)  # blocking: off the loop
    holder = await call(Badge(id="live", label="new", code="same"), "save", mode)
    assert holder.version > 0
    # the 51st entry is the live one: every other candidate is refused, by every path
    with pytest.raises(UniqueViolation) as caught:
        await call(Badge(id="second", label="new", code="same"), "save", mode)
    assert caught.value.other_id == "live"
    with pytest.raises(BulkWriteError) as bulk:
        await call(Badge.objects, "bulk_create", mode,
                   [Badge(id="b1", code="free"), Badge(id="b2", code="same")])
    assert [type(e) for _, e in bulk.value.errors] == [UniqueViolation]
    connection = quantumorm.get_connection()
    with pytest.raises(UniqueViolation):
        if mode == "async":
            async with connection.transaction() as tx:
                tx.save(Badge(id="t1", code="same"))
        else:
            await asyncio.to_thread(save_in_transaction, connection, Badge(id="t1", code="same"))
    other = await call(Badge.objects, "get", mode, id="live")
    other.label = "renamed"  # the holder itself may keep its value
    await call(other, "save", mode)
    assert [b.id for b in await call(Badge.objects.filter(code="same"), "all", mode)] \
        == ["live"]


@pytest.mark.parametrize("mode", MODES)
async def test_unique_value_behind_expired_holders_is_free_on_every_path(
        conn: Any, redis_client: Any, mode: str) -> None:
    await asyncio.to_thread(expired_holders, redis_client, 50)  # blocking: off the loop
    written = await call(Badge.objects, "bulk_create", mode,
                         [Badge(id="b1", code="same"), Badge(id="b2", code="other")])
    assert [b.id for b in written] == ["b1", "b2"]
    await call(Badge.objects.filter(id="b1"), "delete", mode)
    connection = quantumorm.get_connection()
    if mode == "async":
        async with connection.transaction() as tx:
            tx.save(Badge(id="t1", code="same"))
    else:
        await asyncio.to_thread(save_in_transaction, connection, Badge(id="t1", code="same"))
    assert [b.id for b in await call(Badge.objects.filter(code="same"), "all", mode)] == ["t1"]
    assert sorted(b.id for b in await call(Badge.objects, "all", mode)) == ["b2", "t1"]
    assert await call(Badge.objects, "count", mode) == 2
