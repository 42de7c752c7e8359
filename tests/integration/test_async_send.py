"""The asyncio executor's send (``executor._asend``): a command the transport takes whole
is written with no task and no extra turn of the event loop; what stays buffered is still
sent whole, and waited for within ``socket_timeout`` (``TimeoutError``), on a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
import redis.asyncio
from processes import stop_process

from quantumorm.backends.redis.executor import _around_trip
from quantumorm.backends.redis.pooling import AsyncWaitingConnectionPool


async def test_a_round_trip_makes_no_task(redis_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The write bypasses redis-py's send (``send_packed_command``, which bounds it by
    ``asyncio.wait_for``): not called at all, on every Python. Before 3.12 that send also
    made a task per round trip, which the task factory would see; from 3.12 wait_for makes
    none, so the spy on the send is what can fail there."""
    pool = AsyncWaitingConnectionPool.from_url(redis_url, socket_timeout=2.0)
    loop = asyncio.get_running_loop()
    made: list[Any] = []
    previous = loop.get_task_factory()
    sends: list[Any] = []
    send = pool.connection_class.send_packed_command

    async def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        sends.append(args)
        await send(self, *args, **kwargs)

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    try:
        assert await _around_trip(pool, [("EVAL", "return 1", 0)]) == [1]  # (connected)
        monkeypatch.setattr(pool.connection_class, "send_packed_command", counted)
        loop.set_task_factory(factory)
        try:
            replies = await _around_trip(pool, [("EVAL", "return 2", 0), ("WAIT", 0, 0)])
        finally:
            loop.set_task_factory(previous)
        assert replies == [2, 0]
        assert sends == []  # (redis-py's send: asyncio.wait_for around the write)
        assert made == []  # (... which made a task per command before Python 3.12)
        # (the spy sees redis-py's send when it is taken: a connection with health checks)
        checked = AsyncWaitingConnectionPool.from_url(redis_url, socket_timeout=2.0,
                                                      health_check_interval=30)
        try:
            assert await _around_trip(checked, [("EVAL", "return 3", 0)]) == [3]
            assert sends
        finally:
            await checked.disconnect()
    finally:
        await pool.disconnect()


async def test_a_command_larger_than_the_transports_buffer_is_sent_whole(
        redis_url: str) -> None:
    pool = AsyncWaitingConnectionPool.from_url(redis_url, socket_timeout=5.0)
    big = b"x" * (8 << 20)
    try:
        replies = await _around_trip(pool, [("EVAL", "return #ARGV[1]", 0, big),
                                            ("EVAL", "return ARGV[1]", 0, "after")])
        assert replies == [len(big), b"after"]
        assert await _around_trip(pool, [("EVAL", "return 3", 0)]) == [3]
    finally:
        await pool.disconnect()


async def test_a_send_that_cannot_finish_is_a_timeout_error(start_redis: Any) -> None:
    url, _ = start_redis()
    admin = redis.Redis.from_url(url)
    pid = int(admin.info("server")["process_id"])
    pool = AsyncWaitingConnectionPool.from_url(url, socket_timeout=0.3)
    try:
        assert await _around_trip(pool, [("EVAL", "return 1", 0)]) == [1]
        stop_process(pid)
        try:
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await _around_trip(pool, [("EVAL", "return 1", 0, b"x" * (64 << 20))])
            assert time.monotonic() - started < 5.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert not pool._in_use_connections
        assert await _around_trip(pool, [("EVAL", "return 2", 0)]) == [2]
    finally:
        await pool.disconnect()
        admin.close()
