"""The asyncio pool's own checkout and release (``AsyncWaitingConnectionPool``, with
redis-py's metrics off, no credential provider, no event dispatcher of the caller's):
redis-py's ``get_connection`` and ``release`` are not called (their lock, metrics and
pool-name labels), and what they do is still done: a closed or dirty connection is
reconnected before it is lent, a connection marked for reconnect is disconnected on its
release and stays counted meanwhile, ``max_connections`` holds, a caller waits while
another holder has the pool's lock. A pool with a credential provider lends through
redis-py's methods. On a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from quantumorm.backends.redis.pooling import AsyncWaitingConnectionPool


@pytest.fixture
def redis_py_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of redis-py's asyncio pool methods called (spied, then called)."""
    calls: list[str] = []
    base = redis.asyncio.ConnectionPool
    for name in ("get_connection", "release"):
        original = getattr(base, name)

        def spy(self: Any, *args: Any, _name: str = name, _original: Any = original,
                **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(base, name, spy)
    return calls


async def _aping(conn: Any) -> Any:
    await conn.send_command("PING")
    return await conn.read_response()


async def _client_id(conn: Any) -> Any:
    await conn.send_command("CLIENT", "ID")
    return await conn.read_response()


async def test_a_checkout_and_release_do_not_go_through_redis_py(
        redis_url: str, redis_py_calls: list[str]) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=2)
    try:
        for _ in range(3):
            conn = await pool.get_connection()
            assert await _aping(conn) == b"PONG"
            await pool.release(conn)
        assert redis_py_calls == []
        assert len(pool._available_connections) == 1 and not pool._in_use_connections
    finally:
        await pool.disconnect()


async def test_a_closed_or_dirty_connection_is_reconnected_when_lent(
        redis_url: str, redis_client: Any) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=1)
    try:
        conn = await pool.get_connection()
        first = await _client_id(conn)
        await pool.release(conn)
        redis_client.execute_command("CLIENT", "KILL", "ID", first)
        for _ in range(200):  # (until the loop has seen the close; no time asserted)
            await asyncio.sleep(0.005)
            if conn._reader is not None and conn._reader.at_eof():
                break
        conn = await pool.get_connection()  # closed by the server: reconnected first
        second = await _client_id(conn)
        assert second != first
        await conn.send_command("PING")  # a reply left unread: never the next caller's
        await asyncio.sleep(0.05)  # (the reply reaches the connection's buffer)
        await pool.release(conn)
        conn = await pool.get_connection()
        assert await _aping(conn) == b"PONG"
        assert await _client_id(conn) not in (first, second)
        await pool.release(conn)
    finally:
        await pool.disconnect()


async def test_a_connection_marked_for_reconnect_is_disconnected_on_release(
        redis_url: str) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=1)
    if not hasattr(redis.asyncio.Connection, "mark_for_reconnect"):
        pytest.skip("this redis-py has no reconnect mark")
    try:
        conn = await pool.get_connection()
        first = await _client_id(conn)
        conn.mark_for_reconnect()
        await pool.release(conn)
        assert not conn.is_connected and pool._available_connections == [conn]
        again = await pool.get_connection()
        assert again is conn and await _client_id(conn) != first
        await pool.release(conn)
    finally:
        await pool.disconnect()


async def test_max_connections_holds_and_a_held_lock_is_waited_for(redis_url: str) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=2, timeout=30)
    try:
        most = 0

        async def user() -> None:
            nonlocal most
            conn = await pool.get_connection()
            try:
                most = max(most, len(pool._in_use_connections))
                assert await _aping(conn) == b"PONG"
            finally:
                await pool.release(conn)

        await asyncio.gather(*(user() for _ in range(50)))
        assert most == 2 and len(pool._available_connections) == 2
        async with pool._lock:  # (as a maintenance handler holds it)
            pending = asyncio.ensure_future(pool.get_connection())
            await asyncio.sleep(0.01)
            assert not pending.done()
        conn = await pending
        await pool.release(conn)
        assert not pool._in_use_connections
    finally:
        await pool.disconnect()


async def test_a_credential_provider_lends_through_redis_py(
        redis_url: str, redis_py_calls: list[str]) -> None:
    provider = redis.UsernamePasswordCredentialProvider()
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=1,
                                               credential_provider=provider)
    try:
        conn = await pool.get_connection()
        assert await _aping(conn) == b"PONG"
        await pool.release(conn)
        assert redis_py_calls == ["get_connection", "release"]
    finally:
        await pool.disconnect()
