"""Shared fixtures: a private redis-server for the session, raw clients, QuantumORM connections.

* ``redis_url`` (session): ``redis://127.0.0.1:PORT/0`` of a redis-server this session starts
  on a free loopback port (no persistence, in a temp dir) the first time a test asks for it,
  and stops at the end. With ``QORM_TEST_REDIS_URL`` set, that server is used instead (and its
  database is flushed before each test that uses ``conn``).
* ``redis_client`` (function): a plain ``redis.Redis`` on ``redis_url``, for raw inspection.
* ``conn`` (function): FLUSHDB, then the ``"default"`` QuantumORM connection; works in sync and
  async tests alike. Afterwards every registered connection is closed, with the asyncio
  clients of the test's event loop. A test that runs other loops (``asyncio.run``, a
  non-function ``loop_scope``) must close what it opened there itself (``await c.aclose()``).

* ``redis_cluster`` (session): a real 3-master Redis Cluster with one replica each
  (:mod:`cluster_support`), started on first use; ``cluster_conn`` flushes it and makes it the
  ``"default"`` connection. ``start_cluster`` / ``start_sentinel`` start private deployments
  for tests that kill or move things (stopped after the test).

* ``postgres_url`` (session): a PostgreSQL server this session starts (``postgres_support``).

Every test that needs ``redis_url`` (directly or through another fixture) gets the ``redis``
marker, every test on PostgreSQL the ``postgres`` marker, and every test on a cluster or
Sentinel group the ``cluster`` marker, so ``pytest -m 'not redis and not cluster and not
postgres'`` runs the tests that need no server.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import settings

import postgres_support
import quantumorm
from cluster_support import Cluster, SentinelGroup
from quantumorm.testing import servers

# The plugin (also loaded by its entry point when the package is installed): its fixtures
# are tested by tests/testing (with pytester), and its server-starting code serves the
# fixtures below.
pytest_plugins = ["quantumorm.testing.plugin", "pytester"]

# No wall-clock limit per example (Hypothesis' default is 200 ms): a test must not fail
# because the machine is busy. Profiles of single tests (test_differential.py) set their own.
settings.register_profile("quantumorm", deadline=None)
settings.load_profile("quantumorm")

URL_VARIABLE = "QORM_TEST_REDIS_URL"


CLUSTER_FIXTURES = {"redis_cluster", "cluster_conn", "start_cluster", "start_sentinel"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", postgres_support.MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "redis_url" in names:
            item.add_marker(pytest.mark.redis)
        if names & CLUSTER_FIXTURES:
            item.add_marker(pytest.mark.cluster)
    postgres_support.mark(config, items)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of the session's PostgreSQL server (started on first use; see
    ``postgres_support``: ``QORM_TEST_POSTGRES_URL`` points elsewhere)."""
    url = postgres_support.acquire()
    try:
        yield url
    finally:
        postgres_support.release()


def _start(executable: str, workdir: Path, extra: tuple[str, ...] = (),
           password: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server and wait for PING; return the process and its URL, or fail."""
    try:
        return servers.start_redis_server(workdir, extra, password, program=executable)
    except servers.ServerFailed as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the test Redis server (started on first use, stopped at session end)."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    try:
        url = servers.session.acquire(environment=False)  # the plugin's private server
    except (servers.ServerUnavailable, servers.ServerFailed) as error:
        pytest.fail(f"{error} (or set {URL_VARIABLE} to a server whose database may be "
                    "flushed; ./run-tests installs redis-server)", pytrace=False)
    try:
        yield url
    finally:
        servers.session.release(environment=False)


@pytest.fixture
def start_redis(redis_url: str) -> Iterator[Any]:
    """Start extra redis-servers with their own options for one test; all stopped after it.

    ``start_redis("--requirepass", "s3cret", password="s3cret")`` returns the URL (without
    credentials) and the server's work directory.
    """
    try:
        executable = servers.executable()
    except servers.ServerUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    started: list[tuple[subprocess.Popen[bytes], tempfile.TemporaryDirectory[str]]] = []

    def start(*extra: str, password: str | None = None) -> tuple[str, Path]:
        assert executable is not None
        workdir = tempfile.TemporaryDirectory(prefix="qorm-redis-extra-")
        process, url = _start(executable, Path(workdir.name), extra, password)
        started.append((process, workdir))
        return url, Path(workdir.name)

    try:
        yield start
    finally:
        for process, workdir in started:
            servers.stop(process)
            workdir.cleanup()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server (bytes replies), closed after the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def conn(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[quantumorm.Connection]:
    """The ``"default"`` connection on an empty database; every connection closed afterwards.

    An async fixture so that its teardown runs in the test's event loop and can close the
    asyncio clients the test opened there (sync tests get it all the same).
    """
    redis_client.flushdb()
    connection = quantumorm.create_connection(
        backend="redis", url=redis_url, name="default", make_default=True
    )
    try:
        yield connection
    finally:
        try:
            await quantumorm.aclose_all()  # also closes the asyncio clients of this loop
        finally:
            quantumorm.close_all()


@pytest.fixture
def format2_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inserts store format 2 (a meta hash with the version, the recent write ids and every
    index's entries), as releases before format 3 did: for tests of how such documents,
    still found in upgraded collections, are read, written, verified and repaired."""
    from quantumorm.backends.redis import writes

    monkeypatch.setattr(writes, "NEW_FORMAT", 2)


# -- Redis Cluster and Sentinel ------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A 3-master, 3-replica Redis Cluster on loopback ports, for the whole session."""
    with tempfile.TemporaryDirectory(prefix="qorm-cluster-") as workdir:
        cluster = Cluster(Path(workdir)).start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
async def cluster_conn(redis_cluster: Cluster) -> AsyncIterator[quantumorm.Connection]:
    """The ``"default"`` connection on the (flushed) session cluster."""
    redis_cluster.flush()
    connection = quantumorm.create_connection(url=redis_cluster.url, name="default",
                                              make_default=True)
    try:
        yield connection
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


@pytest.fixture
def start_cluster() -> Iterator[Any]:
    """Start private clusters (``start_cluster(masters=3, replicas=1)``) for tests that kill
    nodes or move slots; all stopped after the test."""
    started: list[tuple[Cluster, tempfile.TemporaryDirectory[str]]] = []

    def start(masters: int = 3, replicas: int = 1) -> Cluster:
        workdir = tempfile.TemporaryDirectory(prefix="qorm-cluster-")
        cluster = Cluster(Path(workdir.name), masters, replicas)
        started.append((cluster, workdir))
        return cluster.start()

    try:
        yield start
    finally:
        for cluster, workdir in started:
            cluster.stop()
            workdir.cleanup()


@pytest.fixture
def start_sentinel() -> Iterator[Any]:
    """Start private Sentinel groups (a master, replicas, three Sentinels)."""
    started: list[tuple[SentinelGroup, tempfile.TemporaryDirectory[str]]] = []

    def start(replicas: int = 1) -> SentinelGroup:
        workdir = tempfile.TemporaryDirectory(prefix="qorm-sentinel-")
        group = SentinelGroup(Path(workdir.name), replicas=replicas)
        started.append((group, workdir))
        return group.start()

    try:
        yield start
    finally:
        for group, workdir in started:
            group.stop()
            workdir.cleanup()
