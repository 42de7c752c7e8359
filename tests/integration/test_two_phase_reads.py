"""Reads that meet two-phase commits (``backends/redis/twophase.py``) when reads go to
replicas: what a read checks against the transactions (their locks and records) and the
read sent again after settling them are answered by the master, as a replica may lag; and
the rounds of a read that keeps meeting transactions are bounded by the server's time. And
the sweeper's registry of open transactions, scored and read by the server's clock.

A replica made to lag on purpose: ``CLIENT PAUSE ... WRITE`` on it holds back the
replication stream while it still answers reads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from helpers import MODES, call

import quantumorm
from cluster_support import wait_until
from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis import twophase
from quantumorm.backends.redis.acl import acl_rule
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.transaction import SyncTransaction


class Slip(Document):
    amount = IntField(default=0)

    class Meta:
        collection = "tpr_slips"
        partitions = 2


class Wallet(Document):
    owner = StringField(indexed=True)
    balance = IntField(indexed=True, default=0)

    class Meta:
        collection = "tpr_wallets"
        partitions = 4


def spread_ids(count: int) -> list[str]:
    """``count`` ids per partition of Wallet, in partition order."""
    keys = KeySpace(Wallet._meta)
    found: dict[int, list[str]] = {p: [] for p in range(Wallet._meta.partitions)}
    n = 0
    while min(len(v) for v in found.values()) < count:
        id = f"w{n}"
        if len(found[keys.partition_of(id)]) < count:
            found[keys.partition_of(id)].append(id)
        n += 1
    return [id for p in sorted(found) for id in found[p]]


def transfer_tx(conn: Any, source: str, target: str, amount: int) -> SyncTransaction:
    tx = conn.transaction_sync(timeout=30.0)
    first, second = tx.get(Wallet, source), tx.get(Wallet, target)
    first.balance -= amount
    second.balance += amount
    tx.save(first)
    tx.save(second)
    return tx


def die_after(conn: Any, tx: SyncTransaction, round_trips: int) -> None:
    """Commit ``tx`` but stop after ``round_trips`` round trips (begin, prepare, commit)."""
    op = tx._work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = next(op)
    for _ in range(round_trips):
        plan = op.send(executor.execute(plan))
    op.close()


def committed_not_applied(conn: Any, tx: SyncTransaction) -> None:
    """Commit ``tx`` but stop after its decision, as a client killed there would: the
    record says committed, the documents are locked, nothing is applied."""
    die_after(conn, tx, 3)


def commandstat(node: Any, command: str) -> int:
    client = node.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def replicas_listed(cluster: Any) -> None:
    """Until every node's slot map lists a replica for each range of slots (a replica is in
    sync before every node has heard of it: a client that learns the map earlier reads
    from masters only)."""
    def listed() -> bool:
        for node in cluster.live():
            client = node.client()
            try:
                if any(len(shard) < 4 for shard in client.execute_command("CLUSTER", "SLOTS")):
                    return False
            finally:
                client.close()
        return True
    wait_until(listed, 30, "every slot map to list the replicas")


def served(nodes: list[Any]) -> int:
    """The reads (MGETs and read-only script calls) these nodes have answered."""
    return sum(commandstat(node, "evalsha_ro") + commandstat(node, "fcall_ro")
               + commandstat(node, "mget") for node in nodes)


def pause_replication(replica: Any) -> None:
    """Hold back the replica's replication stream; it still answers reads."""
    client: redis.Redis = replica.client()
    try:
        client.execute_command("CLIENT", "PAUSE", 60000, "WRITE")
    finally:
        client.close()


@contextmanager
def watching(node: Any) -> Iterator[list[str]]:
    """The commands clients send ``node`` meanwhile (MONITOR; not those scripts run)."""
    served: list[str] = []
    client = redis.Redis(port=node.port)
    ready = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            ready.set()
            for seen in monitor.listen():
                if seen["command"] == "ECHO watching-stop":
                    return
                if seen["client_type"] != "lua":
                    served.append(seen["command"])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield served
    finally:
        stopper = node.client()
        try:
            stopper.echo("watching-stop")
        finally:
            stopper.close()
        thread.join(10)
        client.close()


