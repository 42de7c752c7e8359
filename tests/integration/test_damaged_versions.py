"""Versions and counters that do not read ("+13", " 13", text, none) where Python takes a
number from a script's reply or a stored value rather than from a write's refusal:

* a meta hash's version returned by ``fetch.lua`` (a get of a document stored before
  documents carried their version; reindex and repartition read it too), by ``query.lua``
  (rows whose versions come from their meta hashes; the two-phase ranking of an ordered
  query over partitions) and by ``restore.lua`` (a move that finds the document already at
  its target): :class:`DamagedMetaError` naming the key and the field, and the move writes
  nothing where it refuses;
* the version beside a write id in a meta hash's recent writes ("r"), read when an insert
  that allocates its id lost its reply: :class:`DamagedMetaError` too;
* the auto-id counter, read by that lookup and carried by a move: :class:`WrongTypeError`;
* a partition's version clock, read by verify(): reported behind, and repaired.

Never a ValueError, never a number read from the damage (int() reads "+13" as 13). Damage
is made by hand, as test_damaged_meta.py makes it.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import (
    DamagedMetaError,
    Document,
    IntField,
    StringField,
    WrongTypeError,
    sortable,
)
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.commands import RedisPlan
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.reader import two_phase_pays
from quantumorm.engine.contract import WriteRequest
from quantumorm.engine.drive import run
from quantumorm.tools.repartition import repartition

# (format-2 documents: what these tests damage is their meta hash, which format 3 keeps
# only as a sweep record)
pytestmark = pytest.mark.usefixtures("format2_writes")

#: how the version is damaged: its stored text made from the good one
DAMAGE = {"sign": lambda v: b"+" + v, "blank": lambda v: b" " + v,
          "text": lambda v: b"garbage", "leading zero": lambda v: b"0" + v}


class Card(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "dv_cards"


def model(partitions: int) -> Any:
    """The collection ``dv_moved`` declared with ``partitions``."""
    meta = type("Meta", (), {"collection": "dv_moved", "partitions": partitions})
    return type(f"Moved{partitions}", (Document,), {
        "__module__": __name__, "title": StringField(indexed=True), "Meta": meta})


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_get_of_an_older_document_with_a_damaged_version_raises_typed(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    """A document key without its version (stored before versions were kept there) is
    read with fetch.lua, whose version is the meta hash's."""
    saved = await call(Card(id="c", title="t", n=1), "save", mode)
    keys = KeySpace(Card._meta)
    doc, meta = keys.doc(0, "c"), keys.meta(0, "c")
    redis_client.set(doc, stored.split(redis_client.get(doc))[1])  # (the older format)
    assert (await call(Card.objects, "get", mode, id="c")).version == saved.version
    redis_client.hset(meta, "v", DAMAGE[how](b"%d" % saved.version))
    with pytest.raises(DamagedMetaError) as raised:
        await call(Card.objects, "get", mode, id="c")
    assert raised.value.key == meta and raised.value.field == "v"
    assert raised.value.id == "c"


def _moving_id(two: Any, count: int) -> str:
    """An id among the first ``count`` auto ids that leaves partition 0 for partition 1."""
    keys = KeySpace(two._meta)
    return next(str(i) for i in range(1, count + 1) if keys.partition_of(str(i)) == 1)


def _everything(redis_client: Any) -> dict[bytes, Any]:
    return {key: redis_client.dump(key) for key in sorted(redis_client.keys("*"))
            if b"repartition" not in key}


@pytest.mark.parametrize("how", [*DAMAGE, "none"])
def test_a_move_that_finds_the_document_at_a_damaged_target_is_refused_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    """A resumed move finds the document already restored at its new partition: the
    version there is compared with the one moving, and when it does not read the move
    is refused before anything of that document is written."""
    one, two = model(1), model(2)
    one.objects.bulk_create_sync([one(title=f"t{i}") for i in range(8)])
    id = _moving_id(two, 8)
    version = one.objects.get_sync(id=id).version
    old, new = KeySpace(one._meta), KeySpace(two._meta)
    # (what an interrupted run leaves: the document restored, its old copy still there)
    redis_client.set(new.doc(1, id), redis_client.get(old.doc(0, id)))
    redis_client.hset(new.meta(1, id), mapping=redis_client.hgetall(old.meta(0, id)))
    if how == "none":
        redis_client.hdel(new.meta(1, id), "v")
    else:
        redis_client.hset(new.meta(1, id), "v", DAMAGE[how](b"%d" % version))
    target = redis_client.hgetall(new.meta(1, id))
    with pytest.raises(DamagedMetaError) as raised:
        repartition(two, from_partitions=1)
    assert raised.value.key == new.meta(1, id) and raised.value.field == "v"
    assert raised.value.id == id
    # the old copy is where it was, the target as it was left
    assert redis_client.exists(old.doc(0, id), old.meta(0, id)) == 2
    assert redis_client.hgetall(new.meta(1, id)) == target


