"""A Redis connection's keyword options: which names it accepts, and their checked values.

Both are checked at ``create_connection``. QuantumORM's own options (:data:`OWN`) are
validated and kept by :class:`ClientOptions`, which the executors read; every
other option is handed to redis-py, so a typo would otherwise surface as a raw
``TypeError`` at the first query. The options redis-py accepts are read from the
signatures of the classes that will receive them, for the kind of URL given (a plain or
TLS connection, a unix socket, a cluster client, Sentinel), in both its blocking and its
asyncio flavour (one connection serves both, so an option must suit both). Options that
QuantumORM sets itself, or that would break what it relies on, are refused with the reason
(:data:`RESERVED`). An unknown name is reported with the closest known one.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...errors import ConfigurationError
from ...redaction import redacted_repr
from .topology import Kind, Topology
from .topology import parse as topology_of

#: options QuantumORM reads itself (see :class:`.RedisConnection`)
OWN = frozenset({
    "max_connections", "pool_timeout", "socket_timeout", "connect_timeout", "retries",
    "read_from_replicas", "wait_replicas", "wait_timeout", "allow_eviction",
    "max_document_bytes", "scripts",
})

#: how the scripts are called: as scripts (EVALSHA, whose whole text Redis runs per call:
#: the default) or as Redis Functions (FCALL, one library per script loaded once; see
#: docs/connections.md for when not to)
SCRIPT_MODES = ("functions", "eval")

#: options of Sentinel URLs only: the credentials of the Sentinels themselves
SENTINEL_OWN = frozenset({"sentinel_username", "sentinel_password"})

_IN_URL = "it is part of the URL"
_RETRIES = "QuantumORM owns the retry policy (use retries=)"
_BYTES = "QuantumORM reads replies as bytes and encodes values itself"
_INTERNAL = "QuantumORM sets it"

#: redis-py options a user may not pass, with the reason
RESERVED: Mapping[str, str] = {
    "host": _IN_URL, "port": _IN_URL, "db": _IN_URL, "path": _IN_URL, "url": _IN_URL,
    "unix_socket_path": _IN_URL, "startup_nodes": _IN_URL, "sentinels": _IN_URL,
    "ssl": "the URL's scheme chooses TLS (rediss://, rediss+cluster://, rediss+sentinel://)",
    "socket_connect_timeout": "use connect_timeout=",
    "retry": _RETRIES, "retry_on_timeout": _RETRIES, "retry_on_error": _RETRIES,
    "cluster_error_retry_attempts": _RETRIES,
    "decode_responses": _BYTES, "encoding": _BYTES, "encoding_errors": _BYTES,
    "encoder_class": _BYTES,
    "connection_pool": _INTERNAL, "connection_class": _INTERNAL, "socket_type": _INTERNAL,
    "parser_class": _INTERNAL, "command_packer": _INTERNAL, "redis_connect_func": _INTERNAL,
    "event_dispatcher": _INTERNAL, "sentinel_kwargs": "use sentinel_username= / "
    "sentinel_password=", "load_balancing_strategy": "use read_from_replicas=",
}

#: redis-py's internal constructor arguments (its own plumbing, not user options)
_PLUMBING_PREFIXES = ("orig_", "maint", "oss_cluster_maint", "himport")


def _params(*callables: Callable[..., Any]) -> set[str]:
    names: set[str] = set()
    for target in callables:
        for name, param in inspect.signature(target).parameters.items():
            if name != "self" and param.kind not in (param.VAR_KEYWORD,
                                                       param.VAR_POSITIONAL):
                names.add(name)
    return names


def _connection(module: Any, flavour: str) -> set[str]:
    """What a connection class of ``module`` (``redis.connection`` or its asyncio twin)
    accepts: its own arguments and those of the base class its ``**kwargs`` reach."""
    base = _params(module.AbstractConnection.__init__)
    if flavour == "unix":
        return base | _params(module.UnixDomainSocketConnection.__init__)
    plain = base | _params(module.Connection.__init__)
    return plain | _params(module.SSLConnection.__init__) if flavour == "tls" else plain


@functools.cache
def passthrough(kind: str, flavour: str) -> frozenset[str]:
    """The redis-py options a ``kind`` ("single" | "cluster" | "sentinel") connection of
    ``flavour`` ("plain" | "tls" | "unix") accepts, in the blocking and asyncio clients."""
    if kind == Kind.CLUSTER:
        sync = _params(redis.cluster.RedisCluster.__init__) | set(
            redis.cluster.REDIS_ALLOWED_KEYS)
        both = sync & _params(redis.asyncio.cluster.RedisCluster.__init__)
        if flavour != "tls":
            both = {name for name in both if not name.startswith("ssl")}
    else:
        both = (_connection(redis.connection, flavour)
                & _connection(redis.asyncio.connection, flavour))
        if kind == Kind.SENTINEL:
            both |= (_params(redis.sentinel.Sentinel.__init__)
                     & _params(redis.asyncio.sentinel.Sentinel.__init__))
    return frozenset(name for name in both
                     if name not in RESERVED and name not in OWN
                     and not name.startswith(_PLUMBING_PREFIXES))


def _flavour(topology: Topology) -> str:
    if topology.kind == Kind.SINGLE and topology.url.startswith("unix:"):
        return "unix"
    return "tls" if topology.tls else "plain"


def allowed(topology: Topology) -> frozenset[str]:
    """Every keyword option a connection to ``topology`` accepts."""
    extra = SENTINEL_OWN if topology.kind == Kind.SENTINEL else frozenset()
    return OWN | extra | passthrough(topology.kind, _flavour(topology))


_KINDS = {(Kind.SINGLE, "plain"): "redis://", (Kind.SINGLE, "tls"): "rediss://",
          (Kind.SINGLE, "unix"): "unix://", (Kind.CLUSTER, "plain"): "redis+cluster://",
          (Kind.CLUSTER, "tls"): "rediss+cluster://",
          (Kind.SENTINEL, "plain"): "redis+sentinel://",
          (Kind.SENTINEL, "tls"): "rediss+sentinel://"}


def _elsewhere(name: str) -> list[str]:
    """The kinds of URL that accept ``name``."""
    found = [shown for (kind, flavour), shown in _KINDS.items()
             if name in passthrough(kind, flavour)]
    return found + ["redis+sentinel://"] * (name in SENTINEL_OWN)


def problems(topology: Topology, names: Iterable[str], where: str = "") -> list[str]:
    """What is wrong with these option names for ``topology`` (empty: nothing)."""
    accepted = allowed(topology)
    kind = _KINDS[topology.kind, _flavour(topology)]
    found = []
    for name in names:
        if name in accepted:
            continue
        if name in RESERVED:
            found.append(f"{name!r}{where} cannot be set: {RESERVED[name]}")
            continue
        other = _elsewhere(name)
        if other:
            found.append(f"{name!r}{where} is not an option of a {kind} connection (only "
                         f"of {', '.join(dict.fromkeys(other))})")
            continue
        close = difflib.get_close_matches(name, sorted(accepted), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        found.append(f"unknown Redis connection option {name!r}{where}{hint}")
    return found


def check(topology: Topology, options: Mapping[str, Any]) -> None:
    """ConfigurationError naming every option (keyword, or in the URL's query string) that
    a connection to ``topology`` does not accept."""
    found = problems(topology, options)
    in_url = [name for name, _ in topology.query if name in OWN or name in SENTINEL_OWN]
    found += [f"{name!r} in the URL's query string: pass it as a keyword argument"
              for name in in_url]
    found += problems(topology, [name for name, _ in topology.query if name not in in_url],
                      " (in the URL's query string)")
    in_both = [name for name in ("username", "password")
               if getattr(topology, name) and name in options]
    found += [f"{name!r} is given twice: in the URL and as a keyword argument"
              for name in in_both]
    if found:
        raise ConfigurationError("; ".join(found))


#: attempts of a retryable plan (connection option ``retries``); the waits between them
#: (see ``exchange.backoff``) add up to at most 0.75 s by default (raise it to ride out
#: failovers)
RETRIES = 5


def _seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and (
        0 < value < float("inf"))


def _count(value: Any, least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= least


@dataclass(frozen=True)
class ClientOptions:
    """QuantumORM's own options of one connection, checked (ConfigurationError naming the
    option), with the topology its URL names."""

    url: str
    max_connections: int = 50
    pool_timeout: float = 5.0
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    retries: int = RETRIES
    read_from_replicas: bool = False
    #: writes wait (Redis WAIT) until this many replicas have them, up to wait_timeout s
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    #: use a server whose maxmemory-policy is allkeys-* anyway (see ``eviction.py``)
    allow_eviction: bool = False
    #: one of :data:`SCRIPT_MODES` (see ``reloads.py``)
    scripts: str = "eval"
    extra: tuple[tuple[str, Any], ...] = ()
    topology: Topology = field(init=False, compare=False)

    def __repr__(self) -> str:  # never a password (see quantumorm.redaction)
        return redacted_repr(self, ((f.name, getattr(self, f.name))
                                    for f in fields(self) if f.name != "topology"))

    def __post_init__(self) -> None:
        if not _count(self.max_connections, 1):
            raise ConfigurationError(f"max_connections must be a positive int (got "
                                     f"{self.max_connections!r})")
        for name in ("pool_timeout", "socket_timeout", "connect_timeout"):
            value = getattr(self, name)
            if not _seconds(value):
                raise ConfigurationError(f"{name} must be seconds > 0 (got {value!r})")
        if not _count(self.retries, 1):
            raise ConfigurationError(f"retries must be a positive int (got {self.retries!r})")
        if not isinstance(self.read_from_replicas, bool):
            raise ConfigurationError(f"read_from_replicas must be True or False (got "
                                     f"{self.read_from_replicas!r})")
        if not _count(self.wait_replicas, 0):
            raise ConfigurationError(f"wait_replicas must be an int >= 0 (got "
                                     f"{self.wait_replicas!r})")
        if isinstance(self.wait_timeout, bool) or not isinstance(
                self.wait_timeout, (int, float)) or not self.wait_timeout > 0:
            raise ConfigurationError(f"wait_timeout must be seconds > 0 (got "
                                     f"{self.wait_timeout!r})")
        if not isinstance(self.allow_eviction, bool):
            raise ConfigurationError(f"allow_eviction must be True or False (got "
                                     f"{self.allow_eviction!r})")
        if self.scripts not in SCRIPT_MODES:
            raise ConfigurationError(f"scripts must be one of {', '.join(map(repr, SCRIPT_MODES))}"
                                     f" (got {self.scripts!r})")
        object.__setattr__(self, "topology", topology_of(self.url))
        if self.read_from_replicas and self.topology.kind == Kind.SINGLE:
            raise ConfigurationError(
                "read_from_replicas needs a redis+cluster:// or redis+sentinel:// URL")

    def settings(self, asyncio: bool) -> dict[str, Any]:
        """What every client and connection gets: timeouts, no retries of the driver's own
        (they would resend writes whose outcome is unknown), and the pass-through options."""
        retry = (AsyncRetry if asyncio else Retry)(NoBackoff(), 0)
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": retry,
            "retry_on_timeout": False,
            **dict(self.extra),
        }

    def pool(self) -> dict[str, Any]:
        return {"max_connections": self.max_connections, "timeout": self.pool_timeout}


__all__ = ["OWN", "RESERVED", "RETRIES", "SCRIPT_MODES", "SENTINEL_OWN", "ClientOptions",
           "allowed", "check", "passthrough", "problems"]
