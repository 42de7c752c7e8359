"""Issue 12's async part: throughput of concurrent asyncio tasks on one pool, by pool size.

The model is bench_workload.py's ``Person`` (its fields and indexes; change events on), in its
own namespace here so that the two benchmarks never share keys. N documents are loaded
(default 20,000), then for each operation

* **get**: ``Person.objects.get_many([id])``;
* **eq**: ``Person.objects.filter(name=...).all()`` (about 10 rows);
* **insert**: ``Person(**doc).save()``;
* **update**: load-set-save (``get_many([id])``, set ``age``, ``save()``)

it measures operations per second for 1 task (sequential) and for 10, 50, 100 and 200
concurrent asyncio tasks sharing ONE connection (one pool), for pool sizes
(``max_connections``) 5, 10, 20, 50 and 100; the p50 and p99 latency of one operation (from
the task's call to its return, waiting for a pooled connection included); and the calls that
failed with :class:`PoolExhaustedError` (a task that waited longer than ``pool_timeout``).
The same grid runs against redis-py's own asyncio client by hand (one
``BlockingConnectionPool`` of the same size and timeout; bench_workload.py's Lua scripts over
its plain layout; a get is GET and ``json.loads``) as the reference.

Every cell runs the same number of operations (``--ops``), ORM and hand-written taking turns
cell by cell; the whole grid runs ``--rounds`` times (pool order reversed each round) and each
cell reports the median over the rounds (errors: the sum). Concurrent updates never touch
the same document at once (each call takes the next id of a shuffled permutation), so no
compare-and-set conflict is counted as throughput. A last section ("waits") shows what a pool
smaller than the tasks does with a short ``pool_timeout`` (``--short-timeout``): calls wait,
then fail with ``PoolExhaustedError``; ``--waits-op`` and ``--waits-ops`` choose its operation
(default: the equality query) and its number of calls (default: ``--ops``), so that a longer run
with a generous timeout shows whether a waiting call is served in turn.

Usage: bench/bench_async.py [--n 20000] [--ops 2000] [--rounds 2] [--quick]
[--short-timeout 0.002] [--waits-op eq] [--waits-ops N] [--json]. It
starts a private redis-server on a free 127.0.0.1 port (stopped at exit) unless REDIS_URL is
set; only the benchmark's own keys are ever deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis
import redis.asyncio

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    Document,
    IntField,
    PoolExhaustedError,
    StringField,
    create_connection,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_redis import redis_server  # noqa: E402
from bench_workload import make_docs  # noqa: E402
from workload_hand import SCRIPTS  # noqa: E402

NAMESPACE = "qbenchasync"
ORM_PATTERN = "{" + NAMESPACE + ":people*"  # every key of the collection, its schema included
HAND = "{qbenchasync-hand}:"  # the hand-written side's key prefix
TASKS = [1, 10, 50, 100, 200]
POOLS = [5, 10, 20, 50, 100]
QUICK_TASKS = [1, 10, 100]
QUICK_POOLS = [5, 50]
OPERATIONS = [("get", "get by id: get_many([id])"), ("eq", "equality query (~10 rows)"),
              ("update", "update (load-set-save)"), ("insert", "single insert")]
SIDES = ("orm", "hand")
POOL_TIMEOUT = 5.0  # the ORM's default
BATCH = 500


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    created_at = DateTimeField()

    class Meta:
        collection = "people"
        namespace = NAMESPACE  # change events: the default (on)


Op = Callable[[Any], Awaitable[Any]]


@dataclass
class Cell:
    """One measured (side, operation, tasks, pool) point."""

    side: str
    op: str
    tasks: int
    pool: int
    ops: int
    ops_per_s: float
    p50_us: float
    p99_us: float
    pool_exhausted: int
    errors: int


# -- the two sides --------------------------------------------------------------------------

def orm_ops() -> dict[str, Op]:
    objects = Person.objects

    async def get(id: str) -> Any:
        return (await objects.get_many([id]))[0]

    async def eq(name: str) -> Any:
        return await objects.filter(name=name).all()

    async def update(arg: tuple[str, int]) -> Any:
        person = (await objects.get_many([arg[0]]))[0]
        assert person is not None  # every planned id exists
        person.age = arg[1]
        return await person.save()

    async def insert(doc: dict[str, Any]) -> Any:
        return (await Person(**doc).save()).id

    return {"get": get, "eq": eq, "update": update, "insert": insert}


class Hand:
    """redis-py's asyncio client by hand: one command or one EVALSHA per operation."""

    def __init__(self, client: redis.asyncio.Redis, sha: dict[str, str]) -> None:
        self.r, self.sha = client, sha

    @staticmethod
    def insert_args(docs: list[dict[str, Any]]) -> list[Any]:
        args: list[Any] = [len(docs)]
        for doc in docs:
            stored = {**doc, "created_at": doc["created_at"].isoformat()}
            args += [json.dumps(stored, separators=(",", ":")), doc["name"], doc["age"],
                     "true" if doc["active"] else "false", len(doc["tags"]), *doc["tags"]]
        return args

    async def get(self, id: str) -> Any:
        raw = await self.r.get(HAND + "d:" + id)
        return None if raw is None else {"id": id, **json.loads(raw)}

    async def eq(self, name: str) -> Any:
        reply = await self.r.evalsha(self.sha["eq"], 1, HAND, name)
        return [{"id": reply[i].decode(), **json.loads(reply[i + 1])}
                for i in range(0, len(reply), 2)]

    async def update(self, arg: tuple[str, int]) -> Any:
        return await self.r.evalsha(
            self.sha["update"], 1, HAND, arg[0], "age", arg[1]) == 1

    async def insert(self, doc: dict[str, Any]) -> Any:
        return await self.r.evalsha(
            self.sha["insert"], 1, HAND, *self.insert_args([doc]))

    def ops(self) -> dict[str, Op]:
        return {"get": self.get, "eq": self.eq, "update": self.update, "insert": self.insert}


