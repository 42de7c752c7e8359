"""Change events: one stream entry per committed write, appended by the write's own script;
feeds, consumer groups (ack, claim after a crash) and Pub/Sub, on a real server."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from helpers import MODES, call

import quantumorm
from quantumorm import (
    BulkWriteError,
    Document,
    IntField,
    ListField,
    QueryError,
    StringField,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
    WrongTypeError,
)
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.events import ChangeEvent


class Item(Document):
    name = StringField(indexed=True)
    n = IntField(default=0)
    code = StringField(unique=True)

    class Meta:
        collection = "ev_items"


class Full(Document):
    name = StringField(indexed=True)
    tags = ListField(StringField())

    class Meta:
        collection = "ev_full"
        changes_document = True
        publish = True
        partitions = 3


class Quiet(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "ev_quiet"
        changes = False


class Short(Document):
    n = IntField()

    class Meta:
        collection = "ev_short"
        changes_maxlen = 100


async def drain(source: Any, mode: str) -> list[ChangeEvent[Any]]:
    """Every event a feed or consumer yields until it has none for its ``wait`` (a blocking
    ``for`` runs in a worker thread: it is refused on the thread running the loop)."""
    if mode == "sync":
        return await asyncio.to_thread(list, source)
    return [event async for event in source]


def summary(events: list[ChangeEvent[Any]]) -> list[tuple[str, str, int]]:
    return [(e.op, e.id, e.version) for e in events]


@pytest.mark.parametrize("mode", MODES)
async def test_every_committed_write_is_one_event_and_refusals_none(
        conn: Any, redis_client: Any, mode: str) -> None:
    feed = Item.objects.changes(wait=0)
    assert await call(feed, "read", mode) == []  # positions fixed at "now": nothing yet
    a = await call(Item(id="a", name="x", code="A"), "save", mode)
    created_a = a.version
    a.n = 5
    await call(a, "save", mode)
    updated_a = a.version
    await call(a, "save", mode)  # nothing changed: nothing written, no event
    assert a.version == updated_a
    bulk = {d.id: d.version for d in await call(
        Item.objects, "bulk_create", mode,
        [Item(id="b", name="y", code="B"), Item(id="c", name="y", code="C")])}
    stale = await call(Item.objects, "get", mode, id="a")
    stale._version = created_a  # an instance still at the version a was created with
    stale.n = 9
    with pytest.raises(VersionConflict):
        await call(stale, "save", mode)
    with pytest.raises(UniqueViolation):
        await call(Item(id="d", name="z", code="A"), "save", mode)
    assert await call(Item.objects.filter(name="y"), "update", mode, n=7) == 2
    b, c = await call(Item.objects, "get_many", mode, ["b", "c"])
    await call(a, "delete", mode)
    events = await drain(feed, mode)
    assert summary(events) == [
        ("create", "a", created_a), ("update", "a", updated_a), ("create", "b", bulk["b"]),
        ("create", "c", bulk["c"]), ("update", "b", b.version), ("update", "c", c.version),
        ("delete", "a", updated_a)]
    # one partition: its writes took increasing versions (the delete reports the deleted one)
    assert 0 < created_a < updated_a < bulk["b"] < bulk["c"] < b.version < c.version
    assert [e.changed for e in events] == [None, ("n",), None, None, ("n",), ("n",), None]
    assert all(e.model is Item and e.partition == 0 and e.data is None for e in events)
    assert all(len(e.write_id or "") == 16 for e in events if e.op != "delete")
    assert all(isinstance(e.time, datetime) for e in events)
    assert redis_client.xlen("{qorm:ev_items:p0}:x") == 7  # and nothing else went in


@pytest.mark.parametrize("mode", MODES)
async def test_events_carry_the_document_and_cover_every_partition(
        conn: Any, mode: str) -> None:
    feed = Full.objects.changes(since="0", wait=0)
    docs = [Full(id=f"d{i}", name=f"n{i}", tags=["t", str(i)]) for i in range(12)]
    await call(Full.objects, "bulk_create", mode, docs)
    docs[3].tags = ["changed"]
    await call(docs[3], "save", mode)
    await call(docs[4], "delete", mode)
    events = await drain(feed, mode)
    assert len(events) == 14 and {e.partition for e in events} == {0, 1, 2}
    created = {e.id: e.document for e in events if e.op == "create"}
    assert {id: (d.name, d.tags) for id, d in created.items() if d} == {
        f"d{i}": (f"n{i}", ["t", str(i)]) for i in range(12)}
    update = next(e for e in events if e.op == "update")
    assert update.changed == ("tags",) and update.document.tags == ["changed"]
    deleted = next(e for e in events if e.op == "delete")
    assert deleted.id == "d4" and deleted.document.name == "n4"  # the last stored form
    # per document, events come in version order
    for i in range(12):
        versions = [e.version for e in events if e.id == f"d{i}"]
        assert versions == sorted(versions)


@pytest.mark.parametrize("mode", MODES)
async def test_feed_positions_resume_and_since_forms(conn: Any, mode: str) -> None:
    for i in range(3):
        await call(Full(id=f"p{i}", name="a"), "save", mode)
    first = Full.objects.changes(since="0", wait=0)
    assert len(await drain(first, mode)) == 3
    resume_at = first.position
    assert resume_at is not None and resume_at.count(",") == 2
    await asyncio.sleep(0.01)  # stream ids are server milliseconds: keep the two apart
    middle = datetime.now(timezone.utc)
    await asyncio.sleep(0.01)
    for i in range(3, 5):
        await call(Full(id=f"p{i}", name="a"), "save", mode)
    resumed = Full.objects.changes(since=resume_at, wait=0)
    assert sorted(e.id for e in await drain(resumed, mode)) == ["p3", "p4"]
    timed = Full.objects.changes(since=middle, wait=0)
    assert sorted(e.id for e in await drain(timed, mode)) == ["p3", "p4"]
    future = Full.objects.changes(since=middle + timedelta(days=1), wait=0)
    assert await drain(future, mode) == []
    assert len(await drain(Full.objects.changes(since="0", wait=0), mode)) == 5
    for bad in ("1-0", "yesterday", 12, "1-0,2-0,x"):
        with pytest.raises(ValueError, match="since"):
            await call(Full.objects.changes(since=bad), "read", mode)


async def test_a_waiting_feed_receives_a_write_made_while_it_blocks(conn: Any) -> None:
    feed = Item.objects.changes(wait=3)
    await feed.read()  # fixes the position

    async def later() -> Item:
        await asyncio.sleep(0.2)
        return await Item(id="late", name="x", code="L").save()

    task = asyncio.create_task(later())
    got = await feed.read(wait=2)
    late = await task
    assert late.version > 0
    assert summary(got) == [("create", "late", late.version)]


def test_a_blocking_sync_feed_receives_a_write_from_another_thread(conn: Any) -> None:
    feed = Item.objects.changes(wait=1.5)
    feed.read_sync()
    timer = threading.Timer(0.2, lambda: Item(id="t", name="x", code="T").save_sync())
    timer.start()
    try:
        first = next(iter(feed))
    finally:
        timer.join()
    assert (first.op, first.id) == ("create", "t")


@pytest.mark.parametrize("mode", MODES)
async def test_expiry_and_soft_delete_are_events(conn: Any, mode: str) -> None:
    feed = Item.objects.changes(wait=0)
    await call(feed, "read", mode)
    ttl = await call(Item(id="ttl", name="x", code="T"), "save", mode, ttl=0.1)
    soft = await call(Item(id="soft", name="x", code="S"), "save", mode)
    soft_version = soft.version
    assert 0 < ttl.version < soft_version
    await call(soft, "delete", mode, soft=True, ttl=5)
    await asyncio.sleep(0.2)
    assert await call(Item.objects, "sweep", mode) == 1
    # a delete or an expiry reports the version the document had
    assert summary(await drain(feed, mode)) == [
        ("create", "ttl", ttl.version), ("create", "soft", soft_version),
        ("delete", "soft", soft_version), ("expire", "ttl", ttl.version)]


@pytest.mark.parametrize("mode", MODES)
async def test_an_expiry_whose_meta_hash_is_gone_is_an_event_of_version_0(
        conn: Any, redis_client: Any, mode: str) -> None:
    # (an evicted meta hash, under allow_eviction with an allkeys policy: the sweep still
    # purges the document's entries and tells it expired, with version 0, the one event
    # version no write gives; the feed reads it and the events after it)
    feed = Item.objects.changes(wait=0)
    await call(feed, "read", mode)
    gone = await call(Item(id="gone", name="x", code="G"), "save", mode, ttl=0.1)
    redis_client.delete(KeySpace(Item._meta).meta(0, "gone"))
    await asyncio.sleep(0.2)
    assert await call(Item.objects, "sweep", mode) == 1
    later = await call(Item(id="later", name="y", code="L"), "save", mode)
    assert summary(await drain(feed, mode)) == [
        ("create", "gone", gone.version), ("expire", "gone", 0),
        ("create", "later", later.version)]


async def test_changes_can_be_switched_off(conn: Any, redis_client: Any) -> None:
    await Quiet(id="q", name="x").save()
    assert redis_client.exists("{qorm:ev_quiet:p0}:x") == 0
    with pytest.raises(UnsupportedOperation, match="changes = False"):
        await Quiet.objects.changes().read()
    with pytest.raises(QueryError, match="publish"):
        Quiet.objects.subscribe()
    with pytest.raises(QueryError, match="whole collection"):
        Item.objects.filter(name="x").changes()


async def test_the_stream_is_trimmed_to_about_maxlen(conn: Any, redis_client: Any) -> None:
    await Short.objects.bulk_create([Short(n=i) for i in range(1000)], batch_size=100)
    length = redis_client.xlen("{qorm:ev_short:p0}:x")
    # approximate trimming removes whole nodes (100 entries by default): never below MAXLEN
    assert 100 <= length <= 200, length
    kept = await Short.objects.changes(since="0", wait=0, batch=1000).read()
    assert len(kept) == length and kept[-1].id == "1000"


async def test_a_foreign_key_at_the_stream_name_refuses_the_write_untouched(
        conn: Any, redis_client: Any) -> None:
    redis_client.set("{qorm:ev_items:p0}:x", "not a stream")
    with pytest.raises(WrongTypeError):
        await Item(id="a", name="x", code="A").save()
    with pytest.raises(BulkWriteError) as refused:
        await Item.objects.bulk_create([Item(id="b", name="x", code="B"),
                                        Item(id="c", name="x", code="C")])
    assert [type(error) for _, error in refused.value.errors] == [WrongTypeError] * 2
    # (the collection's schema was stored at the model's first use, before the writes, and
    # its layout stamped in the partition's state)
    assert sorted(redis_client.keys("*")) == [b"{qorm:ev_items:p0}:state", b"{qorm:ev_items:p0}:x",
                                              b"{qorm:ev_items}:schema"]


# -- consumer groups --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_group_shares_events_between_consumers_and_tracks_acks(
        conn: Any, mode: str) -> None:
    await call(Full.objects, "bulk_create", mode,
               [Full(id=f"g{i}", name="x") for i in range(10)])
    group = Full.objects.consumer_group("billing", start="0")
    # batch: events per partition and read (3 partitions here)
    one, two = group.consumer("one", batch=1), group.consumer("two", batch=1)
    first = await call(one, "read", mode)
    second = await call(two, "read", mode)
    assert first and second and not {e.id for e in first} & {e.id for e in second}
    rest = await drain(group.consumer("three", wait=0), mode)
    seen = [e.id for e in first + second + rest]
    assert sorted(seen) == sorted(f"g{i}" for i in range(10))  # each once
    assert await call(group, "pending", mode) == 10
    assert await call(one, "ack", mode, *first) == len(first)
    assert await call(one, "ack", mode, *first) == 0  # already acknowledged
    assert await call(group, "pending", mode) == 10 - len(first)
    late = Full.objects.consumer_group("late")  # starts at the next event
    assert await call(late.consumer("x"), "read", mode) == []
    await call(Full(id="new", name="x"), "save", mode)
    assert [e.id for e in await call(late.consumer("x"), "read", mode)] == ["new"]
    with pytest.raises(ValueError):
        await call(one, "ack", mode, "not an event")


@pytest.mark.parametrize("mode", MODES)
async def test_every_write_is_handled_exactly_once_per_group_across_a_crash(
        conn: Any, mode: str) -> None:
    """A worker reads a batch, handles and acknowledges half, and dies. Its successor under
    the same name gets the unacknowledged rest back first; a worker under another name
    claims them instead once they are idle. Either way each committed write is handled
    once, and nothing stays pending."""
    handled: dict[str, list[str]] = {"restart": [], "claim": []}
    written = []
    for i in range(30):
        doc = await call(Item(id=f"w{i}", name="x", code=f"c{i}"), "save", mode)
        written.append(f"{doc.id}@{doc.version}")
        if i % 3 == 0:
            doc.n = i + 1  # a real change for every one (n = 0 would write nothing for w0)
            await call(doc, "save", mode)
            written.append(f"{doc.id}@{doc.version}")
    expected = sorted(written)
    for way in ("restart", "claim"):
        group = Item.objects.consumer_group(f"mail-{way}", start="0")
        crashed = group.consumer("worker-1", batch=16)
        batch = await call(crashed, "read", mode)
        assert len(batch) == 16
        for event in batch[:8]:
            handled[way].append(f"{event.id}@{event.version}")
        await call(crashed, "ack", mode, *batch[:8])
        del crashed  # the process dies: 8 events stay pending, unhandled

        if way == "restart":
            successor = group.consumer("worker-1", batch=16, wait=0)
        else:
            successor = group.consumer("worker-2", batch=16, wait=0)
            await asyncio.sleep(0.06)
            claimed = await call(successor, "claim", mode, 0.05)
            assert [e.stream_id for e in claimed] == [e.stream_id for e in batch[8:]]
            for event in claimed:
                handled[way].append(f"{event.id}@{event.version}")
            await call(successor, "ack", mode, *claimed)
        async def handle(event: ChangeEvent[Any], successor: Any = successor,
                         way: str = way) -> None:
            handled[way].append(f"{event.id}@{event.version}")
            await call(successor, "ack", mode, event)
        for event in await drain(successor, mode):
            await handle(event)
        assert sorted(handled[way]) == expected
        assert await call(group, "pending", mode) == 0


# -- Pub/Sub ----------------------------------------------------------------------------------


def test_pubsub_notifications_reach_a_sync_subscriber(conn: Any) -> None:
    created: list[int] = []
    with Full.objects.subscribe(wait=2) as subscription:
        def write() -> None:
            created.append(Full(id="s1", name="x").save_sync().version)
            Full.objects.filter(id="s1").update_sync(name="y")
        timer = threading.Timer(0.1, write)
        timer.start()
        try:
            events = []
            for event in subscription:
                events.append(event)
                if len(events) == 2:
                    break
        finally:
            timer.join()
    updated = Full.objects.get_sync(id="s1").version
    assert updated > created[0] > 0
    assert summary(events) == [("create", "s1", created[0]), ("update", "s1", updated)]
    assert events[1].changed == ("name",) and events[1].document.name == "y"
    stream = Full.objects.changes(since="0", wait=0).read_sync()
    assert [e.stream_id for e in stream] == [e.stream_id for e in events]
    assert [e.partition for e in stream] == [e.partition for e in events]


async def test_pubsub_notifications_reach_an_async_subscriber(conn: Any) -> None:
    created: list[int] = []
    async with Full.objects.subscribe(wait=2) as subscription:
        async def write() -> None:
            await asyncio.sleep(0.1)
            doc = await Full(id="a1", name="x").save()
            created.append(doc.version)
            await doc.delete()
        task = asyncio.create_task(write())
        events = []
        async for event in subscription:
            events.append(event)
            if len(events) == 2:
                break
        await task
    assert created[0] > 0
    assert summary(events) == [("create", "a1", created[0]), ("delete", "a1", created[0])]
    stream = await Full.objects.changes(since="0", wait=0).read()
    assert {e.stream_id for e in stream} == {e.stream_id for e in events}


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_writers_leave_exactly_one_event_per_committed_version(
        conn: Any) -> None:
    """8 threads and 8 asyncio tasks do read-modify-write increments (retried on conflicts)
    on shared and private documents; the stream holds every committed version exactly once
    and no version that was refused."""
    await Item.objects.bulk_create([Item(id=f"s{i}", name="s", code=f"s{i}") for i in range(2)]
                                   + [Item(id=f"own{i}", name="o", code=f"o{i}")
                                      for i in range(16)])
    feed = Item.objects.changes(since="0", wait=0, batch=1000)

    def bump(doc: Item) -> None:
        doc.n += 1

    def thread_worker(k: int) -> None:
        for round in range(10):
            doc = Item.objects.get_sync(id=f"s{round % 2}")
            doc.update_with_retry_sync(bump, attempts=100)
            own = Item.objects.get_sync(id=f"own{k}")
            own.update_with_retry_sync(bump, attempts=5)

    async def task_worker(k: int) -> None:
        for round in range(10):
            doc = await Item.objects.get(id=f"s{round % 2}")
            await doc.update_with_retry(bump, attempts=100)
            own = await Item.objects.get(id=f"own{k}")
            await own.update_with_retry(bump, attempts=5)

    threads = [threading.Thread(target=thread_worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(task_worker(8 + k) for k in range(8)))
    for thread in threads:
        thread.join()
    final = {doc.id: doc for doc in await Item.objects.all()}
    assert final["s0"].n == final["s1"].n == 80
    assert all(final[f"own{k}"].n == 10 for k in range(16))
    versions: dict[str, list[int]] = {}
    for event in await drain(feed, "async"):
        versions.setdefault(event.id, []).append(event.version)
    # per document, one event per write (the create and one per bump), in version order,
    # the last one at the document's version
    assert set(versions) == set(final)
    for id, doc in final.items():
        seen = versions[id]
        assert len(seen) == 1 + doc.n and seen == sorted(set(seen)), id
        assert seen[-1] == doc.version


async def test_not_available_on_a_backend_without_events(tmp_path: Any) -> None:
    class Local(Document):
        name = StringField()

        class Meta:
            backend = "sqlite"
            collection = "ev_local"

    class Insisting(Document):
        name = StringField()

        class Meta:
            backend = "sqlite"
            collection = "ev_insisting"
            changes = True

    quantumorm.create_connection("sqlite", f"sqlite:///{tmp_path}/db.sqlite", name="lite")
    try:
        await Local(name="x").save()  # the default: events where the backend has them
        with pytest.raises(UnsupportedOperation, match="change events"):
            await Local.objects.changes().read()
        with pytest.raises(UnsupportedOperation, match="change events"):
            await Insisting(name="x").save()
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()


def test_event_reprs_name_the_change() -> None:
    event = ChangeEvent(Item, "update", "a", 2, ("n",), None, "ab", 0, "5-1")
    assert repr(event) == "<ChangeEvent update Item 'a' v2 at 0:5-1>"
    assert event.document is None and event.time == datetime.fromtimestamp(
        0.005, tz=timezone.utc)
