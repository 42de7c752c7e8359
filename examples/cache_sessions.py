#!/usr/bin/env python3
"""Redis as primary and as cache, side by side: sessions live in Redis with a TTL (Redis is
their primary store), users live in SQLite (or PostgreSQL) and are cached in Redis.

Run it::

    .venv/bin/python examples/cache_sessions.py                       # private redis-server
    QUANTUMORM_URL=redis://127.0.0.1:6379/0 .venv/bin/python examples/cache_sessions.py

``QUANTUMORM_URL`` (or else ``REDIS_URL``) names the server. Without either, it starts its own
redis-server on a free loopback port and stops it at exit. With a URL given, it writes only
keys under the ``example`` namespace and deletes them at the end. The users' primary is a
SQLite file in a temporary directory, or ``--primary-backend postgres --primary-url
postgresql://...`` once that backend exists. """

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
from typing import Any

import redis
from demo import PrivateRedis

from quantumorm import (
    DateTimeField,
    Document,
    JSONField,
    StringField,
    aclose_all,
    create_connection,
)
from quantumorm.cache.entries import CacheKeys


class UserSession(Document):
    """Redis as the primary store: short-lived data, expiry built in, no other copy."""

    user_id = StringField(required=True, indexed=True)
    session_data = JSONField()
    expires_at = DateTimeField(indexed=True)

    class Meta:
        backend = "redis"
        namespace = "example"
        collection = "sessions"
        ttl = 3600  # seconds; index entries go with the document


def cached_user_model(primary: str) -> type[Document]:
    """The plan's ``CachedUser``, on the primary backend chosen on the command line."""

    class CachedUser(Document):
        """The primary is a database; Redis holds copies that are never older than a write
        this process completed (and at most ``ttl`` old after a write from elsewhere)."""

        email = StringField(unique=True)
        name = StringField(indexed=True)

        class Meta:
            backend = primary  # "sqlite" or "postgres": the primary store
            namespace = "example"
            collection = "users"
            cache = {"connection": "cache", "ttl": 300, "mode": "aside", "negative_ttl": 30}

    return CachedUser


async def tour(user_model: Any, raw: redis.Redis) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    session = await UserSession(user_id="u1", session_data={"cart": [1, 2]},
                                expires_at=now + dt.timedelta(hours=1)).save()
    print(f"session {session.id} in Redis, expires in {await session.ttl():.0f} s")
    mine = await UserSession.objects.filter(user_id="u1").order_by("-expires_at").limit(10).all()
    print(f"sessions of u1: {[s.id for s in mine]}")

    alice = await user_model(email="alice@example.com", name="Alice").save()
    first = await user_model.objects.get(id=alice.id)  # miss: loaded from the primary, filled
    again = await user_model.objects.get(id=alice.id)  # hit: from Redis
    print(f"user {first.name!r} read twice: {user_model.objects.cache_stats()}")
    slot = raw.get(CacheKeys(user_model._meta).entry(alice.id))
    print(f"its cache entry: {slot!r}")
    again.name = "Alice Smith"
    await again.save()  # commits on the primary; the entry becomes a tombstone
    print(f"after a save the slot holds {raw.get(CacheKeys(user_model._meta).entry(alice.id))!r}")
    fresh = await user_model.objects.get(id=alice.id)
    print(f"next read (never stale): {fresh.name!r}")
    direct = await user_model.objects.cached(False).get(id=alice.id)
    print(f"bypassing the cache: {direct.name!r}")
    missing = await user_model.objects.get_many(["nobody", "nobody"])
    print(f"a missing id twice (cached absence): {missing}")
    named = user_model.objects.filter(name="Alice Smith").cache(ttl=60)
    print(f"query cached: {[u.email for u in await named.all()]} then "
          f"{[u.email for u in await named.all()]}")
    stats = user_model.objects.cache_stats()
    print(f"statistics: hits {stats.hits}, misses {stats.misses}, fills {stats.fills}, "
          f"invalidations {stats.invalidations}, query hits {stats.query_hits}, "
          f"hit ratio {stats.hit_ratio:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--primary-backend", default="sqlite")
    parser.add_argument("--primary-url", default=None)
    args = parser.parse_args()
    server = None
    url = os.environ.get("QUANTUMORM_URL") or os.environ.get("REDIS_URL")
    if not url:
        executable = shutil.which("redis-server")
        if executable is None:
            print("redis-server is not on PATH: install it or set QUANTUMORM_URL",
                  file=sys.stderr)
            return 1
        server = PrivateRedis(executable)
        server.start()
        url = server.url
    workdir = tempfile.mkdtemp(prefix="quantumorm-cache-example-")
    raw = redis.Redis.from_url(url)
    try:
        create_connection(backend="redis", url=url, name="default", make_default=True)
        create_connection(backend="redis", url=url, name="cache", retries=1,
                          connect_timeout=0.5, socket_timeout=1)
        primary_url = args.primary_url or f"sqlite:///{workdir}/users.db"
        create_connection(backend=args.primary_backend, url=primary_url,
                          name=args.primary_backend, make_default=True)
        asyncio.run(_run(cached_user_model(args.primary_backend), raw))
    finally:
        for key in raw.scan_iter(match="{example:*", count=1000):
            raw.delete(key)
        raw.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if server is not None:
            server.stop()
    return 0


async def _run(user_model: Any, raw: redis.Redis) -> None:
    try:
        await tour(user_model, raw)
    finally:
        await aclose_all()


if __name__ == "__main__":
    sys.exit(main())