def test_a_move_whose_target_meta_key_holds_another_type_is_refused_typed(
        conn: Any, redis_client: Any) -> None:
    one, two = model(1), model(2)
    one.objects.bulk_create_sync([one(title=f"t{i}") for i in range(8)])
    id = _moving_id(two, 8)
    old, new = KeySpace(one._meta), KeySpace(two._meta)
    redis_client.set(new.doc(1, id), redis_client.get(old.doc(0, id)))
    redis_client.set(new.meta(1, id), "not a hash")  # (foreign data at the target)
    with pytest.raises(WrongTypeError) as raised:
        repartition(two, from_partitions=1)
    assert raised.value.key == new.meta(1, id)
    assert redis_client.exists(old.doc(0, id), old.meta(0, id)) == 2


@pytest.mark.parametrize("how", DAMAGE)
def test_a_move_of_a_document_whose_version_is_damaged_is_refused_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    """The version moved with a document is its meta hash's, read by fetch.lua."""
    one, two = model(1), model(2)
    one.objects.bulk_create_sync([one(title=f"t{i}") for i in range(8)])
    id = _moving_id(two, 8)
    old = KeySpace(one._meta)
    version = redis_client.hget(old.meta(0, id), "v")
    redis_client.hset(old.meta(0, id), "v", DAMAGE[how](version))
    before = _everything(redis_client)
    with pytest.raises(DamagedMetaError) as raised:
        repartition(two, from_partitions=1)
    assert raised.value.key == old.meta(0, id) and raised.value.field == "v"
    # nothing of its batch moved (the batch is read whole before any restore)
    after = _everything(redis_client)
    assert {k: v for k, v in after.items() if b"sequence" not in k and b":seq" not in k} == {
        k: v for k, v in before.items() if b"sequence" not in k and b":seq" not in k}


def _older(redis_client: Any, keys: KeySpace, partition: int, id: str) -> None:
    """Store the document of ``id`` as before documents carried their version."""
    doc = keys.doc(partition, id)
    redis_client.set(doc, stored.split(redis_client.get(doc))[1])


#: queries over Card whose rows' versions come from their meta hashes (the documents are
#: stored without theirs), by the paths of query.lua that read them: the exact walk's
#: shortcut (an equality, an ordered range) and the general one (a second field tested)
QUERIES = {
    "walk": lambda: Card.objects.filter(title="t"),
    "tested": lambda: Card.objects.filter(title="t", n__gte=0),
    "ordered": lambda: Card.objects.filter(n__gte=0).order_by("-n"),
}


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("mode", MODES)
async def test_a_query_that_reads_a_damaged_version_raises_typed(
        conn: Any, redis_client: Any, mode: str, query: str, how: str) -> None:
    await call(Card.objects, "bulk_create", mode,
               [Card(id=str(i), title="t", n=i) for i in range(5)])
    keys = KeySpace(Card._meta)
    for i in range(5):
        _older(redis_client, keys, 0, str(i))
    found = await call(QUERIES[query](), "all", mode)
    assert sorted(c.n for c in found) == [0, 1, 2, 3, 4] and all(c.version for c in found)
    meta = keys.meta(0, "3")
    redis_client.hset(meta, "v", DAMAGE[how](redis_client.hget(meta, "v")))
    with pytest.raises(DamagedMetaError) as raised:
        await call(QUERIES[query](), "all", mode)
    assert raised.value.key == meta and raised.value.field == "v"


