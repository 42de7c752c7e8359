"""A condition on the leading field of a compound index, alone, for comparing two trees.

Workload: ``--n`` documents with ``city`` (``--cities`` values), ``age`` 0-99 and a
compound index ``("city", "age")``, no index of its own on ``city``. Queries: an equality on
``city`` (its documents), its count, and ``city`` with a range on ``age``. Per query: the
strategy ``explain()`` reports, server commands per query (``INFO commandstats`` delta),
the server's script time per query and the median latency.

Usage: bench/bench_compound_prefix.py --url redis://... [--load] [--n 20000]
[--iterations 50]. ``--load`` deletes the benchmark's keys and loads the workload first;
without it the queries run on what an earlier ``--load`` left (so two trees query the same
data).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from quantumorm import Document, IntField, StringField, create_connection

NAMESPACE = "qcompound"


class Resident(Document):
    city = StringField()
    age = IntField()

    class Meta:
        collection = "residents"
        namespace = NAMESPACE
        indexes = [("city", "age")]


def load(url: str, n: int, cities: int) -> None:
    keys = redis.Redis.from_url(url)
    for key in keys.scan_iter(match=f"{{{NAMESPACE}:*", count=1000):
        keys.delete(key)
    keys.close()
    for start in range(0, n, 1000):
        Resident.objects.bulk_create_sync(
            [Resident(city=f"c{i % cities}", age=i % 100)
             for i in range(start, min(n, start + 1000))])


def _stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    info: dict[str, Any] = client.info("commandstats")
    return {name: (int(v["calls"]), int(v["usec"])) for name, v in info.items()}


def measure(client: redis.Redis, run: Callable[[], object], iterations: int
            ) -> dict[str, float]:
    run()
    before = _stats(client)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    after = _stats(client)
    commands = sum(after[k][0] - before.get(k, (0, 0))[0] for k in after
                   if not k.startswith("cmdstat_eval") and k != "cmdstat_info")
    script = sum(after[k][1] - before.get(k, (0, 0))[1] for k in after
                 if k.startswith("cmdstat_eval"))
    return {"commands": commands / iterations, "script_us": script / iterations,
            "median_us": statistics.median(times) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--cities", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--load", action="store_true")
    args = parser.parse_args()
    create_connection(backend="redis", url=args.url)
    if args.load:
        load(args.url, args.n, args.cities)
    client = redis.Redis.from_url(args.url)
    queries: dict[str, Callable[[], object]] = {
        "city equality": lambda: Resident.objects.filter(city="c7").all_sync(),
        "city equality, count": lambda: Resident.objects.filter(city="c7").count_sync(),
        "city equality + age range": lambda: Resident.objects.filter(
            city="c7", age__gte=50).all_sync(),
    }
    specs = {"city equality": Resident.objects.filter(city="c7"),
             "city equality, count": Resident.objects.filter(city="c7"),
             "city equality + age range": Resident.objects.filter(city="c7", age__gte=50)}
    print(f"{'query':28} {'strategy':28} {'commands':>9} {'script µs':>10} {'median µs':>10}")
    for name, run in queries.items():
        strategy = specs[name].explain_sync().strategy
        row = measure(client, run, args.iterations)
        print(f"{name:28} {strategy:28} {row['commands']:9.1f} {row['script_us']:10.0f} "
              f"{row['median_us']:10.0f}")
    client.close()


if __name__ == "__main__":
    main()
