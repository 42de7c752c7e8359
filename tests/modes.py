"""Run a QuantumORM operation in either mode from an async test: the helpers every test
directory shares (Redis, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

MODES = ("sync", "async")


async def call(obj: Any, name: str, mode: str, /, *args: Any, **kwargs: Any) -> Any:
    """``await obj.name(...)`` in async mode, ``obj.name_sync(...)`` in sync mode, run in a
    worker thread: a blocking call is refused on the thread running the test's event loop."""
    if mode == "sync":
        return await asyncio.to_thread(getattr(obj, f"{name}_sync"), *args, **kwargs)
    assert mode == "async", mode
    return await getattr(obj, name)(*args, **kwargs)


def ids_of(docs: Any) -> list[str]:
    return [doc.id for doc in docs]
