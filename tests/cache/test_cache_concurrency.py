"""Never stale, under concurrency: threads and asyncio tasks read and write the same ids
through the cache while a checker verifies that every read sees every write that completed
before the read began (zero stale reads); the same while the cache server restarts (with
its data: entries, leases and write marks of before come back); many concurrent misses on
one id cause one load from the primary; a cache that is down or refused by the breaker
never fails a read or a write, and what this process could not invalidate is invalidated
before it reads the cache again."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cache_models import MODELS, Counter, PgCounter, PgThroughCounter, ThroughCounter
from cache_servers import RestartableRedis
from cache_support import open_cache

import postgres_support
import quantumorm
from quantumorm.cache import state
from quantumorm.cache.dispatch import Pause
from quantumorm.cache.entries import CacheKeys
from quantumorm.cache.stats import counters

IDS = ["a", "b", "c", "d"]
WRITES_PER_WORKER = 60
READS_PER_WORKER = 120


class Checker:
    """What completed writes each id has seen, and every read that saw less."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed = dict.fromkeys(IDS, 0)
        self.stale: list[tuple[str, int, int]] = []
        self.reads = 0
        self.writes = 0

    def wrote(self, id: str, n: int) -> None:
        with self.lock:
            self.completed[id] = max(self.completed[id], n)
            self.writes += 1

    def floors(self) -> dict[str, int]:
        with self.lock:
            return dict(self.completed)

    def saw(self, floors: dict[str, int], docs: list[Any]) -> None:
        with self.lock:
            for doc in docs:
                self.reads += 1
                if doc.n < floors[doc.id]:
                    self.stale.append((doc.id, doc.n, floors[doc.id]))


def _read_sync(model: Any, checker: Checker, rng: random.Random) -> None:
    floors = checker.floors()
    kind = rng.randrange(4)
    if kind == 0:
        docs = [model.objects.get_sync(id=rng.choice(IDS))]
    elif kind == 1:
        docs = [d for d in model.objects.get_many_sync(IDS) if d is not None]
    elif kind == 2:
        doc = model(id=rng.choice(IDS))
        doc._version = 1  # (reload needs only the id)
        docs = [doc.reload_sync()]
    else:
        docs = model.objects.filter(id__in=IDS).cache(ttl=30).all_sync()
    checker.saw(floors, docs)


async def _read_async(model: Any, checker: Checker, rng: random.Random) -> None:
    floors = checker.floors()
    if rng.randrange(2):
        docs = [await model.objects.get(id=rng.choice(IDS))]
    else:
        docs = [d for d in await model.objects.get_many(IDS) if d is not None]
    checker.saw(floors, docs)


