"""Which keyword options a Redis connection accepts, checked at ``create_connection``.

QuantumORM's own options (:data:`OWN`) are read by :class:`.executor.ClientOptions`; every
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
from typing import Any

import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel

from ...errors import ConfigurationError
from .topology import Topology

#: options QuantumORM reads itself (see :class:`.RedisConnection`)
OWN = frozenset({
    "max_connections", "pool_timeout", "socket_timeout", "connect_timeout", "retries",
    "read_from_replicas", "wait_replicas", "wait_timeout", "allow_eviction",
    "max_document_bytes",
})

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
    if kind == "cluster":
        sync = _params(redis.cluster.RedisCluster.__init__) | set(
            redis.cluster.REDIS_ALLOWED_KEYS)
        both = sync & _params(redis.asyncio.cluster.RedisCluster.__init__)
        if flavour != "tls":
            both = {name for name in both if not name.startswith("ssl")}
    else:
        both = (_connection(redis.connection, flavour)
                & _connection(redis.asyncio.connection, flavour))
        if kind == "sentinel":
            both |= (_params(redis.sentinel.Sentinel.__init__)
                     & _params(redis.asyncio.sentinel.Sentinel.__init__))
    return frozenset(name for name in both
                     if name not in RESERVED and name not in OWN
                     and not name.startswith(_PLUMBING_PREFIXES))


def _flavour(topology: Topology) -> str:
    if topology.kind == "single" and topology.url.startswith("unix:"):
        return "unix"
    return "tls" if topology.tls else "plain"


def allowed(topology: Topology) -> frozenset[str]:
    """Every keyword option a connection to ``topology`` accepts."""
    extra = SENTINEL_OWN if topology.kind == "sentinel" else frozenset()
    return OWN | extra | passthrough(topology.kind, _flavour(topology))


_KINDS = {("single", "plain"): "redis://", ("single", "tls"): "rediss://",
          ("single", "unix"): "unix://", ("cluster", "plain"): "redis+cluster://",
          ("cluster", "tls"): "rediss+cluster://", ("sentinel", "plain"): "redis+sentinel://",
          ("sentinel", "tls"): "rediss+sentinel://"}


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


__all__ = ["OWN", "RESERVED", "SENTINEL_OWN", "allowed", "check", "passthrough", "problems"]
