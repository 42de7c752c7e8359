"""Connections: opening one, and the one place that runs operations on it.

``create_connection(backend="redis", url=..., name=..., make_default=True)`` opens a store
through the backend registry and registers it by name (:mod:`quantumorm.registry`). A model
uses the connection named by ``Meta.connection``, or else the default connection of its
``Meta.backend``. Each backend has its own default: the first connection opened for a
backend becomes its default unless another is made default, and opening a connection of
one backend never changes the default of another. Without ``url``, the URL comes from the
environment (:data:`URL_VARIABLES`).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from logging import DEBUG
from typing import Any, TypeVar

from . import logs, transaction
from .backends import opener
from .engine import drive, observe
from .engine.contract import BackendConnection
from .errors import ConfigurationError, UnsupportedOperation
from .health import HealthReport
from .redaction import redact_url
from .registry import aclose_all, close_all, connection_for, get_connection, register
from .transaction import TIMEOUT as TX_TIMEOUT
from .transaction import SyncTransaction, Transaction

T = TypeVar("T")

#: where ``create_connection()`` without ``url`` finds one, in order: for every backend,
#: then for one backend only
URL_VARIABLES = ("QUANTUMORM_URL",)
BACKEND_URL_VARIABLES = {"redis": ("REDIS_URL",)}

#: the name a connection gets when none is given: ``"default"`` for Redis (as ever), the
#: backend's own name for the others, so that connections of two backends opened without
#: names live side by side
DEFAULT_NAME = "default"


def default_name(backend: str) -> str:
    return DEFAULT_NAME if backend == "redis" else backend


class Connection:
    """An open, named store. Runs operations with its sync or async executor."""

    def __init__(self, name: str, kind: str, url: str, store: BackendConnection) -> None:
        self.name, self.kind, self.url = name, kind, url
        self._store = store
        self.backend = store.backend
        #: the backend's logger (``quantumorm.redis``...), which logs plans at DEBUG, and
        #: its remembered levels (read without a call: see ``logs.plans_on``)
        self._log = logs.area(kind)
        self._levels = logs.levels(self._log)

    def run(self, factory: drive.OpFactory[T], subject: Any = None, name: str = "") -> T:
        """Run an operation (``subject``: the document or queryset it was called on, and
        ``name`` its method, for whoever watches: :mod:`quantumorm.engine.observe`)."""
        executor, known = self._store.sync_executor(), self._levels
        if known[DEBUG] if DEBUG in known else logs.plans_on(self._log):
            executor = logs.PlanLog(executor, self._log, name or _name_of(factory))
        watcher = observe.watcher
        if watcher is not None:
            return watcher.run(self, factory, subject, name, executor)
        return drive.run(factory(self.backend), executor)

    async def arun(self, factory: drive.OpFactory[T], subject: Any = None,
                   name: str = "") -> T:
        executor, known = self._store.async_executor(), self._levels
        if known[DEBUG] if DEBUG in known else logs.plans_on(self._log):
            executor = logs.PlanLog(executor, self._log, name or _name_of(factory))
        watcher = observe.watcher
        if watcher is not None:
            return await watcher.arun(self, factory, subject, name, executor)
        return await drive.arun(factory(self.backend), executor)

    # -- transactions ------------------------------------------------------------------------

    def transaction(self, *, timeout: float = TX_TIMEOUT) -> Transaction:
        """``async with conn.transaction() as tx``: reads checked and writes applied together
        at commit (see :mod:`quantumorm.transaction`); ``timeout``: seconds a commit across
        partitions may stay undecided, its documents locked."""
        return Transaction(self, timeout)

    def transaction_sync(self, *, timeout: float = TX_TIMEOUT) -> SyncTransaction:
        """``with conn.transaction_sync() as tx``: the blocking twin of :meth:`transaction`."""
        return SyncTransaction(self, timeout)

    async def run_transaction(self, fn: Callable[[Transaction], Awaitable[T]], *,
                              attempts: int = 3, timeout: float = TX_TIMEOUT) -> T:
        """Run ``await fn(tx)`` in a transaction and commit; on a version conflict run it
        again in a fresh one, up to ``attempts`` times (then the conflict is raised)."""
        return await transaction.run(self, fn, attempts, timeout)

    def run_transaction_sync(self, fn: Callable[[SyncTransaction], T], *,
                             attempts: int = 3, timeout: float = TX_TIMEOUT) -> T:
        """The blocking twin of :meth:`run_transaction`."""
        return transaction.run_sync(self, fn, attempts, timeout)

    # -- health (see quantumorm.health) ------------------------------------------------------

    async def ping(self) -> float:
        """Seconds of one round trip to the store (Redis ``PING``, SQL ``SELECT 1``);
        raises the typed connection error (:class:`~quantumorm.errors.BackendConnectionError`
        and its kinds) when the store does not answer."""
        latency: float = await self._primitive("ping")()
        return latency

    def ping_sync(self) -> float:
        """The blocking twin of :meth:`ping`."""
        latency: float = self._primitive("ping_sync")()
        return latency

    async def health(self) -> HealthReport:
        """Every server this connection uses, probed: a :class:`~quantumorm.health.HealthReport`
        (role, version, latency, eviction policy, replication, memory per node, and the
        problems found). Raises the typed connection error when no server answers; for a
        check that never raises, see :func:`quantumorm.health.readiness`."""
        found: HealthReport = await self._primitive("health")()
        return replace(found, url=redact_url(self.url))

    def health_sync(self) -> HealthReport:
        """The blocking twin of :meth:`health`."""
        found: HealthReport = self._primitive("health_sync")()
        return replace(found, url=redact_url(self.url))

    # -- the store's own primitives (Redis: pipelines, WATCH/MULTI/EXEC) ---------------------

    def _primitive(self, name: str) -> Any:
        found = getattr(self._store, name, None)
        if found is None:
            raise UnsupportedOperation(self.kind, name)
        return found

    def pipeline(self, transaction: bool = True) -> Any:
        """The driver's own pipeline on this connection's pool (redis-py ``Pipeline``;
        ``transaction=True`` wraps it in MULTI/EXEC)."""
        return self._primitive("pipeline")(transaction)

    def async_pipeline(self, transaction: bool = True) -> Any:
        """The asyncio driver's pipeline (redis-py ``redis.asyncio`` ``Pipeline``)."""
        return self._primitive("async_pipeline")(transaction)

    def watch_sync(self, fn: Callable[[Any], object], *keys: str,
                   attempts: int = 5) -> list[Any]:
        """Optimistic WATCH/MULTI/EXEC: ``fn(pipe)`` reads (immediately), calls
        ``pipe.multi()`` and queues writes; EXEC applies them unless a watched key changed,
        in which case ``fn`` runs again, at most ``attempts`` times, then
        :class:`~quantumorm.errors.WatchConflict`. Returns EXEC's replies.

        ``pipe`` is the driver's own pipeline (redis-py's, untyped here)."""
        replies: list[Any] = self._primitive("watch")(fn, keys, attempts)
        return replies

    async def watch(self, fn: Callable[[Any], Awaitable[object]], *keys: str,
                    attempts: int = 5) -> list[Any]:
        """The asyncio twin of :meth:`watch_sync` (``fn`` is a coroutine function)."""
        replies: list[Any] = await self._primitive("async_watch")(fn, keys, attempts)
        return replies

    @property
    def store(self) -> Any:
        """The backend's connection object (for the Redis backend, it holds the clients)."""
        return self._store

    def close(self) -> None:
        """Close the blocking pool (the asyncio pool is closed by :meth:`aclose`)."""
        self._store.close()
        logs.root.info("connection closed name=%s backend=%s url=%s", self.name, self.kind,
                       redact_url(self.url))

    async def aclose(self) -> None:
        await self._store.aclose()
        logs.root.info("connection closed name=%s backend=%s url=%s async=True", self.name,
                       self.kind, redact_url(self.url))

    # ``with connection:`` / ``async with connection:`` close it at the end of the block
    # (both pools on leaving ``async with``: the blocking one may have been used too)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.aclose()
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} {self.kind} {redact_url(self.url)}>"


