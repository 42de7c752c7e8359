"""The repartition tool: documents move to the partition their id maps to under a new
count, with versions, index entries and expiry; an interrupted run resumes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import assert_indexes_consistent

from quantumorm import Document, IntField, ListField, StringField
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.tools.repartition import Progress, RepartitionError, repartition


def model(partitions: int, partition_by: str = "id") -> Any:
    """The same model (collection ``rp_items``) declared with ``partitions``."""
    meta = type("Meta", (), {"collection": "rp_items", "partitions": partitions,
                             "partition_by": partition_by})
    return type(f"Item{partitions}{partition_by}", (Document,), {
        "__module__": __name__, "kind": StringField(indexed=True),
        "n": IntField(indexed=True), "tags": ListField(StringField(), indexed=True),
        "Meta": meta})


def seed(Item: Any, count: int = 230) -> dict[str, int]:
    Item.objects.bulk_create_sync([Item(kind=f"k{i % 5}", n=i, tags=[f"t{i % 3}"])
                                   for i in range(count)])
    versions = {}
    for doc in Item.objects.filter(n__lt=40).all_sync():
        doc.n += 1000
        doc.save_sync()
    for doc in Item.objects.all_sync():
        versions[doc.id] = doc.version
    Item.objects.get_sync(id="7").touch_sync(300)
    return versions


def check(Item: Any, redis_client: Any, versions: dict[str, int]) -> None:
    docs = {d.id: d for d in Item.objects.all_sync()}
    assert {id: d.version for id, d in docs.items()} == versions
    assert Item.objects.filter(n__gte=1000).count_sync() == 40
    assert Item.objects.filter(kind="k2", tags__contains="t1").count_sync() == len(
        [d for d in docs.values() if d.kind == "k2" and "t1" in d.tags])
    assert 290 < Item.objects.get_sync(id="7").ttl_sync() <= 300
    assert_indexes_consistent(redis_client, Item)
    keys = KeySpace(Item._meta)
    for id in docs:  # each document in the partition its id maps to now
        assert redis_client.exists(keys.doc(keys.partition_of(id), id))


def test_growing_and_shrinking_keep_documents_versions_indexes_and_expiry(
        conn: Any, redis_client: Any) -> None:
    one, four, two = model(1), model(4), model(2)
    versions = seed(one)
    reports: list[Progress] = []
    final = repartition(four, from_partitions=1, batch=50, progress=reports.append)
    assert final.done and final.scanned == 230 and final.moved + final.stayed == 230
    assert final.moved > 100 and len(reports) > 4
    check(four, redis_client, versions)
    created = four(kind="new", n=-1).save_sync()  # the id counter carried over
    assert int(created.id) == 231
    assert created.version > 0
    versions[created.id] = created.version
    final = repartition(two, from_partitions=4, batch=64)
    assert final.done and final.scanned == 231
    check(two, redis_client, versions)
    keys = KeySpace(four._meta)
    assert not redis_client.exists(keys.ids(2), keys.ids(3), *keys.indexes(3))
    assert repartition(two, from_partitions=2).moved == 0  # nothing to do


def test_an_interrupted_run_resumes(conn: Any, redis_client: Any) -> None:
    one, four = model(1), model(4)
    versions = seed(one)

    def crash(progress: Progress) -> None:
        if progress.scanned >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        repartition(four, from_partitions=1, batch=50, progress=crash)
    with pytest.raises(RepartitionError, match="finish that one"):
        repartition(model(8), from_partitions=1)
    final = repartition(four, from_partitions=1, batch=50)
    assert final.done and final.scanned == 230 - 100
    check(four, redis_client, versions)


def test_on_a_cluster(cluster_conn: Any, redis_cluster: Any) -> None:
    import redis

    four, sixteen = model(4), model(16)
    versions = seed(four, 120)
    assert repartition(sixteen, from_partitions=4).done
    raw = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.live()[0].port)
    try:
        check(sixteen, raw, versions)
    finally:
        raw.close()


def test_switching_to_tag_partitioning_at_the_same_count(conn: Any, redis_client: Any) -> None:
    by_id, by_tag = model(4), model(4, "tag")
    by_id.objects.bulk_create_sync([by_id(id=f"{{t{i % 3}}}:{i}", kind="k", n=i,
                                          tags=["t"]) for i in range(60)])
    versions = {d.id: d.version for d in by_id.objects.all_sync()}
    final = repartition(by_tag, from_partitions=4, from_partition_by="id")
    assert final.done and final.moved > 0
    assert {d.id: d.version for d in by_tag.objects.all_sync()} == versions
    keys = KeySpace(by_tag._meta)
    assert len({keys.partition_of(id) for id in versions}) <= 3  # one per tag
    assert_indexes_consistent(redis_client, by_tag)


def test_the_connection_is_chosen_by_object_or_by_name(conn: Any) -> None:
    one, two = model(1), model(2)
    seed(one, 20)
    assert repartition(two, from_partitions=1, connection=conn).scanned == 20
    assert repartition(one, from_partitions=2, using=conn.name).scanned == 20
    with pytest.raises(ValueError, match="not both"):
        repartition(two, from_partitions=1, connection=conn, using=conn.name)


def test_a_move_is_refused_while_transactions_lock_documents(conn: Any, redis_client: Any) -> None:
    """A committed transaction's intents would be applied to the partition a document left:
    the move refuses, nothing moved, until the locks are settled (here by the sweeper, past
    the deadline of a client that died after its prepare)."""
    two, four = model(2), model(4)
    versions = seed(two)
    keys = KeySpace(two._meta)
    pair = ["1", next(str(i) for i in range(2, 50)
                      if keys.partition_of(str(i)) != keys.partition_of("1"))]
    tx = conn.transaction_sync(timeout=0.3)
    for id in pair:
        doc = tx.get(two, id)
        doc.n += 1
        tx.save(doc)
    op = tx._work.commit(conn.backend)  # begin and prepare, then the client dies
    executor = conn._store.sync_executor()
    plan = op.send(executor.execute(next(op)))
    op.send(executor.execute(plan))
    op.close()
    with pytest.raises(RepartitionError, match="hold locks"):
        repartition(four, from_partitions=2)
    assert not redis_client.exists("{qorm:rp_items}:repartition")
    assert all(redis_client.exists(keys.doc(keys.partition_of(id), id)) for id in versions)
    time.sleep(0.4)
    two.objects.sweep_sync()
    assert repartition(four, from_partitions=2).done
    check(four, redis_client, versions)
