"""Exact counts for a known sequence of operations, sync and async, on every backend; errors
by type; nothing recorded while metrics are off; counters exact under threads."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from metrics_models import LiteUser, PgUser, RedisUser

import quantumorm
from modes import MODES, call
from quantumorm import metrics
from quantumorm.engine import observe
from quantumorm.metrics import BUCKETS, MetricsSnapshot


async def _sequence(model: Any, mode: str) -> None:
    """2 saves (inserts), 1 save (update), 2 gets (1 missing), 1 filtered all, 1 count,
    1 delete."""
    first = await call(model(name="ann", age=30), "save", mode)
    await call(model(name="bob", age=40), "save", mode)
    first.age = 31
    await call(first, "save", mode)
    await call(model.objects, "get", mode, id=first.id)
    with pytest.raises(model.DoesNotExist):
        await call(model.objects, "get", mode, name="nobody")
    assert len(await call(model.objects.filter(name="ann"), "all", mode)) == 1
    assert await call(model.objects.filter(name="ann", age__gte=30), "count", mode) == 1
    assert await call(first, "delete", mode) is True


def _check(found: MetricsSnapshot, model: str, backend: str, save_trips: int) -> None:
    ops = {(s.operation): s for s in found.operations if s.model == model}
    assert {name: s.count for name, s in ops.items()} == {
        "save": 3, "get": 2, "all": 1, "count": 1, "delete": 1}
    assert {name: s.errors for name, s in ops.items()} == {
        "save": {}, "get": {"DoesNotExist": 1}, "all": {}, "count": {}, "delete": {}}
    # each is one plan, one round trip, once the model's schema is known; except that an
    # insert on SQL allocates its id first (one more round trip), where Redis's script does
    assert {name: s.round_trips for name, s in ops.items()} == {
        "save": save_trips, "get": 2, "all": 1, "count": 1, "delete": 1}
    for stats in ops.values():
        assert stats.backend == backend
        bounds = [bound for bound, _ in stats.duration.buckets]
        counts = [n for _, n in stats.duration.buckets]
        assert bounds == [*BUCKETS, float("inf")]
        assert counts == sorted(counts) and counts[-1] == stats.count == stats.duration.count
        assert stats.duration.sum > 0


async def _warm(model: Any) -> None:
    """Read the model's schema (first use: extra round trips) before counting starts."""
    await model.objects.count()


@pytest.mark.parametrize("mode", MODES)
async def test_redis_counts(conn: quantumorm.Connection, mode: str) -> None:
    await _warm(RedisUser)
    await asyncio.to_thread(RedisUser.objects.count_sync)
    metrics.enable()
    await _sequence(RedisUser, mode)
    _check(metrics.snapshot(), "RedisUser", "redis", 3)


@pytest.mark.parametrize("mode", MODES)
async def test_sqlite_counts(lite: quantumorm.Connection, mode: str) -> None:
    await _warm(LiteUser)
    metrics.enable()
    await _sequence(LiteUser, mode)
    _check(metrics.snapshot(), "LiteUser", "sqlite", 5)


async def test_postgres_counts(pg: quantumorm.Connection) -> None:
    await _warm(PgUser)
    await asyncio.to_thread(PgUser.objects.count_sync)
    metrics.enable()
    await _sequence(PgUser, "async")
    await _sequence(PgUser, "sync")
    found = metrics.snapshot()
    ops = {s.operation: s for s in found.operations if s.model == "PgUser"}
    assert {name: s.count for name, s in ops.items()} == {
        "save": 6, "get": 4, "all": 2, "count": 2, "delete": 2}
    assert ops["get"].errors == {"DoesNotExist": 2}
    assert {name: s.round_trips for name, s in ops.items()} == {
        "save": 10, "get": 4, "all": 2, "count": 2, "delete": 2}
    assert all(s.backend == "postgres" for s in ops.values())
    pools = {p.pool: p for p in found.pools if p.connection == "postgres"}
    assert set(pools) == {"sync", "async"}
    for pool in pools.values():  # nothing is running: every open connection is idle
        assert pool.in_use == 0 and pool.idle == pool.open >= 1
        assert pool.size >= pool.open and pool.waiting == 0 and pool.waits is not None


async def test_disabled_records_nothing(lite: quantumorm.Connection) -> None:
    assert observe.watcher is None and not metrics.enabled()
    await _sequence(LiteUser, "async")
    found = metrics.snapshot()
    assert found.enabled is False
    assert found.operations == () and found.retries == {}
    assert found.script_reloads == found.slot_relearns == 0


async def test_enable_disable_reset(lite: quantumorm.Connection) -> None:
    await _warm(LiteUser)
    metrics.enable()
    assert observe.watcher is not None
    await LiteUser(name="x", age=1).save()
    metrics.disable()
    assert observe.watcher is None
    await LiteUser(name="y", age=2).save()  # not counted
    found = metrics.snapshot()
    stats = found.operation("LiteUser", "save")
    assert stats is not None and stats.count == 1
    plain = json.loads(json.dumps(found.to_dict(), allow_nan=False))
    assert plain["operations"][0]["operation"] == "save"
    assert plain["operations"][0]["duration"]["buckets"][-1] == ["+Inf", 1]
    metrics.reset()
    assert metrics.snapshot().operations == ()


def test_counts_exact_under_threads(lite: quantumorm.Connection) -> None:
    LiteUser.objects.count_sync()
    metrics.enable()
    threads, each = 4, 100

    def work() -> None:
        for _ in range(each):
            LiteUser.objects.count_sync()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats = metrics.snapshot().operation("LiteUser", "count")
    assert stats is not None
    assert stats.count == stats.round_trips == stats.duration.count == threads * each


async def test_counts_exact_under_tasks(conn: quantumorm.Connection) -> None:
    await _warm(RedisUser)
    metrics.enable()
    await asyncio.gather(*(RedisUser.objects.count() for _ in range(50)))
    stats = metrics.snapshot().operation("RedisUser", "count")
    assert stats is not None and stats.count == stats.round_trips == 50


async def test_pool_stats(conn: quantumorm.Connection, lite: quantumorm.Connection) -> None:
    await _warm(RedisUser)
    await asyncio.to_thread(RedisUser.objects.count_sync)
    pools = {(p.connection, p.pool): p for p in metrics.snapshot().pools}
    assert set(pools) == {("default", "sync"), ("default", "async"), ("sqlite", "sqlite")}
    for key in (("default", "sync"), ("default", "async")):
        pool = pools[key]
        assert pool.backend == "redis" and pool.size == 50
        assert pool.open >= 1 and pool.in_use == 0 and pool.idle == pool.open
        assert pool.waiting == 0
    assert pools[("sqlite", "sqlite")] == metrics.PoolSnapshot(
        "sqlite", "sqlite", "sqlite", 1, 1, 0, 1, None, None)


def test_cache_counters_in_snapshot() -> None:
    from quantumorm.cache import stats

    stats.counters(LiteUser._meta).add(hits=2, misses=1, refused_fills=1)
    try:
        found = metrics.snapshot().cache["LiteUser"]
        assert (found.hits, found.misses, found.refused_fills) == (2, 1, 1)
    finally:
        stats.counters(LiteUser._meta).reset()
