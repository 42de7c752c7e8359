"""Probing Redis servers for :meth:`Connection.health` and :meth:`Connection.ping`.

Every server the connection uses is asked, directly through redis-py (not through the
exchange of plans, which routes by key and refuses an unsafe eviction policy that a health
check must report instead): ``PING`` (timed), ``INFO`` (version, role, memory, policy,
replication, loading) and, on a cluster, ``CLUSTER INFO``. A cluster's nodes are every
master and replica ``CLUSTER NODES`` lists; a Sentinel URL's node is the master Sentinel
names now. Where an ACL refuses INFO, the policy is read with ``CONFIG GET`` as the
eviction check does (:mod:`.eviction`), and what cannot be read stays None.

A store none of whose nodes answers raises the typed connection error (as any operation
would); a node that does not answer among others that do is reported in its
:class:`~quantumorm.health.NodeHealth`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis import exceptions as rx
from redis.exceptions import RedisClusterException

from ...health import NodeHealth
from . import eviction
from .translation import translate
from .wire import text

# redis-py's cluster and Sentinel classes are partly untyped: reach them through Any
_CLUSTER: Any = redis.cluster.RedisCluster
_ACLUSTER: Any = redis.asyncio.cluster.RedisCluster
_SENTINEL_POOL: Any = redis.sentinel.SentinelConnectionPool
_ASENTINEL_POOL: Any = redis.asyncio.sentinel.SentinelConnectionPool
_SyncNode: Any = redis.cluster.ClusterNode
_AsyncNode: Any = redis.asyncio.cluster.ClusterNode

#: what a failed probe of one node may raise (anything else is a bug and propagates)
FAILURES = (rx.RedisError, RedisClusterException, OSError)


def _info_text(reply: Any) -> dict[str, Any]:
    """INFO / CLUSTER INFO as a dict: redis-py parses them, but a raw reply is text."""
    if isinstance(reply, Mapping):
        return {text(k): v for k, v in reply.items()}
    found: dict[str, Any] = {}
    for line in text(reply or b"").splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            found[name.strip()] = value.strip()
    return found


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _role(value: Any) -> str:
    role = text(value) if value is not None else "master"
    return "replica" if role in ("slave", "replica") else role


class Listed(NamedTuple):
    """One node of ``CLUSTER NODES``: its address, role, flags (without ``myself``: which
    node answered does not matter) and how many slots it serves."""

    host: str
    port: int
    role: str
    flags: tuple[str, ...]
    slots: int


def node_health(address: str, discovered: str, latency: float, info: Mapping[str, Any],
                policy: str | None, cluster_info: Mapping[str, Any] | None,
                listed: Listed | None = None) -> NodeHealth:
    """A node's health from its replies (pure)."""
    policy = policy or (text(info["maxmemory_policy"]) if "maxmemory_policy" in info else None)
    role = _role(info.get("role"))
    link = info.get("master_link_status")
    loading = info.get("loading")
    state = cluster_info.get("cluster_state") if cluster_info else None
    return NodeHealth(
        address=address, role=role, discovered=discovered,
        version=text(info["redis_version"]) if "redis_version" in info else None,
        latency=latency,
        maxmemory_policy=policy,
        can_evict=None if policy in (None, eviction.UNKNOWN) else bool(
            eviction.unsafe({address: policy or ""})),
        used_memory=_int(info.get("used_memory")),
        maxmemory=_int(info.get("maxmemory")),
        connected_replicas=_int(info.get("connected_slaves")),
        master_link_status=text(link) if link is not None and role == "replica" else None,
        loading=None if loading is None else bool(_int(loading)),
        cluster_state=text(state) if state is not None else None,
        flags=listed.flags if listed else None, slots=listed.slots if listed else None)


def failed(address: str, discovered: str, role: str, exc: BaseException,
           listed: Listed | None = None) -> NodeHealth:
    return NodeHealth(address=address, role=role, discovered=discovered,
                      error=str(typed(exc)) or type(exc).__name__,
                      flags=listed.flags if listed else None,
                      slots=listed.slots if listed else None)


#: the longest redis-py message a report keeps
SHORT = 160


def typed(exc: BaseException) -> BaseException:
    """The typed error of a failed probe, its message made short: redis-py's class and
    message with the reprs it embeds (a Sentinel's "No master found" names the whole
    connection pool of each Sentinel) left out, and cut to :data:`SHORT` characters."""
    said = " ".join(_without_reprs(str(exc)).split())
    if len(said) > SHORT:
        said = said[:SHORT - 3].rstrip() + "..."
    try:
        plain = type(exc)(f"{type(exc).__name__}: {said}" if said else type(exc).__name__)
    except Exception:  # (an exception class that takes other arguments: left as it is)
        plain = exc
    return translate(plain)


