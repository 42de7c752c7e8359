"""Metrics on a Redis Cluster: one count per operation whatever the nodes a query reaches,
the node pools summed per client, and the change streams read from every partition."""

from __future__ import annotations

import asyncio

import quantumorm
from quantumorm import Document, IntField, StringField, metrics


class Spread(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        collection = "m_spread"
        partitions = 8


async def test_cluster_counts_pools_and_streams(cluster_conn: quantumorm.Connection) -> None:
    await Spread.objects.bulk_create([Spread(name=f"n{i % 3}", age=i) for i in range(24)])
    await asyncio.to_thread(Spread.objects.count_sync)
    metrics.enable()
    assert len(await Spread.objects.filter(name="n1").all()) == 8
    assert await asyncio.to_thread(Spread.objects.filter(age__lt=10).count_sync) == 10
    found = metrics.snapshot()
    query = found.operation("Spread", "all")
    count = found.operation("Spread", "count")
    assert query is not None and (query.count, query.round_trips) == (1, 1)  # (a fan-out)
    assert count is not None and (count.count, count.round_trips) == (1, 1)
    pools = {p.pool: p for p in found.pools if p.connection == "default"}
    assert set(pools) == {"sync", "async"}
    for pool in pools.values():
        assert pool.backend == "redis" and pool.size >= 3 * 50 and pool.open >= 1
        assert pool.in_use == 0 and pool.idle == pool.open
    streams = await metrics.stream_stats(Spread)
    assert [s.partition for s in streams] == list(range(8))
    assert sum(s.length for s in streams) == 24
    usage = await metrics.memory_usage(Spread, samples=8)
    assert usage.documents == 24 and 8 <= usage.sampled <= 24 and usage.document_bytes > 0
