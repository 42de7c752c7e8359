"""Where a Redis connection goes: one server, a Redis Cluster, or a Sentinel-managed master.

URLs (the scheme picks the topology; ``rediss`` variants use TLS, verified by default)::

    redis://[user:password@]host:port/db        one server (also rediss://, unix:///path?db=N)
    redis+cluster://[user:password@]host:port[,host:port...]
                                                Redis Cluster, from seed nodes (db 0 only)
    redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]
                                                the master Sentinel names for ``service``

The credentials are the Redis servers' (ACL user and password). Sentinels that require
their own take ``sentinel_username=`` / ``sentinel_password=`` keyword arguments.
``read_from_replicas=True`` sends read-only requests to replicas (they may lag behind the
master: a read can miss the latest writes).

This module builds redis-py clients; the executors (``executor.py``) send plans through them.
:class:`Kind` names the three kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff

from ... import logs
from ...errors import ConfigurationError
from ...redaction import redact_url, redacted_repr
from ...vocabulary import Vocabulary
from .pooling import AsyncWaitingConnectionPool, WaitingConnectionPool

# redis-py's cluster and Sentinel classes are partly untyped: reach them through Any
_sync: Any = redis
_async: Any = redis.asyncio

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES


class Kind(Vocabulary):
    """The kinds of deployment a URL names. Members are strings (``Kind.CLUSTER ==
    "cluster"``), so code and users that read ``topology.kind`` as a string keep working."""

    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True)
class Topology:
    kind: Kind
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = None
    #: the query string's options of a single-server URL (redis-py reads them), by name
    query: tuple[tuple[str, str], ...] = ()

    @property
    def cluster(self) -> bool:
        return self.kind is Kind.CLUSTER

    def __repr__(self) -> str:  # never the password (see quantumorm.redaction)
        return redacted_repr(self, ((name, getattr(self, name)) for name in (
            "kind", "url", "hosts", "service", "db", "tls", "username", "password")))


_FRAGMENT = "a URL has no '#' part (percent-encode a '#' in a password: %23)"


def _fail(url: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{redact_url(url)}: {problem}")


def parse(url: str) -> Topology:
    """Check a URL and say which topology it names; ConfigurationError if it is wrong (its
    message never shows the password)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"a Redis URL starts with {', '.join(s + '://' for s in SCHEMES)} "
            f"(got {redact_url(url)!r})")
    if scheme in SINGLE_SCHEMES:
        return _single(url, scheme)
    parts = urlsplit(url)
    if parts.fragment:
        raise _fail(url, _FRAGMENT)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts = tuple(_host(url, entry) for entry in hostlist.split(",") if entry)
    if not hosts:
        raise _fail(url, "names no host:port")
    if parts.query:
        raise _fail(url, "pass options as keyword arguments, not in the URL")
    path = [unquote(p) for p in parts.path.split("/") if p]
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        if path:
            raise _fail(url, "Redis Cluster has only database 0 (drop the /db)")
        return Topology(Kind.CLUSTER, url, hosts, tls=tls, username=username, password=password)
    if not path or len(path) > 2:
        raise _fail(url, "a Sentinel URL ends with /service_name[/db]")
    db = 0
    if len(path) == 2:
        db = _db(url, path[1])
    return Topology(Kind.SENTINEL, url, hosts, path[0], db, tls, username, password)


def _single(url: str, scheme: str) -> Topology:
    """One server: ``redis://[user:password@]host[:port][/db][?option=value...]`` (also
    ``rediss://``), or ``unix:///path/to.sock[?db=N...]``. redis-py parses these again when
    it connects; here they are checked, so that a mistake fails at ``create_connection``
    instead of being skipped (``/abc`` read as db 0) or raised raw at the first query."""
    parts = urlsplit(url)
    if parts.fragment or url.endswith("#"):
        raise _fail(url, _FRAGMENT)
    try:
        port = parts.port  # (raises ValueError for a port that is no number, or too big)
    except ValueError:
        port = 0
    try:
        # (Python 3.10's strict parse refuses an empty query string: no query, no parse)
        query = tuple(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
                      if parts.query else ())
    except ValueError:
        query = (("", ""),)
    # (raised outside the except blocks: the driver's message, which may quote the
    # password, must not travel along as __context__)
    if query == (("", ""),):
        raise _fail(url, "the query string is not name=value&...")
    values = dict(query)
    if len(values) < len(query):
        raise _fail(url, "an option appears twice in the query string")
    db = _db(url, values["db"]) if "db" in values else 0
    if scheme == "unix":
        if not parts.path.startswith("/"):
            raise _fail(url, "a unix:// URL names the socket: unix:///path/to/redis.sock")
    else:
        if port == 0:
            raise _fail(url, "the port is not a number from 1 to 65535 (or the password "
                             "holds a '/', '?' or '#': percent-encode it)")
        path = unquote(parts.path).strip("/")
        if path and "db" in values:
            raise _fail(url, "the database is given twice (path and ?db=)")
        if path:
            db = _db(url, path)
    return Topology(Kind.SINGLE, url, db=db, tls=scheme == "rediss",
                    username=unquote(parts.username or "") or None,
                    password=unquote(parts.password or "") or None,
                    query=tuple((k, v) for k, v in query if k != "db"))


def _db(url: str, text: str) -> int:
    if not text.isdigit() or not text.isascii():
        shown = f" (got {text!r})" if "@" not in url else ""  # (as in _host)
        raise _fail(url, f"the database is a number{shown}")
    return int(text)


