r"""The registry of named connections: which connection a model runs on.

``create_connection()`` (:mod:`quantumorm.connection`) opens a store and :func:`register`\ s
it here by name. A model uses the connection named by ``Meta.connection``, or else the
default connection of its ``Meta.backend``; :func:`connection_for` also checks, once per
model and backend, that the backend supports what the model declares. The rest of the
library (documents, querysets, change feeds, transactions) finds connections through this
module, which imports none of them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigurationError, ConnectionNotFound, UnsupportedOperation

if TYPE_CHECKING:
    from .connection import Connection
    from .document import Document
    from .engine.contract import Capabilities
    from .options import ModelOptions

_lock = threading.Lock()
_connections: dict[str, Connection] = {}
_defaults: dict[str, str] = {}


class _View(NamedTuple):
    """What :func:`get_connection` reads without the lock: copies of the registry made
    under the lock after each change, replaced whole (one reference), never changed."""

    connections: dict[str, Connection]
    #: the default connection of each backend
    defaults: dict[str, Connection]


_view = _View({}, {})


def _publish() -> None:
    """Replace the view (under ``_lock``, after every change of the registry)."""
    global _view
    _view = _View(dict(_connections), {backend: _connections[name]
                                       for backend, name in _defaults.items()
                                       if name in _connections})


def register(connection: Connection, make_default: bool) -> Connection | None:
    """Register ``connection`` under its name; returns the connection it replaced (to be
    closed by the caller, outside the lock). The first connection of a backend becomes its
    default, as does one made default or one replacing the default; replacing a
    connection of another backend drops that backend's default if it was the one."""
    name, backend = connection.name, connection.kind
    with _lock:
        previous = _connections.get(name)
        _connections[name] = connection
        if previous is not None and previous.kind != backend and (
                _defaults.get(previous.kind) == name):
            del _defaults[previous.kind]  # that backend's default was the one replaced
        if make_default or backend not in _defaults or _defaults[backend] == name:
            _defaults[backend] = name
        _publish()
    return previous


def get_connection(name: str | None = None, backend: str = "redis") -> Connection:
    """The connection called ``name``, or the default connection of ``backend``. (Read from
    the registry's current view, without taking its lock: every operation asks.)"""
    view = _view
    if name is None:
        connection = view.defaults.get(backend)
        if connection is None:
            raise ConnectionNotFound(
                f"no {backend} connection: call create_connection(backend={backend!r}, "
                "url=..., make_default=True) first"
            )
        return connection
    connection = view.connections.get(name)
    if connection is None:
        raise ConnectionNotFound(
            f"no connection named {name!r} "
            f"(open: {', '.join(sorted(view.connections)) or 'none'})"
        )
    return connection


def connection_for(model: type[Document], connection: Connection | None = None) -> Connection:
    """The connection a model runs on (``connection`` if given), checked against its backend:
    the kind must match and the backend must support what the model declares."""
    options = model._meta
    if connection is None:
        connection = get_connection(options.connection, options.backend)
    if connection.kind != options.backend:
        raise ConfigurationError(
            f"{options.model_name} uses backend {options.backend!r} but connection "
            f"{connection.name!r} is a {connection.kind!r} connection"
        )
    # (kept on the options, not in a set of id(options): an id is reused once a model made
    # at runtime is freed, and a set here would grow with every such model)
    # (a frozenset replaced when it grows: the common call reads it and allocates nothing)
    checked: frozenset[str] = options.__dict__.get("_checked_kinds", frozenset())
    if connection.kind not in checked:
        _check_model(options, connection.kind, connection.backend.capabilities)
        options.__dict__["_checked_kinds"] = checked | {connection.kind}
    return connection


def _check_model(options: ModelOptions, kind: str, capabilities: Capabilities) -> None:
    if options.partitions > 1 and not capabilities.partitions:
        raise UnsupportedOperation(kind, "partitions",
                                   f"{options.model_name} declares partitions = "
                                   f"{options.partitions}")
    if options.ttl is not None and not capabilities.ttl:
        raise UnsupportedOperation(kind, "ttl", f"{options.model_name} declares Meta.ttl")
    if (options.changes or options.publish) and not capabilities.change_events:
        raise UnsupportedOperation(kind, "change events",
                                   f"{options.model_name} declares Meta.changes / publish")
    if any(index.unique for index in options.indexes) and not capabilities.unique_indexes:
        raise UnsupportedOperation(kind, "unique indexes",
                                   f"{options.model_name} declares a unique index")
    if (any(index.compound for index in options.indexes)
            and "compound" not in capabilities.index_kinds):
        raise UnsupportedOperation(kind, "compound indexes",
                                   f"{options.model_name} declares a compound index")


def connections() -> list[Connection]:
    """Every registered connection (a copy), in the order they were registered."""
    return list(_view.connections.values())


def _forget_all() -> list[Connection]:
    with _lock:
        connections = list(_connections.values())
        _connections.clear()
        _defaults.clear()
        _publish()
    return connections


def close_all() -> None:
    """Close and forget every connection (their blocking pools; see :func:`aclose_all`).

    Every connection is closed even if one fails; the first failure is raised at the end.
    """
    failure: BaseException | None = None
    for connection in _forget_all():
        try:
            connection.close()
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


async def aclose_all() -> None:
    """Close and forget every connection, including the asyncio pools of the running loop."""
    failure: BaseException | None = None
    for connection in _forget_all():
        try:
            await connection.aclose()
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


class RegistryState(NamedTuple):
    """A copy of the registry: the connections by name, the default's name by backend."""

    connections: dict[str, Connection]
    defaults: dict[str, str]


def snapshot() -> RegistryState:
    """A copy of the registry (for a test fixture that puts it back with :func:`restore`)."""
    with _lock:
        return RegistryState(dict(_connections), dict(_defaults))


def detach(name: str) -> Connection | None:
    """Forget the connection called ``name`` without closing it (and the default that named
    it); returns it. A test fixture sets a user's connection aside this way and puts it
    back with :func:`restore` afterwards."""
    with _lock:
        connection = _connections.pop(name, None)
        for backend, default in list(_defaults.items()):
            if default == name:
                del _defaults[backend]
        _publish()
    return connection


def restore(state: RegistryState) -> list[Connection]:
    """Make the registry hold exactly ``state``; returns the connections it held that
    ``state`` does not (forgotten, to be closed by the caller, outside the lock)."""
    kept = {id(connection) for connection in state.connections.values()}
    with _lock:
        dropped = [c for c in _connections.values() if id(c) not in kept]
        _connections.clear()
        _connections.update(state.connections)
        _defaults.clear()
        _defaults.update({backend: name for backend, name in state.defaults.items()
                          if name in state.connections})
        _publish()
    return dropped
