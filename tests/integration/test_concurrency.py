"""Concurrent writers against real Redis: compare-and-set read-modify-write loops from asyncio
tasks and from threads, concurrent update-where and delete-where on overlapping sets, racing
unique claims and auto ids. After each, the indexes must match the stored documents exactly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import assert_indexes_consistent, ids_of

from quantumorm import Document, IntField, StringField, UniqueViolation, VersionConflict

WORKERS = 8
ROUNDS = 25


class Counter(Document):
    value = IntField(indexed=True)
    label = StringField(indexed=True)

    class Meta:
        collection = "c_counters"


class Item(Document):
    group = IntField(indexed=True)
    status = StringField(indexed=True)
    owner = StringField(unique=True)

    class Meta:
        collection = "c_items"


def run_threads(target: Callable[[int], Any], count: int = WORKERS) -> list[Any]:
    """Start ``count`` threads at once (a barrier) and return their results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def body(n: int) -> None:
        barrier.wait()
        try:
            results[n] = target(n)
        except BaseException as exc:  # reported by the caller
            results[n] = exc

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a worker thread hung"
    return results


# -- read-modify-write on one document ---------------------------------------------------------


async def test_async_increments_with_retries(conn: Any, redis_client: Any) -> None:
    created = (await Counter(id="c", value=0, label="v0").save()).version

    async def worker(n: int) -> int:
        mine = await Counter.objects.get(id="c")
        conflicts = 0
        for _ in range(ROUNDS):
            while True:
                await mine.reload()
                mine.value += 1
                mine.label = f"v{mine.value}"
                try:
                    await mine.save()
                    break
                except VersionConflict as exc:
                    assert exc.id == "c" and exc.actual is not None and exc.actual > exc.expected
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    final = await Counter.objects.get(id="c")
    assert final.value == WORKERS * ROUNDS
    assert final.version > created  # each save added exactly 1 to the value
    assert final.label == f"v{WORKERS * ROUNDS}"
    assert sum(conflicts) > 0  # the tasks really raced
    assert ids_of(await Counter.objects.filter(value=WORKERS * ROUNDS).all()) == ["c"]
    assert await Counter.objects.filter(value__lt=WORKERS * ROUNDS).count() == 0
    assert ids_of(await Counter.objects.filter(label=f"v{WORKERS * ROUNDS}").all()) == ["c"]
    assert_indexes_consistent(redis_client, Counter)


def test_threaded_sync_increments_with_retries(conn: Any, redis_client: Any) -> None:
    created = Counter(id="c", value=0, label="v0").save_sync().version

    def worker(n: int) -> int:
        mine = Counter.objects.get_sync(id="c")
        conflicts = 0
        for _ in range(ROUNDS):
            while True:
                mine.reload_sync()
                mine.value += 1
                mine.label = f"v{mine.value}"
                try:
                    mine.save_sync()
                    break
                except VersionConflict:
                    conflicts += 1
        return conflicts

    results = run_threads(worker)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    final = Counter.objects.get_sync(id="c")
    assert final.value == WORKERS * ROUNDS
    assert final.version > created  # each save added exactly 1 to the value
    assert final.label == f"v{WORKERS * ROUNDS}"
    assert ids_of(Counter.objects.filter(value=WORKERS * ROUNDS).all_sync()) == ["c"]
    assert Counter.objects.filter(value__lt=WORKERS * ROUNDS).count_sync() == 0
    assert_indexes_consistent(redis_client, Counter)


# -- update-where / delete-where on overlapping sets ------------------------------------------

GROUPS = 10
PER_GROUP = 5


async def _items() -> dict[str, int]:
    """Creates the items; returns their versions."""
    written = await Item.objects.bulk_create([
        Item(id=f"{g}-{k}", group=g, status="new", owner=f"o{g}-{k}")
        for g in range(GROUPS) for k in range(PER_GROUP)
    ])
    return {d.id: d.version for d in written}


def _covering(group: int) -> set[str]:
    """The statuses written by the workers whose group set contains ``group``."""
    return {f"s{t}" for t in range(WORKERS) if group in (t, t + 1, t + 2)}


async def test_concurrent_update_where_async(conn: Any, redis_client: Any) -> None:
    created = await _items()

    async def worker(t: int) -> list[int]:
        counts = []
        for _ in range(5):
            counts.append(await Item.objects.filter(group__in=[t, t + 1, t + 2]).update(
                status=f"s{t}"))
            await asyncio.sleep(0)
        return counts

    results = await asyncio.gather(*(worker(t) for t in range(WORKERS)))
    for counts in results:
        assert counts == [3 * PER_GROUP] * 5  # the filter is on a field no one changes
    stored = assert_indexes_consistent(redis_client, Item)
    assert len(stored) == GROUPS * PER_GROUP
    for id, (version, data) in stored.items():
        group = data["group"]
        if _covering(group):
            assert data["status"] in _covering(group), (id, data)
            assert version > created[id]  # updated at least once
        else:
            assert (data["status"], version) == ("new", created[id])
    for status in {f"s{t}" for t in range(WORKERS)} | {"new"}:
        want = {id for id, (_, d) in stored.items() if d["status"] == status}
        assert set(ids_of(await Item.objects.filter(status=status).all())) == want


def test_concurrent_update_where_threads(conn: Any, redis_client: Any) -> None:
    Item.objects.bulk_create_sync([
        Item(id=f"{g}-{k}", group=g, status="new", owner=f"o{g}-{k}")
        for g in range(GROUPS) for k in range(PER_GROUP)
    ])

    def worker(t: int) -> list[int]:
        return [Item.objects.filter(group__in=[t, t + 1, t + 2]).update_sync(status=f"s{t}")
                for _ in range(5)]

    results = run_threads(worker)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert all(counts == [3 * PER_GROUP] * 5 for counts in results), results
    stored = assert_indexes_consistent(redis_client, Item)
    for id, (_, data) in stored.items():
        covering = _covering(data["group"])
        assert data["status"] in (covering or {"new"}), (id, data)


