"""QuantumORM on a real Redis Cluster (3 masters, 3 replicas on loopback ports): the same
model code as on one server, with ``Meta.partitions`` spreading a collection over the
masters. Writes stay one script in one slot; queries fan out and merge exactly."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
import redis
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import (
    Document,
    IntField,
    ListField,
    StringField,
    UniqueViolation,
    sortable,
)
from quantumorm.backends.redis.keys import KeySpace

AWKWARD = ["plain", "{tag}", "}{", "{", "}", "a{b}c", "{}", "x:y", "sp ace", "ünï", "*", "42",
           "{p1}:doc", "%7B", "\n", "a" * 300]


class Order(Document):
    customer = StringField(indexed=True)
    total = IntField(indexed=True)
    status = StringField(indexed=True, default="new")
    tags = ListField(StringField(), indexed=True)

    class Meta:
        collection = "cl_orders"
        partitions = 16
        partition_by = "tag"  # ids sharing a {tag} share a partition (transactions)


class Single(Document):
    """One partition: the whole collection in one slot (unique indexes allowed)."""

    email = StringField(unique=True)

    class Meta:
        collection = "cl_single"


@pytest.fixture
def raw(redis_cluster: Any) -> Any:
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.live()[0].port)
    try:
        yield client
    finally:
        client.close()


def seed(count: int = 200) -> list[Order]:
    rng = random.Random(7)
    return [Order(id=f"o{i}", customer=f"c{rng.randint(0, 9)}", total=rng.randint(0, 1000),
                  status=rng.choice(["new", "paid", "sent"]),
                  tags=rng.sample(["a", "b", "c", "d"], rng.randint(0, 2)))
            for i in range(count)]


@pytest.mark.parametrize("mode", MODES)
async def test_documents_spread_over_every_master_and_read_back(
        cluster_conn: Any, redis_cluster: Any, raw: Any, mode: str) -> None:
    docs = await call(Order.objects, "bulk_create", mode, seed())
    assert len(docs) == 200
    per_master = []
    for node in redis_cluster.masters_now():
        client = node.client()
        try:
            per_master.append(client.dbsize())
        finally:
            client.close()
    assert len(per_master) == 3 and all(n > 0 for n in per_master)  # all masters hold data
    got = await call(Order.objects, "get_many", mode, ["o5", "o150", "missing"])
    assert [d.id if d else None for d in got] == ["o5", "o150", None]
    one = got[0]
    one.total = 5000
    await call(one, "save", mode)
    assert (await call(Order.objects, "get", mode, id="o5")).total == 5000
    assert await call(Order.objects.filter(total__gte=5000), "count", mode) == 1
    assert await call(one, "delete", mode) is True
    assert await call(Order.objects, "count", mode) == 199
    assert_indexes_consistent(raw, Order)


@pytest.mark.parametrize("mode", MODES)
async def test_queries_merge_order_offset_limit_and_count_across_partitions(
        cluster_conn: Any, mode: str) -> None:
    docs = seed()
    await call(Order.objects, "bulk_create", mode, docs)

    def expect(pred: Any, key: Any, reverse: bool = False) -> list[str]:
        return [d.id for d in sorted((d for d in docs if pred(d)), key=key, reverse=reverse)]

    q = Order.objects.filter(total__gte=300, total__lt=700).order_by("-total", "id")
    want = expect(lambda d: 300 <= d.total < 700, lambda d: (-d.total, d.id))
    assert [d.id for d in await call(q, "all", mode)] == want
    assert [d.id for d in await call(q[5:17], "all", mode)] == want[5:17]
    assert await call(q, "count", mode) == len(want)
    assert await call(q[3:9], "count", mode) == 6
    paid = Order.objects.filter(status="paid", tags__contains="a").order_by("customer", "id")
    want = expect(lambda d: d.status == "paid" and "a" in d.tags,
                  lambda d: (d.customer, d.id))
    assert [d.id for d in await call(paid, "all", mode)] == want
    assert await call(Order.objects.filter(customer="c3"), "exists", mode)
    # keyset pages across partitions: every document once, in order, while one is inserted
    seen: list[str] = []
    page = await call(Order.objects.order_by("total", "id"), "paginate", mode, per_page=30,
                      after=None)
    while True:
        seen += [d.id for d in page.items]
        if not page.next_cursor:
            break
        if len(seen) == 60:
            # sorts before the current position: a keyset page never shows or repeats it
            await call(Order(id="late", customer="c0", total=-1), "save", mode)
        page = await call(Order.objects.order_by("total", "id"), "paginate", mode,
                          per_page=30, after=page.next_cursor)
    assert seen == expect(lambda d: True, lambda d: (d.total, d.id))


async def test_every_key_of_a_write_is_in_one_slot_even_for_awkward_ids(
        cluster_conn: Any, raw: Any) -> None:
    keys = KeySpace(Order._meta)
    for id in AWKWARD:
        await Order(id=id, customer="x", total=1, tags=["t"]).save()
    for id in AWKWARD:
        doc = await Order.objects.get(id=id)
        assert doc.customer == "x"
        partition = keys.partition_of(id)
        slot = raw.keyslot(keys.doc(partition, id))
        for key in (keys.meta(partition, id), keys.ids(partition), keys.ttl(partition),
                    keys.changes(partition), *keys.indexes(partition)):
            assert raw.keyslot(key) == slot
    assert await Order.objects.filter(customer="x").count() == len(AWKWARD)
    assert_indexes_consistent(raw, Order)
    for id in AWKWARD:
        assert await (await Order.objects.get(id=id)).delete()
    assert await Order.objects.count() == 0


@pytest.mark.parametrize("mode", MODES)
async def test_transactions_ttl_unique_and_events(cluster_conn: Any, mode: str) -> None:
    connection = cluster_conn
    if mode == "sync":
        def block() -> None:
            with connection.transaction_sync() as tx:
                tx.save(Order(id="{acme}:1", customer="acme", total=1))
                tx.save(Order(id="{acme}:2", customer="acme", total=2))
        await asyncio.to_thread(block)  # blocking: refused on the loop's thread
    else:
        async with connection.transaction() as tx:
            tx.save(Order(id="{acme}:1", customer="acme", total=1))
            tx.save(Order(id="{acme}:2", customer="acme", total=2))
    assert await call(Order.objects.filter(customer="acme"), "count", mode) == 2
    tx = connection.transaction_sync()
    tx.save(Order(id="{acme}:3", customer="acme"))
    tx.save(Order(id="{other}:3", customer="other"))
    keys = KeySpace(Order._meta)
    assert keys.partition_of("{acme}:x") != keys.partition_of("{other}:x")
    await asyncio.to_thread(tx.commit)  # (two slots, maybe two masters: a two-phase commit)
    assert await call(Order.objects.filter(id__in=["{acme}:3", "{other}:3"]), "count",
                      mode) == 2
    await call(Order(id="short", customer="t", total=1), "save", mode, ttl=0.1)
    await asyncio.sleep(0.2)
    assert await call(Order.objects.filter(customer="t"), "count", mode) == 0
    assert await call(Order.objects, "sweep", mode) == 1
    await call(Single(id="s1", email="a@x"), "save", mode)
    with pytest.raises(UniqueViolation, match="email"):
        await call(Single(id="s2", email="a@x"), "save", mode)
    feed = Order.objects.changes(since="0", wait=0)
    events = [(e.op, e.id) for e in (await asyncio.to_thread(list, feed) if mode == "sync"
                                    else [e async for e in feed])]
    assert sorted(events) == sorted([("create", "{acme}:1"), ("create", "{acme}:2"),
                                     ("create", "{acme}:3"), ("create", "{other}:3"),
                                     ("create", "short"), ("expire", "short")])


def test_a_patch_purges_and_sweeps_every_index_on_a_cluster(cluster_conn: Any,
                                                            raw: Any) -> None:
    """An update by id (patch.lua) is sent the keys of the indexes it touches alone; its
    purge of an expired document and its sweep, which remove entries from every index,
    build the other indexes' names in the slot of the keys sent: a cluster runs them."""
    for i in range(3):
        doc = Order(id=f"{{swept}}:{i}", customer="swept", total=i, tags=["a", "b"])
        doc.save_sync(ttl=0.2) if i else doc.save_sync()
    time.sleep(0.4)
    # (the expired document's leftovers purged on the way: nothing updated)
    assert Order.objects.filter(id="{swept}:1").update_sync(total=7) == 0
    # (the live one patched; the other expired one swept after the write)
    assert Order.objects.filter(id="{swept}:0").update_sync(total=9) == 1
    assert Order.objects.filter(customer="swept").count_sync() == 1
    keys = KeySpace(Order._meta)
    p = keys.partition_of("{swept}:0")
    assert raw.zcard(keys.ttl(p)) == 0
    for name in ("customer", "status", "tags"):  # (the indexes the patches did not touch)
        members = raw.zrange(keys.index(p, name), 0, -1)
        assert not [m for m in members if sortable.id_key("{swept}:1") in m
                    or sortable.id_key("{swept}:2") in m], name
    assert_indexes_consistent(raw, Order)


