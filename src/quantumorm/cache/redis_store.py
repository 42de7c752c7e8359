"""The cache store on Redis: each step one Lua script per hash tag (``cache_*.lua`` beside
the Redis backend's scripts), all of a step's calls pipelined in one round trip.

Imported lazily (:data:`quantumorm.cache.store.STORES`): it imports the Redis backend.
Plans are neither read-only nor idempotent for the exchange, so a broken connection is
not retried with backoff: the cache layer's circuit breaker decides, and the operation
goes on without the cache at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backends.redis.commands import Call, Command, RedisPlan
from ..engine.drive import Op


def _plan(steps: list[Call | Command]) -> RedisPlan:
    return RedisPlan(tuple(steps))


def _flat(replies: list[Any]) -> list[Any]:
    return [item for reply in replies for item in reply]


class RedisCacheStore:
    def __init__(self, connection_store: Any) -> None:
        options = getattr(connection_store, "options", None)
        self.can_drop = not (options is not None and options.topology.cluster)

    def read(self, groups: Sequence[Sequence[str]], token: str,
             lease_ms: int) -> Op[list[Any]]:
        replies = yield _plan([Call("cache_read", tuple(keys), (token, lease_ms))
                               for keys in groups])
        return _flat(replies)

    def fill(self, groups: Sequence[Sequence[tuple[str, int, bytes]]], token: str,
             ttl_ms: int, negative_ttl_ms: int) -> Op[list[int]]:
        steps: list[Call | Command] = []
        for items in groups:
            args: list[Any] = [token, ttl_ms, negative_ttl_ms]
            for _, version, value in items:
                args += (version, value)
            steps.append(Call("cache_fill", tuple(key for key, _, _ in items), tuple(args)))
        replies = yield _plan(steps)
        return [int(n) for n in _flat(replies)]

    def begin(self, groups: Sequence[Sequence[str]], token: str, guard_ms: int,
              generation: str | None = None) -> Op[int]:
        steps: list[Call | Command] = [Call("cache_begin", tuple(keys), (token, guard_ms))
                                       for keys in groups]
        if generation is not None:
            steps.append(Call("cache_begin", (generation,), (token, guard_ms)))
        replies = yield _plan(steps)
        return sum(int(n) for n in replies[:len(groups)])

    def finish(self, groups: Sequence[Sequence[tuple[str, int, bytes]]], token: str,
               ttl_ms: int, tombstone_ms: int, generation: str | None,
               new_generation: str) -> Op[list[int]]:
        steps: list[Call | Command] = []
        for items in groups:
            args: list[Any] = [token, ttl_ms, tombstone_ms]
            for _, version, value in items:
                args += (version, value)
            steps.append(Call("cache_finish", tuple(key for key, _, _ in items), tuple(args)))
        if generation is not None:
            steps.append(_renewal(generation, token, new_generation))
        replies = yield _plan(steps)
        return [int(n) for n in _flat(replies[:len(groups)])]

    def invalidate(self, groups: Sequence[Sequence[tuple[str, bytes]]], tombstone_ms: int,
                   generation: str | None, new_generation: str) -> Op[None]:
        steps: list[Call | Command] = [
            Call("cache_invalidate", tuple(key for key, _ in items),
                 (tombstone_ms, *(expected for _, expected in items)))
            for items in groups]
        if generation is not None:
            steps.append(_renewal(generation, "", new_generation))
        if steps:
            yield _plan(steps)

    def drop(self, pattern: str, generation: str, new_generation: str,
             tombstone_ms: int) -> Op[int]:
        # (standalone and Sentinel: SCAN names no key, so a cluster would route it by cursor)
        yield _plan([_renewal(generation, "", new_generation)])
        cursor: Any = 0
        dropped = 0
        while True:
            ((cursor, keys),) = yield _plan([Command(("SCAN", cursor, "MATCH", pattern,
                                                      "COUNT", 1000))])
            if keys:
                yield _plan(_dropping(keys, generation))
                dropped += len(keys)
            if int(cursor) == 0:
                return dropped

    def query_get(self, generation: str, result: str,
                  fresh: str) -> Op[tuple[str, bytes | None]]:
        ((gen, payload),) = yield _plan([Call("cache_query_get", (generation, result),
                                              (fresh,))])
        text = gen.decode() if isinstance(gen, bytes) else str(gen)
        return text, payload or None

    def query_put(self, generation: str, result: str, at: str, ttl_ms: int,
                  payload: bytes) -> Op[bool]:
        (stored,) = yield _plan([Call("cache_query_put", (generation, result),
                                      (at, ttl_ms, payload))])
        return bool(stored)


def _renewal(generation: str, token: str, new_generation: str) -> Call:
    """The collection's query generation renewed by ``cache_finish``, as a document's slot
    is settled: "T<new_generation>" (a fresh token, without an expiry: results stored under
    it live their own ttl, and a lost generation is a miss, never a stale hit) unless it
    holds the marks of other writes in progress (this writer's ``token`` taken out, the
    mark kept: no result is served nor stored until the last of them finishes)."""
    return Call("cache_finish", (generation,), (token, "", "", new_generation, ""))


def _dropping(keys: list[bytes], generation: str) -> list[Call | Command]:
    """Drop ``keys`` of a model's cache: documents' slots by ``cache_invalidate`` in its
    drop mode (one call per hash tag; a write's mark is flagged, not deleted: the slot rules
    of :mod:`quantumorm.cache.entries`; any other slot is deleted), every other key (query
    results, a key the cache does not name) by ``UNLINK``, but the generation (renewed
    before)."""
    slots: dict[bytes, list[str]] = {}
    others: list[bytes] = []
    for key in keys:
        tag, _, rest = key.partition(b"}")
        if key == generation.encode():
            continue
        if rest.startswith(b":e:") and key.isascii():  # (ids are percent-encoded)
            slots.setdefault(tag, []).append(key.decode())
        else:
            others.append(key)
    steps: list[Call | Command] = [Call("cache_invalidate", tuple(group), ("",))
                                   for group in slots.values()]
    if others:
        steps.append(Command(("UNLINK", *others)))
    return steps
