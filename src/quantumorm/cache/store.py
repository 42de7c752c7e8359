"""What the cache layer asks of a cache server (:class:`CacheStore`), and which
implementation serves a connection of each backend kind (loaded lazily, as backends are:
the Redis one imports redis-py).

Every method is an operation yielding the cache connection's own plans; the cached
operations run them through :func:`~quantumorm.cache.dispatch.on_cache`. Each takes its keys
grouped by hash tag (:meth:`~quantumorm.cache.entries.CacheKeys.by_partition`) and returns
one reply per key, in the order of the groups.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

from ..engine.drive import Op
from ..errors import ConfigurationError

#: the cache store of each backend kind that can be a cache: "module:attribute", imported
#: when a cached model first runs
STORES: dict[str, str] = {"redis": "quantumorm.cache.redis_store:RedisCacheStore"}


class CacheStore(Protocol):
    #: whether :meth:`drop` can find every key of a pattern (not on a Redis Cluster, where
    #: SCAN reaches one node)
    can_drop: bool

    def read(self, groups: Sequence[Sequence[str]], token: str,
             lease_ms: int) -> Op[list[Any]]:
        """Per key: the entry, ``b"N"``, or ``b"G"`` / ``b"W"`` / ``b"P"`` (``cache_read``)."""
        ...

    def fill(self, groups: Sequence[Sequence[tuple[str, int, bytes]]], token: str,
             ttl_ms: int, negative_ttl_ms: int) -> Op[list[int]]:
        """(key, version, value) per key; per key 1 if filled (``cache_fill``)."""
        ...

    def begin(self, groups: Sequence[Sequence[str]], token: str, guard_ms: int,
              generation: str | None = None) -> Op[int]:
        """Mark the keys (``cache_begin``); with ``generation`` (a key), the collection's
        query generation too, in the same round trip."""
        ...

    def finish(self, groups: Sequence[Sequence[tuple[str, int, bytes]]], token: str,
               ttl_ms: int, tombstone_ms: int, generation: str | None,
               new_generation: str) -> Op[list[int]]:
        """(key, version, entry or b"") per key; per key 1 if the entry was stored. With
        ``generation`` (a key), in the same round trip, that key becomes
        ``"T<new_generation>"`` (without an expiry), or stays marked, without this writer's
        token, while other writes it names are in progress."""
        ...

    def invalidate(self, groups: Sequence[Sequence[tuple[str, bytes]]], tombstone_ms: int,
                   generation: str | None, new_generation: str) -> Op[None]:
        """(key, expected) per key: ``expected`` ``b""`` tombstones whatever the slot holds
        (a write's mark is flagged, not replaced), else only while the slot holds exactly
        ``expected`` (a damaged entry) (``cache_invalidate``)."""
        ...

    def drop(self, pattern: str, generation: str, new_generation: str,
             tombstone_ms: int) -> Op[int]:
        """Drop every key matching ``pattern``; renew the generation. Documents' slots
        become tombstones by ``cache_invalidate``'s rules (a write's mark is kept: the slot
        rules of :mod:`.entries`); every other key is deleted."""
        ...

    def query_get(self, generation: str, result: str,
                  fresh: str) -> Op[tuple[str, bytes | None]]:
        ...

    def query_put(self, generation: str, result: str, at: str, ttl_ms: int,
                  payload: bytes) -> Op[bool]:
        ...


def store_for(kind: str, connection_store: Any) -> CacheStore:
    """The cache store for a connection of backend ``kind`` (``connection_store``: that
    connection's own store object)."""
    target = STORES.get(kind)
    if target is None:
        raise ConfigurationError(f"a {kind!r} connection cannot be a cache (cache stores: "
                                 f"{', '.join(sorted(STORES))})")
    module_name, _, attribute = target.partition(":")
    store: CacheStore = getattr(importlib.import_module(module_name), attribute)(
        connection_store)
    return store
