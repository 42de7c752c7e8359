"""A connection opened as its backend's default for one test, and every connection closed
after it (a module of its own: ``conftest`` is a name every test directory has)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import quantumorm


async def default_connection(backend: str, url: str) -> AsyncIterator[quantumorm.Connection]:
    connection = quantumorm.create_connection(backend=backend, url=url, name=backend,
                                              make_default=True)
    try:
        yield connection
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()
