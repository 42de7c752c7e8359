"""Ordered, limited queries over many partitions: one phase against two.

A query ordered on an index and limited to ``w`` rows, over a model of ``P`` partitions, can
be answered two ways (``quantumorm.backends.redis.reader``):

* **one phase**: every partition sends its first ``w`` documents with their sort keys, and
  the client merges them, keeping ``w`` of the ``P x w`` it received;
* **two phases**: every partition sends only ids, versions and sort keys; the client merges
  them, then fetches the ``w`` winners' documents in a second round trip.

This runs both, side by side (turn by turn), for P in 1, 4, 16, 64 and w in 10, 100, on
``--n`` documents of about 300 bytes, and prints the median µs of each and their ratio,
which is what ``TWO_PHASE_SPARED`` (the (P - 1) x w from which two phases are used) comes
from. Both ways must return the same rows (checked).

Usage: bench/bench_partitions.py [--n 20000] [--iterations 200]. Starts a private
redis-server unless REDIS_URL is set; deletes only its own keys.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)

from quantumorm import Document, IntField, StringField, create_connection
from quantumorm.backends.redis import reader

NAMESPACE = "qbenchparts"
PARTITIONS = (1, 4, 16, 64)
WINDOWS = (10, 100)


def model(count: int) -> type[Document]:
    class Item(Document):
        score = IntField(indexed=True)
        label = StringField()
        body = StringField()

        class Meta:
            namespace = NAMESPACE
            collection = f"items{count}"
            partitions = count

    return Item


def forced(spared: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        reader.TWO_PHASE_SPARED = spared
        return fn()
    return call


def run(url: str, args: argparse.Namespace) -> None:
    admin = redis.Redis.from_url(url)
    create_connection(backend="redis", url=url, make_default=True)
    rng = random.Random(7)
    print(f"{args.n:,} documents of ~300 B; median µs over {args.iterations} turns")
    print(f"{'P':>3} {'w':>4} | {'one phase':>10} | {'two phases':>10} | two ÷ one")
    default = reader.TWO_PHASE_SPARED
    try:
        for partitions in PARTITIONS:
            Item = model(partitions)
            docs = [Item(score=rng.randrange(10**6), label=f"l{i}", body="x" * 250)
                    for i in range(args.n)]
            for start in range(0, len(docs), 500):
                Item.objects.bulk_create_sync(docs[start:start + 500])
            for window in WINDOWS:
                lows = [rng.randrange(10**6 // 2) for _ in range(args.iterations)]

                def query(low: int, w: int = window, model: Any = Item) -> list[Any]:
                    return model.objects.filter(score__gte=low).order_by("score").limit(
                        w).all_sync()

                times: dict[str, list[float]] = {"one": [], "two": []}
                for turn, low in enumerate(lows):
                    sides = [("one", 10**12), ("two", 0)]
                    results = {}
                    for side, spared in sides if turn % 2 else reversed(sides):
                        call = forced(spared, lambda low=low: query(low))
                        began = time.perf_counter()
                        results[side] = call()
                        times[side].append(time.perf_counter() - began)
                    if [d.id for d in results["one"]] != [d.id for d in results["two"]]:
                        raise SystemExit(f"P={partitions} w={window}: the two ways differ")
                one = statistics.median(times["one"]) * 1e6
                two = statistics.median(times["two"]) * 1e6
                print(f"{partitions:>3} {window:>4} | {one:>10.0f} | {two:>10.0f} | "
                      f"{two / one:.2f}x")
    finally:
        reader.TWO_PHASE_SPARED = default
        for key in admin.scan_iter("{" + NAMESPACE + ":*", count=1000):
            admin.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    with redis_server("qorm-bench-parts-") as url:
        run(url, args)


if __name__ == "__main__":
    main()
