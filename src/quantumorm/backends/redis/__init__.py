"""The Redis backend. Importing this package imports redis-py; nothing else in the core does."""

from __future__ import annotations

import threading
from typing import Any

from ...engine.drive import forbid_blocking
from ...engine.observe import PoolStats
from ...errors import ConfigurationError
from ...health import HealthReport, report
from . import health as probes
from . import options as known_options
from . import pools, topology, watch
from .backend import CAPABILITIES, RedisBackend
from .changes import Subscription
from .executor import AsyncRedisExecutor, SyncRedisExecutor
from .options import ClientOptions
from .writes import DEFAULT_MAX_DOCUMENT_BYTES


class RedisConnection:
    """An open Redis store: the backend, a blocking executor and an asyncio executor.

    Options: ``max_connections`` (pool size, default 50), ``pool_timeout`` (seconds to wait for
    a free connection, default 5), ``socket_timeout`` and ``connect_timeout`` (default 5 s),
    ``max_document_bytes`` (default 16 MiB; larger documents are refused before sending),
    ``retries`` (attempts of a read, or of a write that recognises its own earlier
    application, when the connection breaks; default 5, backoff from 0.05 s doubling to 1 s,
    each wait jittered between half and all of its step),
    ``allow_eviction`` (use a server whose ``maxmemory-policy`` is ``allkeys-*`` anyway,
    see :mod:`.eviction`; default False), ``scripts`` (``"eval"``, the default: the Lua
    scripts are called with EVALSHA; ``"functions"``: they are Redis Functions, loaded once
    and called with FCALL, and a server that refuses FUNCTION LOAD or FCALL gets EVALSHA
    anyway, see :mod:`.reloads` and docs/connections.md for what a library costs and
    allows);
    the options redis-py's connections accept for the URL's kind (``ssl_ca_certs``,
    ``ssl_certfile``, ``username``, ``client_name``, ``health_check_interval``...) are
    passed to redis-py; any other name is refused (see :mod:`.options`).
    """

    def __init__(self, url: str, **options: Any) -> None:
        # a typo, or an option redis-py would refuse at the first query, fails here
        known_options.check(topology.parse(url), options)
        known = {k: options.pop(k) for k in sorted(known_options.OWN)
                 if k in options and k != "max_document_bytes"}
        limit = options.pop("max_document_bytes", DEFAULT_MAX_DOCUMENT_BYTES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"max_document_bytes must be a positive int (got {limit!r})")
        self.options = ClientOptions(url=url, extra=tuple(sorted(options.items())), **known)
        # a blocking stream read must end well before the socket timeout would cut it
        self.backend = RedisBackend(limit, max_block=self.options.socket_timeout / 2,
                                    cluster=self.options.topology.cluster)
        self._lock = threading.Lock()
        self._sync: SyncRedisExecutor | None = None
        self._async = AsyncRedisExecutor(self.options)

    def sync_executor(self) -> SyncRedisExecutor:
        executor = self._sync
        if executor is None:
            with self._lock:
                if self._sync is None:
                    self._sync = SyncRedisExecutor(self.options)
                executor = self._sync
        return executor

    def async_executor(self) -> AsyncRedisExecutor:
        return self._async

    # -- Redis primitives (Connection.pipeline / watch) -------------------------------------

    def pipeline(self, transaction: bool) -> Any:
        return self.sync_executor().client.pipeline(transaction=transaction)

    def async_pipeline(self, transaction: bool) -> Any:
        return self._async.client.pipeline(transaction=transaction)

    def watch(self, fn: Any, keys: tuple[str, ...], attempts: int) -> Any:
        watch.check(keys, attempts)
        forbid_blocking(lambda: "Connection.watch_sync()")
        return watch.run(self.sync_executor().client, fn, watch.attempts(keys, attempts))

    async def async_watch(self, fn: Any, keys: tuple[str, ...], attempts: int) -> Any:
        watch.check(keys, attempts)
        return await watch.arun(self._async.client, fn, watch.attempts(keys, attempts))

    # -- health (Connection.ping / health; see health.py) -----------------------------------

    def ping_sync(self) -> float:
        forbid_blocking(lambda: "Connection.ping_sync()")
        return probes.ping(self.sync_executor().client)

    async def ping(self) -> float:
        return await probes.aping(await self._settled_client())

    def health_sync(self) -> HealthReport:
        forbid_blocking(lambda: "Connection.health_sync()")
        return report("redis", self.options.url, probes.probe(self.sync_executor().client))

    async def health(self) -> HealthReport:
        return report("redis", self.options.url,
                      await probes.aprobe(await self._settled_client()))

    async def _settled_client(self) -> Any:
        """The running loop's client; a cluster client has discovered the cluster."""
        client = self._async.client
        if self._async.cluster and not client._qorm_settled:
            await self._async._settle(client)
        return client

    def subscription(self, model: Any, wait: float | None) -> Any:
        """Pub/Sub notifications of ``model`` (see :class:`.changes.Subscription`)."""
        return Subscription(model, model._meta, self, wait)

    def pool_stats(self) -> list[PoolStats]:
        """The blocking pool and the asyncio pools of every event loop (see ``pools.py``)."""
        size = self.options.max_connections
        executor = self._sync
        rows = [] if executor is None else [
            pools.stats("sync", (executor.client, executor.reader), size)]
        rows.append(pools.stats("async", (client for pair in self._async.pairs()
                                          for client in pair), size))
        return [row for row in rows if row is not None]

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        self.close()
        await self._async.aclose()


def open_connection(url: str, **options: Any) -> RedisConnection:
    # a wrong URL or option fails here, before any client exists
    return RedisConnection(url, **options)


__all__ = ["CAPABILITIES", "RedisBackend", "RedisConnection", "open_connection"]
