#!/usr/bin/env python3
"""Redis as a cache in front of a primary database: ``get`` latency and hit ratios.

Three ways to read one document by id, on the same primary, interleaved call by call:

* **no cache**: a model on the primary alone (``Meta.backend`` only);
* **hit**: the same collection through ``Meta.cache``, entry present (one script call);
* **miss**: the entry removed before each call, untimed (a script call that takes a lease,
  the primary's read, a script call that fills: two cache round trips and the primary's).

Then a Zipf workload (``--zipf s`` over ``--n`` ids, ``--reads`` reads, starting cold,
optionally ``--write-ratio`` of the operations being writes through the ORM): the hit ratio
that ``Model.objects.cache_stats()`` reports.

The primary is a SQLite file in a temporary directory, or ``--primary-url`` with
``--primary-backend`` (e.g. ``postgres`` once that backend exists). The cache is $REDIS_URL,
or a private redis-server started for the run; only this benchmark's keys are deleted.

Usage: bench/bench_cache.py [--n 5000] [--iterations 2000] [--reads 20000] [--zipf 1.1]
[--write-ratio 0.0] [--primary-backend sqlite --primary-url URL]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from functools import partial
from typing import Any

import redis
from bench_redis import redis_server

from quantumorm import Document, IntField, StringField, close_all, create_connection
from quantumorm.cache.entries import CacheKeys
from quantumorm.cache.stats import counters

COLLECTION = "bench_cache_users"


def models(backend: str, ttl: float) -> tuple[type[Document], type[Document]]:
    fields = {"email": StringField(), "name": StringField(indexed=True), "age": IntField()}
    plain = type("PlainUser", (Document,), {**fields, "Meta": type("Meta", (), {
        "backend": backend, "collection": COLLECTION, "namespace": "qbench"})})
    fields = {"email": StringField(), "name": StringField(indexed=True), "age": IntField()}
    cached = type("CachedUser", (Document,), {**fields, "Meta": type("Meta", (), {
        "backend": backend, "collection": COLLECTION, "namespace": "qbench",
        "cache": {"connection": "cache", "ttl": ttl}})})
    return plain, cached


def timed(fn: Any) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1e3


def summary(label: str, samples: list[float], base: float | None = None) -> float:
    median = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20, method="inclusive")[-1]
    ratio = f"{median / base:>6.2f}x" if base else f"{'1.00x':>7}"
    print(f"{label:<22} | {median:>9.1f} | {p95:>9.1f} | {ratio}")
    return median


def latency(plain: Any, cached: Any, raw: redis.Redis, ids: list[str], iterations: int,
            warmup: int) -> None:
    keys = CacheKeys(cached._meta)
    rng = random.Random(7)
    samples: dict[str, list[float]] = {"none": [], "hit": [], "miss": []}
    hot = ids[0]
    cached.objects.get_sync(id=hot)
    for i in range(warmup + iterations):
        id = rng.choice(ids)
        raw.delete(keys.entry(id))
        order = [("none", partial(plain.objects.get_sync, id=id)),
                 ("miss", partial(cached.objects.get_sync, id=id)),
                 ("hit", partial(cached.objects.get_sync, id=hot))]
        if i % 2:
            order.reverse()  # (miss still runs after its delete: nothing else touches id)
        for name, call in order:
            sample = timed(call)
            if i >= warmup:
                samples[name].append(sample)
    print(f"{'get by id':<22} | {'median µs':>9} | {'p95 µs':>9} | vs no cache")
    print("-" * 58)
    base = summary("no cache (primary)", samples["none"])
    summary("cache hit", samples["hit"], base)
    summary("cache miss (+ fill)", samples["miss"], base)


def zipf_ids(ids: list[str], s: float, count: int, rng: random.Random) -> list[str]:
    weights = list(itertools.accumulate(1 / (k ** s) for k in range(1, len(ids) + 1)))
    order = ids[:]
    rng.shuffle(order)  # (which ids are hot has nothing to do with their order)
    return rng.choices(order, cum_weights=weights, k=count)


def zipf(cached: Any, raw: redis.Redis, ids: list[str], args: argparse.Namespace) -> None:
    for key in raw.scan_iter(match=CacheKeys(cached._meta).pattern, count=1000):
        raw.delete(key)
    counters(cached._meta).reset()
    rng = random.Random(11)
    started = time.perf_counter()
    writes = 0
    for id in zipf_ids(ids, args.zipf, args.reads, rng):
        if args.write_ratio and rng.random() < args.write_ratio:
            doc = cached.objects.get_sync(id=id)
            doc.age += 1
            doc.save_sync()
            writes += 1
        else:
            cached.objects.get_sync(id=id)
    elapsed = time.perf_counter() - started
    stats = cached.objects.cache_stats()
    print(f"\nZipf s={args.zipf} over {len(ids)} ids, {args.reads} operations "
          f"({writes} writes), cold start, ttl {args.ttl:g} s: hit ratio "
          f"{stats.hit_ratio:.3f} (hits {stats.hits}, misses {stats.misses}, fills "
          f"{stats.fills}, refused fills {stats.refused_fills}, invalidations "
          f"{stats.invalidations}); {args.reads / elapsed:,.0f} operations/s, one thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--write-ratio", type=float, default=0.0)
    parser.add_argument("--ttl", type=float, default=300.0)
    parser.add_argument("--primary-backend", default="sqlite")
    parser.add_argument("--primary-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qorm-bench-cache-") as workdir, \
            redis_server("qorm-bench-cache-redis-") as url:
        primary_url = args.primary_url or f"sqlite:///{workdir}/primary.db"
        create_connection(backend=args.primary_backend, url=primary_url,
                          name=args.primary_backend, make_default=True)
        create_connection(backend="redis", url=url, name="cache", retries=1)
        raw = redis.Redis.from_url(url)
        plain, cached = models(args.primary_backend, args.ttl)
        where = "given URL" if args.primary_url else "temporary file"
        version = raw.info("server")["redis_version"]
        print(f"primary: {args.primary_backend} ({where}) | cache: redis-server {version} | "
              f"documents: {args.n} | iterations: {args.iterations} (+{args.warmup} warm-up)\n")
        try:
            plain.objects.delete_sync()
            docs = plain.objects.bulk_create_sync(
                [plain(email=f"u{i}@x", name=f"user{i}", age=i % 90) for i in range(args.n)])
            ids = [d.id for d in docs if d.id is not None]
            latency(plain, cached, raw, ids, args.iterations, args.warmup)
            zipf(cached, raw, ids, args)
        finally:
            for key in raw.scan_iter(match=CacheKeys(cached._meta).pattern, count=1000):
                raw.delete(key)
            plain.objects.delete_sync()
            raw.close()
            close_all()


if __name__ == "__main__":
    main()
