"""Fixtures of the SQLite backend tests (no Redis needed).

* ``sqlite_url`` (function, parametrized): a file database in ``tmp_path`` and an in-memory
  one (``sqlite://``), so every test using it runs on both.
* ``sdb``: the ``"sqlite"`` QuantumORM connection on that URL, made the default of the
  ``sqlite`` backend; every connection is closed afterwards (async teardown, so it runs in
  the test's event loop like the Redis ``conn`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import quantumorm
from default_connections import default_connection


@pytest.fixture(params=["file", "memory"])
def sqlite_url(request: Any, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/test.db" if request.param == "file" else "sqlite://"


@pytest.fixture
async def sdb(sqlite_url: str) -> AsyncIterator[quantumorm.Connection]:
    async for connection in default_connection("sqlite", sqlite_url):
        yield connection