def _name_of(factory: Any) -> str:
    """An operation's name for the DEBUG plan log: its builder's (``partial(ops.get, ...)``
    -> ``get``)."""
    return str(getattr(getattr(factory, "func", factory), "__name__", "?"))


def create_connection(
    backend: str = "redis",
    url: str | None = None,
    *,
    name: str | None = None,
    make_default: bool = False,
    **options: Any,
) -> Connection:
    """Open a connection and register it.

    Args:
        backend: the backend name (``"redis"``).
        url: ``redis://[user:pass@]host:port/db``, ``rediss://...`` (TLS; ``ssl_ca_certs``,
            ``ssl_certfile``, ``ssl_keyfile`` pass through), or ``unix:///path?db=0``.
            Without it: ``$QUANTUMORM_URL``, then (Redis only) ``$REDIS_URL``.
        name: the registry name (default: ``"default"`` for Redis, the backend's name for
            the others). Re-using a name closes and replaces the previous connection.
        make_default: make it the default connection of its backend (other backends'
            defaults are not touched).
        **options: pool and timeout options of the backend (``max_connections``,
            ``pool_timeout``, ``socket_timeout``, ``connect_timeout``...). An unknown
            option, a wrong value or a malformed URL raises :class:`ConfigurationError`
            here, never at the first query; no message shows the URL's password.
    """
    if url is None:
        url, source = _url_from_environment(backend)
    else:
        source = ""
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be a string (got {redact_url(url)})")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"a connection name is a non-empty string (got {name!r})")
    name = name or default_name(backend)
    try:
        store = opener(backend)(url, **options)
    except ConfigurationError as exc:
        if not source:
            raise
        raise ConfigurationError(f"{exc} (the URL is ${source})") from None
    connection = Connection(name, backend, url, store)
    logs.root.info("connection opened name=%s backend=%s url=%s", name, backend, redact_url(url))
    previous = register(connection, make_default)
    if previous is not None:
        previous.close()
    return connection


def _url_from_environment(backend: str) -> tuple[str, str]:
    """The URL in the first environment variable set (non-empty), and that variable."""
    names = URL_VARIABLES + BACKEND_URL_VARIABLES.get(backend, ())
    for variable in names:
        value = os.environ.get(variable)
        if value:
            return value, variable
    raise ConfigurationError(
        f"create_connection(backend={backend!r}) needs a url: pass url=... or set "
        f"{' or '.join('$' + n for n in names)}")


__all__ = ["BACKEND_URL_VARIABLES", "DEFAULT_NAME", "URL_VARIABLES", "Connection", "aclose_all",
           "close_all", "connection_for", "create_connection", "default_name", "get_connection"]
