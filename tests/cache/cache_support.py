"""Helpers of the cache tests (a module of its own: ``conftest`` is a name every test
directory has)."""

from __future__ import annotations

from typing import Any

import quantumorm

#: options of every cache connection in these tests
CACHE_OPTIONS: dict[str, Any] = {"retries": 1, "connect_timeout": 1, "socket_timeout": 2}


def open_cache(url: str, name: str = "cache") -> quantumorm.Connection:
    return quantumorm.create_connection(backend="redis", url=url, name=name, **CACHE_OPTIONS)
