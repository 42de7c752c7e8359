"""``save()`` and ``delete()`` of a loaded document on Redis: one update or delete is sent
without the rounds of auto ids and batches (``Writer._write_one``), and its reply taken
there when it was applied; every other reply is read by the general path as its own first
round's. Each case runs both ways (``path``: "one", the shortcut; "all", every write through
``Writer._write_all``) and gives the same answers, errors and stored state: a stale or gone
instance, a unique value taken, a key of the wrong type, a schema layout moved on by another
connection (refused once, read again, applied once), a document locked by a prepared
transaction."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

import quantumorm
from quantumorm import (
    Document,
    DocumentLocked,
    IntField,
    StringField,
    UniqueViolation,
    VersionConflict,
    WrongTypeError,
    sortable,
)
from quantumorm.backends.redis import twophase
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.writer import Writer


class Bulb(Document):
    name = StringField(indexed=True, unique=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "lw_bulbs"


@pytest.fixture(params=("one", "all"))
def path(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """ "all": the shortcut off, every write through the general path."""
    if request.param == "all":
        monkeypatch.setattr(Writer, "write", lambda self, options, requests:
                            self._write_all(options, requests))
    return str(request.param)


def events(redis_client: Any) -> int:
    return int(redis_client.xlen(KeySpace(Bulb._meta).changes(0)))


async def loaded(mode: str, *ids: str) -> list[Any]:
    return list(await call(Bulb.objects, "get_many", mode, list(ids)))


@pytest.mark.parametrize("mode", MODES)
async def test_applied_saves_and_deletes(conn: Any, redis_client: Any, mode: str,
                                         path: str) -> None:
    await call(Bulb.objects, "bulk_create", mode, [Bulb(id="a", name="a", n=1),
                                                   Bulb(id="b", name="b", n=2)])
    a, b = await loaded(mode, "a", "b")
    first, before = a.version, events(redis_client)
    a.n = 5
    assert await call(a, "save", mode) is a
    assert a.version > first and a._stored["n"] == 5
    again = await call(Bulb.objects, "get", mode, id="a")
    assert (again.n, again.version) == (5, a.version)  # (the version the script wrote)
    assert await call(a, "save", mode) is a  # (nothing changed: nothing sent)
    assert await call(b, "delete", mode) is True
    assert b.version == 0 and await call(Bulb.objects, "get_many", mode, ["b"]) == [None]
    assert events(redis_client) == before + 2
    assert_indexes_consistent(redis_client, Bulb)


@pytest.mark.parametrize("mode", MODES)
async def test_refusals_are_the_general_ones(conn: Any, redis_client: Any, mode: str,
                                             path: str) -> None:
    await call(Bulb.objects, "bulk_create", mode, [Bulb(id=i, name=i, n=1) for i in "abcd"])
    a, stale, c, gone = await loaded(mode, "a", "b", "c", "d")
    fresh = (await loaded(mode, "b"))[0]
    fresh.n = 2
    await call(fresh, "save", mode)
    await call((await loaded(mode, "d"))[0], "delete", mode)
    state = snapshot(redis_client)
    stale.n = 3
    with pytest.raises(VersionConflict) as conflict:
        await call(stale, "save", mode)
    assert (conflict.value.expected, conflict.value.actual) == (stale.version, fresh.version)
    with pytest.raises(VersionConflict):
        await call(stale, "delete", mode)
    gone.n = 3
    with pytest.raises(VersionConflict) as missing:
        await call(gone, "save", mode)
    assert missing.value.actual is None
    assert await call(gone, "delete", mode) is False  # (already gone: nothing refused)
    a.name = "c"
    with pytest.raises(UniqueViolation) as taken:
        await call(a, "save", mode)
    assert taken.value.other_id == "c"
    assert snapshot(redis_client) == state
    # a key of the wrong type where the save writes: refused before anything is written
    index = KeySpace(Bulb._meta).index(0, "n")
    saved = redis_client.dump(index)
    redis_client.delete(index)
    redis_client.set(index, "x")
    c.n = 9
    with pytest.raises(WrongTypeError):
        await call(c, "save", mode)
    redis_client.delete(index)
    redis_client.restore(index, 0, saved)
    assert snapshot(redis_client) == state
    assert_indexes_consistent(redis_client, Bulb)


@pytest.mark.parametrize("mode", MODES)
async def test_a_layout_moved_on_elsewhere_is_read_again_and_the_write_applied_once(
        conn: Any, redis_client: Any, mode: str, path: str) -> None:
    await call(Bulb.objects, "bulk_create", mode, [Bulb(id=i, name=i, n=1) for i in "ab"])
    a, b = await loaded(mode, "a", "b")
    ks = KeySpace(Bulb._meta)

    def layouts() -> tuple[int, int]:  # (what "default" plans with, what is stored)
        return (conn.backend._state(Bulb._meta).schema.layout,
                int(redis_client.hget(ks.schema, "layout")))

    other = quantumorm.create_connection(url=conn.url, name="other")
    try:
        for write in (lambda: (setattr(a, "n", 7), call(a, "save", mode))[1],
                      lambda: call(b, "delete", mode)):
            # another connection (another process) moves the stored layout on
            assert (await call(Bulb.objects.using("other"), "reindex", mode)).ready
            seen, stored = layouts()
            assert seen < stored
            before = events(redis_client)
            await write()
            assert layouts() == (stored, stored)
            assert events(redis_client) == before + 1  # (applied once)
    finally:
        other.close()
    assert (await call(Bulb.objects, "get", mode, id="a")).n == 7
    assert await call(Bulb.objects, "get_many", mode, ["b"]) == [None]
    assert_indexes_consistent(redis_client, Bulb)


@pytest.mark.parametrize("mode", MODES)
async def test_a_document_locked_by_a_prepared_transaction(conn: Any, redis_client: Any,
                                                           mode: str, path: str) -> None:
    await call(Bulb.objects, "bulk_create", mode, [Bulb(id=i, name=i, n=1) for i in "ab"])
    a, b = await loaded(mode, "a", "b")
    ks = KeySpace(Bulb._meta)
    # "a" held by a pending transaction ten minutes from its deadline: refused, as it stays
    record = twophase.record_key("qorm", "lw-pending")
    (seconds, micros) = redis_client.time()
    redis_client.hset(record, mapping={"state": "pending", "parts": b"\x90",
                                       "deadline": seconds * 1000 + micros // 1000 + 600_000})
    redis_client.hset(twophase.locks_key(ks.tag(0)), sortable.id_key("a"), record)
    a.n = 2
    state = snapshot(redis_client)
    for write in (lambda: call(a, "save", mode), lambda: call(a, "delete", mode)):
        with pytest.raises(DocumentLocked):
            await write()
        assert snapshot(redis_client) == state
    # "b" held by one whose record is gone (aborted and forgotten): released, then written
    forgotten = twophase.record_key("qorm", "lw-forgotten")
    redis_client.hset(twophase.locks_key(ks.tag(0)), sortable.id_key("b"), forgotten)
    b.n = 3
    await call(b, "save", mode)
    assert (await call(Bulb.objects, "get", mode, id="b")).n == 3
