"""Everything at once: 8 threads and 8 asyncio tasks share a collection with expiry and a
change stream, doing atomic counters, index-changing read-modify-write updates, TTL
refreshes and racing deletes. Afterwards the state is exact, every index entry matches its
document, and the stream holds every committed write exactly once (and nothing else)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from helpers import assert_indexes_consistent

from quantumorm import Document, IntField, StringField, VersionConflict

WORKERS, ROUNDS = 16, 10  # workers 0-7 are threads, 8-15 asyncio tasks


class Job(Document):
    name = StringField(indexed=True)
    group = StringField(indexed=True)
    n = IntField(indexed=True, default=0)

    class Meta:
        collection = "mix_jobs"
        ttl = 30  # every write refreshes it


def advance(round: int) -> Any:
    def change(doc: Job) -> None:
        doc.n += 1
        doc.group = f"g{round % 3}"  # moves the document between index entries
    return change


def run_thread(k: int, victim: Job, outcomes: list[Any]) -> None:
    try:
        for round in range(ROUNDS):
            Job.objects.get_sync(id=f"s{round % 2}").inc_sync("n")
            own = Job.objects.get_sync(id=f"own{k}")
            own.update_with_retry_sync(advance(round), attempts=3)
            assert own.touch_sync(60)
            if round == 5:
                outcomes.append(Job.objects.get_sync(id=f"d{k}").delete_sync())
                try:
                    outcomes.append(("victim", victim.delete_sync()))
                except VersionConflict:  # (never: nobody updates the victim)
                    outcomes.append(("victim", "conflict"))
    except BaseException as exc:
        outcomes.append(exc)


async def run_task(k: int, victim: Job, outcomes: list[Any]) -> None:
    for round in range(ROUNDS):
        await (await Job.objects.get(id=f"s{round % 2}")).inc("n")
        own = await Job.objects.get(id=f"own{k}")
        await own.update_with_retry(advance(round), attempts=3)
        assert await own.touch(60)
        if round == 5:
            outcomes.append(await (await Job.objects.get(id=f"d{k}")).delete())
            outcomes.append(("victim", await victim.delete()))


async def test_mixed_workload_is_exact_consistent_and_fully_recorded(
        conn: Any, redis_client: Any) -> None:
    seed = ([Job(id=f"s{i}", name="shared", group="g") for i in range(2)]
            + [Job(id=f"own{k}", name="own", group="g") for k in range(WORKERS)]
            + [Job(id=f"d{k}", name="doomed", group="g") for k in range(WORKERS)]
            + [Job(id="victim", name="victim", group="g")])
    await Job.objects.bulk_create(seed)
    feed = Job.objects.changes(since="0", wait=0, batch=10_000)
    outcomes: list[Any] = []
    # every worker holds its own copy of the victim, loaded before anyone deletes it
    victims = await Job.objects.get_many(["victim"] * WORKERS)
    threads = [threading.Thread(target=run_thread, args=(k, victims[k], outcomes))
               for k in range(8)]
    for thread in threads:
        thread.start()
    try:
        await asyncio.gather(*(run_task(k, victims[k], outcomes) for k in range(8, WORKERS)))
    finally:
        for thread in threads:
            thread.join()

    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert outcomes.count(True) == WORKERS  # each worker deleted its own doomed document
    victims = [o[1] for o in outcomes if isinstance(o, tuple)]
    assert sorted(victims) == [False] * (WORKERS - 1) + [True]  # one delete won the race
    final = {doc.id: doc for doc in await Job.objects.all()}
    assert set(final) == {"s0", "s1"} | {f"own{k}" for k in range(WORKERS)}
    assert final["s0"].n == final["s1"].n == WORKERS * ROUNDS // 2
    for k in range(WORKERS):
        own = final[f"own{k}"]
        assert (own.n, own.group) == (ROUNDS, f"g{(ROUNDS - 1) % 3}")
        assert 30 < await own.ttl() <= 60  # the last touch() came after the last write
    assert await Job.objects.filter(group="g0").count() == WORKERS
    assert await Job.objects.filter(name="doomed").count() == 0
    assert_indexes_consistent(redis_client, Job)

    events = await feed.read()
    assert Counter((e.op, e.id) for e in events if e.op != "update") == Counter(
        {("create", doc.id): 1 for doc in seed}
        | {("delete", id): 1 for id in [f"d{k}" for k in range(WORKERS)] + ["victim"]})
    # one update event per write: s0 and s1 took WORKERS * ROUNDS / 2 increments each, every
    # own document ROUNDS updates; versions grow with each, the last is the stored one
    created = {doc.id: doc.version for doc in seed}
    updates: dict[str, list[int]] = {}
    for event in events:
        if event.op == "update":
            updates.setdefault(event.id, []).append(event.version)
    assert set(updates) == set(final)
    for id, doc in final.items():
        versions = [created[id], *updates[id]]
        assert len(versions) == 1 + doc.n and versions == sorted(set(versions)), id
        assert versions[-1] == doc.version
