"""``filter(id=...)``/``filter(id__in=[...])``.delete() on Redis, with no delete receiver:
one ``delete.lua`` call per id in one round trip and no read, with every guarantee of a
delete of a loaded document (exact indexes, the change event, key type refusals)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

from quantumorm import ArrayField, BooleanField, Document, IntField, StringField, WrongTypeError
from quantumorm.backends.redis.keys import KeySpace


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    email = StringField(unique=True)

    class Meta:
        collection = "dbi_people"


def scripts_called(redis_client: Any) -> int:
    """How many script calls the server has run (INFO commandstats)."""
    stats = redis_client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0)
               for name in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"))


@pytest.mark.parametrize("mode", MODES)
async def test_one_round_trip_no_read_indexes_exact_events_fired(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Person.objects, "bulk_create", mode, [
        Person(id=f"p{k}", name=f"n{k % 3}", age=k, active=k % 2 == 0,
               tags=[f"t{j}" for j in range(k, k + 5)], email=f"{k}@x") for k in range(10)])
    feed = Person.objects.changes(wait=0)
    await call(feed, "read", mode)
    stored = {d.id: d.version for d in await call(Person.objects, "all", mode)}

    before = scripts_called(redis_client)
    assert await call(Person.objects.filter(id="p1"), "delete", mode) == 1
    assert scripts_called(redis_client) - before == 1  # the delete itself, no query first
    before = scripts_called(redis_client)
    assert await call(Person.objects.filter(id__in=["p2", "p3", "gone"]), "delete", mode) == 2
    assert scripts_called(redis_client) - before == 3  # one call per id, one round trip

    events = await call(feed, "read", mode)
    assert sorted((e.op, e.id, e.version) for e in events) == [
        ("delete", id, stored[id]) for id in ("p1", "p2", "p3")]
    docs = assert_indexes_consistent(redis_client, Person)
    assert sorted(docs) == [f"p{k}" for k in (0, 4, 5, 6, 7, 8, 9)]
    # a unique value of a deleted document is free again
    await call(Person(id="new", name="x", email="1@x"), "save", mode)


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_of_another_type_refuses_the_delete_and_changes_nothing(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Person(id="a", name="n", age=1, tags=["t"], email="a@x"), "save", mode)
    ks = KeySpace(Person._meta)
    for key in (ks.index(0, "tags"), ks.ids(0)):
        saved = redis_client.dump(key)
        redis_client.delete(key)
        redis_client.set(key, "written by someone else")
        before = snapshot(redis_client)
        with pytest.raises(WrongTypeError) as error:
            await call(Person.objects.filter(id="a"), "delete", mode)
        assert error.value.key == key
        assert snapshot(redis_client) == before
        redis_client.delete(key)
        redis_client.restore(key, 0, saved)
    assert await call(Person.objects.filter(id="a"), "delete", mode) == 1
    assert_indexes_consistent(redis_client, Person)


@pytest.mark.parametrize("mode", MODES)
async def test_each_key_of_another_type_refuses_before_anything_is_written(
        conn: Any, redis_client: Any, mode: str) -> None:
    # every key delete.lua reads or writes, proven of its type before its first write: the
    # state hash and the document by their reads, the meta hash by its HMGET, the first
    # index (name) and a middle one (age) by their ZREM, the stream by the event's XADD (the
    # entries removed before it are put back)
    await call(Person(id="a", name="n", age=1, tags=["t"], email="a@x"), "save", mode)
    ks = KeySpace(Person._meta)
    for key, foreign in ((ks.state(0), "string"), (ks.doc(0, "a"), "list"),
                         (ks.meta(0, "a"), "string"), (ks.index(0, "name"), "string"),
                         (ks.index(0, "age"), "hash"), (ks.changes(0), "string")):
        saved = redis_client.dump(key)
        redis_client.delete(key)
        if foreign == "string":
            redis_client.set(key, "written by someone else")
        elif foreign == "list":
            redis_client.rpush(key, "written by someone else")
        else:
            redis_client.hset(key, "by", "someone else")
        before = snapshot(redis_client)
        with pytest.raises(WrongTypeError) as error:
            await call(Person.objects.filter(id="a"), "delete", mode)
        assert error.value.key == key
        assert snapshot(redis_client) == before
        redis_client.delete(key)
        if saved is not None:
            redis_client.restore(key, 0, saved)
    assert await call(Person.objects.filter(id="a"), "delete", mode) == 1
    assert_indexes_consistent(redis_client, Person)


@pytest.mark.usefixtures("format2_writes")
@pytest.mark.parametrize("mode", MODES)
async def test_an_empty_string_at_the_document_key_is_a_document_not_an_expiry(
        conn: Any, redis_client: Any, mode: str) -> None:
    # (damaged: a stored document is never empty. It is deleted as a live one, with its
    # "delete" event, not purged as an expired one. Format 2: its meta hash says it lives;
    # a format-3 document's empty value has neither header nor meta hash to say so)
    await call(Person(id="a", name="n", age=1, tags=["t"], email="a@x"), "save", mode)
    ks = KeySpace(Person._meta)
    redis_client.set(ks.doc(0, "a"), b"")
    feed = Person.objects.changes(wait=0)
    await call(feed, "read", mode)
    assert await call(Person.objects.filter(id="a"), "delete", mode) == 1
    assert [e.op for e in await call(feed, "read", mode)] == ["delete"]
    assert not redis_client.exists(ks.doc(0, "a"), ks.meta(0, "a"))
    assert_indexes_consistent(redis_client, Person)
