"""QuantumORM's pool of a single-server connection (``backends/redis/pooling.py``) against a
real server: it lends at most ``max_connections``, waits up to ``timeout`` for one to come
back (woken by the release, across threads), then raises the error the ORM reports as
PoolExhaustedError; a child process after a fork starts with fresh connections; a lent
connection is checked (closed or with unread data: reconnected); pool statistics read it.
The blocking tests run twice: on the pool's own checkout, and with redis-py's methods
lending and taking back (what it does when redis-py's metrics, a client cache or a
credential provider are on). The asyncio pool likewise, across tasks."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from pool_helpers import ping, pool_maker

import quantumorm
from quantumorm import PoolExhaustedError, create_connection
from quantumorm.backends.redis import pools
from quantumorm.backends.redis.commands import Call, Command, RedisPlan
from quantumorm.backends.redis.executor import AsyncRedisExecutor, SyncRedisExecutor, _round_trip
from quantumorm.backends.redis.options import ClientOptions
from quantumorm.backends.redis.pooling import AsyncWaitingConnectionPool, WaitingConnectionPool
from quantumorm.backends.redis.translation import translate


@pytest.fixture(params=["quick", "by-redis"])
def make_pool(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Any]:
    yield from pool_maker(redis_url, request.param == "quick", 2, 5.0)


_ping = ping


def test_lends_up_to_max_connections_then_waits_and_raises(make_pool: Any) -> None:
    pool = make_pool(max_connections=2, timeout=0.2)
    first, second = pool.get_connection(), pool.get_connection()
    assert first is not second and _ping(first) == b"PONG" and _ping(second) == b"PONG"
    started = time.monotonic()
    with pytest.raises(redis.exceptions.MaxConnectionsError) as raised:
        pool.get_connection()
    assert time.monotonic() - started >= 0.2  # it waited for the timeout first
    assert "No connection available" in str(raised.value)
    assert isinstance(translate(raised.value), PoolExhaustedError)
    assert pool.waiting() == 0
    pool.release(first)
    again = pool.get_connection()  # the free one, not a third
    assert again is first and pool._created_connections == 2
    pool.release(again)
    pool.release(second)


def test_a_release_wakes_a_waiting_thread(make_pool: Any) -> None:
    pool = make_pool(max_connections=1, timeout=30)
    held = pool.get_connection()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_connection()))
    waiter.start()
    for _ in range(2000):  # (until the waiter is seen waiting; no time limit asserted)
        if pool.waiting() == 1:
            break
        time.sleep(0.005)
    assert pool.waiting() == 1 and not got
    row = pools.stats("small", [redis.Redis(connection_pool=pool)], 1)
    assert row is not None and (row.size, row.open, row.in_use, row.idle, row.waiting) == (
        1, 1, 1, 0, 1)
    pool.release(held)
    waiter.join(timeout=30)
    assert got == [held] and pool.waiting() == 0
    assert _ping(got[0]) == b"PONG"
    pool.release(got[0])


def test_no_timeout_waits_until_a_release(make_pool: Any) -> None:
    pool = make_pool(max_connections=1, timeout=None)
    held = pool.get_connection()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_connection()))
    waiter.start()
    while pool.waiting() == 0:
        time.sleep(0.005)
    pool.release(held)
    waiter.join(timeout=30)
    assert got == [held]
    pool.release(held)


def test_max_connections_holds_under_many_threads(make_pool: Any) -> None:
    pool = make_pool(max_connections=3, timeout=30)
    lock = threading.Lock()
    lent: set[int] = set()
    most = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(150):
                conn = pool.get_connection()
                with lock:
                    assert id(conn) not in lent  # never lent to two callers at once
                    lent.add(id(conn))
                    most[0] = max(most[0], len(lent))
                assert _ping(conn) == b"PONG"
                with lock:
                    lent.discard(id(conn))
                pool.release(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert 1 <= most[0] <= 3 and pool._created_connections <= 3
    assert len(pool._available_connections) == pool._created_connections
    assert not pool._in_use_connections and pool.waiting() == 0


def test_a_closed_or_dirty_connection_is_reconnected_when_lent(
        make_pool: Any, redis_client: Any) -> None:
    pool = make_pool(max_connections=1)
    conn = pool.get_connection()
    conn.send_command("CLIENT", "ID")
    first_id = conn.read_response()
    pool.release(conn)
    redis_client.execute_command("CLIENT", "KILL", "ID", first_id)
    conn = pool.get_connection()  # the server closed it: reconnected before it is lent
    conn.send_command("CLIENT", "ID")
    second_id = conn.read_response()
    assert second_id != first_id
    conn.send_command("PING")  # a reply left unread: never read as the next caller's
    pool.release(conn)
    conn = pool.get_connection()
    assert _ping(conn) == b"PONG"
    conn.send_command("CLIENT", "ID")
    assert conn.read_response() not in (first_id, second_id)
    pool.release(conn)


def test_disconnect_and_reuse(make_pool: Any) -> None:
    pool = make_pool(max_connections=2)
    conn = pool.get_connection()
    assert _round_trip(pool, [("EVAL", "return 7", 0)]) == [7]
    pool.disconnect()
    assert conn._sock is None
    pool.release(conn)
    assert _round_trip(pool, [("EVAL", "return 8", 0)]) == [8]
    assert pool._created_connections <= 2 and not pool._in_use_connections


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_its_own_connections(make_pool: Any) -> None:
    pool = make_pool(max_connections=1)
    conn = pool.get_connection()
    assert _ping(conn) == b"PONG"  # (lent in the parent while the child forks)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        status = b"fail"
        try:
            mine = pool.get_connection()  # the parent's is lent, but not to this process
            if mine is not conn and _ping(mine) == b"PONG" and mine.pid == os.getpid():
                pool.release(mine)
                status = b"ok"
        finally:
            os.write(write, status)
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(child, 0)
    assert answer == b"ok"
    assert _ping(conn) == b"PONG"  # the parent's connection is untouched
    pool.release(conn)


def test_a_single_server_connection_uses_it(redis_url: str) -> None:
    connection = create_connection(url=redis_url, name="pooled", max_connections=3,
                                   pool_timeout=0.25)
    try:
        pool = connection.store.sync_executor().client.connection_pool
        assert type(pool) is WaitingConnectionPool
        assert (pool.max_connections, pool.timeout, pool._quick) == (3, 0.25, True)
        assert connection.ping_sync() >= 0
        row = pools.stats("pooled", [connection.store.sync_executor().client], 3)
        assert row is not None and (row.size, row.in_use, row.waiting) == (3, 0, 0)
        assert row.open == row.idle >= 1
    finally:
        quantumorm.close_all()


# -- the asyncio pool -----------------------------------------------------------------------


async def _aping(conn: Any) -> Any:
    await conn.send_command("PING")
    return await conn.read_response()


async def _until_waiting(pool: AsyncWaitingConnectionPool, count: int) -> None:
    for _ in range(2000):  # (no time limit asserted)
        if pool.waiting() == count:
            return
        await asyncio.sleep(0.005)


async def test_async_waits_up_to_the_timeout_then_raises(redis_url: str) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.2)
    try:
        held = await pool.get_connection()
        assert await _aping(held) == b"PONG"
        started = asyncio.get_running_loop().time()
        with pytest.raises(redis.exceptions.MaxConnectionsError) as raised:
            await pool.get_connection()
        assert asyncio.get_running_loop().time() - started >= 0.2
        assert isinstance(translate(raised.value), PoolExhaustedError)
        assert pool.waiting() == 0
        await pool.release(held)
        assert await pool.get_connection() is held
        await pool.release(held)
    finally:
        await pool.disconnect()


async def test_async_a_release_wakes_a_waiting_task(redis_url: str) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=1, timeout=30)
    try:
        held = await pool.get_connection()
        waiter = asyncio.ensure_future(pool.get_connection())
        await _until_waiting(pool, 1)
        assert pool.waiting() == 1 and not waiter.done()
        row = pools.stats("small", [redis.asyncio.Redis(connection_pool=pool)], 1)
        assert row is not None and (row.open, row.in_use, row.idle, row.waiting) == (
            1, 1, 0, 1)
        await pool.release(held)
        got = await asyncio.wait_for(waiter, 30)
        assert got is held and pool.waiting() == 0
        assert await _aping(got) == b"PONG"
        await pool.release(got)
    finally:
        await pool.disconnect()


async def test_async_a_cancelled_waiter_passes_its_turn_on(redis_url: str) -> None:
    """Two tasks wait; a release wakes the first, which is cancelled before it runs: it
    raises CancelledError (the cancel is never swallowed: on Python 3.10 and 3.11
    asyncio.wait_for returned the result instead), and the second still gets the
    connection (a wake-up is never lost)."""
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=1, timeout=30)
    try:
        held = await pool.get_connection()
        first = asyncio.ensure_future(pool.get_connection())
        await _until_waiting(pool, 1)
        second = asyncio.ensure_future(pool.get_connection())
        await _until_waiting(pool, 2)
        await pool.release(held)
        first.cancel()
        await asyncio.wait([first], timeout=30)
        assert first.cancelled()
        got = await asyncio.wait_for(second, 30)
        assert got is held and pool.waiting() == 0
        await pool.release(got)
    finally:
        await pool.disconnect()


async def test_async_max_connections_holds_under_many_tasks(redis_url: str) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, max_connections=2, timeout=30)
    lent: set[int] = set()
    most = 0

    async def worker() -> None:
        nonlocal most
        for _ in range(40):
            conn = await pool.get_connection()
            assert id(conn) not in lent
            lent.add(id(conn))
            most = max(most, len(lent))
            assert await _aping(conn) == b"PONG"
            lent.discard(id(conn))
            await pool.release(conn)

    try:
        await asyncio.gather(*(worker() for _ in range(10)))
        assert most == 2  # ten tasks that yield while holding one: both were in use
        assert len(pool._available_connections) == 2 and not pool._in_use_connections
        assert pool.waiting() == 0
    finally:
        await pool.disconnect()


async def test_an_async_single_server_connection_uses_it(redis_url: str) -> None:
    connection = create_connection(url=redis_url, name="apooled", max_connections=3,
                                   pool_timeout=0.25)
    try:
        assert await connection.ping() >= 0
        client = connection.store.async_executor().client
        assert type(client.connection_pool) is AsyncWaitingConnectionPool
        assert (client.connection_pool.max_connections, client.connection_pool.timeout) == (
            3, 0.25)
    finally:
        await quantumorm.aclose_all()


# -- the executors' first round straight to the pool ----------------------------------------

#: a plain command redis-py converts (HGETALL: a dict), one it does not (MGET), a script
PLANS = [
    (RedisPlan((Command(("HGETALL", "qpool:h")),), read_only=True), {b"f": b"v"}),
    (RedisPlan((Command(("MGET", "qpool:s", "qpool:none")),), read_only=True),
     [b"x", None]),
    (RedisPlan((Call("now", ("qpool:s",), ()),), read_only=True), None),
]


def _check(got: list[Any], wanted: Any) -> None:
    (reply,) = got
    if wanted is None:  # (the script: the server's time, a number in a string)
        assert isinstance(reply, bytes) and reply.isdigit()
    else:
        assert reply == wanted


def test_the_executor_sends_raw_commands_itself_and_leaves_others_to_redis_py(
        redis_url: str, redis_client: Any) -> None:
    """A first round of MGET or script calls goes straight to the pool; one with a command
    whose reply redis-py converts declines that path and gets the converted reply; a
    NOSCRIPT or "Function not found" on the straight path is the exchange's (scripts
    loaded, the step sent again)."""
    redis_client.hset("qpool:h", "f", "v")
    redis_client.set("qpool:s", "x")
    executor = SyncRedisExecutor(ClientOptions(url=redis_url))
    try:
        assert executor._pool is executor.client.connection_pool
        for _ in range(2):  # (the first one reads the eviction policy through the exchange)
            for plan, wanted in PLANS:
                _check(executor.execute(plan), wanted)
        redis_client.script_flush()
        redis_client.function_flush()  # (the scripts are functions by default)
        _check(executor.execute(PLANS[2][0]), None)
        assert not executor.client.connection_pool._in_use_connections
    finally:
        executor.close()
        redis_client.delete("qpool:h", "qpool:s")


async def test_the_async_executor_likewise(redis_url: str, redis_client: Any) -> None:
    redis_client.hset("qpool:h", "f", "v")
    redis_client.set("qpool:s", "x")
    executor = AsyncRedisExecutor(ClientOptions(url=redis_url))
    try:
        for _ in range(2):
            for plan, wanted in PLANS:
                _check(await executor.execute(plan), wanted)
        redis_client.script_flush()
        redis_client.function_flush()  # (the scripts are functions by default)
        _check(await executor.execute(PLANS[2][0]), None)
    finally:
        await executor.aclose()
        redis_client.delete("qpool:h", "qpool:s")


#: a lone script call whose maker packed it (Call.wire) as another command's bytes: an
#: executor that sends the wire gets that command's reply (in real use the bytes are the
#: call's own EVALSHA command, checked byte for byte in tests/unit/test_save_arguments.py)
WIRED = RedisPlan((Call("now", ("qpool:k",), (), b"*2\r\n$4\r\nECHO\r\n$9\r\nthe wire!\r\n"),))


def test_a_lone_evalsha_call_goes_out_as_the_bytes_its_maker_packed(redis_url: str) -> None:
    executor = SyncRedisExecutor(ClientOptions(url=redis_url, scripts="eval"))
    try:
        executor.execute(RedisPlan((Command(("PING",)),)))  # (the first plan: the exchange's)
        assert executor.execute(WIRED) == [b"the wire!"]
    finally:
        executor.close()


async def test_the_async_executor_sends_a_packed_call_likewise(redis_url: str) -> None:
    executor = AsyncRedisExecutor(ClientOptions(url=redis_url, scripts="eval"))
    try:
        await executor.execute(RedisPlan((Command(("PING",)),)))
        assert await executor.execute(WIRED) == [b"the wire!"]
    finally:
        await executor.aclose()


#: a lone plain command whose maker packed it (Command.wire, a read by id's MGET) as
#: another command's bytes, likewise (its own bytes checked in tests/unit/test_mget_wire.py)
WIRED_COMMAND = RedisPlan((Command(("MGET", "qpool:k"), b"*2\r\n$4\r\nECHO\r\n$4\r\nmget\r\n"),),
                          read_only=True)


def test_a_lone_packed_command_goes_out_as_its_bytes(redis_url: str) -> None:
    executor = SyncRedisExecutor(ClientOptions(url=redis_url))  # (functions: no matter)
    try:
        executor.execute(RedisPlan((Command(("PING",)),)))
        assert executor.execute(WIRED_COMMAND) == [b"mget"]
    finally:
        executor.close()


async def test_the_async_executor_sends_a_packed_command_likewise(redis_url: str) -> None:
    executor = AsyncRedisExecutor(ClientOptions(url=redis_url))
    try:
        await executor.execute(RedisPlan((Command(("PING",)),)))
        assert await executor.execute(WIRED_COMMAND) == [b"mget"]
    finally:
        await executor.aclose()
