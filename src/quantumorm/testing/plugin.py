"""QuantumORM's pytest plugin: servers for the session, a namespace per test.

Loaded by pytest on its own once the package is installed (entry point ``pytest11``);
elsewhere ``-p quantumorm.testing.plugin`` or ``pytest_plugins = ["quantumorm.testing.plugin"]``.
Fixtures:

* ``quantumorm_redis_url`` (session): the URL of a private redis-server started on a free
  loopback port on first use (no persistence, in a temp dir, stopped by its pid at the end of
  the session), or of ``$QUANTUMORM_TEST_REDIS_URL`` when set.
* ``quantumorm_postgres_url`` (session): the same for PostgreSQL where its server binaries
  and psycopg are installed (``$QUANTUMORM_TEST_POSTGRES_URL`` points elsewhere).
* ``qorm`` (function): a :class:`~quantumorm.testing.QuantumORMTest`: the ``"default"``
  connection on that Redis server, with every model moved into a namespace of the test's own
  (so tests can share a server without FLUSHDB), whose keys are deleted after the test; and a
  :class:`~quantumorm.testing.Factory` (``qorm.make(User)``, ``qorm.make_many(User, 10)``).

When a server cannot be had (redis-server not installed, say) the tests that use it are
skipped with a message saying how to install it; with ``QUANTUMORM_TESTING_REQUIRE=1`` they
fail instead. Loading the plugin never fails for a missing server or driver.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from ..connection import close_all, create_connection
from . import postgres, servers
from .context import QuantumORMTest
from .namespace import IsolatedNamespace
from .servers import ServerUnavailable


def unavailable(error: ServerUnavailable) -> NoReturn:
    """Skip the test for a server it cannot have, or fail it where servers are required."""
    if servers.required():
        pytest.fail(f"{error} ({servers.REQUIRE_VARIABLE} is set)", pytrace=False)
    pytest.skip(str(error))


@pytest.fixture(scope="session")
def quantumorm_redis_url() -> Iterator[str]:
    """The URL of the session's Redis server (started on first use)."""
    try:
        url = servers.session.acquire()
    except ServerUnavailable as error:
        unavailable(error)
    try:
        yield url
    finally:
        servers.session.release()


@pytest.fixture(scope="session")
def quantumorm_postgres_url() -> Iterator[str]:
    """The URL of the session's PostgreSQL server (started on first use)."""
    external = os.environ.get(postgres.URL_VARIABLE)
    try:
        url = postgres.session.acquire(external)
    except ServerUnavailable as error:
        unavailable(error)
    try:
        yield url
    finally:
        postgres.session.release(external)


@pytest.fixture
def qorm(quantumorm_redis_url: str) -> Iterator[QuantumORMTest]:
    """The ``"default"`` connection in a namespace of the test's own; after the test, that
    namespace's keys are deleted, the models get their namespaces back and every connection
    is closed (blocking pools; an async test may ``await quantumorm.aclose_all()``)."""
    isolation = IsolatedNamespace()
    isolation.isolate_all()
    connection = create_connection(backend="redis", url=quantumorm_redis_url, name="default",
                                   make_default=True)
    try:
        yield QuantumORMTest(connection, quantumorm_redis_url, isolation)
    finally:
        try:
            isolation.delete_keys(connection.store.sync_executor().client)
        finally:
            isolation.restore()
            close_all()


__all__ = ["qorm", "quantumorm_postgres_url", "quantumorm_redis_url", "unavailable"]