def _without_reprs(message: str) -> str:
    """``message`` without its ``<module.Class(...)>`` parts (nested brackets included)."""
    out, depth = [], 0
    for i, char in enumerate(message):
        opens = char == "<" and message[i + 1:i + 2].isalpha()
        if opens or depth:
            depth += opens - (char == ">")
            continue
        out.append(char)
    if depth:  # (brackets that do not close: not a repr, kept as said)
        return message
    return "".join(out).replace(" :  - ", ": ").replace(" : ", ": ")


def _slot_count(ranges: Any) -> int:
    """How many slots ``CLUSTER NODES``' ranges cover (``0-5460``, ``42``, or redis-py's
    ``["0", "5460"]``); migration marks (``[42->-id]``) are not owned slots."""
    count = 0
    for item in ranges:
        bounds = item.split("-") if isinstance(item, str) else [text(b) for b in item]
        if not all(b.isdigit() for b in bounds) or not 1 <= len(bounds) <= 2:
            continue
        count += int(bounds[-1]) - int(bounds[0]) + 1
    return count


def cluster_listing(reply: Any) -> list[Listed]:
    """``CLUSTER NODES`` (redis-py's dict, or the raw text) as every node with an address.
    The listing is the cluster's own view: redis-py knows replicas only when it reads from
    them, and a node that died stays listed (flagged ``fail``) after its failover."""
    if isinstance(reply, Mapping):
        rows = [(text(address), text(about.get("flags", "")), about.get("slots") or [])
                for address, about in reply.items()]
    else:
        rows = [(parts[1], parts[2], parts[8:]) for parts in
                (line.split() for line in text(reply or b"").splitlines()) if len(parts) > 2]
    found = []
    for address, flags, ranges in rows:
        host, _, port = address.split("@")[0].split(",")[0].rpartition(":")
        named = tuple(flag for flag in flags.split(",") if flag and flag != "myself")
        if host and port.isdigit() and int(port) and "noaddr" not in named:
            role = "replica" if "slave" in named else "master"
            found.append(Listed(host, int(port), role, named, _slot_count(ranges)))
    return sorted(found, key=lambda row: (row.role, row.host, row.port))