async def test_a_consumer_group_and_a_waiting_feed_on_a_cluster(cluster_conn: Any) -> None:
    group = Order.objects.consumer_group("ship", start="0")
    worker = group.consumer("w1", wait=0)
    await Order.objects.bulk_create(seed(40))
    handled = []
    async for event in worker:
        handled.append(event.id)
        await worker.ack(event)
    assert sorted(handled) == sorted(f"o{i}" for i in range(40))
    assert await group.pending() == 0
    feed = Order.objects.changes(wait=2)
    await feed.read()

    async def later() -> None:
        await asyncio.sleep(0.3)
        await Order(id="late", customer="z", total=1).save()

    task = asyncio.create_task(later())
    got = [e async for e in _first(feed)]
    await task
    assert [(e.op, e.id) for e in got] == [("create", "late")]


async def _first(feed: Any) -> Any:
    async for event in feed:
        yield event
        return


class Notified(Document):
    title = StringField(indexed=True)

    class Meta:
        collection = "cl_notified"
        partitions = 4
        publish = True


def test_pubsub_and_replica_reads_on_a_cluster(redis_cluster: Any) -> None:
    import threading

    import quantumorm

    redis_cluster.flush()
    quantumorm.create_connection(url=redis_cluster.url, name="default", make_default=True,
                                 read_from_replicas=True, wait_replicas=1)
    replicas = [n for n in redis_cluster.live() if n not in redis_cluster.masters_now()]

    def reads_on_replicas() -> int:
        total = 0
        for node in replicas:
            client = node.client()
            try:
                stats = client.info("commandstats")
            finally:
                client.close()
            total += sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                         for name in ("evalsha_ro", "fcall_ro"))
        return total

    try:
        before = reads_on_replicas()
        with Notified.objects.subscribe(wait=3) as subscription:
            saved: list[Any] = []
            timer = threading.Timer(
                0.2, lambda: saved.append(Notified(id="n1", title="x").save_sync()))
            timer.start()
            try:
                event = next(iter(subscription))
            finally:
                timer.join()
        assert saved[0].version > 0
        assert (event.op, event.id, event.version) == ("create", "n1", saved[0].version)
        # confirmed by a replica (WAIT), so a replica read sees it
        assert [d.id for d in Notified.objects.filter(title="x").all_sync()] == ["n1"]
        assert reads_on_replicas() > before
    finally:
        quantumorm.close_all()


