"""What happens inside a Redis round trip, counted: a script flushed (NOSCRIPT: reloaded),
connections killed (a read retried), and the change streams and memory read on demand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from metrics_models import RedisUser

import quantumorm
from quantumorm import metrics
from quantumorm.backends.redis.keys import KeySpace


async def test_script_flush_counts_a_reload(conn: quantumorm.Connection,
                                            redis_client: redis.Redis) -> None:
    await RedisUser(name="ann", age=1).save()
    metrics.enable()
    redis_client.script_flush()
    redis_client.function_flush()  # (the scripts are functions by default)
    await RedisUser(name="bob", age=2).save()
    found = metrics.snapshot()
    assert found.script_reloads == 1
    assert found.retries == {}
    save = found.operation("RedisUser", "save")
    assert save is not None and save.count == 1 and save.errors == {}
    assert save.round_trips == 3  # the save, the load, the save again


def test_refused_write_counts_retries_by_reason(start_redis: Any) -> None:
    """A replica refuses writes (READONLY: not executed), so a write is sent again, up to
    ``retries`` attempts; each retry is counted by its reason, and the error by type."""
    url, _ = start_redis()
    connection = quantumorm.create_connection(url=url, name="replica", retries=3)
    try:
        RedisUser.objects.using("replica").count_sync()
        raw = redis.Redis.from_url(url)
        raw.replicaof("127.0.0.1", "1")  # (nothing listens there: the data stays)
        raw.close()
        metrics.enable()
        with pytest.raises(quantumorm.errors.QuantumORMError):
            RedisUser.objects.using("replica").create_sync(name="ann", age=1)
        found = metrics.snapshot()
        assert found.retries == {"ReadOnlyError": 2}
        create = found.operation("RedisUser", "create")
        assert create is not None and create.count == 1 and create.round_trips == 3
        assert sum(create.errors.values()) == 1
    finally:
        connection.close()


async def test_stream_stats(conn: quantumorm.Connection, redis_client: redis.Redis) -> None:
    for n in range(3):
        await RedisUser(name=f"u{n}", age=n).save()
    stream = KeySpace(RedisUser._meta).changes(0)
    redis_client.xgroup_create(stream, "workers", id="0")
    redis_client.xreadgroup("workers", "w1", {stream: ">"}, count=1)
    await RedisUser(name="u3", age=3).save()
    for found in (await metrics.stream_stats(RedisUser),
                  await asyncio.to_thread(metrics.stream_stats_sync, RedisUser)):
        assert [(s.partition, s.length) for s in found] == [(0, 4)]
        assert found[0].groups == (metrics.GroupLag("workers", 1, 1, 3),)


async def test_memory_usage(conn: quantumorm.Connection) -> None:
    await RedisUser.objects.bulk_create([RedisUser(name=f"u{n}", age=n) for n in range(40)])
    found = await metrics.memory_usage(RedisUser, samples=10)
    assert (found.model, found.documents, found.sampled) == ("RedisUser", 40, 10)
    assert 0 < found.bytes_per_document < 10_000
    assert found.document_bytes == round(found.bytes_per_document * 40)
    assert found.structure_bytes > 0
    assert found.total_bytes == found.document_bytes + found.structure_bytes
    every = await asyncio.to_thread(metrics.memory_usage_sync, RedisUser, 100)
    assert (every.documents, every.sampled) == (40, 40)
    with pytest.raises(ValueError):
        await metrics.memory_usage(RedisUser, samples=0)


async def test_usage_is_redis_only(lite: quantumorm.Connection) -> None:
    from metrics_models import LiteUser

    with pytest.raises(quantumorm.errors.UnsupportedOperation):
        await metrics.stream_stats(LiteUser)
