"""The executors' own round trip (``executor._round_trip`` / ``_around_trip``): script calls
and WAIT written straight to a pooled connection, against a real server. Each reply is
what redis-py's ``execute_command`` / non-transactional pipeline gives; an error reply is
kept as the reply and leaves the connection in step; a connection error or timeout leaves
no connection with an unread reply in the pool; RESP3 connections read the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

import quantumorm
from quantumorm import Document, StringField
from quantumorm.backends.redis import executor
from quantumorm.backends.redis.executor import RAW, _around_trip, _direct, _pack, _round_trip

BAD_SHA = "0" * 40
#: a reply of each kind: integer, error (a script's), NOSCRIPT, bulk, nested array, nil
COMMANDS: list[tuple[Any, ...]] = [
    ("EVAL", "return 1", 0),
    ("EVAL", "return redis.call('nosuchcommand')", 0),
    ("EVALSHA", BAD_SHA, 0),
    ("EVAL", "return ARGV[1]", 0, "é"),
    ("EVAL", "return {1, {KEYS[1], 2.5}, false}", 1, "k"),
    ("EVAL", "return nil", 0),
]


def _same(got: list[Any], wanted: list[Any]) -> None:
    assert len(got) == len(wanted)
    for a, b in zip(got, wanted, strict=True):
        if isinstance(b, BaseException):
            assert type(a) is type(b) and str(a) == str(b)
        else:
            assert a == b


@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_match_a_redis_py_pipeline(redis_url: str, protocol: int) -> None:
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    try:
        pipe = client.pipeline(transaction=False)
        for command in COMMANDS:
            pipe.execute_command(*command)
        wanted = pipe.execute(raise_on_error=False)
        assert isinstance(wanted[2], redis.exceptions.NoScriptError)
        _same(_round_trip(client.connection_pool, COMMANDS), wanted)
        # one command alone: the error reply is returned, not raised
        (alone,) = _round_trip(client.connection_pool, [COMMANDS[1]])
        assert isinstance(alone, redis.exceptions.ResponseError)
        assert _round_trip(client.connection_pool, [COMMANDS[0]]) == [1]
        assert _round_trip(client.connection_pool, [("WAIT", 0, 0)]) == [0]
        assert client.connection_pool._in_use_connections == set()
    finally:
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_async_replies_match_a_redis_py_pipeline(redis_url: str, protocol: int) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, protocol=protocol)
    try:
        pipe = client.pipeline(transaction=False)
        for command in COMMANDS:
            pipe.execute_command(*command)
        wanted = await pipe.execute(raise_on_error=False)
        _same(await _around_trip(client.connection_pool, COMMANDS), wanted)
        (alone,) = await _around_trip(client.connection_pool, [COMMANDS[1]])
        assert isinstance(alone, redis.exceptions.ResponseError)
        assert await _around_trip(client.connection_pool, [COMMANDS[0]]) == [1]
    finally:
        await client.aclose()


def test_raw_commands_have_no_redis_py_reply_callback() -> None:
    """Why the round trip may skip redis-py's reply callbacks: it has none for these
    commands, in either protocol, blocking or asyncio (a redis-py upgrade adding one
    fails here)."""
    for client in (redis.Redis(), redis.Redis(protocol=3), redis.asyncio.Redis(),
                   redis.asyncio.Redis(protocol=3)):
        assert all(client.response_callbacks.get(name) is None for name in RAW)


def test_other_commands_keep_redis_py_paths(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert _direct(client, [("EVALSHA", BAD_SHA, 0), ("WAIT", 0, 0)])
        assert not _direct(client, [("EVALSHA", BAD_SHA, 0), ("HGETALL", "k")])
        pinned = redis.Redis.from_url(redis_url, single_connection_client=True)
        assert not _direct(pinned, [("EVALSHA", BAD_SHA, 0)])
        pinned.close()
    finally:
        client.close()


def test_a_timeout_disconnects_the_connection_before_it_returns_to_the_pool(
        redis_url: str, redis_client: Any) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    try:
        pool = client.connection_pool
        assert _round_trip(pool, [("EVAL", "return 1", 0)]) == [1]
        redis_client.execute_command("CLIENT", "PAUSE", 600, "ALL")
        with pytest.raises(redis.exceptions.TimeoutError):
            _round_trip(pool, [("EVAL", "return 'late'", 0), ("EVAL", "return 2", 0)])
        assert pool._in_use_connections == set()
        assert all(conn._sock is None for conn in pool._available_connections)
        redis_client.execute_command("CLIENT", "UNPAUSE")
        # a fresh connection: the late reply is never read as this command's
        assert _round_trip(pool, [("EVAL", "return 3", 0)]) == [3]
    finally:
        client.close()


async def test_async_timeout_and_cancel_disconnect_the_connection(
        redis_url: str, redis_client: Any) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=0.2)
    try:
        pool = client.connection_pool
        assert await _around_trip(pool, [("EVAL", "return 1", 0)]) == [1]
        redis_client.execute_command("CLIENT", "PAUSE", 600, "ALL")
        with pytest.raises(redis.exceptions.TimeoutError):
            await _around_trip(pool, [("EVAL", "return 'late'", 0)])
        redis_client.execute_command("CLIENT", "UNPAUSE")
        assert await _around_trip(pool, [("EVAL", "return 2", 0)]) == [2]
        # cancelled while waiting for the reply: the connection is not reused as is
        redis_client.execute_command("CLIENT", "PAUSE", 400, "ALL")
        task = asyncio.ensure_future(_around_trip(pool, [("EVAL", "return 'gone'", 0)]))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        redis_client.execute_command("CLIENT", "UNPAUSE")
        assert not pool._in_use_connections
        assert await _around_trip(pool, [("EVAL", "return 3", 0)]) == [3]
    finally:
        await client.aclose()


def test_a_refused_connection_is_a_connection_error(redis_url: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            _round_trip(client.connection_pool, [("EVAL", "return 1", 0)])
        assert client.connection_pool._in_use_connections == set()
    finally:
        client.close()




def test_packing_is_redis_py_s_byte_for_byte() -> None:
    conn = redis.connection.Connection()
    args: list[Any] = [b"\x00\xff", "é", 0, -5, 2**70, 1 / 3, 1e-7, 1e20, float("inf"), -0.0,
                       memoryview(b"mv"), bytearray(b"ba"), "x" * 10_000]
    for commands in ([("EVALSHA", BAD_SHA, 1, *args)], [("EVAL", "return 1", 0), ("WAIT", 1, 5)],
                     [("EVALSHA", BAD_SHA, 0, b"y" * 100_000)] * 3):
        try:  # (an older redis-py, 5.0, refuses a bytearray: then so must _pack)
            expected = b"".join(map(bytes, conn.pack_commands(commands)))
        except redis.exceptions.DataError:
            with pytest.raises(redis.exceptions.DataError):
                _pack(conn, commands)
            continue
        assert expected == b"".join(map(bytes, _pack(conn, commands)))
    with pytest.raises(redis.exceptions.DataError):  # (as redis-py refuses it)
        _pack(conn, [("EVALSHA", BAD_SHA, 0, True)])


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_retried_failure_carries_only_its_own_error(
        redis_url: str, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Every round trip is sent, then its reply lost: after the retries the error raised
    chains only the last loss, not the first round's (which the executor's own first send
    met before the exchange took over, outside that handler)."""
    class Lost(Document):
        name = StringField(indexed=True)

        class Meta:
            collection = "rt_lost_replies"

    conn = quantumorm.create_connection(url=redis_url, name="rt_lost", retries=3)
    query = Lost.objects.using("rt_lost").filter(name="x")
    assert await query.count() == 0  # (the schema read first)
    losses = iter(range(1, 100))
    real, areal = executor._round_trip, executor._around_trip

    def lost(pool: Any, commands: Any, wire: Any = None) -> Any:
        real(pool, commands, wire)
        raise redis.ConnectionError(f"lost reply #{next(losses)}")

    async def alost(pool: Any, commands: Any, wire: Any = None) -> Any:
        await areal(pool, commands, wire)
        raise redis.ConnectionError(f"lost reply #{next(losses)}")

    monkeypatch.setattr(executor, "_round_trip", lost)
    monkeypatch.setattr(executor, "_around_trip", alost)
    try:
        with pytest.raises(quantumorm.BackendConnectionError) as raised:
            if mode == "sync":
                await asyncio.to_thread(query.count_sync)
            else:
                await query.count()
        chain, error = [], raised.value.__cause__ or raised.value.__context__
        while error is not None:
            chain.append(str(error))
            error = error.__cause__ or error.__context__
        assert len(chain) == 1 and chain[0].startswith("lost reply #"), chain
    finally:
        monkeypatch.undo()
        await conn.aclose()
        conn.close()
