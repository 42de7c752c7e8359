"""QuantumORM's own client-side cost per operation: Python function calls and CPU time.

Where ``bench_redis.py`` compares wall time against hand-written redis-py, this script counts
what the ORM spends in the client process, which is what a refactoring of the ORM can change:

* **calls/op**: Python function calls per operation, counted by ``cProfile`` over the whole
  run (every frame: the ORM's, redis-py's, the standard library's). Deterministic for a given
  tree and server, so two trees can be compared exactly.
* **CPU µs/op**: ``time.process_time()`` per operation (user + system CPU of this process,
  waiting on the socket excluded), measured in a separate pass without the profiler.

Run it with two trees on the same machine to compare a change (``PYTHONPATH=<tree>/src``);
the output is one JSON object per line (``--json``) or a table.

Usage: bench/bench_overhead.py [--n 2000] [--iterations 1000] [--async] [--json]. It starts a
private redis-server on a free 127.0.0.1 port (no persistence; stopped at exit) unless
REDIS_URL is set; only the benchmark's own keys are deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)

from quantumorm import Document, FloatField, IntField, StringField, create_connection

NAMESPACE = "qoverhead"


class User(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    city = StringField(indexed=True)
    score = FloatField()
    bio = StringField()

    class Meta:
        collection = "users"
        namespace = NAMESPACE
        changes = False


def make_doc(rng: random.Random) -> dict[str, Any]:
    return {"name": f"name{rng.randrange(200):03d}", "age": rng.randrange(18, 80),
            "city": f"city{rng.randrange(20):02d}", "score": round(rng.random() * 100, 3),
            "bio": "lorem ipsum dolor sit amet " * 3}


def operations(ids: list[str], is_async: bool) -> dict[str, Callable[[int], Any]]:
    """Each operation as a function of the iteration number (a coroutine function with
    ``--async``). Writes insert fresh documents and delete what they inserted, so the
    collection stays the same size."""
    rng = random.Random(11)
    sfx = "" if is_async else "_sync"
    inserted: list[Document] = []
    objects = User.objects

    def call(target: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(target, method + sfx)(*args, **kwargs)

    async def update_async(i: int) -> Any:
        user = (await objects.get_many([ids[i % len(ids)]]))[0]
        user.age = 18 + (user.age + 1) % 62
        return await user.save()

    def update_sync(i: int) -> Any:
        user = objects.get_many_sync([ids[i % len(ids)]])[0]
        user.age = 18 + (user.age + 1) % 62
        return user.save_sync()

    def insert(i: int) -> Any:
        user = User(**make_doc(rng))
        inserted.append(user)
        return call(user, "save")

    return {
        "get_many": lambda i: call(objects, "get_many", [ids[i % len(ids)]]),
        "get": lambda i: call(objects, "get", id=ids[i % len(ids)]),
        "eq": lambda i: call(objects.filter(name=f"name{i % 200:03d}"), "all"),
        "range": lambda i: call(objects.filter(age__gte=20 + i % 50, age__lt=30 + i % 50)
                                .order_by("age").limit(10), "all"),
        "and": lambda i: call(objects.filter(city=f"city{i % 20:02d}", age=20 + i % 60), "all"),
        "count": lambda i: call(objects.filter(age__gte=20 + i % 50), "count"),
        "update": update_async if is_async else update_sync,
        # (filter(id=).update(): one patch call, no read)
        "update_q": lambda i: call(objects.filter(id=ids[i % len(ids)]), "update",
                                   age=18 + (i * 7) % 62),
        "insert": insert,
        "delete": lambda i: call(inserted.pop(), "delete"),
    }


WARMUP = 100


def measure_sync(op: Callable[[int], Any], iterations: int, profile: bool) -> tuple[float, int]:
    """CPU seconds and Python calls (counted only when ``profile``) of ``iterations`` calls."""
    profiler = cProfile.Profile() if profile else None
    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    for i in range(iterations):
        op(i)
    if profiler is not None:
        profiler.disable()
    return time.process_time() - start, _calls(profiler)


async def measure_async(op: Callable[[int], Awaitable[Any]], iterations: int,
                        profile: bool) -> tuple[float, int]:
    """As :func:`measure_sync`, awaiting each call."""
    profiler = cProfile.Profile() if profile else None
    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    for i in range(iterations):
        await op(i)
    if profiler is not None:
        profiler.disable()
    return time.process_time() - start, _calls(profiler)


def _calls(profiler: cProfile.Profile | None) -> int:
    if profiler is None:
        return 0
    # (summed over the profiler's own entries, one per code object: pstats merges those of
    # one label, e.g. every dataclass-made ``<string>:2(__init__)``, and counted one only)
    return sum(entry.callcount for entry in profiler.getstats())


ORDER = ["get_many", "get", "eq", "range", "and", "count", "update", "update_q", "insert",
         "delete"]


def row(name: str, is_async: bool, iterations: int, cpu: float, calls: int) -> dict[str, Any]:
    return {"op": name, "async": is_async, "calls_per_op": round(calls / iterations, 1),
            "cpu_us_per_op": round(cpu / iterations * 1e6, 1)}


def bench_sync(ids: list[str], iterations: int) -> list[dict[str, Any]]:
    ops, results = operations(ids, False), []
    for name in ORDER:  # a warm-up, a timed pass, a counted pass (inserts feed deletes)
        measure_sync(ops[name], WARMUP, False)
        cpu, _ = measure_sync(ops[name], iterations, False)
        _, calls = measure_sync(ops[name], iterations, True)
        results.append(row(name, False, iterations, cpu, calls))
    return results


async def bench_async(ids: list[str], iterations: int) -> list[dict[str, Any]]:
    ops, results = operations(ids, True), []
    for name in ORDER:
        await measure_async(ops[name], WARMUP, False)
        cpu, _ = await measure_async(ops[name], iterations, False)
        _, calls = await measure_async(ops[name], iterations, True)
        results.append(row(name, True, iterations, cpu, calls))
    return results


def bench(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    conn = create_connection(url=url, name="default")
    rng = random.Random(7)
    try:
        users = [User(**make_doc(rng)) for _ in range(args.n)]
        User.objects.bulk_create_sync(users)
        ids = [str(user.id) for user in users]
        if args.async_:
            return asyncio.run(bench_async(ids, args.iterations))
        return bench_sync(ids, args.iterations)
    finally:
        keys = redis.Redis.from_url(url)
        for key in keys.scan_iter(match=f"{{{NAMESPACE}:*"):
            keys.delete(key)
        keys.close()
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="documents loaded (default 2000)")
    parser.add_argument("--iterations", type=int, default=1000, help="calls per operation")
    parser.add_argument("--async", dest="async_", action="store_true", help="the async API")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    with redis_server("qbench-overhead-") as url:
        results = bench(url, args)
    if args.json:
        for row in results:
            print(json.dumps(row))
        return
    api = "async" if args.async_ else "sync"
    print(f"{'operation':<10} {'calls/op':>9} {'CPU µs/op':>10}   ({api} API, "
          f"{args.iterations} calls each)")
    for row in results:
        print(f"{row['op']:<10} {row['calls_per_op']:>9} {row['cpu_us_per_op']:>10}")


if __name__ == "__main__":
    main()
