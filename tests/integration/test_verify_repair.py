"""verify() and repair() on Redis: each kind of damage is found, counted and fixed, nothing
is reported while writers run on a healthy collection, and a collection damaged by a real
allkeys-lru eviction comes back exact.

Damage is made the way it happens: keys lost (eviction, a partial restore, a manual DEL),
entries left behind, a meta hash written by hand. Never a mock of Redis.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
import redis
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import (
    ArrayField,
    Document,
    IntField,
    StringField,
    VersionConflict,
    sortable,
)
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.stored import header


class Shop(Document):
    name = StringField(indexed=True)
    city = StringField(indexed=True)
    code = StringField(unique=True)
    tags = ArrayField(StringField(), indexed=True)
    n = IntField()

    class Meta:
        collection = "vr_shops"
        indexes = [("city", "name")]


KEYS = KeySpace(Shop._meta)


def seed(count: int = 30) -> list[Shop]:
    return Shop.objects.bulk_create_sync(
        [Shop(name=f"s{i}", city=("paris", "rome")[i % 2], code=f"c{i}", tags=[f"t{i % 3}"],
              n=i) for i in range(count)])


@pytest.mark.parametrize("mode", MODES)
async def test_a_healthy_collection_verifies_ok(conn: Any, mode: str) -> None:
    await asyncio.to_thread(seed)  # blocking: off the loop's thread
    report = await call(Shop.objects, "verify", mode)
    assert report.ok and report.problems == {}
    assert report.documents == 30 and report.expired == 0
    # 5 indexes: name, city, code, tags (one element each), city__name
    assert report.entries == 30 * 5
    assert report.eviction_policy == "noeviction"


@pytest.mark.usefixtures("format2_writes")  # (format 3's: test_format3_tools.py)
@pytest.mark.parametrize("mode", MODES)
async def test_each_kind_of_damage_is_found_and_repaired(conn: Any, redis_client: Any,
                                                         mode: str) -> None:
    await asyncio.to_thread(seed)
    r = redis_client
    r.delete(KEYS.meta(0, "3"))                                  # missing_meta
    r.hset(KEYS.meta(0, "4"), "v", "garbage")                    # bad_meta
    r.delete(KEYS.doc(0, "5"), KEYS.meta(0, "5"))                # dangling id (+ orphan entries)
    r.delete(KEYS.doc(0, "6"))                                   # orphan meta (+ orphan entries)
    r.zrem(KEYS.ids(0), sortable.id_key("7"))                    # unlisted document
    r.hset(KEYS.meta(0, "8"), "f:city", sortable.pack_list([b"junk"]))  # stale meta
    r.delete(KEYS.index(0, "tags"))                              # an index key lost whole
    r.zadd(KEYS.index(0, "name"), {b"\x03zzz\x00" + sortable.id_key("9"): 0})  # stale entry
    r.hset(KEYS.state(0), "clock", "1")                          # clock behind

    report = await call(Shop.objects, "verify", mode)
    assert not report.ok
    assert report.problems == {
        "missing_meta": 1, "bad_meta": 1, "dangling_ids": 1, "orphan_meta": 1,
        "unlisted_documents": 1, "stale_meta": 1, "missing_entries": report.problems[
            "missing_entries"], "stale_entries": 6, "orphan_entries": 8, "clock_behind": 1}
    assert report.samples["missing_meta"] == ["3"] and report.samples["dangling_ids"] == ["5"]
    assert report.problems["missing_entries"] >= 27  # every document's tags entry
    # (stale entries: the 4 entries of 3, which has no meta hash to record them, the junk
    # name entry of 9, and the city entry of 8, whose meta hash records "junk" instead;
    # orphan entries: the 4 remaining indexes x ids 5 and 6)

    repaired = await call(Shop.objects, "repair", mode)
    assert repaired.ok, str(repaired)
    assert repaired.before.problems == report.problems
    assert repaired.fixed["dangling_ids"] == 1 and repaired.fixed["orphan_meta"] == 1
    assert (await call(Shop.objects, "verify", mode)).ok
    assert_indexes_consistent(redis_client, Shop)
    # queries answer from the repaired indexes what the documents say
    everything = await call(Shop.objects, "all", mode)
    assert {s.id for s in everything} == {str(i) for i in range(1, 31)} - {"5", "6"}
    for tag in ("t0", "t1", "t2"):
        want = {s.id for s in everything if tag in s.tags}
        got = await call(Shop.objects.filter(tags__contains=tag), "all", mode)
        assert {s.id for s in got} == want
    adopted = await call(Shop.objects, "get", mode, id="3")
    adopted.n = 99  # a document given a meta hash is writable again
    await call(adopted, "save", mode)


@pytest.mark.usefixtures("format2_writes")
def test_unique_duplicates_and_corrupt_documents_are_reported_not_guessed(
        conn: Any, redis_client: Any) -> None:
    seed(4)  # ids "1".."4" hold codes "c0".."c3"
    # "4" takes "c1", which "2" holds, behind the scripts' back (document, meta, entries)
    code = Shop._meta.fields["code"]
    raw = redis_client.get(KEYS.doc(0, "4")).replace(b'"c3"', b'"c1"')
    redis_client.set(KEYS.doc(0, "4"), raw)
    redis_client.hset(KEYS.meta(0, "4"), "f:code", sortable.pack_list(code.index_keys("c1")))
    redis_client.zadd(KEYS.index(0, "code"), {code.index_keys("c1")[0] + sortable.id_key("4"): 0})
    redis_client.zrem(KEYS.index(0, "code"), code.index_keys("c3")[0] + sortable.id_key("4"))
    redis_client.set(KEYS.doc(0, "3"), b"{not json")
    report = Shop.objects.verify_sync()
    assert report.problems == {"unique_duplicates": 1, "corrupt_documents": 1}
    repaired = Shop.objects.repair_sync()
    assert not repaired.ok
    assert repaired.after.problems == {"unique_duplicates": 1, "corrupt_documents": 1}
    assert repaired.after.samples["unique_duplicates"] == ["code: 2, 4"]


def test_unique_duplicates_and_corrupt_format_3_documents_are_reported_not_guessed(
        conn: Any, redis_client: Any) -> None:
    """As above, on format-3 documents (no meta hash: the header stays, the payload is
    changed behind the scripts' back)."""
    seed(4)  # ids "1".."4" hold codes "c0".."c3"
    code = Shop._meta.fields["code"]
    raw = redis_client.get(KEYS.doc(0, "4"))
    assert header(raw) is not None and not redis_client.exists(KEYS.meta(0, "4"))
    redis_client.set(KEYS.doc(0, "4"), raw.replace(b'"c3"', b'"c1"'))
    redis_client.zadd(KEYS.index(0, "code"), {code.index_keys("c1")[0] + sortable.id_key("4"): 0})
    redis_client.zrem(KEYS.index(0, "code"), code.index_keys("c3")[0] + sortable.id_key("4"))
    raw = redis_client.get(KEYS.doc(0, "3"))
    version, w, _ = header(raw)
    redis_client.set(KEYS.doc(0, "3"), b"\x01%d\x00%s\x00{not json" % (version, w))
    report = Shop.objects.verify_sync()
    assert report.problems == {"unique_duplicates": 1, "corrupt_documents": 1}
    repaired = Shop.objects.repair_sync()
    assert not repaired.ok
    assert repaired.after.problems == {"unique_duplicates": 1, "corrupt_documents": 1}
    assert repaired.after.samples["unique_duplicates"] == ["code: 2, 4"]


def test_verify_reports_nothing_while_writers_run(conn: Any, redis_client: Any) -> None:
    seed(500)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(k: int) -> None:
        rng = random.Random(k)
        try:
            while not stop.is_set():
                doc = Shop.objects.get_many_sync([str(rng.randrange(1, 501))])[0]
                if doc is None:
                    continue
                doc.city = rng.choice(["paris", "rome", "oslo"])
                doc.tags = [rng.choice(["a", "b", "c"]) for _ in range(rng.randrange(3))]
                try:
                    if rng.random() < 0.1:
                        doc.delete_sync()
                    else:
                        doc.save_sync()
                except VersionConflict:
                    pass
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    try:
        reports = [Shop.objects.verify_sync(batch_size=50) for _ in range(3)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert [r.problems for r in reports] == [{}, {}, {}]
    assert Shop.objects.verify_sync().ok
    assert_indexes_consistent(redis_client, Shop)


@pytest.mark.parametrize("mode", MODES)
async def test_expired_documents_awaiting_the_sweep_are_not_problems(
        conn: Any, redis_client: Any, mode: str) -> None:
    await asyncio.to_thread(seed, 5)
    for id in ("1", "2"):
        doc = await call(Shop.objects, "get", mode, id=id)
        await call(doc, "touch", mode, 3600)
        redis_client.pexpire(KEYS.doc(0, id), 1)  # expired early (volatile eviction)
    while redis_client.exists(KEYS.doc(0, "1"), KEYS.doc(0, "2")):
        await asyncio.sleep(0.005)
    report = await call(Shop.objects, "verify", mode)
    assert report.ok and report.expired == 2 and report.documents == 3


def test_a_collection_damaged_by_allkeys_lru_eviction_is_found_and_repaired(
        start_redis: Any) -> None:
    """A real server with allkeys-lru and a small maxmemory (the user opted in with
    allow_eviction=True): documents, meta hashes and index keys are evicted independently.
    verify() sees it; repair() leaves a collection whose every query is exact again."""
    url, _ = start_redis("--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru",
                         "--maxmemory-samples", "10")
    admin = redis.Redis.from_url(url)
    quantumorm.create_connection(url=url, name="default", make_default=True,
                                 allow_eviction=True)
    try:
        written = 0
        for start in range(0, 6000, 200):
            try:
                Shop.objects.bulk_create_sync(
                    [Shop(id=f"e{i}", name=f"s{i}", city=("paris", "rome")[i % 2],
                          code=f"c{i}", tags=["x"], n=i, ) for i in range(start, start + 200)])
                written += 200
            except quantumorm.QuantumORMError:
                pass  # (OOM on a full server, or an index key evicted mid-batch)
        assert int(admin.info("stats")["evicted_keys"]) > 0, "nothing was evicted"
        admin.config_set("maxmemory", "0")  # room to repair
        report = Shop.objects.verify_sync()
        assert not report.ok and report.eviction_policy == "allkeys-lru"
        assert "unsafe_eviction_policy" in report.problems
        damage = set(report.problems) - {"unsafe_eviction_policy"}
        assert damage, "eviction left the collection intact: nothing to repair"
        print(f"\nafter {written} documents written under allkeys-lru: {report}")
        repaired = Shop.objects.repair_sync()
        assert set(repaired.after.problems) == {"unsafe_eviction_policy"}, str(repaired)
        assert_indexes_consistent(admin, Shop)
        alive = Shop.objects.all_sync()
        assert alive, "some documents survived"
        assert {s.id for s in Shop.objects.filter(city="paris").all_sync()} == {
            s.id for s in alive if s.city == "paris"}
        assert Shop.objects.filter(tags__contains="x").count_sync() == len(alive)
    finally:
        admin.close()
        quantumorm.close_all()
