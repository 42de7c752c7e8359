"""The bank invariant on a 3-master Redis Cluster: accounts over every partition (and so
every master), transfers between random pairs in transactions (two-phase commits across
slots and nodes) from threads and asyncio tasks, a checker summing every balance inside
transactions; then a client ``kill -9``-ed in the middle of its transfers, and a master
killed under transfers (``wait_replicas=1``). The total never changes, nothing stays locked
after recovery, and every index verifies clean."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from twopc_bank import (
    Account,
    abody,
    account_ids,
    open_accounts,
    stored_total,
    summed_in_transaction,
    transfer_body,
)

import quantumorm
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.twophase import RECORD_GRACE_MS

ACCOUNTS = 24
HERE = Path(__file__).parent


def leftovers(nodes: list[Any]) -> dict[str, Any]:
    """Locks, intents (not yet applied), records and registry entries on every master."""
    out: dict[str, Any] = {}
    for node in nodes:
        client = node.client()
        try:
            if client.execute_command("ROLE")[0] != b"master":
                continue
            for key in client.scan_iter(match="*"):
                name = key.decode()
                if name.endswith(":locks"):
                    out[name] = client.hgetall(key)
                elif name.endswith(":open"):
                    if client.zcard(key):
                        out[name] = client.zrange(key, 0, -1)
                elif ":2pc" in name:
                    value = client.get(key) if client.type(key) == b"string" else b"record"
                    # (an applied intent stays a while, holding the versions it wrote)
                    if b"\xa7applied" not in (value or b"")[:12]:
                        out[name] = value
        finally:
            client.close()
    return out


def masters_holding_accounts(cluster: Any) -> set[int]:
    keys = KeySpace(Account._meta)
    return {cluster.master_of(keys.tag(p)).port for p in range(Account._meta.partitions)}


async def test_the_bank_invariant_under_threads_and_tasks(cluster_conn: Any,
                                                         redis_cluster: Any) -> None:
    assert len(masters_holding_accounts(redis_cluster)) == 3  # every master holds accounts
    ids = account_ids(ACCOUNTS)
    total = await asyncio.to_thread(open_accounts, ACCOUNTS)
    conn = cluster_conn
    failures: list[str] = []
    sums: list[int] = []
    done = threading.Event()

    def thread_worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(12):
            try:
                conn.run_transaction_sync(transfer_body(rng, ids), attempts=100)
            except Exception as exc:  # reported below
                failures.append(repr(exc))

    def checker() -> None:
        while not done.is_set():
            try:
                sums.append(summed_in_transaction(conn, ids))
            except Exception as exc:
                failures.append(repr(exc))

    async def task_worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(12):
            try:
                await conn.run_transaction(abody(rng, ids), attempts=100)
            except Exception as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=thread_worker, args=(n,)) for n in range(3)]
    watcher = threading.Thread(target=checker)
    for thread in [*threads, watcher]:
        thread.start()
    await asyncio.gather(*(task_worker(100 + n) for n in range(3)))
    for thread in threads:
        await asyncio.to_thread(thread.join)
    done.set()
    await asyncio.to_thread(watcher.join)
    assert failures == []
    assert sums and all(s == total for s in sums), sums
    assert sum(a.balance for a in await Account.objects.all()) == total
    assert await asyncio.to_thread(summed_in_transaction, conn, ids) == total
    assert leftovers(redis_cluster.nodes) == {}
    assert (await Account.objects.verify()).ok
    assert [a for a in await Account.objects.all() if a.balance != 1000]  # (moved)


def test_a_client_killed_at_random_points_loses_or_applies_whole_transfers(
        cluster_conn: Any, redis_cluster: Any) -> None:
    ids = account_ids(ACCOUNTS)
    total = open_accounts(ACCOUNTS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(7)
    interrupted = 0  # kills that left a transaction half-way (a record, locks, intents)
    for round in range(6):
        # (its stderr kept: a client that ends by itself failed, and says why there)
        errors = tempfile.TemporaryFile()
        client = subprocess.Popen(
            [sys.executable, str(HERE / "twopc_bank.py"), redis_cluster.url, str(round),
             str(ACCOUNTS)], env=env, stdout=subprocess.PIPE, stderr=errors)
        try:
            assert client.stdout is not None
            for _ in range(rng.randint(1, 4)):  # some transfers committed first
                if not client.stdout.readline():
                    client.wait()
                    errors.seek(0)
                    raise AssertionError(f"the client failed: {errors.read().decode()}")
            time.sleep(rng.uniform(0, 0.05))  # then killed anywhere in the next ones
        finally:
            os.kill(client.pid, signal.SIGKILL)
            client.wait()
            if client.stdout is not None:
                client.stdout.close()
            errors.close()
        interrupted += bool(leftovers(redis_cluster.nodes))
        # other writers meet what it left (and settle it once past its deadline) ...
        rng_writer = random.Random(round)
        cluster_conn.run_transaction_sync(transfer_body(rng_writer, ids), attempts=200)
        assert stored_total(ids) == total
    assert interrupted  # (the client is inside a commit most of its time)
    # ... and the sweeper settles the rest, past every deadline; a record begun by a client
    # killed before its registry entry was written (another node) expires on its own
    time.sleep(0.5 + RECORD_GRACE_MS / 1000 + 0.1)
    Account.objects.sweep_sync()
    assert leftovers(redis_cluster.nodes) == {}
    assert stored_total(ids) == total
    assert summed_in_transaction(cluster_conn, ids) == total
    assert Account.objects.verify_sync().ok  # (every index against the documents)


def test_a_master_killed_under_transfers(start_cluster: Any) -> None:
    cluster = start_cluster(masters=3, replicas=2)
    conn = quantumorm.create_connection(url=cluster.url, name="default", make_default=True,
                                        retries=20, wait_replicas=1, wait_timeout=0.5)
    try:
        ids = account_ids(ACCOUNTS)
        total = open_accounts(ACCOUNTS)
        failures: list[str] = []
        stop = time.monotonic() + 4.0

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                try:
                    conn.run_transaction_sync(transfer_body(rng, ids), attempts=100,
                                              timeout=2.0)
                except quantumorm.QuantumORMError as exc:  # (an outcome unknown is fine)
                    failures.append(type(exc).__name__)

        victim = cluster.master_of(KeySpace(Account._meta).tag(0))
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.8)
        victim.kill()
        for thread in threads:
            thread.join()
        cluster.wait_healthy()
        time.sleep(3.5)  # past every deadline (and an abandoned record's expiry)
        Account.objects.sweep_sync()
        assert stored_total(ids) == total, failures
        assert leftovers(cluster.live()) == {}
        assert Account.objects.verify_sync().ok
    finally:
        quantumorm.close_all()

