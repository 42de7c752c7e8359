"""Which connection a model runs on, when it may be cached.

A model without ``Meta.cache`` runs on its connection as before
(:func:`quantumorm.registry.connection_for`). A cached model runs on a
:class:`~quantumorm.connection.Connection` made here from its primary connection and its
cache connection (named by ``Meta.cache["connection"]``), whose backend is a
:class:`~quantumorm.cache.backend.CachedBackend` and whose executors route each plan
(:mod:`.dispatch`). Such a connection is made once per pair of connections (and per
``reading``), and is named and typed like its primary connection, so transactions and
checks work as on the primary; it owns neither connection.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..registry import connection_for as plain_connection_for
from ..registry import get_connection
from .backend import CachedBackend
from .dispatch import CachedStore
from .state import server_state
from .store import store_for

if TYPE_CHECKING:
    from ..connection import Connection
    from ..document import Document

_lock = threading.Lock()


def connection_for(model: type[Document], using: str | None = None,
                   reading: bool = True) -> Connection:
    """The connection ``model`` runs on (``using``: the primary connection's name instead of
    the model's). ``reading`` False: reads skip the cache (``cached(False)``); writes
    still keep it true."""
    primary = plain_connection_for(
        model, None if using is None else get_connection(using))
    if model._meta.cache is None:  # (around's first test, inline: every operation asks)
        return primary
    return around(model, primary, reading)


def around(model: type[Document], primary: Connection, reading: bool = True) -> Connection:
    """``primary`` as ``model`` should use it: itself if the model is not cached, else the
    connection that composes it with the model's cache."""
    settings = model._meta.cache
    if settings is None:
        return primary
    cache = get_connection(settings.connection)
    made: dict[tuple[int, bool], tuple[Connection, Connection]] = primary.__dict__.get(
        "_qorm_cached", {})
    found = made.get((id(cache), reading))
    if found is not None and found[0] is cache:
        return found[1]
    with _lock:
        made = primary.__dict__.setdefault("_qorm_cached", {})
        found = made.get((id(cache), reading))
        if found is None or found[0] is not cache:
            found = (cache, _cached_connection(primary, cache, reading))
            made[(id(cache), reading)] = found
    return found[1]


def _cached_connection(primary: Connection, cache: Connection, reading: bool) -> Connection:
    backend = CachedBackend(primary.backend, store_for(cache.kind, cache.store),
                            server_state(cache.url), reading)
    store: Any = CachedStore(backend, primary, cache)
    # (a connection of the primary's own class: this module does not import the connection
    # module, which imports transactions, which route through here)
    return type(primary)(primary.name, primary.kind, primary.url, store)
