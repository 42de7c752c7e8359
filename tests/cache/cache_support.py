"""Helpers of the cache tests (a module of its own: ``conftest`` is a name every test
directory has)."""

from __future__ import annotations

from typing import Any

import quantumorm

#: options of every cache connection in these tests. The timeouts are long: no test hangs a
#: cache server (a stopped one refuses connections at once), and on a busy machine a reply
#: slower than a short timeout was counted as a cache error, which the concurrency tests
#: assert never happens (they failed about once in ten runs under load).
CACHE_OPTIONS: dict[str, Any] = {"retries": 1, "connect_timeout": 10, "socket_timeout": 30}


def open_cache(url: str, name: str = "cache") -> quantumorm.Connection:
    return quantumorm.create_connection(backend="redis", url=url, name=name, **CACHE_OPTIONS)
