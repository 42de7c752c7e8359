"""QuantumORM on one Redis server vs a local Redis Cluster, by partition count.

One workload, run in turn on five configurations: a single redis-server with
``Meta.partitions`` 1 and 16, and a Redis Cluster of 3 masters (no replicas) with partitions
1, 16 and 64. It shows what partitioning costs and what it spreads: a write touches one
partition (one script in one hash slot), while a query fans out to every partition (one
read-only script per partition, pipelined per node, merged in Python), so query latency
grows with the partition count and the number of nodes while writes stay about flat (with
P > 1 an insert without an id also takes one from the collection's counter: one INCRBY).

Method: the same seeded data (names from a pool of N/10, so an equality query returns about
10 documents; ages 18..80; 20 cities) and the same seeded parameters for every
configuration, each on its own collection ``bench_p<P>``, with ``Meta.changes = False``.
Per configuration: (1) bulk load of N documents with ``bulk_create_sync`` (batches of 500)
-> documents/s; (2) 8 asyncio tasks inserting a fixed total with ``await doc.save()`` ->
inserts/s; (3) median and p95 latency of ``--iterations`` sync calls (after ``--warmup``
untimed ones) of: get by id (``get_many_sync``), an equality query on an indexed field, a
range + order_by + limit 10, a count, a single insert, and an update of one field (load,
modify, compare-and-set save). Query results are cross-checked: every configuration must
return the same documents (ages, for the limited range) and counts as the first.

Caveats: configurations run one after another (not interleaved), so a busy machine skews
them unevenly; on one machine, a 3-master cluster shares the CPU cores with the client and
with each other, so it shows the fan-out cost, not the throughput of 3 real servers. The
tests' cluster starter runs its nodes with ``appendfsync always``; to compare like with like
this benchmark switches AOF off on them (``CONFIG SET appendonly no``) unless
``--cluster-aof`` is given.

Usage: bench/bench_cluster.py [--n 5000] [--iterations 300] [--warmup 20] [--inserts 2000]
[--cluster-aof]. It starts a private redis-server and a private 3-master Redis Cluster on
free 127.0.0.1 ports (``tests/cluster_support.py``), with no persistence, in a temporary
directory, and stops them (by pid) at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

import quantumorm
from quantumorm import Document, IntField, StringField, create_connection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_redis import start_server, stop_server  # noqa: E402  (this folder)

from cluster_support import Cluster  # noqa: E402

CONFIGS = [("single", 1), ("single", 16), ("cluster", 1), ("cluster", 16), ("cluster", 64)]
OPS = [("get by id (get_many)", "get"), ("eq query (~10 docs)", "eq"),  # run in this order
       ("range+order_by+limit10", "range"), ("count (age >= x)", "count"),
       ("insert (single)", "insert"), ("update 1 field (CAS)", "update")]
CITIES = [f"city{i:02d}" for i in range(20)]
BATCH, TASKS, CHECKED = 500, 8, 25  # bulk batch size; insert tasks; results cross-checked
bump = lambda age: 18 if age >= 80 else age + 1  # the update: age + 1, wrapping at 80


def make_model(partitions: int) -> type[Document]:
    meta = type("Meta", (), {"collection": f"bench_p{partitions}", "partitions": partitions,
                             "changes": False})
    return type(f"User{partitions}", (Document,), {
        "__module__": __name__, "name": StringField(indexed=True),
        "age": IntField(indexed=True), "city": StringField(indexed=True), "Meta": meta})


def make_docs(n: int, seed: int, names: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"name": f"user{rng.randrange(names):06d}", "age": rng.randint(18, 80),
             "city": rng.choice(CITIES)} for _ in range(n)]


def params(n: int, count: int, seed: int = 7) -> dict[str, list]:
    """The same parameters, in the same order, for every configuration (get and update take
    positions in the bulk-loaded list, mapped to that configuration's ids)."""
    rng, names = random.Random(seed), max(1, n // 10)
    return {
        "get": [rng.randrange(n) for _ in range(count)],
        "eq": [f"user{rng.randrange(names):06d}" for _ in range(count)],
        "range": [rng.randint(18, 75) for _ in range(count)],
        "count": [rng.randint(18, 80) for _ in range(count)],
        "insert": make_docs(count, seed + 1, names),
        "update": [rng.randrange(n) for _ in range(count)],
    }


def operations(User: type[Document], loaded: list[Document]) -> dict:
    """The sync public API for each operation, taking that operation's parameter."""
    def update(pos: int):  # load, modify one (indexed) field, compare-and-set save
        user = User.objects.get_many_sync([loaded[pos].id])[0]
        user.age = bump(user.age)
        return user.save_sync()

    return {
        "get": lambda pos: User.objects.get_many_sync([loaded[pos].id]),
        "eq": lambda name: User.objects.filter(name=name).all_sync(),
        "range": lambda age: User.objects.filter(
            age__gte=age, age__lt=age + 10).order_by("age").limit(10).all_sync(),
        "count": lambda age: User.objects.filter(age__gte=age).count_sync(),
        "insert": lambda doc: User(**doc).save_sync(),
        "update": update,
    }


def norm(key: str, result):
    """A form of a query's result that every configuration must reproduce: ids differ (the
    concurrent inserts allocate them in no fixed order), so documents compare by content,
    and the limited range (ties broken by id) by its ages only."""
    if key == "count":
        return result
    if key == "range":
        return [doc.age for doc in result]
    return sorted((doc.name, doc.age, doc.city) for doc in result)


def connect(url: str) -> None:
    create_connection("redis", url, name="bench", make_default=True)


async def concurrent_inserts(url: str, User: type[Document], docs: list[dict]) -> float:
    """``TASKS`` asyncio tasks share ``docs``, each awaiting one ``save()`` at a time; returns
    inserts/s. The first ``TASKS`` documents warm up (connections, scripts), untimed."""
    connect(url)
    try:
        async def worker(chunk: list[dict]) -> None:
            for values in chunk:
                await User(**values).save()

        await asyncio.gather(*(worker([d]) for d in docs[:TASKS]))
        rest = docs[TASKS:]
        start = time.perf_counter()
        await asyncio.gather(*(worker(rest[i::TASKS]) for i in range(TASKS)))
        return len(rest) / (time.perf_counter() - start)
    finally:
        await quantumorm.aclose_all()


def run_config(url: str, partitions: int, args, data, extra, plan) -> tuple[dict, dict]:
    """The whole workload on one configuration: throughputs, latency samples (ns) and the
    normalised results of the first ``CHECKED`` timed query calls."""
    User = make_model(partitions)
    out: dict = {}
    connect(url)
    try:  # warm-up: one document (connections, slot map, scripts); then the timed load
        User.objects.bulk_create_sync([User(name="warmup", age=18, city=CITIES[0])])
        docs = [User(**d) for d in data]
        start = time.perf_counter()
        loaded = User.objects.bulk_create_sync(docs, batch_size=BATCH)
        out["bulk"] = len(docs) / (time.perf_counter() - start)
    finally:
        quantumorm.close_all()
    out["tasks"] = asyncio.run(concurrent_inserts(url, User, extra))
    connect(url)
    checked: dict = {}
    try:
        ops = operations(User, loaded)
        for _, key in OPS:
            gc.collect()
            fn, samples, seen = ops[key], [], []
            for i, arg in enumerate(plan[key]):
                start = time.perf_counter_ns()
                result = fn(arg)
                elapsed = time.perf_counter_ns() - start
                if i >= args.warmup:
                    samples.append(elapsed)
                    if key in ("get", "eq", "range", "count") and len(seen) < CHECKED:
                        seen.append(norm(key, result))
            out[key] = samples
            if seen:
                checked[key] = seen
    finally:
        quantumorm.close_all()
    return out, checked


def start_cluster(workdir: str, keep_aof: bool) -> Cluster:
    cluster = Cluster(Path(workdir), masters=3, replicas=0).start()
    if not keep_aof:
        for node in cluster.nodes:
            client = node.client()
            try:
                client.config_set("appendonly", "no")
            finally:
                client.close()
    return cluster


def report(columns: list[str], results: list[dict]) -> None:
    p95 = lambda xs: statistics.quantiles(xs, n=20, method="inclusive")[-1]
    width = max(14, *(len(c) for c in columns))
    rows = [("bulk load (docs/s)", [f"{r['bulk']:,.0f}" for r in results]),
            (f"{TASKS} async tasks (ins/s)", [f"{r['tasks']:,.0f}" for r in results])]
    rows += [(f"{label} µs", [f"{statistics.median(r[key]) / 1e3:.0f} / {p95(r[key]) / 1e3:.0f}"
                               for r in results]) for label, key in OPS]
    head = f"{'throughput; latency med / p95':<30}" + "".join(f" | {c:>{width}}" for c in columns)
    print(head + "\n" + "-" * len(head))
    for label, cells in rows:
        print(f"{label:<30}" + "".join(f" | {c:>{width}}" for c in cells))


EXPLAIN = """\
What to look for: a write (bulk load, inserts, insert, update) touches one partition: one
script in one hash slot, whatever the partition count, so it should cost about the same
everywhere, except that with P > 1 an insert without an id first takes one from the
collection's counter ({ns:coll}:seq, one INCRBY round trip, on one node of a cluster); the
bulk load sends one script per partition and batch, grouped per node. A query (eq, range,
count) fans out to every partition: one read-only script per partition, pipelined per node,
merged in Python (order_by + limit: each partition returns its first offset + limit rows);
so its latency grows with the partition count (16 and 64 scripts per query) and, on the
cluster, with the nodes it waits for. get by id reads by key in one partition. On one
machine the three masters share its cores with the client, so the cluster columns show the
fan-out cost, not the scaling of 3 servers."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="documents bulk-loaded (5000)")
    parser.add_argument("--iterations", type=int, default=300, help="timed calls per op")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per op (20)")
    parser.add_argument("--inserts", type=int, default=2000,
                        help=f"documents inserted by {TASKS} async tasks (2000)")
    parser.add_argument("--cluster-aof", action="store_true",
                        help="keep the cluster nodes' AOF (appendfsync always) on")
    args = parser.parse_args()
    if args.n < 10 or args.iterations < 20 or args.warmup < 0 or args.inserts < 2 * TASKS:
        parser.error(f"need --n >= 10, --iterations >= 20, --warmup >= 0, "
                     f"--inserts >= {2 * TASKS}")
    began = time.perf_counter()
    names = max(1, args.n // 10)
    data, extra = make_docs(args.n, 1, names), make_docs(args.inserts, 2, names)
    plan = params(args.n, args.warmup + args.iterations)
    columns = [f"{kind} P={p}" for kind, p in CONFIGS]
    results: list[dict] = []
    checks: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qbench-cluster-") as workdir:
        proc, cluster = None, None
        try:
            proc, single_url = start_server(workdir)
            cluster = start_cluster(workdir, args.cluster_aof)
            with redis.Redis.from_url(single_url) as raw:
                version = raw.info("server")["redis_version"]
            print(f"redis-server {version} | Python {platform.python_version()} "
                  f"({platform.python_implementation()}) | redis-py {redis.__version__}, "
                  f"hiredis {'yes' if redis.utils.HIREDIS_AVAILABLE else 'no'} | "
                  f"{platform.machine()}, {os.cpu_count()} cores")
            print(f"single: 1 redis-server, no persistence | cluster: 3 masters, 0 replicas, "
                  f"AOF {'on (appendfsync always)' if args.cluster_aof else 'off'}")
            print(f"documents: {args.n} (+{args.inserts} by {TASKS} async tasks) | iterations: "
                  f"{args.iterations} (+{args.warmup} warm-up) | bulk batches of {BATCH}\n")
            for kind, partitions in CONFIGS:
                url = single_url if kind == "single" else cluster.url
                out, seen = run_config(url, partitions, args, data, extra, plan)
                results.append(out)
                checks.append(seen)
                print(f"  done: {kind} P={partitions} "
                      f"({time.perf_counter() - began:.0f} s elapsed)", flush=True)
                if kind == "single":
                    with redis.Redis.from_url(single_url) as raw:
                        raw.flushall()  # our private server
                else:
                    cluster.flush()
        finally:
            if cluster is not None:
                cluster.stop()
            if proc is not None:
                stop_server(proc)
    print()
    report(columns, results)
    print("\n" + EXPLAIN)
    bad = [f"{column}: {key}" for column, seen in zip(columns, checks, strict=True)
           for key in seen if seen[key] != checks[0][key]]
    sizes = [len(rows) for rows in checks[0]["eq"]]
    print(f"\nquery results cross-checked on {CHECKED} calls per query: "
          f"{'identical in every configuration' if not bad else 'DIFFERENT: ' + ', '.join(bad)}"
          f" (eq queries returned {min(sizes)}-{max(sizes)} docs)")
    print(f"total run time: {time.perf_counter() - began:.0f} s")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
