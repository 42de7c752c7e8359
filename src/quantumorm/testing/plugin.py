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
  connection on that Redis server (a ``"default"`` of the user's is set aside for the test,
  and put back after it), with every Redis model moved into a namespace of the test's own
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

from .. import registry
from ..connection import DEFAULT_NAME, Connection, create_connection
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
    namespace's keys are deleted, the models get their namespaces back, the connections
    opened during the test (this one included) are closed (blocking pools; an async test
    may ``await qorm.connection.aclose()``) and the registry is as it was before: a
    ``"default"`` connection opened at module or session level is set aside during the
    test and comes back, open, after it."""
    before = registry.snapshot()
    displaced = registry.detach(DEFAULT_NAME)  # not closed: it is put back after the test
    isolation = IsolatedNamespace()
    try:
        isolation.isolate_all()
        connection = create_connection(backend="redis", url=quantumorm_redis_url,
                                       name=DEFAULT_NAME, make_default=True)
        try:
            yield QuantumORMTest(connection, quantumorm_redis_url, isolation)
        finally:
            isolation.delete_keys(connection.store.sync_executor().client)
    finally:
        isolation.restore()
        put_back(before, displaced)


def put_back(before: registry.RegistryState, displaced: Connection | None) -> None:
    """The registry as it was in ``before``, less the connections the test closed or
    replaced since (``close_all()``, a ``create_connection`` of the same name), plus
    ``displaced``; the connections opened since are closed (every one even if one fails; the
    first failure is raised at the end)."""
    now = registry.snapshot().connections
    kept = {name: connection for name, connection in before.connections.items()
            if connection is displaced or now.get(name) is connection}
    failure: BaseException | None = None
    for connection in registry.restore(registry.RegistryState(kept, before.defaults)):
        try:
            connection.close()
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


__all__ = ["put_back", "qorm", "quantumorm_postgres_url", "quantumorm_redis_url", "unavailable"]
