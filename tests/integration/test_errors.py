"""Connection failures become QuantumORM's typed errors, fast.

The pool and timeout tests make the server hold every command with ``CLIENT PAUSE`` (a real
server stall, not a mock), so which requests fail is deterministic: the pause lasts several
times longer than the timeouts under test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import (
    BackendConnectionError,
    BackendTimeoutError,
    Document,
    IntField,
    PoolExhaustedError,
    create_connection,
)


class Far(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "e_far"
        connection = "unreachable"


class Small(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "e_small"
        connection = "small"


class Impatient(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "e_impatient"
        connection = "impatient"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("mode", MODES)
async def test_closed_port_raises_backend_connection_error(conn: Any, mode: str) -> None:
    create_connection(backend="redis", url=f"redis://127.0.0.1:{closed_port()}/0",
                      name="unreachable", connect_timeout=0.5, socket_timeout=0.5)
    operations = [
        lambda: call(Far(n=1), "save", mode),  # an insert allocating its id: checked, raised
        lambda: call(Far.objects.filter(n=1), "all", mode),  # reads: retried, then raised
        lambda: call(Far.objects, "count", mode),
        lambda: call(Far.objects, "get_many", mode, ["1"]),
    ]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(BackendConnectionError) as error:
            await operation()
        assert time.monotonic() - started < 3
        assert not isinstance(error.value, PoolExhaustedError)
        assert error.value.__cause__ is not None  # the driver's error is kept


@pytest.mark.parametrize("mode", MODES)
async def test_unresolvable_host_raises_backend_connection_error(conn: Any, mode: str) -> None:
    create_connection(backend="redis", url="redis://no-such-host.invalid:6379/0",
                      name="unreachable", connect_timeout=0.5)
    with pytest.raises(BackendConnectionError):
        await call(Far.objects, "count", mode)


def _pause(redis_client: Any, milliseconds: int) -> None:
    redis_client.execute_command("CLIENT", "PAUSE", milliseconds, "ALL")


async def test_pool_exhausted_async(conn: Any, redis_client: Any, redis_url: str) -> None:
    create_connection(backend="redis", url=redis_url, name="small", max_connections=2,
                      pool_timeout=0.2)
    assert await Small.objects.count() == 0  # the pool works (and its connections exist)
    _pause(redis_client, 1500)
    started = time.monotonic()
    results = await asyncio.gather(*(Small(id=str(n), n=n).save() for n in range(8)),
                                   return_exceptions=True)
    elapsed = time.monotonic() - started
    saved = [r for r in results if isinstance(r, Small)]
    exhausted = [r for r in results if isinstance(r, PoolExhaustedError)]
    assert len(saved) == 2 and len(exhausted) == 6, results
    assert elapsed >= 1.0  # the two winners waited for the pause to end
    stored = assert_indexes_consistent(redis_client, Small)
    assert set(stored) == {doc.id for doc in saved}


def test_pool_exhausted_threads(conn: Any, redis_client: Any, redis_url: str) -> None:
    create_connection(backend="redis", url=redis_url, name="small", max_connections=2,
                      pool_timeout=0.2)
    assert Small.objects.count_sync() == 0
    results: list[Any] = [None] * 8
    barrier = threading.Barrier(8 + 1)

    def worker(n: int) -> None:
        barrier.wait()
        try:
            results[n] = Small(id=str(n), n=n).save_sync()
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    _pause(redis_client, 1500)
    barrier.wait()
    for thread in threads:
        thread.join(timeout=30)
    saved = [r for r in results if isinstance(r, Small)]
    exhausted = [r for r in results if isinstance(r, PoolExhaustedError)]
    assert len(saved) == 2 and len(exhausted) == 6, results
    assert set(assert_indexes_consistent(redis_client, Small)) == {doc.id for doc in saved}


@pytest.mark.parametrize("mode", MODES)
async def test_socket_timeout_on_a_stalled_server(conn: Any, redis_client: Any, redis_url: str,
                                                  mode: str) -> None:
    create_connection(backend="redis", url=redis_url, name="impatient", socket_timeout=0.2)
    assert await call(Impatient.objects, "count", mode) == 0
    _pause(redis_client, 2500)
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        await call(Impatient(id="w", n=1), "save", mode)  # timeouts are never retried:
    assert time.monotonic() - started < 1.0
    with pytest.raises(BackendTimeoutError):
        await call(Impatient.objects, "count", mode)  # a stalled server would multiply them
    assert time.monotonic() - started < 2.4
    # once the server answers again, the same connection works
    deadline = time.monotonic() + 5
    while True:
        try:
            assert await call(Impatient.objects, "count", mode) in (0, 1)
            break
        except BackendTimeoutError:
            assert time.monotonic() < deadline
