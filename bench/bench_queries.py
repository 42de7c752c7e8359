"""Server commands and latency per query of issue 12's workload, for comparing two trees.

Counts are deterministic: the delta of ``INFO commandstats`` (commands run inside scripts
included) over a number of calls of one query, divided by the calls. ``script_us`` is the server's
time in scripts per query (``usec`` of the EVAL family). Latency is the median of the calls'
wall times, so run the trees interleaved on the same server to compare them.

Workload: ``--n`` documents (``name`` about 10 documents per value, ``age`` 0-99, ``active``
bool, ``tags`` 5 of 20, indexes on all four). Queries: an equality on name, a range ordered
by age with limit 100, ``active & age > 60 & "t7" in tags``, and a count of a range.

Usage: bench/bench_queries.py --url redis://... [--load] [--n 50000] [--iterations 50]
[--json]. ``--load`` deletes the benchmark's keys and loads the workload first; without it
the queries run on what an earlier ``--load`` left (so two trees query the same data).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis

from quantumorm import (
    ArrayField,
    BooleanField,
    Document,
    IntField,
    StringField,
    create_connection,
)

NAMESPACE = "qqueries"


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "people"
        namespace = NAMESPACE


def load(url: str, n: int) -> None:
    keys = redis.Redis.from_url(url)
    for key in keys.scan_iter(match=f"{{{NAMESPACE}:*", count=1000):
        keys.delete(key)
    keys.close()
    rng = random.Random(12)
    tags = [f"t{i}" for i in range(20)]
    batch: list[Person] = []
    for i in range(n):
        batch.append(Person(name=f"name{rng.randrange(max(n // 10, 1)):06d}",
                            age=rng.randrange(100), active=rng.random() < 0.5,
                            tags=rng.sample(tags, 5)))
        if len(batch) == 2000 or i == n - 1:
            Person.objects.bulk_create_sync(batch)
            batch = []


def queries(n: int) -> dict[str, Callable[[int], Any]]:
    objects = Person.objects
    names = max(n // 10, 1)
    return {
        "equality": lambda i: objects.filter(name=f"name{(i * 7919) % names:06d}").all_sync(),
        "range_order_limit": lambda i: objects.filter(age__gt=40 + i % 10).order_by("age")
        .limit(100).all_sync(),
        "compound": lambda i: objects.filter(active=True, age__gt=60, tags__contains="t7")
        .all_sync(),
        "count_range": lambda i: objects.filter(age__gte=20 + i % 50).count_sync(),
    }


def commands(client: redis.Redis) -> tuple[int, int]:
    """Commands run so far, and the microseconds spent in scripts (EVALSHA and its kin)."""
    stats = client.info("commandstats")
    # the INFO call itself is counted too: the caller subtracts it
    calls = sum(int(v["calls"]) for v in stats.values())
    script_us = sum(int(v["usec"]) for k, v in stats.items() if k.startswith(("cmdstat_eval", "cmdstat_fcall")))
    return calls, script_us


def run(url: str, n: int, iterations: int, only: str | None = None) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    out = []
    for name, query in queries(n).items():
        if only and only not in name:
            continue
        rows = query(0)  # warm: scripts loaded, schema read
        before = commands(client)
        times = []
        for i in range(iterations):
            start = time.perf_counter()
            query(i)
            times.append(time.perf_counter() - start)
        after = commands(client)
        out.append({"query": name, "rows": rows if isinstance(rows, int) else len(rows),
                    "commands": round((after[0] - before[0] - 1) / iterations, 1),
                    "script_us": round((after[1] - before[1]) / iterations),
                    "median_us": round(statistics.median(times) * 1e6)})
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="run only the queries whose name contains this")
    args = parser.parse_args()
    conn = create_connection(url=args.url, name="default")
    try:
        if args.load:
            load(args.url, args.n)
        results = run(args.url, args.n, args.iterations, args.only)
    finally:
        conn.close()
    for result in results:
        print(json.dumps(result) if args.json else
              f"{result['query']:<20} rows {result['rows']:>6}  commands {result['commands']:>9}"
              f"  script {result['script_us']:>7} µs  median {result['median_us']:>8} µs")


if __name__ == "__main__":
    main()