# -- one cell: T tasks share the work of `count` calls ---------------------------------------

async def run_cell(fn: Op, args: list[Any], tasks: int) -> tuple[float, list[float], int, int]:
    """Run ``fn`` over ``args`` with ``tasks`` concurrent tasks taking the next argument in
    turn; the wall time, each call's latency (s), pool-exhausted failures, other failures."""
    latencies: list[float] = []
    failures = {"pool": 0, "other": 0}
    it = iter(args)

    async def worker() -> None:
        for arg in it:  # one shared iterator: no task ever idles while work is left
            start = time.perf_counter()
            try:
                await fn(arg)
            except PoolExhaustedError:
                failures["pool"] += 1
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # redis-py's own pool: "Too many connections" / "No connection available."
                failures["pool" if "connection" in str(exc).lower() else "other"] += 1
            except Exception:  # noqa: BLE001 - counted and shown, never hidden
                failures["other"] += 1
            else:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - start, latencies, failures["pool"], failures["other"]


def cell(side: str, op: str, tasks: int, pool: int,
         result: tuple[float, list[float], int, int], count: int) -> Cell:
    wall, latencies, exhausted, other = result
    lat = sorted(latencies) or [0.0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return Cell(side, op, tasks, pool, count, len(latencies) / wall if wall else 0.0,
                statistics.median(lat) * 1e6, p99 * 1e6, exhausted, other)


# -- the run ----------------------------------------------------------------------------------

class Plan:
    """The arguments of each operation, drawn fresh for each cell: ids from a shuffled
    permutation (distinct among the calls in flight), names, ages, new documents."""

    def __init__(self, ids: list[str], names: int, seed: int) -> None:
        self.ids, self.names, self.rng, self.seed = ids, names, random.Random(seed), seed

    def args(self, op: str, count: int) -> list[Any]:
        if op == "get":
            return [self.ids[self.rng.randrange(len(self.ids))] for _ in range(count)]
        if op == "eq":
            return [f"name{self.rng.randrange(self.names):06d}" for _ in range(count)]
        if op == "update":
            ids = self.rng.sample(self.ids, min(count, len(self.ids)))
            ids = (ids * (count // len(ids) + 1))[:count]
            return [(id, self.rng.randrange(100)) for id in ids]
        self.seed += 1
        return make_docs(count, self.names, self.seed)


async def load(hand: Hand, data: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Both sides load the same documents; their ids."""
    orm_ids: list[str] = []
    for i in range(0, len(data), BATCH):
        saved = await Person.objects.bulk_create([Person(**d) for d in data[i:i + BATCH]])
        orm_ids += [str(p.id) for p in saved]
    hand_ids: list[str] = []
    for i in range(0, len(data), BATCH):
        pipe = hand.r.pipeline(transaction=False)
        for j in range(i, min(i + BATCH, len(data)), 100):
            chunk = data[j:min(j + 100, i + BATCH, len(data))]
            pipe.evalsha(hand.sha["insert"], 1, HAND, *hand.insert_args(chunk))
        hand_ids += [str(id) for ids in await pipe.execute() for id in ids]
    return orm_ids, hand_ids


async def grid_for_pool(url: str, pool: int, timeout: float, tasks_list: list[int],
                        count: int, plans: dict[str, Plan], sha: dict[str, str],
                        cells: list[Cell]) -> None:
    """Every (operation, tasks) cell at one pool size, both sides taking turns cell by cell
    (alternating who goes first) so that a busy machine slows both alike."""
    conn = create_connection("redis", url, name="bench-async", make_default=True,
                             max_connections=pool, pool_timeout=timeout)
    connections = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=pool, timeout=timeout)
    client = redis.asyncio.Redis(connection_pool=connections)
    sides = {"orm": orm_ops(), "hand": Hand(client, sha).ops()}
    try:
        for side in SIDES:  # warm-up: connections, scripts, the ORM's schema
            for op, _ in OPERATIONS:
                await run_cell(sides[side][op], plans[side].args(op, 20), 10)
        turn = 0
        for op, _ in OPERATIONS:
            for tasks in tasks_list:
                order = SIDES if turn % 2 == 0 else SIDES[::-1]
                turn += 1
                for side in order:
                    args = plans[side].args(op, count)
                    cells.append(cell(side, op, tasks, pool,
                                      await run_cell(sides[side][op], args, tasks), count))
    finally:
        await conn.aclose()
        conn.close()
        await client.aclose()
        await connections.disconnect()


def merge(cells: list[Cell]) -> list[Cell]:
    """One cell per (side, operation, tasks, pool) over the rounds: the median of each
    measure (a busy machine slows one round, not the median of several), errors summed."""
    rounds: dict[tuple[str, str, int, int], list[Cell]] = {}
    for c in cells:
        rounds.setdefault((c.side, c.op, c.tasks, c.pool), []).append(c)
    return [Cell(side, op, tasks, pool, sum(c.ops for c in cs),
                 statistics.median(c.ops_per_s for c in cs),
                 statistics.median(c.p50_us for c in cs), statistics.median(c.p99_us for c in cs),
                 sum(c.pool_exhausted for c in cs), sum(c.errors for c in cs))
            for (side, op, tasks, pool), cs in rounds.items()]


def wipe(admin: redis.Redis, pattern: str) -> None:
    keys = list(admin.scan_iter(match=pattern, count=1000))
    for i in range(0, len(keys), 1000):
        admin.delete(*keys[i:i + 1000])


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    tasks_list = QUICK_TASKS if args.quick else TASKS
    pools = QUICK_POOLS if args.quick else POOLS
    names = max(1, args.n // 10)
    data = make_docs(args.n, names, seed=1)
    out: dict[str, Any] = {
        "n": args.n, "ops_per_cell": args.ops, "pool_timeout": POOL_TIMEOUT,
        "cpus": os.cpu_count(), "redis": admin.info("server")["redis_version"],
        "python": platform.python_version(), "redis_py": redis.__version__,
        "hiredis": redis.utils.HIREDIS_AVAILABLE, "tasks": tasks_list, "pools": pools}
    cells: list[Cell] = []
    waits: list[Cell] = []
    try:
        wipe(admin, ORM_PATTERN)
        wipe(admin, HAND + "*")
        sha = {name: admin.script_load(source) for name, source in SCRIPTS.items()}

        async def prepare() -> tuple[list[str], list[str]]:
            conn = create_connection("redis", url, name="bench-async", make_default=True)
            client = redis.asyncio.Redis.from_url(url)
            try:
                return await load(Hand(client, sha), data)
            finally:
                await conn.aclose()
                conn.close()
                await client.aclose()

        orm_ids, hand_ids = asyncio.run(prepare())
        plans = {"orm": Plan(orm_ids, names, 100), "hand": Plan(hand_ids, names, 100)}
        for round in range(args.rounds):  # pool sizes in turn, the order reversed each round
            for pool in pools if round % 2 == 0 else pools[::-1]:
                asyncio.run(grid_for_pool(url, pool, POOL_TIMEOUT, tasks_list, args.ops,
                                          plans, sha, cells))
        # a pool much smaller than the tasks, with a short pool_timeout: waits, then errors
        small, many = min(pools), max(tasks_list)
        asyncio.run(waits_demo(url, small, many, args.short_timeout,
                               args.waits_ops or args.ops, plans, sha, waits, args.waits_op))
    finally:
        wipe(admin, ORM_PATTERN)
        wipe(admin, HAND + "*")
        admin.close()
    out["rounds"] = args.rounds
    out["cells"] = [asdict(c) for c in merge(cells)]
    out["waits"] = {"pool": min(pools), "tasks": max(tasks_list), "op": args.waits_op,
                    "pool_timeout": args.short_timeout, "cells": [asdict(c) for c in waits]}
    return out


async def waits_demo(url: str, pool: int, tasks: int, timeout: float, count: int,
                     plans: dict[str, Plan], sha: dict[str, str], cells: list[Cell],
                     op: str = "eq") -> None:
    """``op`` (by default the eq query, the slowest read) with ``tasks`` tasks on a pool of
    ``pool`` and a ``pool_timeout`` of ``timeout`` seconds."""
    conn = create_connection("redis", url, name="bench-async", make_default=True,
                             max_connections=pool, pool_timeout=timeout)
    connections = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=pool, timeout=timeout)
    client = redis.asyncio.Redis(connection_pool=connections)
    sides = {"orm": orm_ops(), "hand": Hand(client, sha).ops()}
    try:
        for side in SIDES:  # warm-up as in the grid, with no more tasks than connections:
            # else the first calls carry the new connection's first-use work (its checks,
            # the model's schema) and stand for the wait they do not measure
            await run_cell(sides[side][op], plans[side].args(op, 20), pool)
        for side in SIDES:
            args = plans[side].args(op, count)
            cells.append(cell(side, op, tasks, pool,
                              await run_cell(sides[side][op], args, tasks), count))
    finally:
        await conn.aclose()
        conn.close()
        await client.aclose()
        await connections.disconnect()


# -- the report -------------------------------------------------------------------------------

def report(out: dict[str, Any]) -> None:
    print(f"bench_async: {out['n']:,} documents, {out['ops_per_cell']:,} calls per cell, "
          f"median of {out['rounds']} rounds, "
          f"Redis {out['redis']}, Python {out['python']}, redis-py {out['redis_py']} "
          f"(hiredis: {out['hiredis']}), {out['cpus']} CPUs, pool_timeout "
          f"{out['pool_timeout']} s")
    by = {(c["side"], c["op"], c["tasks"], c["pool"]): c for c in out["cells"]}
    for op, label in OPERATIONS:
        print(f"\n### {label}: operations/s, ORM (hand-written redis-py), by tasks x pool size")
        print("\n| tasks | " + " | ".join(f"pool {p}" for p in out["pools"]) + " |")
        print("|---:|" + "---:|" * len(out["pools"]))
        for tasks in out["tasks"]:
            row = []
            for pool in out["pools"]:
                orm, hand = by[("orm", op, tasks, pool)], by[("hand", op, tasks, pool)]
                row.append(f"{orm['ops_per_s']:,.0f} ({hand['ops_per_s']:,.0f})")
            print(f"| {op} {tasks} | " + " | ".join(row) + " |")
        print(f"\n{label}: p50 / p99 latency in µs, ORM (hand); pool exhausted / other "
              "errors")
        print("\n| tasks | pool | ORM p50 / p99 | hand p50 / p99 | errors ORM | errors hand |")
        print("|---:|---:|---:|---:|---:|---:|")
        for tasks in out["tasks"]:
            for pool in out["pools"]:
                orm, hand = by[("orm", op, tasks, pool)], by[("hand", op, tasks, pool)]
                print(f"| {op} {tasks} | {pool} | {orm['p50_us']:,.0f} / {orm['p99_us']:,.0f}"
                      f" | {hand['p50_us']:,.0f} / {hand['p99_us']:,.0f} | "
                      f"{orm['pool_exhausted']} / {orm['errors']} | "
                      f"{hand['pool_exhausted']} / {hand['errors']} |")
    w = out["waits"]
    print(f"\n### waits: {w['tasks']} tasks on a pool of {w['pool']}, pool_timeout "
          f"{w['pool_timeout']} s ({dict(OPERATIONS)[w['op']]}, "
          f"{w['cells'][0]['ops']:,} calls)\n")
    print("| side | ops/s | p50 µs | p99 µs | PoolExhausted | other errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in w["cells"]:
        print(f"| waits {c['side']} | {c['ops_per_s']:,.0f} | {c['p50_us']:,.0f} | "
              f"{c['p99_us']:,.0f} | {c['pool_exhausted']} | {c['errors']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="documents loaded (default 20000)")
    parser.add_argument("--ops", type=int, default=2000,
                        help="calls per cell (default 2000)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of the whole grid, pool order reversed each round; "
                             "the median per cell (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smaller grid: tasks {QUICK_TASKS}, pools {QUICK_POOLS}")
    parser.add_argument("--short-timeout", type=float, default=0.002,
                        help="the pool_timeout of the waits section (default 0.002 s)")
    parser.add_argument("--waits-op", choices=[op for op, _ in OPERATIONS], default="eq",
                        help="the operation of the waits section (default eq)")
    parser.add_argument("--waits-ops", type=int, default=0,
                        help="calls in the waits section (default: --ops)")
    parser.add_argument("--json", action="store_true", help="one JSON object, not a table")
    args = parser.parse_args()
    if (args.n < 20 or args.ops < 1 or args.rounds < 1 or args.short_timeout <= 0
            or args.waits_ops < 0):
        parser.error("need --n >= 20, --ops >= 1, --rounds >= 1, --short-timeout > 0, "
                     "--waits-ops >= 0")
    with redis_server("qbench-async-") as url:
        out = run(url, args)
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
    else:
        report(out)


if __name__ == "__main__":
    main()