def _single_name(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _settle(nodes: list[NodeHealth], first_error: BaseException | None) -> list[NodeHealth]:
    """The nodes, or the error if none answered (the store cannot be reached)."""
    if first_error is not None and all(node.error is not None for node in nodes):
        raise typed(first_error) from first_error
    return nodes


# -- the I/O: blocking ----------------------------------------------------------------------


def _ask(client: Any, *command: str) -> Any:
    try:
        return client.execute_command(*command)
    except rx.ResponseError:  # refused by an ACL, or the command is disabled
        return None


def _probe(client: Any, address: str, discovered: str, cluster: bool,
           listed: Listed | None = None) -> NodeHealth:
    started = time.perf_counter()
    client.execute_command("PING")
    latency = time.perf_counter() - started
    info = _info_text(_ask(client, "INFO"))
    policy = None
    if "maxmemory_policy" not in info:
        policy = eviction.policy_of(_ask(client, "CONFIG GET", "maxmemory-policy"))
    cluster_info = _info_text(_ask(client, "CLUSTER INFO")) if cluster else None
    return node_health(address, discovered, latency, info, policy, cluster_info, listed)


def probe(client: Any) -> list[NodeHealth]:
    """Every node behind a blocking redis-py client (see the module docstring)."""
    if isinstance(client, _CLUSTER):
        return _probe_cluster(client)
    targets: list[tuple[Any, str, str, str]] = []
    try:
        if isinstance(client.connection_pool, _SENTINEL_POOL):
            host, port = client.connection_pool.get_master_address()
            targets = [(client, f"{host}:{port}", "sentinel", "master")]
        else:
            targets = [(client, _single_name(client), "url", "master")]
    except FAILURES as exc:
        raise typed(exc) from exc
    nodes, first = [], None
    for target, address, discovered, role in targets:
        try:
            nodes.append(_probe(target, address, discovered, discovered == "cluster"))
        except FAILURES as exc:
            first = first or exc
            nodes.append(failed(address, discovered, role, exc))
    return _settle(nodes, first)


def _probe_cluster(client: Any) -> list[NodeHealth]:
    """Every node the cluster lists, through the client's own connection to it, or a
    connection made for the probe (with the client's settings) and closed after it."""
    listing, first = None, None
    for known_node in client.get_nodes():  # (the first that answers: some may be down)
        try:
            listing = cluster_listing(
                client.get_redis_connection(known_node).execute_command("CLUSTER NODES"))
            break
        except FAILURES as exc:
            first = first or exc
    if listing is None:
        raise translate(first or rx.ConnectionError("no cluster node")) from first
    nodes, first = [], None
    for listed in listing:
        host, port, role = listed.host, listed.port, listed.role
        address = f"{host}:{port}"
        known = client.get_node(host=host, port=port)
        node = known or _SyncNode(host, port, "replica" if role == "replica" else "primary")
        try:
            if known is None:
                client.nodes_manager.create_redis_connections([node])
            nodes.append(_probe(client.get_redis_connection(node) if known
                                else node.redis_connection, address, "cluster", True, listed))
        except FAILURES as exc:
            first = first or exc
            nodes.append(failed(address, "cluster", role, exc, listed))
        finally:
            if known is None and node.redis_connection is not None:
                node.redis_connection.close()
    return _settle(nodes, first)


def ping(client: Any) -> float:
    """Seconds of one PING round trip (the typed connection error when it fails)."""
    started = time.perf_counter()
    try:
        client.execute_command("PING")
    except FAILURES as exc:
        raise translate(exc) from exc
    return time.perf_counter() - started


# -- the I/O: asyncio -----------------------------------------------------------------------


async def _aask(client: Any, *command: str) -> Any:
    try:
        return await client.execute_command(*command)
    except rx.ResponseError:
        return None


async def _aprobe(client: Any, address: str, discovered: str, cluster: bool,
                  listed: Listed | None = None) -> NodeHealth:
    started = time.perf_counter()
    await client.execute_command("PING")
    latency = time.perf_counter() - started
    info = _info_text(await _aask(client, "INFO"))
    policy = None
    if "maxmemory_policy" not in info:
        policy = eviction.policy_of(await _aask(client, "CONFIG GET", "maxmemory-policy"))
    cluster_info = _info_text(await _aask(client, "CLUSTER INFO")) if cluster else None
    return node_health(address, discovered, latency, info, policy, cluster_info, listed)


async def aprobe(client: Any) -> list[NodeHealth]:
    """The asyncio twin of :func:`probe` (a cluster client must be initialized)."""
    if isinstance(client, _ACLUSTER):
        return await _aprobe_cluster(client)
    targets: list[tuple[Any, str, str, str]] = []
    try:
        if isinstance(client.connection_pool, _ASENTINEL_POOL):
            host, port = await client.connection_pool.get_master_address()
            targets = [(client, f"{host}:{port}", "sentinel", "master")]
        else:
            targets = [(client, _single_name(client), "url", "master")]
    except FAILURES as exc:
        raise typed(exc) from exc
    nodes, first = [], None
    for target, address, discovered, role in targets:
        try:
            nodes.append(await _aprobe(target, address, discovered, discovered == "cluster"))
        except FAILURES as exc:
            first = first or exc
            nodes.append(failed(address, discovered, role, exc))
    return _settle(nodes, first)


async def _aprobe_cluster(client: Any) -> list[NodeHealth]:
    """The asyncio twin of :func:`_probe_cluster`."""
    listing, first = None, None
    for known_node in client.get_nodes():  # (the first that answers: some may be down)
        try:
            listing = cluster_listing(await known_node.execute_command("CLUSTER NODES"))
            break
        except FAILURES as exc:
            first = first or exc
    if listing is None:
        raise translate(first or rx.ConnectionError("no cluster node")) from first
    nodes, first = [], None
    for listed in listing:
        host, port, role = listed.host, listed.port, listed.role
        address = f"{host}:{port}"
        known = client.get_node(host=host, port=port)
        node = known or _AsyncNode(host, port, "replica" if role == "replica" else "primary",
                                   **client.connection_kwargs)
        try:
            nodes.append(await _aprobe(node, address, "cluster", True, listed))
        except FAILURES as exc:
            first = first or exc
            nodes.append(failed(address, "cluster", role, exc, listed))
        finally:
            if known is None:
                await node.disconnect()
    return _settle(nodes, first)


async def aping(client: Any) -> float:
    """The asyncio twin of :func:`ping`."""
    started = time.perf_counter()
    try:
        await client.execute_command("PING")
    except FAILURES as exc:
        raise translate(exc) from exc
    return time.perf_counter() - started


__all__ = ["aping", "aprobe", "node_health", "ping", "probe"]
