"""Transfers in transactions: the one-script fast path against the two-phase commit.

Each run moves random amounts between random pairs of ``--accounts`` accounts, from
``--threads`` threads, ``--transfers`` transfers in all, through ``run_transaction_sync``
(re-run on conflicts). Three layouts of the same accounts:

* ``fast``: one partition: every transfer is one ``tx.lua`` call (after its two reads);
* ``2pc, P partitions``: accounts over P partitions of one server, each transfer between
  two partitions: begin, prepare, commit, apply, finish (five round trips after the reads);
* ``2pc, two models``: the fast path's accounts plus a receipt of another model per
  transfer (one partition each, so still a two-phase commit).

Reported: transfers per second, attempts per transfer, the abort rate (attempts refused by
a conflict or a lock / attempts) and the round trips per commit (by the driver's count).
The sum of balances is checked after each run. Single-core client and server on one
machine: compare the rows with each other, not with other machines.

Usage: bench/bench_transactions.py [--accounts 64] [--threads 4] [--transfers 2000]
(a private redis-server on a free 127.0.0.1 port, or $REDIS_URL; stopped at exit).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any

from bench_redis import redis_server  # (this folder)

import quantumorm
from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine import drive


def models(partitions: int, suffix: str) -> tuple[type[Document], type[Document]]:
    class Account(Document):
        owner = StringField(indexed=True)
        balance = IntField(indexed=True, default=0)
        Meta = type("Meta", (), {"collection": f"bench_tx_accounts_{suffix}",
                                 "partitions": partitions})

    class Receipt(Document):
        amount = IntField(indexed=True, default=0)
        Meta = type("Meta", (), {"collection": f"bench_tx_receipts_{suffix}"})

    return Account, Receipt


class Counting:
    """Round trips (plans) sent through the blocking driver, per thread."""

    def __init__(self) -> None:
        self.local = threading.local()
        real = drive.run

        def run(op: Any, executor: Any) -> Any:
            outer = self

            class Counted:
                def execute(self, plan: Any) -> Any:
                    outer.local.trips = getattr(outer.local, "trips", 0) + 1
                    return executor.execute(plan)

            return real(op, Counted())

        drive.run = run  # type: ignore[assignment]

    def take(self) -> int:
        trips = getattr(self.local, "trips", 0)
        self.local.trips = 0
        return trips


def measure(conn: Any, label: str, account: Any, receipt: Any | None, accounts: int,
            threads: int, transfers: int, counting: Counting) -> dict[str, Any]:
    ids = [f"a{n}" for n in range(accounts)]
    account.objects.bulk_create_sync([account(id=id, owner=id, balance=1000) for id in ids])
    keys = KeySpace(account._meta)
    pairs: list[tuple[str, str]] = []
    rng = random.Random(1)
    while len(pairs) < transfers:
        a, b = rng.sample(ids, 2)
        if account._meta.partitions == 1 or keys.partition_of(a) != keys.partition_of(b):
            pairs.append((a, b))
    attempts = [0]
    trips: list[int] = []
    lock = threading.Lock()

    def transfer(pair: tuple[str, str], amount: int, n: int) -> None:
        def body(tx: Any) -> None:
            with lock:
                attempts[0] += 1
            a, b = tx.get(account, pair[0]), tx.get(account, pair[1])
            a.balance -= amount
            b.balance += amount
            tx.save(a)
            tx.save(b)
            if receipt is not None:
                tx.save(receipt(id=f"r{n}", amount=amount))
        counting.take()
        conn.run_transaction_sync(body, attempts=1000)
        trips.append(counting.take())

    def worker(k: int) -> None:
        local = random.Random(k)
        for n in range(k, transfers, threads):
            transfer(pairs[n], local.randint(1, 20), n)

    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    total = sum(a.balance for a in account.objects.all_sync())
    assert total == 1000 * accounts, (label, total)
    return {"label": label, "rate": transfers / elapsed, "attempts": attempts[0] / transfers,
            "aborts": 1 - transfers / attempts[0], "trips": sum(trips) / len(trips)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=64)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--transfers", type=int, default=2000)
    args = parser.parse_args()
    counting = Counting()
    rows = []
    with redis_server("qorm-bench-tx-") as url:
        conn = quantumorm.create_connection(url=url, name="default", make_default=True)
        layouts: list[tuple[str, int, bool]] = [
            ("fast path (1 partition)", 1, False), ("2pc, 2 of 8 partitions", 8, False),
            ("2pc, 2 of 64 partitions", 64, False), ("2pc, two models", 1, True)]
        for n, (label, partitions, with_receipt) in enumerate(layouts):
            account, receipt = models(partitions, str(n))
            rows.append(measure(conn, label, account, receipt if with_receipt else None,
                                args.accounts, args.threads, args.transfers, counting))
        quantumorm.close_all()
    print(f"{args.accounts} accounts, {args.threads} threads, {args.transfers} transfers")
    print(f"{'layout':28} {'transfers/s':>12} {'attempts':>9} {'aborts':>7} {'trips':>6}")
    for row in rows:
        print(f"{row['label']:28} {row['rate']:12.0f} {row['attempts']:9.2f} "
              f"{row['aborts']:7.1%} {row['trips']:6.1f}")


if __name__ == "__main__":
    main()