class Spread(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "dv_spread"
        partitions = 8


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_two_phase_query_that_ranks_a_damaged_version_raises_typed(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    """Ordered over several partitions with a window large enough, a query ranks first
    (ids, versions and sort keys, the versions from the meta hashes), then fetches the
    winners."""
    await call(Spread.objects, "bulk_create", mode,
               [Spread(id=str(i), title="t", n=i) for i in range(100)])
    query = Spread.objects.filter(n__gte=0).order_by("-n").limit(80)
    assert two_phase_pays(Spread._meta.partitions, 80)
    assert [s.n for s in await call(query, "all", mode)] == list(range(99, 19, -1))
    keys = KeySpace(Spread._meta)
    meta = keys.meta(keys.partition_of("35"), "35")
    redis_client.hset(meta, "v", DAMAGE[how](redis_client.hget(meta, "v")))
    with pytest.raises(DamagedMetaError) as raised:
        await call(query, "all", mode)
    assert raised.value.key == meta and raised.value.field == "v"


#: damage to the version part of a write's entry in a meta hash's "r" (its write id kept)
RECENT_DAMAGE = {"sign": b"+000000000000013", "blank": b" 000000000000013",
                 "text": b"garbage-garbage-", "zero": b"0" * 16}


@pytest.mark.parametrize("how", RECENT_DAMAGE)
def test_an_allocated_insert_looked_up_in_a_damaged_record_raises_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    """An insert that allocates its id, its reply lost, is looked up by its write id among
    the meta hashes of the ids allocated last: found there, the version beside it must
    read."""
    Card(id="warm", title="w", n=0).save_sync()  # (the schema read, the scripts loaded)
    doc = Card(title="lost reply", n=1)
    layout = conn.backend._state(Card._meta).writes
    lost = layout.save(WriteRequest("insert", None, 0, doc.clean(), doc._values(), None))
    executor = conn.store.sync_executor()
    (reply,) = executor.execute(RedisPlan((lost.call(),)))
    assert reply[0] == b"OK"  # applied; suppose its reply never came back
    id = sortable.id_from_key(bytes(reply[2]))
    meta = KeySpace(Card._meta).meta(0, id)
    recent = redis_client.hget(meta, "r")
    assert recent[:16] == lost.write_id.encode()
    redis_client.hset(meta, "r", recent[:16] + RECENT_DAMAGE[how] + recent[32:])
    with pytest.raises(DamagedMetaError) as raised:
        run(conn.backend._settle_allocating(Card._meta, lost), executor)
    assert raised.value.key == meta and raised.value.field == "r" and raised.value.id == id


#: an auto-id counter written by someone else: int() reads the first two as 13
COUNTER_DAMAGE = {"sign": b"+13", "blank": b" 13", "text": b"thirteen"}


@pytest.mark.parametrize("how", COUNTER_DAMAGE)
def test_a_move_that_carries_a_damaged_id_counter_raises_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    one, two = model(1), model(2)
    one.objects.bulk_create_sync([one(title=f"t{i}") for i in range(8)])
    old = KeySpace(one._meta)
    redis_client.set(old.sequence, COUNTER_DAMAGE[how])
    with pytest.raises(WrongTypeError) as raised:
        repartition(two, from_partitions=1)
    assert raised.value.key == old.sequence
    assert not redis_client.exists(KeySpace(two._meta).sequence)
    assert one.objects.count_sync() == 8  # (nothing moved)


@pytest.mark.parametrize("how", COUNTER_DAMAGE)
def test_an_allocated_insert_looked_up_under_a_damaged_id_counter_raises_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    Card(id="warm", title="w", n=0).save_sync()
    doc = Card(title="lost reply", n=1)
    lost = conn.backend._state(Card._meta).writes.save(
        WriteRequest("insert", None, 0, doc.clean(), doc._values(), None))
    sequence = KeySpace(Card._meta).sequence
    redis_client.set(sequence, COUNTER_DAMAGE[how])
    with pytest.raises(WrongTypeError) as raised:
        run(conn.backend._settle_allocating(Card._meta, lost), conn.store.sync_executor())
    assert raised.value.key == sequence


@pytest.mark.parametrize("how", COUNTER_DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_version_clock_is_reported_and_repaired(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    """A partition's clock that does not read is behind every version it gave (the
    scripts read it as 0, or as what tonumber() finds in it): verify() says so, repair()
    writes it above them."""
    saved = await call(Card(id="c", title="t", n=1), "save", mode)
    state = KeySpace(Card._meta).state(0)
    redis_client.hset(state, "clock", COUNTER_DAMAGE[how])
    report = await call(Card.objects, "verify", mode)
    assert report.problems == {"clock_behind": 1}
    assert (await call(Card.objects, "repair", mode)).ok
    clock = redis_client.hget(state, "clock")
    assert clock.isdigit() and int(clock) >= saved.version
    again = await call(Card(id="d", title="t", n=2), "save", mode)
    assert again.version > saved.version
