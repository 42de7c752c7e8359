"""Fixtures of the PostgreSQL backend tests (a private server; no Redis needed).

* ``postgres_url`` (session, from the root conftest): the URL of a PostgreSQL server this
  session starts on a free loopback port (see ``postgres_support``; ``QORM_TEST_POSTGRES_URL``
  points elsewhere).
* ``pg``: an emptied database and the ``"postgres"`` QuantumORM connection on it, made the
  default of the ``postgres`` backend; every connection is closed afterwards (async
  teardown, so it runs in the test's event loop like the Redis ``conn`` fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import postgres_support
import quantumorm
from default_connections import default_connection


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[quantumorm.Connection]:
    postgres_support.reset(postgres_url)
    async for connection in default_connection("postgres", postgres_url):
        yield connection
