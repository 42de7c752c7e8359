"""What the Redis connection's pools hold right now, read from redis-py's pools.

redis-py keeps no statistics of its own across its versions (5 to 8), so this reads the
pools' state as they keep it: a blocking pool's queue of free connections and its list of
open ones, a plain pool's free list and set of lent connections (QuantumORM's own pool of a
single server, ``pooling.py``, cluster nodes and Sentinel pools), and the callers waiting
on QuantumORM's pool or on a blocking pool's queue or condition. Each read is a
snapshot without the pool's lock (a count may be off by one while a connection changes
hands); an attribute a redis-py version lacks reads as nothing, never as an error.
A cluster client's node pools (and a Sentinel setup's master and replica pools) are summed
into one row: ``size`` is then the sum of their limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...engine.observe import PoolStats
from .pooling import AsyncWaitingConnectionPool, WaitingConnectionPool


def _waiting(pool: Any) -> int | None:
    """Callers blocked for a free connection: QuantumORM's own pool counts them
    (``pooling.py``); redis-py's blocking pools, on their queue (threads) or condition
    (asyncio); None for a pool that never blocks."""
    if isinstance(pool, (WaitingConnectionPool, AsyncWaitingConnectionPool)):
        return pool.waiting()
    queue = getattr(pool, "pool", None)
    condition = getattr(queue, "not_empty", None) or getattr(pool, "_condition", None)
    waiters = getattr(condition, "_waiters", None)
    return None if waiters is None else len(waiters)


def _counts(pool: Any) -> tuple[int, int, int] | None:
    """(open, in use, idle) of one redis-py pool, blocking or not, blocking-IO or asyncio."""
    queue = getattr(pool, "pool", None)
    if queue is not None and hasattr(pool, "_connections"):  # blocking-IO BlockingConnectionPool
        idle = sum(1 for conn in list(queue.queue) if conn is not None)
        opened = len(pool._connections)
        return opened, max(0, opened - idle), idle
    free = getattr(pool, "_available_connections", None)
    lent = getattr(pool, "_in_use_connections", None)
    if free is None or lent is None:
        return None
    return len(free) + len(lent), len(lent), len(free)


def _pools_of(client: Any) -> list[Any]:
    """The pools behind one redis-py client: its own, or each cluster node's."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return [pool]
    nodes = getattr(getattr(client, "nodes_manager", None), "nodes_cache", None) or {}
    found = []
    for node in list(nodes.values()):
        node_client = getattr(node, "redis_connection", None)
        if node_client is not None and getattr(node_client, "connection_pool", None):
            found.append(node_client.connection_pool)
        elif hasattr(node, "_free"):  # asyncio cluster node: its own free deque
            found.append(node)
    return found


def _node_counts(node: Any) -> tuple[int, int, int]:
    free = len(node._free)
    opened = len(getattr(node, "_connections", ()))
    return opened, max(0, opened - free), free


def stats(name: str, clients: Iterable[Any], size: int) -> PoolStats | None:
    """One row for the pools of ``clients`` (each client once), or None if none is open;
    ``size``: each pool's limit where the pool does not say it (the sizes are summed)."""
    opened = in_use = idle = limit = 0
    waiting: int | None = None
    seen = False
    for client in dict.fromkeys(clients):
        for pool in _pools_of(client):
            counts = _node_counts(pool) if hasattr(pool, "_free") else _counts(pool)
            if counts is None:
                continue
            seen = True
            opened, in_use, idle = opened + counts[0], in_use + counts[1], idle + counts[2]
            limit += getattr(pool, "max_connections", size)
            now = _waiting(pool)
            if now is not None:
                waiting = (waiting or 0) + now
    if not seen:
        return None
    return PoolStats(name, limit, opened, in_use, idle, waiting)


__all__ = ["stats"]
