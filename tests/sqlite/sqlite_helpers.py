"""Helpers of the SQLite tests: run an operation sync or async, read the raw tables."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

from quantumorm import sortable

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


def raw_rows(path: str, table: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{id: (version, document)}`` read straight from a database file."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(f'SELECT id_key, version, doc FROM "{table}"').fetchall()
    finally:
        db.close()
    return {sortable.id_from_key(key): (version, json.loads(doc)) for key, version, doc in rows}
