"""Redis transactions beyond the contract suite: partitions, change events, concurrent
transfers from threads and tasks, and the raw primitives (pipeline, WATCH/MULTI/EXEC)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from helpers import assert_indexes_consistent

import quantumorm
from quantumorm import Document, IntField, StringField, TransactionError, WatchConflict
from quantumorm.backends.redis.keys import KeySpace


class Wallet(Document):
    owner = StringField(indexed=True)
    balance = IntField(indexed=True, default=0)

    class Meta:
        collection = "tx_wallets"


class Spread(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "tx_spread"
        partitions = 4
        partition_by = "tag"


def ids_by_partition(model: Any, count: int) -> dict[int, list[str]]:
    keys = KeySpace(model._meta)
    found: dict[int, list[str]] = {}
    n = 0
    while min((len(v) for v in found.values()), default=0) < count or len(found) < 4:
        found.setdefault(keys.partition_of(f"s{n}"), []).append(f"s{n}")
        n += 1
    return found


async def test_one_partition_and_several_partitions_commit(conn: Any) -> None:
    # (one partition: one script; several: a two-phase commit, see test_two_phase.py)
    by_partition = ids_by_partition(Spread, 2)
    same = by_partition[0][:2]
    async with conn.transaction() as tx:
        for id in same:
            tx.save(Spread(id=id, name="x"))
    assert sorted(d.id for d in await Spread.objects.all()) == sorted(same)
    tx = conn.transaction()
    tx.save(Spread(id=by_partition[1][0], name="y"))
    tx.save(Spread(id=by_partition[2][0], name="y"))
    await tx.commit()
    # ids sharing a {tag} share a partition: a transaction can span them
    async with conn.transaction() as tx:
        for n in range(6):
            tx.save(Spread(id=f"{{tenant-1}}:doc:{n}", name="tagged"))
    assert await Spread.objects.filter(name="tagged").count() == 6
    tx = conn.transaction()
    tx.save(Spread(id="{tenant-1}:doc:9", name="tagged"))
    tx.save(Spread(id="{tenant-2}:doc:9", name="tagged"))
    spread = KeySpace(Spread._meta)  # (the two tags land apart with P = 4)
    assert spread.partition_of("{tenant-1}:x") != spread.partition_of("{tenant-2}:x")
    await tx.commit()
    tx = conn.transaction()
    with pytest.raises(TransactionError, match="needs an id"):
        tx.save(Spread(name="no id"))  # refused when queued, not at the end
    assert await Spread.objects.count() == 12


async def test_auto_ids_events_and_indexes(conn: Any, redis_client: Any) -> None:
    feed = Wallet.objects.changes(wait=0)
    await feed.read()
    first, second = Wallet(owner="ann", balance=5), Wallet(owner="bob", balance=7)

    def block() -> None:  # the blocking API, from a worker thread
        with conn.transaction_sync() as tx:
            tx.save(first)
            tx.save(second)

    await asyncio.to_thread(block)
    assert first.id and second.id and first.id != second.id
    assert first.version > 0 and second.version > 0
    async with conn.transaction() as atx:
        a = await atx.get(Wallet, first.id)
        b = await atx.get(Wallet, second.id)
        assert a is not None and b is not None
        a.balance, b.balance = 0, 12
        atx.save(a)
        atx.save(b)
    events = [(e.op, e.id, e.version, e.changed) for e in await feed.read()]
    assert a.version > first.version and b.version > second.version
    assert events == [("create", first.id, first.version, None),
                      ("create", second.id, second.version, None),
                      ("update", first.id, a.version, ("balance",)),
                      ("update", second.id, b.version, ("balance",))]
    assert [w.owner for w in await Wallet.objects.filter(balance__gt=10)] == ["bob"]
    assert_indexes_consistent(redis_client, Wallet)


async def test_concurrent_transfers_from_threads_and_tasks_keep_the_total(
        conn: Any, redis_client: Any) -> None:
    """8 threads and 8 tasks move money between 4 wallets in retried transactions: the
    total never changes, every committed transfer counts, indexes match the documents."""
    await Wallet.objects.bulk_create([Wallet(id=f"w{i}", owner=f"o{i}", balance=1000)
                                      for i in range(4)])
    rounds = 10

    def plan(worker: int, round: int) -> tuple[str, str]:
        return f"w{(worker + round) % 4}", f"w{(worker + round + 1 + worker % 3) % 4}"

    def transfer_sync(tx: Any, source: str, target: str) -> None:
        a, b = tx.get(Wallet, source), tx.get(Wallet, target)
        a.balance -= 1
        b.balance += 1
        tx.save(a)
        tx.save(b)

    async def transfer(tx: Any, source: str, target: str) -> None:
        a, b = await tx.get(Wallet, source), await tx.get(Wallet, target)
        a.balance -= 1
        b.balance += 1
        tx.save(a)
        tx.save(b)

    failures: list[BaseException] = []

    def thread_worker(k: int) -> None:
        try:
            for r in range(rounds):
                source, target = plan(k, r)
                conn.run_transaction_sync(lambda tx, s=source, t=target: transfer_sync(tx, s, t),
                                          attempts=200)
        except BaseException as exc:  # reported below
            failures.append(exc)

    async def task_worker(k: int) -> None:
        for r in range(rounds):
            source, target = plan(k, r)
            await conn.run_transaction(lambda tx, s=source, t=target: transfer(tx, s, t),
                                       attempts=200)

    threads = [threading.Thread(target=thread_worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(task_worker(8 + k) for k in range(8)))
    for thread in threads:
        thread.join()
    assert failures == []
    wallets = {w.id: w for w in await Wallet.objects.all()}
    assert sum(w.balance for w in wallets.values()) == 4000
    # each transfer moved 1 from source to target: the expected balances follow exactly
    expected = {f"w{i}": 1000 for i in range(4)}
    for k in range(16):
        for r in range(rounds):
            source, target = plan(k, r)
            expected[source] -= 1
            expected[target] += 1
    assert {id: w.balance for id, w in wallets.items()} == expected
    # each transfer wrote both wallets once: no write was applied twice
    events = await Wallet.objects.changes(since="0", wait=0, batch=10_000).read()
    assert Counter(e.op for e in events) == {"create": 4, "update": 2 * 16 * rounds}
    assert_indexes_consistent(redis_client, Wallet)


def test_watch_multi_exec_retries_then_gives_up(conn: Any, redis_client: Any) -> None:
    redis_client.set("counter", 1)
    calls = []

    def increment(pipe: Any) -> None:
        current = int(pipe.get("counter"))
        calls.append(current)
        if len(calls) == 1:
            redis_client.incr("counter")  # another client writes between read and EXEC
        pipe.multi()
        pipe.set("counter", current * 10)

    assert conn.watch_sync(increment, "counter", attempts=3) == [True]
    assert calls == [1, 2] and int(redis_client.get("counter")) == 20

    def always_disturbed(pipe: Any) -> None:
        pipe.get("counter")
        redis_client.incr("counter")
        pipe.multi()
        pipe.set("counter", 0)

    with pytest.raises(WatchConflict) as conflict:
        conn.watch_sync(always_disturbed, "counter", attempts=2)
    assert conflict.value.attempts == 2 and int(redis_client.get("counter")) == 22
    with pytest.raises(ValueError):
        conn.watch_sync(always_disturbed, attempts=2)


async def test_async_watch_and_pipelines(conn: Any, redis_client: Any) -> None:
    redis_client.set("n", 5)

    async def double(pipe: Any) -> None:
        value = int(await pipe.get("n"))
        pipe.multi()
        pipe.set("n", value * 2)

    assert await conn.watch(double, "n") == [True]
    pipe = conn.pipeline()
    pipe.incr("n").incr("n")
    assert pipe.execute() == [11, 12]
    apipe = conn.async_pipeline(transaction=False)
    apipe.get("n")
    assert await apipe.execute() == [b"12"]


async def test_sqlite_has_no_redis_primitives(conn: Any, tmp_path: Any) -> None:
    connection = quantumorm.create_connection("sqlite", f"sqlite:///{tmp_path}/x.db",
                                              name="lite-tx")
    try:
        with pytest.raises(quantumorm.UnsupportedOperation, match="pipeline"):
            connection.pipeline()
    finally:
        connection.close()
