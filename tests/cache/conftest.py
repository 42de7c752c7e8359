"""Fixtures of the cache tests: a SQLite file as the primary store, the session's
redis-server as the cache (flushed before each test).

* ``primary``: the ``"sqlite"`` connection on a file in ``tmp_path`` (the default of the
  ``sqlite`` backend).
* ``cache_conn``: the ``"cache"`` connection on the test redis-server (one retry, short
  timeouts, as a cache connection should be configured).
* ``cached``: both; every connection is closed afterwards, and the cache servers' state in
  this process (breakers, owed invalidations) is forgotten; the test models' counters start at zero.
* ``pg_cached``: the same with the session's PostgreSQL server (emptied) as the
  ``"postgres"`` primary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cache_models import MODELS
from cache_support import open_cache

import postgres_support
import quantumorm
from quantumorm.cache import state
from quantumorm.cache.stats import counters


@pytest.fixture
def primary_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/primary.db"


@pytest.fixture
async def cached(redis_url: str, primary_url: str) -> AsyncIterator[dict[str, Any]]:
    async for both in _cached(redis_url, "sqlite", primary_url):
        yield both


@pytest.fixture
async def pg_cached(redis_url: str, postgres_url: str) -> AsyncIterator[dict[str, Any]]:
    postgres_support.reset(postgres_url)
    async for both in _cached(redis_url, "postgres", postgres_url):
        yield both


async def _cached(redis_url: str, backend: str,
                  primary_url: str) -> AsyncIterator[dict[str, Any]]:
    raw = redis.Redis.from_url(redis_url)
    raw.flushdb()
    state._servers.clear()
    for model in MODELS:
        counters(model._meta).reset()
    primary = quantumorm.create_connection(backend=backend, url=primary_url, name=backend,
                                           make_default=True)
    cache = open_cache(redis_url)
    try:
        yield {"primary": primary, "cache": cache, "raw": raw, "url": redis_url}
    finally:
        raw.close()
        state._servers.clear()
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()
