"""Reads under a load of two-phase commits: how often a read raises TransactionsUnsettled.

``--writers`` threads transfer random amounts between random pairs of ``--accounts``
accounts spread over 6 partitions (so most transfers are two-phase commits), through
``run_transaction_sync``, for ``--seconds`` seconds; ``--readers`` threads meanwhile read
every account, alternating a read by id (one MGET per partition) and a query (one
``query.lua`` call per partition). Reported: the reads, those that raised
TransactionsUnsettled (and any other error), the reads' latency, and those whose balances
did not add up to the total (a read holding half a transaction: must be 0).

Usage: bench/bench_transaction_reads.py [--accounts 24] [--writers 4] [--readers 2]
[--seconds 20] (a private redis-server on a free 127.0.0.1 port, or $REDIS_URL).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections import Counter
from typing import Any

from bench_redis import redis_server  # (this folder)

import quantumorm
from quantumorm import Document, IntField, StringField

START = 1000


class Account(Document):
    owner = StringField(indexed=True)
    balance = IntField(indexed=True, default=0)

    class Meta:
        collection = "bench_tx_reads"
        partitions = 6


def transfer(source: str, target: str, amount: int) -> Any:
    def body(tx: Any) -> None:
        a, b = tx.get(Account, source), tx.get(Account, target)
        a.balance -= amount
        b.balance += amount
        tx.save(a)
        tx.save(b)
    return body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=24)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with redis_server("qorm-bench-txreads-") as url:
        conn = quantumorm.create_connection(url=url, name="default", make_default=True)
        try:
            Account.objects.delete_sync()
            ids = [f"acct-{n}" for n in range(args.accounts)]
            Account.objects.bulk_create_sync([Account(id=id, owner=id, balance=START)
                                              for id in ids])
            total = START * len(ids)
            stop = time.monotonic() + args.seconds
            outcomes: Counter[str] = Counter()
            lock = threading.Lock()
            latencies: list[float] = []

            def writer(seed: int) -> None:
                rng = random.Random(seed)
                while time.monotonic() < stop:
                    source, target = rng.sample(ids, 2)
                    body = transfer(source, target, rng.randint(1, 50))
                    try:
                        conn.run_transaction_sync(body, attempts=100)
                        kind = "transfers"
                    except quantumorm.QuantumORMError as exc:
                        kind = f"transfer {type(exc).__name__}"
                    with lock:
                        outcomes[kind] += 1

            def reader(seed: int) -> None:
                n = seed
                while time.monotonic() < stop:
                    n += 1
                    began = time.perf_counter()
                    try:
                        if n % 2:
                            found = Account.objects.get_many_sync(ids)
                        else:
                            found = Account.objects.filter(balance__gte=-10**9).all_sync()
                        kind = "reads" if sum(a.balance for a in found) == total else \
                            "reads holding half a transaction"
                    except quantumorm.TransactionsUnsettled:
                        kind = "reads raising TransactionsUnsettled"
                    except quantumorm.QuantumORMError as exc:
                        kind = f"reads raising {type(exc).__name__}"
                    with lock:
                        outcomes[kind] += 1
                        latencies.append(time.perf_counter() - began)

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(args.writers)]
            threads += [threading.Thread(target=reader, args=(1000 * n,))
                        for n in range(args.readers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            reads = sum(v for k, v in outcomes.items() if k.startswith("reads"))
            for kind, count in sorted(outcomes.items()):
                share = f" ({100 * count / reads:.2f}% of reads)" if kind.startswith(
                    "reads") else ""
                print(f"{kind}: {count}{share}")
            cuts = statistics.quantiles(latencies, n=100)
            print(f"read latency ms: median {1000 * statistics.median(latencies):.1f}, "
                  f"p99 {1000 * cuts[98]:.1f}, max {1000 * max(latencies):.1f}")
            final = sum(a.balance for a in Account.objects.all_sync())
            print(f"total after: {final} (expected {total})")
        finally:
            Account.objects.delete_sync()
            quantumorm.close_all()


if __name__ == "__main__":
    main()