@pytest.fixture
def group(start_sentinel: Any) -> Iterator[Any]:
    """A Sentinel group of a master and one replica, its replica's pause (if any) lifted
    and the connections closed after the test."""
    started = start_sentinel(replicas=1)
    try:
        yield started
    finally:
        for node in started.nodes:
            client = node.client()
            try:
                client.execute_command("CLIENT", "UNPAUSE")
            finally:
                client.close()
        quantumorm.close_all()


@pytest.mark.parametrize("mode", MODES)
async def test_a_read_from_a_lagging_replica_checks_locks_and_reads_again_on_the_master(
        group: Any, mode: str) -> None:
    """The replica still shows a committed transaction's locks (their release on the
    master, by its apply, is held back from it): a read by id and a query from the replica
    meet them, check them on the master (none left there) and read again from it: the whole
    transaction, in the first answer. Before, the lock checks went to the replica too: they
    found the locks still there, settled a transaction already finished, and read the
    replica again, round after round, until TransactionsUnsettled."""
    master = group.master()
    replica = next(n for n in group.nodes if n is not master)
    ids = spread_ids(1)
    a, b = ids[0], ids[2]  # (two partitions)

    def leave_it_to_the_replica() -> None:
        quantumorm.create_connection(url=group.url, name="default", make_default=True,
                                     read_from_replicas=True)
        # (set up with every write acknowledged by the replica: it has the locks)
        waited = quantumorm.create_connection(url=group.url, name="waited", wait_replicas=1)
        Wallet.objects.using("waited").bulk_create_sync(
            [Wallet(id=id, owner=id, balance=100) for id in ids])
        committed_not_applied(waited, transfer_tx(waited, a, b, 10))
        pause_replication(replica)
        # the master applies it (a reader there settles it), the replica does not see that
        quantumorm.create_connection(url=f"redis://127.0.0.1:{master.port}/0",
                                     name="direct")
        assert {w.id: w.balance for w in Wallet.objects.using("direct").get_many_sync(
            [a, b])} == {a: 90, b: 110}
        lagged = replica.client()
        try:
            assert lagged.keys("*:locked")  # (the replica still shows the locks)
        finally:
            lagged.close()

    try:
        await asyncio.to_thread(leave_it_to_the_replica)
        checks = commandstat(master, "hmget"), commandstat(master, "hgetall")
        with watching(replica) as served:
            found = await call(Wallet.objects, "get_many", mode, [a, b])
            assert {w.id: w.balance for w in found} == {a: 90, b: 110}
            found = await call(Wallet.objects.filter(balance__gte=0), "all", mode)
            assert {w.id: w.balance for w in found} == {
                id: {a: 90, b: 110}.get(id, 100) for id in ids}
            assert await call(Wallet.objects.filter(balance__gte=0), "count", mode) == len(
                ids)
    finally:
        await quantumorm.aclose_all()
    # the replica served the first round of each read (and met the locks there), but the
    # locks and records were checked on the master, and the reads sent again there
    assert any(c.startswith("MGET") for c in served)
    assert any(c.startswith(("EVALSHA_RO", "FCALL_RO")) for c in served)
    assert [c for c in served if (":locks" in c or ":2pc:" in c)  # (the scripts' text
            and not c.startswith(("SCRIPT LOAD", "FUNCTION LOAD"))] == []  # names them)
    assert commandstat(master, "hmget") > checks[0]
    assert commandstat(master, "hgetall") > checks[1]