def _writer(model: Any, checker: Checker, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(WRITES_PER_WORKER):
        id = rng.choice(IDS)
        checker.wrote(id, model.objects.get_sync(id=id).inc_sync("n"))


def _reader(model: Any, checker: Checker, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(READS_PER_WORKER):
        _read_sync(model, checker, rng)


def _tasks(model: Any, checker: Checker, cache: quantumorm.Connection) -> None:
    """asyncio tasks (on their own loop, in this thread) reading and writing."""

    async def write(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(WRITES_PER_WORKER // 2):
            id = rng.choice(IDS)
            doc = await model.objects.get(id=id)
            checker.wrote(id, await doc.inc("n"))

    async def read(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(READS_PER_WORKER):
            await _read_async(model, checker, rng)

    async def main() -> None:
        try:
            await asyncio.gather(write(100), write(101), read(102), read(103), read(104))
        finally:
            await cache.aclose()  # (this loop's clients)

    asyncio.run(main())


def _run_workload(model: Any, cache: quantumorm.Connection,
                  during: Any = None) -> Checker:
    checker = Checker()
    model.objects.bulk_create_sync([model(id=id) for id in IDS])
    workers = [threading.Thread(target=_writer, args=(model, checker, i)) for i in range(3)]
    workers += [threading.Thread(target=_reader, args=(model, checker, 10 + i))
                for i in range(4)]
    workers.append(threading.Thread(target=_tasks, args=(model, checker, cache)))
    failures: list[BaseException] = []

    def guard(target: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                target(*args)
            except BaseException as exc:
                failures.append(exc)
        return run

    for worker in workers:
        worker._target = guard(worker._target)  # type: ignore[attr-defined]
        worker.start()
    if during is not None:
        during()
    for worker in workers:
        worker.join()
    assert not failures, failures
    return checker


@pytest.mark.parametrize("model", [Counter, ThroughCounter], ids=["aside", "write-through"])
def test_no_read_is_older_than_a_completed_write(cached: dict[str, Any], model: Any) -> None:
    _never_stale(model, cached)


@pytest.mark.parametrize("model", [PgCounter, PgThroughCounter],
                         ids=["aside", "write-through"])
def test_no_read_is_older_than_a_completed_write_on_postgres(pg_cached: dict[str, Any],
                                                             model: Any) -> None:
    _never_stale(model, pg_cached)


def _never_stale(model: Any, cached: dict[str, Any]) -> None:
    checker = _run_workload(model, cached["cache"])
    assert checker.stale == []
    assert checker.writes == 3 * WRITES_PER_WORKER + WRITES_PER_WORKER
    total = sum(d.n for d in model.objects.cached(False).get_many_sync(IDS))
    assert total == checker.writes  # no increment lost
    stats = model.objects.cache_stats()
    assert stats.hits > 0 and stats.errors == 0
    assert checker.reads >= 4 * READS_PER_WORKER


@pytest.fixture
def restartable(primary_url: str) -> Iterator[dict[str, Any]]:
    yield from _restartable("sqlite", primary_url)


@pytest.fixture
def pg_restartable(postgres_url: str) -> Iterator[dict[str, Any]]:
    postgres_support.reset(postgres_url)
    yield from _restartable("postgres", postgres_url)


def _restartable(backend: str, primary_url: str) -> Iterator[dict[str, Any]]:
    server = RestartableRedis()
    server.start()
    state._servers.clear()
    for model in MODELS:
        counters(model._meta).reset()
    quantumorm.create_connection(backend=backend, url=primary_url, name=backend,
                                 make_default=True)
    cache = open_cache(server.url)
    try:
        yield {"server": server, "cache": cache}
    finally:
        state._servers.clear()
        quantumorm.close_all()
        server.close()


@pytest.mark.parametrize("model", [Counter, ThroughCounter], ids=["aside", "write-through"])
def test_no_stale_read_while_the_cache_server_restarts(restartable: dict[str, Any],
                                                       model: Any) -> None:
    _restarts_never_stale(model, restartable)


@pytest.mark.parametrize("model", [PgCounter, PgThroughCounter],
                         ids=["aside", "write-through"])
def test_no_stale_read_while_the_cache_server_restarts_on_postgres(
        pg_restartable: dict[str, Any], model: Any) -> None:
    _restarts_never_stale(model, pg_restartable)


def _restarts_never_stale(model: Any, restartable: dict[str, Any]) -> None:
    server = restartable["server"]

    def restart_twice() -> None:
        for _ in range(2):
            threading.Event().wait(0.15)
            server.restart()

    checker = _run_workload(model, restartable["cache"], during=restart_twice)
    assert server.restarts == 2
    assert checker.stale == []
    stats = model.objects.cache_stats()
    assert stats.errors >= 1 and stats.hits > 0  # the restarts were seen, and lived through
    total = sum(d.n for d in model.objects.cached(False).get_many_sync(IDS))
    assert total == checker.writes


def test_a_cache_that_is_down_fails_nothing_and_owed_invalidations_come_first(
        restartable: dict[str, Any]) -> None:
    server = restartable["server"]
    doc = Counter(id="x", n=1).save_sync()
    assert Counter.objects.get_sync(id="x").n == 1
    assert Counter.objects.get_sync(id="x").n == 1  # cached: n=1
    server.stop()  # (saved: the entry n=1 comes back with the server)
    doc.n = 2
    doc.save_sync()  # the primary commits; the cache cannot be told
    assert Counter.objects.get_sync(id="x").n == 2  # from the primary
    assert Counter.objects.get_many_sync(["x", "y"])[0].n == 2
    stats = Counter.objects.cache_stats()
    assert stats.errors >= 1 and stats.bypassed >= 1
    server.start()
    raw_entry = _raw_get(server.url, CacheKeys(Counter._meta).entry("x"))
    assert raw_entry is not None and raw_entry.startswith(b"E") and raw_entry.endswith(
        b'{"n":1}')  # the stale entry is back on the server
    breaker = state.server_state(server.url).breaker
    breaker.success()  # (as after the cooldown, without waiting for it)
    assert Counter.objects.get_sync(id="x").n == 2  # owed tombstone first, then a miss
    assert Counter.objects.get_sync(id="x").n == 2
    assert _raw_get(server.url, CacheKeys(Counter._meta).entry("x")).endswith(b'{"n":2}')


def test_the_breaker_skips_the_cache_and_the_skipped_invalidation_is_owed(
        cached: dict[str, Any]) -> None:
    doc = Counter(id="x", n=1).save_sync()
    Counter.objects.get_sync(id="x")
    breaker = state.server_state(cached["url"]).breaker
    for _ in range(state.THRESHOLD):
        breaker.failure()
    assert breaker.is_open and not breaker.allow()
    doc.n = 2
    doc.save_sync()  # skipped the cache: the entry n=1 is still there
    assert cached["raw"].get(CacheKeys(Counter._meta).entry("x")).endswith(b'{"n":1}')
    assert Counter.objects.get_sync(id="x").n == 2  # breaker open: the primary
    breaker.success()
    assert Counter.objects.get_sync(id="x").n == 2
    assert Counter.objects.cache_stats().errors == 0  # skipped, not failed


def _raw_get(url: str, key: str) -> Any:
    client = redis.Redis.from_url(url)
    try:
        return client.get(key)
    finally:
        client.close()


class SlowPrimary:
    """The primary backend with a count of loads by id, each of which pauses until the
    other readers have been seen waiting for it (up to half a second: well within the
    lease, after which they would load themselves)."""

    def __init__(self, primary: Any) -> None:
        self.primary = primary
        self.loads: list[list[str]] = []
        self.lock = threading.Lock()
        self.waiters = 15

    def __getattr__(self, name: str) -> Any:
        return getattr(self.primary, name)

    def get_many(self, options: Any, ids: Any) -> Any:
        with self.lock:
            self.loads.append(list(ids))
        for _ in range(100):
            if counters(options).snapshot().waits >= self.waiters:
                break
            yield Pause(0.005)
        return (yield from self.primary.get_many(options, ids))


@pytest.fixture
def slow_primary(cached: dict[str, Any]) -> Iterator[SlowPrimary]:
    Counter(id="hot", n=7).save_sync()
    backend = Counter._connection().backend
    slow = SlowPrimary(backend.primary)
    backend.primary = slow
    try:
        yield slow
    finally:
        backend.primary = slow.primary


def test_concurrent_misses_on_one_id_load_it_once(slow_primary: SlowPrimary) -> None:
    barrier = threading.Barrier(16)
    seen: list[int] = []

    def read() -> None:
        barrier.wait()
        seen.append(Counter.objects.get_sync(id="hot").n)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [7] * 16
    assert slow_primary.loads == [["hot"]]
    stats = Counter.objects.cache_stats()
    assert (stats.misses, stats.fills, stats.hits) == (1, 1, 15)
    assert stats.waits >= 1


async def test_concurrent_misses_from_tasks_load_it_once(slow_primary: SlowPrimary) -> None:
    docs = await asyncio.gather(*(Counter.objects.get(id="hot") for _ in range(16)))
    assert [d.n for d in docs] == [7] * 16
    assert slow_primary.loads == [["hot"]]
    stats = Counter.objects.cache_stats()
    assert (stats.misses, stats.hits) == (1, 15) and stats.waits >= 1


def test_a_process_that_only_writes_pays_what_it_owes(cached: dict[str, Any]) -> None:
    """Owed invalidations are paid before this process's next write too, not only its next
    read: another process must not read the stale entry until its ttl."""
    doc = Counter(id="x", n=1).save_sync()
    Counter.objects.get_sync(id="x")  # cached: n=1
    breaker = state.server_state(cached["url"]).breaker
    for _ in range(state.THRESHOLD):
        breaker.failure()
    doc.n = 2
    doc.save_sync()  # skipped the cache: x is owed
    entry = CacheKeys(Counter._meta).entry("x")
    assert cached["raw"].get(entry).endswith(b'{"n":1}')
    breaker.success()
    Counter(id="y", n=5).save_sync()  # a write of another id, no read
    assert not cached["raw"].get(entry).startswith(b"E")  # x's stale entry is gone
    assert state.server_state(cached["url"]).owed(CacheKeys(Counter._meta).generation) is None
