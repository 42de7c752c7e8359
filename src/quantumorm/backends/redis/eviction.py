"""The eviction check: QuantumORM refuses a Redis server whose ``maxmemory-policy`` can evict
any key.

An ``allkeys-*`` policy evicts a document, its meta hash and its index entries independently,
so indexes would name documents that are gone, or miss documents that are there. ``noeviction``
is safe (a write over the limit fails with ``OutOfMemoryError``), and so is ``volatile-*``: only
keys with an expiry are evicted, and the only such keys QuantumORM writes are documents with a
TTL (and soft-deleted documents), whose early disappearance is handled like their expiry.

The exchange (``exchange.py``) asks for the policy of every master on an executor's first
request; the executor reads it (:func:`eviction_policies` or :func:`async_eviction_policies`)
and the exchange hands it to :func:`settle`, which raises :class:`UnsafeEvictionPolicy`
unless the connection was opened with ``allow_eviction=True``. It keeps asking on every
request until the check passes. ``INFO memory`` is read
first (managed services often disable CONFIG); where an ACL refuses it, ``CONFIG GET``; where
both are refused the policy is ``"unknown"``, a warning is logged and nothing is blocked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis import exceptions as rx

from ...errors import UnsafeEvictionPolicy

log = logging.getLogger("quantumorm.redis")

# redis-py's cluster and Sentinel classes are partly untyped: reach them through Any
_CLUSTER: Any = redis.cluster.RedisCluster
_ACLUSTER: Any = redis.asyncio.cluster.RedisCluster
_SENTINEL_POOL: Any = redis.sentinel.SentinelConnectionPool
_ASENTINEL_POOL: Any = redis.asyncio.sentinel.SentinelConnectionPool

#: the policy reported for a server that lets neither INFO nor CONFIG GET read it
UNKNOWN = "unknown"

#: the reads of a server's policy, in the order they are tried
READS: tuple[tuple[str, ...], ...] = (("INFO", "memory"), ("CONFIG GET", "maxmemory-policy"))


def unsafe(policies: Mapping[str, str]) -> dict[str, str]:
    """The servers (and their policies) that may evict any key."""
    return {server: policy for server, policy in policies.items()
            if policy.startswith("allkeys-")}


def refusal(policies: Mapping[str, str], allow: bool) -> UnsafeEvictionPolicy | None:
    """The error to raise for these policies (``{server: policy}``), or None if QuantumORM
    may use the servers: every policy is safe, or the user allowed eviction."""
    bad = unsafe(policies)
    if not bad or allow:
        return None
    server = min(bad)
    return UnsafeEvictionPolicy(bad[server], server)


def settle(policies: Mapping[str, str], allow: bool) -> None:
    """Raise :class:`UnsafeEvictionPolicy`, or log what the caller should know and return."""
    error = refusal(policies, allow)
    if error is not None:
        raise error
    bad = unsafe(policies)
    if bad:
        log.warning("Redis eviction allowed (allow_eviction=True) on %s: documents, meta "
                    "hashes and index entries may be evicted independently, and queries may "
                    "then return wrong results", _listed(bad))
    unread = {server: policy for server, policy in policies.items() if policy == UNKNOWN}
    if unread:
        log.warning("cannot read the maxmemory-policy of Redis at %s (INFO and CONFIG GET "
                    "are refused, or do not report it): QuantumORM cannot check that its keys "
                    "are safe from eviction; it needs noeviction or volatile-*",
                    ", ".join(sorted(unread)))


def _listed(policies: Mapping[str, str]) -> str:
    return ", ".join(f"{server} ({policy})" for server, policy in sorted(policies.items()))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def policy_of(reply: Any) -> str | None:
    """The policy in a reply to one of :data:`READS` (INFO's dict, or CONFIG GET's dict or
    flat list), or None if it is not there (a Redis-compatible server may not say)."""
    if isinstance(reply, (list, tuple)):
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    if isinstance(reply, dict):
        for name, value in reply.items():
            if _text(name) in ("maxmemory_policy", "maxmemory-policy"):
                return _text(value)
    return None


def _single_name(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


# -- the I/O: blocking ----------------------------------------------------------------------


def _read(target: Any) -> str:
    for command in READS:
        try:
            policy = policy_of(target.execute_command(*command))
        except rx.ResponseError:  # refused by an ACL, or the command is disabled
            continue
        if policy is not None:
            return policy
    return UNKNOWN


def eviction_policies(client: Any) -> dict[str, str]:
    """``{"host:port": policy}`` of every master behind a blocking redis-py client: the
    server, each primary a cluster client knows, or the master of a Sentinel client
    (``"unknown"`` where neither INFO nor CONFIG GET is allowed). Connection errors are
    redis-py's."""
    if isinstance(client, _CLUSTER):
        return {node.name: _read(client.get_redis_connection(node))
                for node in client.get_primaries()}
    pool = client.connection_pool
    if isinstance(pool, _SENTINEL_POOL):
        host, port = pool.get_master_address()
        return {f"{host}:{port}": _read(client)}
    return {_single_name(client): _read(client)}


# -- the I/O: asyncio -----------------------------------------------------------------------


async def _aread(target: Any) -> str:
    for command in READS:
        try:
            policy = policy_of(await target.execute_command(*command))
        except rx.ResponseError:
            continue
        if policy is not None:
            return policy
    return UNKNOWN


async def async_eviction_policies(client: Any) -> dict[str, str]:
    """The asyncio twin of :func:`eviction_policies` (a cluster client must be initialized)."""
    if isinstance(client, _ACLUSTER):
        return {node.name: await _aread(node) for node in client.get_primaries()}
    pool = client.connection_pool
    if isinstance(pool, _ASENTINEL_POOL):
        host, port = await pool.get_master_address()
        return {f"{host}:{port}": await _aread(client)}
    return {_single_name(client): await _aread(client)}


__all__ = ["UNKNOWN", "async_eviction_policies", "eviction_policies", "refusal", "settle"]