@pytest.mark.parametrize("reading", ["by id", "query"])
def test_a_read_that_keeps_meeting_applies_waits_rather_than_raise(
        conn: Any, monkeypatch: pytest.MonkeyPatch, reading: str, redis_client: Any,
        redis_url: str) -> None:
    """A read told for twelve rounds in a row that a transaction was applied while it ran
    (here: by a stand-in for the settling) keeps reading, with a pause between rounds, and
    answers: its rounds are bounded by time (the server's), not by a count. Before, it
    raised TransactionsUnsettled after five. (Read as a user of the least-privilege ACL
    rule: the pauses and the server's time are allowed.)"""
    redis_client.execute_command("ACL", "SETUSER", "tpr-app", "reset", "on", ">pw",
                                 *acl_rule("qorm").split())
    quantumorm.create_connection(url=redis_url, name="tpr-app", username="tpr-app",
                                 password="pw")
    reads = Wallet.objects.using("tpr-app")
    ids = spread_ids(1)
    Wallet.objects.bulk_create_sync([Wallet(id=id, owner=id, balance=100) for id in ids])
    die_after(conn, transfer_tx(conn, ids[0], ids[2], 10), 2)  # prepared: flags set
    told: list[int] = []
    real = {name: getattr(twophase.TwoPhase, name)
            for name in ("settle_partitions", "settle_for_readers")}

    def disturbed(name: str) -> Any:
        def settle(self: Any, *args: Any) -> Any:
            if len(told) < 12:
                told.append(1)
                yield from ()
                return True
            return (yield from real[name](self, *args))
        return settle

    for name in real:
        monkeypatch.setattr(twophase.TwoPhase, name, disturbed(name))
    if reading == "by id":
        found = reads.get_many_sync([ids[0], ids[2]])
    else:
        found = reads.filter(owner__in=[ids[0], ids[2]]).all_sync()
    assert len(told) == 12
    assert {w.id: w.balance for w in found} == {ids[0]: 100, ids[2]: 100}  # (undecided)


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
def test_the_sweeper_finds_due_transactions_by_the_servers_clock(
        conn: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch, skew: float) -> None:
    """A client whose clock is an hour off begins a transaction (of Slip only) and dies
    after its prepare: the registry entry is scored by the server's clock, so the sweep of
    another model of the namespace (Wallet: it meets none of Slip's locks) settles it once
    its deadline has passed, not an hour late (nor before the deadline: the record decides).
    Before, the score was the client's clock: an hour ahead, the sweeper never saw it due."""
    Slip.objects.bulk_create_sync([Slip(id=f"s{n}", amount=1) for n in range(8)])
    keys = KeySpace(Slip._meta)
    apart = [f"s{n}" for n in range(8)]
    first = apart[0]
    second = next(id for id in apart if keys.partition_of(id) != keys.partition_of(first))
    tx = conn.transaction_sync(timeout=0.3)
    for id in (first, second):
        slip = tx.get(Slip, id)
        slip.amount += 1
        tx.save(slip)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)  # (this client's clock)
    die_after(conn, tx, 2)  # begun and prepared: pending, the documents locked
    monkeypatch.setattr(time, "time", real)
    (registry,) = redis_client.keys("{*:2pc}:open")
    ((record, score),) = redis_client.zrange(registry, 0, -1, withscores=True)
    seconds, micros = redis_client.time()
    server_ms = seconds * 1000 + micros // 1000
    assert server_ms < score <= server_ms + 300  # (the server's time plus the timeout)
    Wallet.objects.sweep_sync()  # (before its deadline: nothing due)
    assert redis_client.keys("*:locks") and redis_client.zcard(registry) == 1
    time.sleep(0.4)
    Wallet.objects.sweep_sync()  # due: aborted by its record, released
    assert redis_client.keys("*:locks") == []
    assert redis_client.zcard(registry) == 0
    assert {s.id: s.amount for s in Slip.objects.get_many_sync([first, second])} == {
        first: 1, second: 1}