async def test_concurrent_updates_that_change_the_filtered_field(conn: Any,
                                                                 redis_client: Any) -> None:
    """Writers move documents between statuses that others filter on: whatever the
    interleaving, no document is lost and the status index stays exact."""
    await _items()
    flips = [("new", "a"), ("a", "b"), ("b", "new"), ("a", "new"), ("new", "b"), ("b", "a")]

    async def worker(t: int) -> int:
        total = 0
        for round in range(6):
            source, target = flips[(t + round) % len(flips)]
            total += await Item.objects.filter(status=source).update(status=target)
        return total

    await asyncio.gather(*(worker(t) for t in range(WORKERS)))
    stored = assert_indexes_consistent(redis_client, Item)
    assert len(stored) == GROUPS * PER_GROUP
    total = 0
    for status in ("new", "a", "b"):
        n = await Item.objects.filter(status=status).count()
        assert n == sum(1 for _, d in stored.values() if d["status"] == status)
        total += n
    assert total == GROUPS * PER_GROUP


async def test_concurrent_delete_and_update(conn: Any, redis_client: Any) -> None:
    await _items()

    async def deleter(group: int) -> int:
        return await Item.objects.filter(group=group).delete()

    async def updater(t: int) -> int:
        return await Item.objects.filter(group__in=[t, t + 1]).update(status=f"u{t}")

    results = await asyncio.gather(*(deleter(g) for g in range(0, GROUPS, 2)),
                                   *(updater(t) for t in range(GROUPS)))
    assert results[:GROUPS // 2] == [PER_GROUP] * (GROUPS // 2)
    stored = assert_indexes_consistent(redis_client, Item)
    assert {d["group"] for _, d in stored.values()} == set(range(1, GROUPS, 2))
    assert len(stored) == (GROUPS // 2) * PER_GROUP
    assert await Item.objects.filter(group__in=list(range(0, GROUPS, 2))).count() == 0


# -- racing claims --------------------------------------------------------------------------


async def test_racing_unique_claims_async(conn: Any, redis_client: Any) -> None:
    async def claim(n: int) -> Any:
        try:
            return await Item(id=f"claim{n}", group=n, owner="the-one").save()
        except UniqueViolation as exc:
            return exc

    results = await asyncio.gather(*(claim(n) for n in range(WORKERS)))
    winners = [r for r in results if isinstance(r, Item)]
    losers = [r for r in results if isinstance(r, UniqueViolation)]
    assert len(winners) == 1 and len(losers) == WORKERS - 1
    assert all(exc.other_id == winners[0].id for exc in losers)
    assert set(assert_indexes_consistent(redis_client, Item)) == {winners[0].id}


def test_racing_unique_claims_threads(conn: Any, redis_client: Any) -> None:
    results = run_threads(lambda n: Item(id=f"claim{n}", group=n, owner="the-one").save_sync())
    winners = [r for r in results if isinstance(r, Item)]
    losers = [r for r in results if isinstance(r, UniqueViolation)]
    assert len(winners) == 1 and len(losers) == WORKERS - 1, results
    assert set(assert_indexes_consistent(redis_client, Item)) == {winners[0].id}


async def test_concurrent_auto_ids_are_distinct(conn: Any, redis_client: Any) -> None:
    async def inserter(t: int) -> list[str]:
        ids = []
        for k in range(ROUNDS):
            if k % 5 == 0:
                docs = await Item.objects.bulk_create([Item(group=t) for _ in range(3)])
                ids += [d.id for d in docs]
            else:
                ids.append((await Item(group=t).save()).id)
        return ids

    results = await asyncio.gather(*(inserter(t) for t in range(WORKERS)))
    every = [i for ids in results for i in ids]
    assert len(every) == len(set(every)) == WORKERS * (ROUNDS + 2 * (ROUNDS // 5))
    stored = assert_indexes_consistent(redis_client, Item)
    assert set(stored) == set(every)
    for t, ids in enumerate(results):
        assert set(ids_of(await Item.objects.filter(group=t).all())) == set(ids)


@pytest.mark.parametrize("workers", [2, WORKERS])
def test_threaded_auto_ids_are_distinct(conn: Any, redis_client: Any, workers: int) -> None:
    results = run_threads(lambda t: [Item(group=t).save_sync().id for _ in range(ROUNDS)],
                          count=workers)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    every = [i for ids in results for i in ids]
    assert len(set(every)) == workers * ROUNDS
    assert set(assert_indexes_consistent(redis_client, Item)) == set(every)


def test_async_api_from_several_event_loops(conn: Any, redis_client: Any) -> None:
    """Each event loop gets its own clients: asyncio.run() repeatedly, and loops in threads
    running at the same time, all work on one connection."""

    async def bump(n: int) -> int:
        doc = await Counter(id=f"loop{n}", value=n).save()
        for _ in range(10):
            doc.value += 1
            await doc.save()
        return (await Counter.objects.get(id=f"loop{n}")).value

    assert asyncio.run(bump(0)) == 10
    assert asyncio.run(bump(1)) == 11
    results = run_threads(lambda n: asyncio.run(bump(10 + n)), count=4)
    assert results == [20, 21, 22, 23]
    assert asyncio.run(Counter.objects.count()) == 6
    assert_indexes_consistent(redis_client, Counter)
