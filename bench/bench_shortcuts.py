"""What the QuerySet shortcuts send to Redis: round trips per call, and the cost a counting
``len()`` would add to ``list(qs)``.

* **round trips**: the plans each call sent, as :mod:`quantumorm.metrics` counts them:
  ``none()`` must send nothing, ``in_bulk`` one read (pipelined over the partitions),
  ``at(-1)`` / ``last()`` what ``first()`` sends.
* **µs**: the median wall time of ``list(qs)`` (today: one query; ``len()`` refuses, which
  ``list()`` reads as "length unknown") against ``qs.count_sync()`` + ``qs.all_sync()``,
  what ``list(qs)`` would cost if ``__len__`` ran a count.

Usage: bench/bench_shortcuts.py [--n 2000] [--iterations 200] [--partitions 4]. It starts a
private redis-server on a free 127.0.0.1 port (stopped at exit) unless REDIS_URL is set;
only the benchmark's own keys are deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)

from quantumorm import Document, IntField, StringField, close_all, create_connection, metrics

NAMESPACE = "qshortcuts"


def declare(partitions: int) -> type[Document]:
    meta = type("Meta", (), {"backend": "redis", "namespace": NAMESPACE,
                             "collection": "items", "partitions": partitions})
    return type("Item", (Document,), {"__module__": __name__, "Meta": meta,
                                      "name": StringField(indexed=True),
                                      "n": IntField(indexed=True)})


def round_trips(call: Callable[[], Any]) -> int:
    metrics.reset()
    call()
    return sum(stats.round_trips for stats in metrics.snapshot().operations)


def median_us(call: Callable[[], Any], iterations: int) -> float:
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def run(url: str, args: argparse.Namespace) -> None:
    admin = redis.Redis.from_url(url)
    create_connection(backend="redis", url=url, make_default=True)
    Item = declare(args.partitions)
    metrics.enable()
    try:
        Item.objects.bulk_create_sync([Item(id=str(i), name=f"n{i % 50}", n=i % 100)
                                       for i in range(args.n)])
        qs = Item.objects.filter(n__lt=10).order_by("n")
        ids = [str(i) for i in range(0, args.n, max(1, args.n // 20))]
        print(f"partitions={args.partitions} documents={args.n}")
        for label, call in (
                ("none().all()", lambda: Item.objects.none().all_sync()),
                ("none().count()", lambda: Item.objects.none().count_sync()),
                ("none().in_bulk(ids)", lambda: Item.objects.none().in_bulk_sync(ids)),
                ("in_bulk(20 ids)", lambda: Item.objects.in_bulk_sync(ids)),
                ("first()", qs.first_sync), ("last()", qs.last_sync),
                ("at(-1)", lambda: qs.at_sync(-1)),
                ("list(qs)", lambda: list(qs)), ("count()", qs.count_sync)):
            print(f"  {label:<22} {round_trips(call):>3} round trips")
        plain = median_us(lambda: list(qs), args.iterations)
        counted = median_us(lambda: (qs.count_sync(), qs.all_sync()), args.iterations)
        print(f"  list(qs) {plain:.0f} µs; with a counting len() {counted:.0f} µs "
              f"({counted / plain:.2f}x)")
    finally:
        metrics.disable()
        close_all()
        for key in admin.scan_iter("{" + NAMESPACE + ":*", count=1000):
            admin.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with redis_server("qorm-bench-shortcuts-") as url:
        run(url, args)


if __name__ == "__main__":
    main()