def _host(url: str, entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    if not host or not (port.isdigit() and port.isascii()) or not 0 < int(port) < 65536:
        # (the entry is shown only if the URL holds no credentials: in a malformed URL, a
        # password with a "/" in it ends up in the host list)
        shown = f" {entry!r}" if "@" not in url else ""
        raise _fail(url, f"a host{shown} is not host:port (port 1 to 65535)")
    return host.strip("[]"), int(port)


def _auth(topology: Topology) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if topology.username:
        out["username"] = topology.username
    if topology.password:
        out["password"] = topology.password
    if topology.tls:
        out["ssl"] = True
    return out


def _split_sentinel(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments for the servers, and those meant for the Sentinels."""
    sentinel: dict[str, Any] = {}
    for name in ("sentinel_username", "sentinel_password"):
        if name in extra:
            sentinel[name.removeprefix("sentinel_")] = extra.pop(name)
    return extra, sentinel


#: node-level attempts while a cluster client discovers the cluster (a seed node may be down)
DISCOVERY_ATTEMPTS = 3


def _cluster_options(settings: dict[str, Any], replicas: bool) -> dict[str, Any]:
    """Options of a cluster client. Its own retries (which would resend a command after a
    broken connection) are switched off once it knows the cluster (see ``_settled``); while
    it discovers the slots, a seed node that is down is simply skipped. Replica reads are
    spread round-robin."""
    out = {k: v for k, v in settings.items() if k != "retry_on_timeout"}
    out["retry"] = type(settings["retry"])(NoBackoff(), DISCOVERY_ATTEMPTS)
    if replicas:
        out["load_balancing_strategy"] = _sync.cluster.LoadBalancingStrategy.ROUND_ROBIN_REPLICAS
    return out


def _settled(client: Any, retry: Any) -> Any:
    """The cluster client, now answering to QuantumORM's retry policy only."""
    client.set_retry(retry)
    return client


def _clients(lib: Any, topology: Topology, settings: dict[str, Any], pool: dict[str, Any],
             replicas: bool) -> tuple[Any, Any]:
    """The client and the one read-only requests use (the same unless replica reads are on
    with Sentinel), from ``lib``: redis-py's blocking module or its asyncio one, which
    mirror each other. ``settings``: timeouts, retry, TLS and driver options; ``pool``: pool
    size and wait (single servers only)."""
    if topology.kind is Kind.SINGLE:
        # (pools that wait for a connection without paying for the wait when one is free:
        # see pooling.py)
        factory = WaitingConnectionPool if lib is _sync else AsyncWaitingConnectionPool
        connections = factory.from_url(topology.url, **settings, **pool)
        client = lib.Redis(connection_pool=connections)
        return client, client
    if topology.kind is Kind.CLUSTER:
        client = lib.cluster.RedisCluster(
            startup_nodes=[lib.cluster.ClusterNode(h, p) for h, p in topology.hosts],
            max_connections=pool["max_connections"], **_auth(topology),
            **_cluster_options(settings, replicas))
        return client, client
    settings, sentinel_auth = _split_sentinel(dict(settings))
    sentinel = (_Sentinel if lib is _sync else _AsyncSentinel)(
        list(topology.hosts), sentinel_kwargs=_sentinel_kwargs(topology, settings,
                                                               sentinel_auth),
        **_auth(topology), db=topology.db, max_connections=pool["max_connections"],
        **settings)
    assert topology.service is not None
    master = sentinel.master_for(topology.service)
    reader = sentinel.slave_for(topology.service) if replicas else master
    master._qorm_sentinel = sentinel  # its own clients are closed with the master's
    return master, reader


class _Sentinel(redis.sentinel.Sentinel):
    """redis-py's Sentinel client, which says when a service's master changed (it is
    asked on every new connection to the master, never per command)."""

    def discover_master(self, service_name: str) -> Any:
        return _watched(self, service_name, super().discover_master(service_name))


class _AsyncSentinel(redis.asyncio.sentinel.Sentinel):
    async def discover_master(self, service_name: str) -> Any:
        return _watched(self, service_name, await super().discover_master(service_name))


def _watched(sentinel: Any, service: str, address: Any) -> Any:
    """``address``, the master Sentinel named for ``service``; a WARNING if it is not the
    one named before (a failover)."""
    known: dict[str, Any] = sentinel.__dict__.setdefault("_qorm_masters", {})
    before, known[service] = known.get(service), address
    if before is not None and tuple(before) != tuple(address):
        logs.redis.warning("sentinel master changed service=%s from=%s:%s to=%s:%s", service,
                           *before, *address)
    return address


def sync_clients(topology: Topology, settings: dict[str, Any], pool: dict[str, Any],
                 replicas: bool) -> tuple[Any, Any]:
    """The blocking clients (see :func:`_clients`). A cluster client discovers the cluster
    as it is made, and is settled at once."""
    client, reader = _clients(_sync, topology, settings, pool, replicas)
    if topology.cluster:
        _settled(client, settings["retry"])
    return client, reader


def async_clients(topology: Topology, settings: dict[str, Any], pool: dict[str, Any],
                  replicas: bool) -> tuple[Any, Any]:
    """The asyncio clients, bound to the running event loop. A cluster client discovers
    the cluster on first use: the executor initializes it, then settles it."""
    return _clients(_async, topology, settings, pool, replicas)


def _sentinel_kwargs(topology: Topology, settings: dict[str, Any],
                     auth: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in settings.items()
           if k in ("socket_timeout", "socket_connect_timeout") or k.startswith("ssl")}
    if topology.tls:
        out["ssl"] = True
    return {**out, **auth}
