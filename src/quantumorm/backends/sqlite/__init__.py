"""The SQLite backend: Python's stdlib ``sqlite3``, embedded, no server.

``create_connection(backend="sqlite", url="sqlite:///path/to.db")`` opens (or creates) a
database file in WAL mode; ``url="sqlite://"`` is an in-memory database private to that
connection object. Models opt in with ``Meta.backend = "sqlite"``.

Query semantics are those of the Redis backend and of :mod:`quantumorm.query.evaluate`: the
same sort-key bytes decide order and equality (see :mod:`.schema` and :mod:`.compiler`).

Sync and async share one sqlite3 connection; async calls run it on a single worker thread
owned by the connection (see :mod:`.executor` for why that is safe and keeps the loop free).
"""

from __future__ import annotations

import asyncio
import difflib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...engine import drive
from ...engine.observe import PoolStats
from ...errors import ConfigurationError
from ...health import HealthReport, report
from ...redaction import redact_url
from . import health
from .backend import CAPABILITIES, DEFAULT_MAX_DOCUMENT_BYTES, SqliteBackend
from .executor import AsyncSqliteExecutor, SyncSqliteExecutor

URL_PREFIX = "sqlite://"
# CAPABILITIES (in __all__) is what the backend registry reads without opening anything


class SqliteConnection:
    """An open SQLite database: the backend, a blocking executor and an asyncio executor."""

    def __init__(self, path: str, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.path = path
        self.backend = SqliteBackend(max_document_bytes)
        self._sync = SyncSqliteExecutor(path)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qorm-sqlite")
        self._async = AsyncSqliteExecutor(self._sync, self._worker)
        self._closed = False

    def sync_executor(self) -> SyncSqliteExecutor:
        return self._sync

    def async_executor(self) -> AsyncSqliteExecutor:
        return self._async

    def pool_stats(self) -> list[PoolStats]:
        """One connection, lent to one plan at a time (the executor's lock)."""
        if self._closed:
            return [PoolStats("sqlite", 1, 0, 0, 0)]
        busy = int(self._sync._lock.locked())
        return [PoolStats("sqlite", 1, 1, busy, 1 - busy)]

    # -- health (Connection.ping / health) -------------------------------------------------

    def ping_sync(self) -> float:
        return drive.run(health.ping(), self._sync)

    async def ping(self) -> float:
        return await drive.arun(health.ping(), self._async)

    def health_sync(self) -> HealthReport:
        return report("sqlite", f"{URL_PREFIX}/{self.path}",
                      [drive.run(health.probe(self.path), self._sync)])

    async def health(self) -> HealthReport:
        return report("sqlite", f"{URL_PREFIX}/{self.path}",
                      [await drive.arun(health.probe(self.path), self._async)])

    def close(self) -> None:
        self._closed = True
        self._worker.shutdown(wait=True)
        self._sync.close()

    async def aclose(self) -> None:
        if not self._closed:
            # let plans already queued on the worker finish without blocking the loop
            await asyncio.get_running_loop().run_in_executor(self._worker, _nothing)
        self.close()


def _nothing() -> None:
    pass


def path_of(url: str) -> str:
    """``sqlite://`` -> ``":memory:"``; ``sqlite:///a/b.db`` -> ``/a/b.db``;
    ``sqlite:///rel.db``... the part after ``sqlite://`` with its leading slash dropped
    (``sqlite:////abs.db`` is absolute), as SQLAlchemy does."""
    if not url.startswith(URL_PREFIX):
        raise ConfigurationError(
            f"a SQLite URL starts with sqlite:// (got {redact_url(url)!r})")
    rest = url[len(URL_PREFIX):]
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"a SQLite URL is sqlite:// or sqlite:///path (got {redact_url(url)!r})")
    return rest[1:]


#: the options ``create_connection(backend="sqlite", ...)`` accepts
OPTIONS = ("max_document_bytes",)


def open_connection(url: str, **options: Any) -> SqliteConnection:
    """Options: ``max_document_bytes`` (default 16 MiB; larger documents are refused).
    A malformed URL, an unknown option or a wrong value raises ConfigurationError."""
    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise ConfigurationError("; ".join(
            f"unknown SQLite connection option {name!r}{_hint(name)} (options: "
            f"{', '.join(OPTIONS)})" for name in sorted(unknown)))
    path = path_of(url)
    limit = options.pop("max_document_bytes", DEFAULT_MAX_DOCUMENT_BYTES)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"max_document_bytes must be a positive int (got {limit!r})")
    return SqliteConnection(path, limit)


def _hint(name: str) -> str:
    close = difflib.get_close_matches(name, OPTIONS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["CAPABILITIES", "SqliteBackend", "SqliteConnection", "open_connection"]
