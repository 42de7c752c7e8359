"""Writes sent in batches: a bulk insert checked whole then written batched per key, and an
update of several ids of which one partition refuses an outdated schema layout (only its
patches are sent again)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import (
    BulkWriteError,
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
)
from quantumorm.backends.redis.keys import KeySpace


class Badge(Document):
    code = StringField(unique=True)
    team = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "wb_badges"
        ttl = 3600


class Split(Document):
    team = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "wb_split"
        partitions = 2
        ttl = 3600


@pytest.mark.parametrize("mode", MODES)
async def test_a_bulk_insert_with_an_expiry_is_checked_whole_and_scheduled(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Badge(id="old", code="taken", team="a", n=0), "save", mode)
    feed = Badge.objects.changes(wait=0)
    await call(feed, "read", mode)
    batch = [Badge(id=f"b{i}", code=f"c{i}", team="t", n=i) for i in range(5)]
    batch += [Badge(id="b5", code="taken", team="t", n=5),   # held by a stored document
              Badge(id="b6", code="c1", team="t", n=6),      # taken earlier in the batch
              Badge(id="b2", code="c7", team="t", n=7),      # an id earlier in the batch
              Badge(id="b8", code="c8", team="t", n=8)]
    with pytest.raises(BulkWriteError) as caught:
        await call(Badge.objects, "bulk_create", mode, batch)
    failed = {position: type(error) for position, error in caught.value.errors}
    assert failed == {5: UniqueViolation, 6: UniqueViolation, 7: DuplicateIdError}
    written = caught.value.written
    assert [d.id for d in written] == ["b0", "b1", "b2", "b3", "b4", "b8"]
    versions = [d.version for d in written]
    assert versions == sorted(set(versions))  # one each, in batch order
    # every document written has its expiry and its schedule entry, and one event
    ks = KeySpace(Badge._meta)
    for doc in written:
        assert 0 < redis_client.pttl(ks.doc(0, doc.id)) <= 3600 * 1000
    assert redis_client.zcard(ks.ttl(0)) == 7  # ("old" and the six written)
    events = [(e.op, e.id, e.version) for e in await call(feed, "read", mode)]
    assert events == [("create", d.id, d.version) for d in written]
    stored = {d.id: d.code for d in await call(Badge.objects, "all", mode)}
    assert stored == {"old": "taken", "b0": "c0", "b1": "c1", "b2": "c2", "b3": "c3",
                      "b4": "c4", "b8": "c8"}
    assert_indexes_consistent(redis_client, Badge)


@pytest.mark.parametrize("mode", MODES)
async def test_an_update_of_several_ids_resends_only_the_refused_partition(
        conn: Any, redis_client: Any, mode: str) -> None:
    ks = KeySpace(Split._meta)
    docs = await call(Split.objects, "bulk_create", mode,
                      [Split(id=f"s{i}", team="t", n=i) for i in range(8)])
    by_partition = {ks.partition_of(d.id) for d in docs}
    assert by_partition == {0, 1}
    before = {d.id: d.version for d in docs}
    feed = Split.objects.changes(wait=0)
    await call(feed, "read", mode)
    # partition 1 has seen a newer layout than this connection knows: its patches are
    # refused, the schema is read again and they are sent again; partition 0's are not
    state = ks.state(1)
    redis_client.hset(state, "layout", int(redis_client.hget(state, "layout")) + 1)
    ids = [d.id for d in docs]
    assert await call(Split.objects.filter(id__in=ids), "update", mode, n=100) == 8
    events = [(e.op, e.id) for e in await call(feed, "read", mode)]
    assert sorted(events) == sorted(("update", id) for id in ids)  # one each, none twice
    after = {d.id: d.version for d in await call(Split.objects, "all", mode)}
    assert all(after[id] > before[id] for id in ids)
    assert {d.n for d in await call(Split.objects, "all", mode)} == {100}
    assert_indexes_consistent(redis_client, Split)
