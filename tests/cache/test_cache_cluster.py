"""The cache on a Redis Cluster: a model's entries spread over several hash tags
(``Meta.cache["partitions"]``), a cached ``get_many`` is one script call per tag, routed to
the nodes in one round trip each, and the never-stale protocol holds as on one server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cache_models import MODELS, Profile
from cache_stepping import Stepper
from cache_support import CACHE_OPTIONS

import quantumorm
from cluster_support import Cluster
from quantumorm.cache import state
from quantumorm.cache.stats import counters
from quantumorm.errors import UnsupportedOperation


@pytest.fixture
async def on_cluster(redis_cluster: Cluster, tmp_path: Path) -> AsyncIterator[Cluster]:
    redis_cluster.flush()
    state._servers.clear()
    for model in MODELS:
        counters(model._meta).reset()
    quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{tmp_path}/p.db",
                                 name="sqlite", make_default=True)
    quantumorm.create_connection(url=redis_cluster.url, name="cache", **CACHE_OPTIONS)
    try:
        yield redis_cluster
    finally:
        state._servers.clear()
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


async def test_cached_reads_and_writes_across_hash_tags(on_cluster: Cluster) -> None:
    docs = await Profile.objects.bulk_create([Profile(name=f"p{i}") for i in range(30)])
    ids = [d.id for d in docs]
    assert [d.name for d in await Profile.objects.get_many(ids)] == [f"p{i}" for i in range(30)]
    stats = Profile.objects.cache_stats()
    assert (stats.hits, stats.write_through) == (30, 30)  # write-through filled them all
    first = docs[0]
    first.name = "changed"
    await first.save()
    assert (await Profile.objects.get_many(ids))[0].name == "changed"
    assert await Profile.objects.filter(name="changed").cache(ttl=30).count() == 1
    await Profile.objects.filter(id__in=ids[:10]).delete()
    assert await Profile.objects.get_many(ids[:10]) == [None] * 10
    assert await Profile.objects.filter(name="changed").cache(ttl=30).count() == 0


def test_a_stale_fill_is_refused_on_a_cluster(on_cluster: Cluster) -> None:
    p = Profile(name="v1").save_sync()
    on_cluster.flush()  # (the write-through entry gone: the next read misses)
    connection = Profile._connection()
    reader = Stepper(connection.backend.get_many(Profile._meta, [p.id]),
                     connection.store.sync_executor())
    reader.run_cache_steps()
    reply = reader.execute_primary()
    p.name = "v2"
    p.save_sync()
    (row,) = reader.resume(reply)
    assert row.data["name"] == "v1"
    assert Profile.objects.get_sync(id=p.id).name == "v2"
    assert Profile.objects.cache_stats().refused_fills == 1


def test_dropping_a_cache_on_a_cluster_is_refused_first(on_cluster: Cluster) -> None:
    Profile(name="kept").save_sync()
    connection = Profile._connection()
    with pytest.raises(UnsupportedOperation, match="Redis Cluster"):
        connection.run(lambda backend: backend.drop_collection(Profile._meta))
    assert Profile.objects.cached(False).count_sync() == 1  # nothing was dropped
