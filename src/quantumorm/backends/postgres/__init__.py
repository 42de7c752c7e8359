"""The PostgreSQL backend: psycopg 3 (sync and asyncio from one library), ``psycopg_pool``.

``create_connection(backend="postgres", url="postgresql://user:pass@host:5432/db")`` (or
``postgres://...``; any libpq URL, query parameters included) opens pools lazily: the
blocking pool at the first blocking call, an asyncio pool per event loop at the first async
call there. Models opt in with ``Meta.backend = "postgres"``. Install with
``pip install 'quantumorm[postgres]'``.

Query semantics are those of the Redis backend and of :mod:`quantumorm.query.evaluate`: the
same sort-key bytes decide order and equality (see :mod:`.schema` and :mod:`.compiler`).
Importing this package imports psycopg (through :mod:`.executor`, its only user).
"""

from __future__ import annotations

import asyncio
import difflib
import numbers
from typing import Any

from ...engine import drive
from ...engine.observe import PoolStats
from ...errors import ConfigurationError
from ...health import HealthReport, report
from ...redaction import redact_url
from . import health
from .backend import CAPABILITIES, DEFAULT_MAX_DOCUMENT_BYTES, PostgresBackend
from .executor import (
    AsyncPostgresExecutor,
    PoolSettings,
    SyncPostgresExecutor,
    parse_conninfo,
)

URL_PREFIXES = ("postgresql://", "postgres://")
# CAPABILITIES (in __all__) is what the backend registry reads without opening anything

#: the options ``create_connection(backend="postgres", ...)`` accepts, and their defaults
DEFAULTS: dict[str, Any] = {
    "max_document_bytes": DEFAULT_MAX_DOCUMENT_BYTES,
    "max_connections": 10,  # per pool (one blocking pool, one per event loop)
    "min_connections": 1,
    "pool_timeout": 10.0,  # seconds to wait for a free pooled connection
    "connect_timeout": 10.0,  # seconds to open a connection
    "statement_timeout": None,  # seconds a statement may run (None: the server's setting)
}
#: passed through to libpq as they are (TLS and identification)
PASSED_THROUGH = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl",
                  "application_name", "target_session_attrs", "options")
OPTIONS = (*DEFAULTS, *PASSED_THROUGH)


class PostgresConnection:
    """An open PostgreSQL store: the backend, a blocking executor and an asyncio executor."""

    def __init__(self, settings: PoolSettings,
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.backend = PostgresBackend(max_document_bytes)
        self.url = settings.url
        self._sync = SyncPostgresExecutor(settings)
        self._async = AsyncPostgresExecutor(settings)

    def sync_executor(self) -> SyncPostgresExecutor:
        return self._sync

    def async_executor(self) -> AsyncPostgresExecutor:
        return self._async

    def pool_stats(self) -> list[PoolStats]:
        """``psycopg_pool``'s own statistics: the blocking pool, and the pools of every
        event loop summed (``waits``: requests that had to queue for a connection)."""
        rows = []
        for name, found in (("sync", self._sync.pools()), ("async", self._async.pools())):
            if not found:
                continue
            size = opened = idle = waiting = waits = 0
            for pool in found:
                got = pool.get_stats()
                size += got.get("pool_max", 0)
                opened += got.get("pool_size", 0)
                idle += got.get("pool_available", 0)
                waiting += got.get("requests_waiting", 0)
                waits += got.get("requests_queued", 0)
            rows.append(PoolStats(name, size, opened, max(0, opened - idle), idle, waiting,
                                  waits))
        return rows

    # -- health (Connection.ping / health) -------------------------------------------------

    def ping_sync(self) -> float:
        return drive.run(health.ping(), self._sync)

    async def ping(self) -> float:
        return await drive.arun(health.ping(), self._async)

    def health_sync(self) -> HealthReport:
        return report("postgres", self.url, [drive.run(health.probe(), self._sync)])

    async def health(self) -> HealthReport:
        return report("postgres", self.url, [await drive.arun(health.probe(), self._async)])

    def close(self) -> None:
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        await self._async.aclose()
        # (closing the blocking pool joins its worker threads: not on the event loop)
        await asyncio.to_thread(self.close)


def open_connection(url: str, **options: Any) -> PostgresConnection:
    """Options: see :data:`DEFAULTS` and :data:`PASSED_THROUGH`. A malformed URL, an unknown
    option or a wrong value raises ConfigurationError (the URL's password never shown)."""
    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise ConfigurationError("; ".join(
            f"unknown PostgreSQL connection option {name!r}{_hint(name)} (options: "
            f"{', '.join(OPTIONS)})" for name in sorted(unknown)))
    if not isinstance(url, str) or not url.startswith(URL_PREFIXES):
        raise ConfigurationError(f"a PostgreSQL URL starts with postgresql:// or postgres:// "
                                 f"(got {redact_url(url)!r})")
    try:
        parse_conninfo(url)
    except ConfigurationError:
        raise ConfigurationError(f"not a valid PostgreSQL URL: {redact_url(url)!r}") from None
    given = {**DEFAULTS, **options}
    limit = given["max_document_bytes"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"max_document_bytes must be a positive int (got {limit!r})")
    low, high = given["min_connections"], given["max_connections"]
    for name, value, least in (("min_connections", low, 0), ("max_connections", high, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigurationError(f"{name} must be an int >= {least} (got {value!r})")
    if low > high:
        raise ConfigurationError(f"min_connections ({low}) exceeds max_connections ({high})")
    for name in ("pool_timeout", "connect_timeout", "statement_timeout"):
        value = given[name]
        if value is None and name == "statement_timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds "
                                     f"(got {value!r})")
    connect: dict[str, Any] = {name: options[name] for name in PASSED_THROUGH
                               if name in options}
    for name, value in connect.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a string (got {value!r})")
    # libpq takes whole seconds (at least 2: it treats 1 as 2)
    connect["connect_timeout"] = max(2, round(given["connect_timeout"]))
    if given["statement_timeout"] is not None:
        millis = max(1, round(given["statement_timeout"] * 1000))
        connect["options"] = (connect.get("options", "") +
                              f" -c statement_timeout={millis}").strip()
    settings = PoolSettings(url, connect, low, high, float(given["pool_timeout"]),
                            float(given["connect_timeout"]))
    return PostgresConnection(settings, limit)


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, OPTIONS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["CAPABILITIES", "PostgresBackend", "PostgresConnection", "open_connection"]