def test_acl_credentials_in_a_cluster_url(start_cluster: Any) -> None:
    import quantumorm

    cluster = start_cluster(masters=3, replicas=0)
    for node in cluster.live():
        client = node.client()
        try:  # an ACL user allowed the collection's keys only
            client.execute_command("ACL", "SETUSER", "app", "on", ">s3cret", "~{qorm:cl_*",
                                   "&*", "+@all")
        finally:
            client.close()
    hosts = cluster.url.removeprefix("redis+cluster://")
    quantumorm.create_connection(url=f"redis+cluster://app:s3cret@{hosts}", name="default",
                                 make_default=True)
    try:
        Order.objects.bulk_create_sync(seed(30))
        assert Order.objects.filter(total__gte=0).count_sync() == 30
    finally:
        quantumorm.close_all()
    quantumorm.create_connection(url=f"redis+cluster://app:wrong@{hosts}", name="default",
                                 make_default=True)
    try:
        with pytest.raises(quantumorm.AuthenticationError):
            Order.objects.count_sync()

        async def count() -> int:
            try:
                return await Order.objects.count()
            finally:
                await quantumorm.get_connection().aclose()

        with pytest.raises(quantumorm.AuthenticationError):
            asyncio.run(count())
    finally:
        quantumorm.close_all()


@pytest.mark.parametrize("mode", MODES)
async def test_an_index_added_on_a_cluster_is_built_verified_and_repaired(
        cluster_conn: Any, raw: Any, mode: str) -> None:
    """The schema lives in one slot, the partitions in many: the layout stamps, the online
    build, verify() and repair() work across the masters."""
    def declare(indexed: bool) -> Any:
        meta = type("Meta", (), {"collection": "cl_build", "partitions": 8})
        return type("Item", (Document,), {
            "name": StringField(indexed=indexed), "n": IntField(indexed=True), "Meta": meta})

    Old = declare(False)
    await call(Old.objects, "bulk_create", mode,
               [Old(id=f"i{k}", name=f"n{k % 7}", n=k) for k in range(400)])
    New = declare(True)
    assert (await call(New.objects.filter(name="n3"), "explain", mode)).scanned
    report = await call(New.objects, "reindex", mode, batch_size=50)
    assert report.ready and report.documents == 400
    found = await call(New.objects.filter(name="n3"), "all", mode)
    assert {d.id for d in found} == {f"i{k}" for k in range(400) if k % 7 == 3}
    assert not (await call(New.objects.filter(name="n3"), "explain", mode)).scanned
    verified = await call(New.objects, "verify", mode)
    assert verified.ok and verified.documents == 400 and not verified.scanned
    keys = KeySpace(New._meta)
    # (damage of either format, in two partitions: format 3's documents keep no meta hash;
    # an unlisted document is not looked for on a Cluster, whose SCAN sees one node)
    victims = {keys.partition_of(f"i{k}"): f"i{k}" for k in range(400)}
    for p, id in sorted(victims.items())[:2]:
        (entry,) = [m for m in raw.zrange(keys.index(p, "name"), 0, -1)
                    if m.endswith(sortable.id_key(id))]
        raw.zrem(keys.index(p, "name"), entry)
    assert (await call(New.objects, "verify", mode)).problems == {"missing_entries": 2}
    assert (await call(New.objects, "repair", mode)).ok
    assert_indexes_consistent(raw, New)