def test_on_a_cluster_reads_from_lagging_replicas_see_whole_transactions(
        cluster_conn: Any, redis_cluster: Any) -> None:
    """The same on a cluster (3 masters, a replica each) whose replicas are held back: the
    reads (by id and queries, answered by masters and replicas in turn) see the applied
    transaction whole, each time, as their lock checks and later rounds go to masters.
    (The cluster client lets a shard's master and replica answer reads in turn, so a
    replica's stale lock check is not always met: the Sentinel test above shows it.)"""
    replicas_listed(redis_cluster)
    waited = quantumorm.create_connection(url=redis_cluster.url, name="waited",
                                          wait_replicas=1)
    quantumorm.create_connection(url=redis_cluster.url, name="replicas",
                                 read_from_replicas=True)
    ids = spread_ids(1)
    Wallet.objects.using("waited").bulk_create_sync(
        [Wallet(id=id, owner=id, balance=100) for id in ids])
    a, b = ids[0], ids[3]
    tx = waited.transaction_sync(timeout=30.0)
    first, second = tx.get(Wallet, a), tx.get(Wallet, b)
    first.balance -= 10
    second.balance += 10
    tx.save(first)
    tx.save(second)
    committed_not_applied(waited, tx)  # (every replica has it: WAIT)
    masters = {node.port for node in redis_cluster.masters_now()}
    replicas = [node for node in redis_cluster.live() if node.port not in masters]
    before = served(replicas)
    try:
        for node in replicas:
            pause_replication(node)
        assert {w.id: w.balance for w in Wallet.objects.get_many_sync([a, b])} == {
            a: 90, b: 110}  # (applied on the masters, by a reader there)
        expected = {id: {a: 90, b: 110}.get(id, 100) for id in ids}
        reads = Wallet.objects.using("replicas")
        # (the cluster client picks a shard's master or replica in turn for each step of a
        # read: a read of one document between the others moves the turn, until replicas
        # have answered reads of each kind)
        for round in range(12):
            assert {w.id: w.balance for w in reads.get_many_sync(ids)} == expected
            assert {w.id: w.balance for w in reads.filter(
                balance__gte=0).all_sync()} == expected
            assert reads.filter(balance__gte=0).count_sync() == len(ids)
            assert {w.id: w.balance for w in reads.get_many_sync([a, b])} == {
                a: 90, b: 110}
            one = ids[round % len(ids)]
            assert reads.get_sync(id=one).balance == expected[one]
            if round >= 2 and served(replicas) > before:
                break
    finally:
        for node in replicas:
            client = node.client()
            try:
                client.execute_command("CLIENT", "UNPAUSE")
            finally:
                client.close()
    assert served(replicas) > before  # (replicas answered some of the reads)


def test_a_roll_forward_and_schema_reads_go_to_the_master(group: Any) -> None:
    """A reader on replicas that meets a committed, unapplied transaction rolls it forward
    from what the master holds: the layout stamps it checks the intents against, and the
    schema it would make an intent again from (a lagging replica's older stamp let it apply
    one partition and find the other refused: half a transaction left in storage)."""
    master = group.master()
    replica = next(n for n in group.nodes if n is not master)
    ids = spread_ids(1)
    a, b = ids[0], ids[2]
    quantumorm.create_connection(url=group.url, name="default", make_default=True,
                                 read_from_replicas=True)
    waited = quantumorm.create_connection(url=group.url, name="waited", wait_replicas=1)
    Wallet.objects.using("waited").bulk_create_sync(
        [Wallet(id=id, owner=id, balance=100) for id in ids])
    committed_not_applied(waited, transfer_tx(waited, a, b, 10))
    pause_replication(replica)
    with watching(replica) as served:
        found = Wallet.objects.get_many_sync([a, b])  # (its first use: the schema read too)
    assert {w.id: w.balance for w in found} == {a: 90, b: 110}
    assert any(c.startswith("MGET") for c in served)  # (the replica served the first round)
    assert [c for c in served if (c.endswith(" layout") or ":schema" in c)
            and not c.startswith("SCRIPT LOAD")] == []  # (the scripts' text names them)
    direct = redis.Redis(port=master.port)
    try:
        assert not direct.keys("*:locked") and not direct.keys("*:locks")
    finally:
        direct.close()
