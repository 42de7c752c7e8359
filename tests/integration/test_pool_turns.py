"""The single-server pools (``backends/redis/pooling.py``) serve waiting callers in turn,
against a real server: a released connection goes to the oldest waiter, never to a caller
that comes later (the one that released it included); a waiter that times out at the moment
a connection is handed to it keeps it; one that is interrupted or cancelled after a
connection was handed to it passes it on, or back to the pool; nothing is lost or lent
twice across disconnect, close and fork. Threads on the blocking pool (on its own checkout
and with redis-py's methods lending), tasks on the asyncio pool. Counts only, no timings:
the pool's connections are counted after each test."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pool_helpers import ping, pool_maker

from quantumorm.backends.redis import pooling
from quantumorm.backends.redis.pooling import AsyncWaitingConnectionPool, WaitingConnectionPool


@pytest.fixture(params=["quick", "by-redis"])
def make_pool(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Any]:
    yield from pool_maker(redis_url, request.param == "quick", 1, 30)


_ping = ping


def _until(check: Any) -> None:
    for _ in range(4000):  # (until another thread gets there; no time limit asserted)
        if check():
            return
        time.sleep(0.005)
    raise AssertionError("never happened")


def _settled(pool: Any, created: int) -> None:
    """Every connection back and free, none lent, nobody waiting."""
    assert not pool._in_use_connections and pool.waiting() == 0
    assert len(pool._available_connections) == pool._created_connections == created
    assert getattr(pool, "_turns", 0) == 0


# -- threads ----------------------------------------------------------------------------------


def test_waiting_threads_are_served_in_turn_and_the_releaser_comes_last(
        make_pool: Any) -> None:
    """Five threads queue up one after the other; the holder releases and at once asks
    again: the five get the connection in the order they came, the holder after them."""
    pool = make_pool(max_connections=1)
    held = pool.get_connection()
    order: list[Any] = []

    def waiter(i: int) -> None:
        conn = pool.get_connection()
        order.append(i)
        pool.release(conn)

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        _until(lambda i=i: pool.waiting() == i + 1)
    pool.release(held)
    again = pool.get_connection()  # (queued behind the five)
    order.append("holder")
    for thread in threads:
        thread.join(timeout=60)
    assert order == [0, 1, 2, 3, 4, "holder"]
    assert again is held and _ping(again) == b"PONG"
    pool.release(again)
    _settled(pool, 1)


class _Recording:
    """A waiter's wake-up lock that records what each wait returned (True: woken)."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.results = lock, []  # type: ignore[var-annotated]

    def acquire(self, *args: Any) -> bool:
        result = self.lock.acquire(*args)
        self.results.append(result)
        return bool(result)

    def release(self) -> None:
        self.lock.release()


def test_a_wait_that_ends_as_a_connection_is_handed_over_keeps_it(make_pool: Any) -> None:
    """The waiter's wait runs out while the releasing thread holds the pool's lock and then
    hands it the connection: the waiter takes it (no error, nothing lost nor lent twice)."""
    pool = make_pool(max_connections=1, timeout=5)
    held = pool.get_connection()
    waiter = pooling._Waiter()
    waiter.wake = _Recording(waiter.wake)  # type: ignore[assignment]
    with pool._lock:
        pool._waiters.append(waiter)
    outcome: list[Any] = []

    def sleep() -> None:
        try:
            pool._sleep(waiter, time.monotonic() + 0.05)
            outcome.append("served")
        except BaseException as exc:
            outcome.append(exc)

    with pool._lock:  # (the waiter, once its wait ran out, waits here for the lock)
        thread = threading.Thread(target=sleep)
        thread.start()
        _until(lambda: waiter.wake.results)  # type: ignore[attr-defined]
        pool.release(held)  # (the pool's lock is re-entrant: handed over under it)
    thread.join(timeout=60)
    assert waiter.wake.results == [False]  # type: ignore[attr-defined]
    assert outcome == ["served"]
    if pool._quick:
        assert waiter.connection is held and held in pool._in_use_connections
        conn = pool._checked(waiter.connection)
    else:  # (a turn, and the connection kept free for it)
        assert waiter.turn and pool._turns == 1
        conn = redis.ConnectionPool.get_connection(pool)
        pool._turn_taken()
    assert conn is held and _ping(conn) == b"PONG" and pool.waiting() == 0
    pool.release(conn)
    _settled(pool, 1)


def test_an_interrupted_waiter_passes_what_it_was_given_on(make_pool: Any) -> None:
    """A waiter served, then interrupted before it took the connection (or its turn): the
    next waiter gets it; with nobody left, it is free again."""
    pool = make_pool(max_connections=1)
    held = pool.get_connection()
    first, second = pooling._Waiter(), pooling._Waiter()
    with pool._lock:
        pool._waiters.extend([first, second])
    pool.release(held)
    assert (first.connection is held) if pool._quick else first.turn
    assert second.connection is None and not second.turn
    pool._abandon(first)
    assert (second.connection is held) if pool._quick else second.turn
    pool._abandon(second)
    _settled(pool, 1)
    assert pool.get_connection() is held
    pool.release(held)


def test_a_waiter_whose_turn_was_taken_queues_up_again_at_the_front(redis_url: str) -> None:
    """redis-py's methods lending: a release gives the oldest waiter a turn, and a caller
    that was already past the queue's check takes the connection first. That waiter finds
    the pool exhausted and queues up again ahead of the later one, which still comes
    second."""
    pool = WaitingConnectionPool.from_url(redis_url, max_connections=1, timeout=30)
    pool._quick = False
    try:
        held = pool.get_connection()
        order: list[str] = []

        def waiter(name: str) -> None:
            conn = pool.get_connection()
            order.append(name)
            pool.release(conn)

        first = threading.Thread(target=waiter, args=("first",))
        first.start()
        _until(lambda: pool.waiting() == 1)
        second = threading.Thread(target=waiter, args=("second",))
        second.start()
        _until(lambda: pool.waiting() == 2)
        with pool._lock:  # (the first waiter, given its turn, waits here for the lock)
            pool.release(held)
            assert pool._turns == 1 and pool.waiting() == 1
            stolen = redis.ConnectionPool.get_connection(pool)  # (past the queue's check)
        assert stolen is held
        _until(lambda: pool.waiting() == 2 and pool._turns == 0)  # (queued up again)
        pool.release(stolen)
        first.join(timeout=60)
        second.join(timeout=60)
        assert order == ["first", "second"]
        _settled(pool, 1)
    finally:
        pool.disconnect()


def test_many_threads_with_short_timeouts_lose_nothing(make_pool: Any) -> None:
    """Waits that run out while connections are handed over, many times: every call either
    got a connection no other caller held, or MaxConnectionsError; all come back."""
    pool = make_pool(max_connections=2, timeout=0.001)
    lock = threading.Lock()
    lent: set[int] = set()
    counts = {"got": 0, "refused": 0}
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(150):
                try:
                    conn = pool.get_connection()
                except redis.exceptions.MaxConnectionsError:
                    with lock:
                        counts["refused"] += 1
                    continue
                with lock:
                    assert id(conn) not in lent
                    lent.add(id(conn))
                    counts["got"] += 1
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
    assert errors == [] and counts["got"] + counts["refused"] == 8 * 150
    assert counts["got"] > 0
    _settled(pool, pool._created_connections)
    assert 1 <= pool._created_connections <= 2


@pytest.mark.parametrize("how", ["disconnect", "close"])
def test_a_waiter_is_served_after_the_pool_is_disconnected(make_pool: Any, how: str) -> None:
    pool = make_pool(max_connections=1)
    held = pool.get_connection()
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(pool.get_connection()))
    thread.start()
    _until(lambda: pool.waiting() == 1)
    getattr(pool, how)()
    assert held._sock is None
    pool.release(held)
    thread.join(timeout=60)
    assert got == [held] and _ping(held) == b"PONG"  # (reconnected as it was lent)
    pool.release(held)
    _settled(pool, 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_a_thread_waits_starts_with_an_empty_queue(
        make_pool: Any) -> None:
    pool = make_pool(max_connections=1)
    held = pool.get_connection()
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(pool.get_connection()))
    thread.start()
    _until(lambda: pool.waiting() == 1)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        status = b"fail"
        try:
            mine = pool.get_connection()  # (the parent's waiter is not this process's)
            if mine is not held and _ping(mine) == b"PONG" and pool.waiting() == 0:
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
    pool.release(held)  # the parent's waiter still gets it
    thread.join(timeout=60)
    assert got == [held] and _ping(held) == b"PONG"
    pool.release(held)
    _settled(pool, 1)


# -- asyncio tasks ----------------------------------------------------------------------------


async def _aping(conn: Any) -> Any:
    await conn.send_command("PING")
    return await conn.read_response()


async def _until_waiting(pool: AsyncWaitingConnectionPool, count: int) -> None:
    for _ in range(4000):  # (no time limit asserted)
        if pool.waiting() == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never {count} waiting")


def _asettled(pool: AsyncWaitingConnectionPool, created: int) -> None:
    assert not pool._in_use_connections and pool.waiting() == 0 and not pool._waiters
    assert len(pool._available_connections) == created


@pytest.fixture
async def apool(redis_url: str) -> Any:
    made: list[AsyncWaitingConnectionPool] = []

    def make(max_connections: int = 1, timeout: float | None = 30) -> Any:
        made.append(AsyncWaitingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=timeout))
        return made[-1]

    yield make
    for pool in made:
        await pool.disconnect()


async def test_async_waiting_tasks_are_served_in_turn_and_the_releaser_comes_last(
        apool: Any) -> None:
    pool = apool(max_connections=1)
    held = await pool.get_connection()
    order: list[Any] = []

    async def waiter(i: int) -> None:
        conn = await pool.get_connection()
        order.append(i)
        await asyncio.sleep(0)  # (held across a switch, as a call holds it)
        await pool.release(conn)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.ensure_future(waiter(i)))
        await _until_waiting(pool, i + 1)
    await pool.release(held)
    again = await pool.get_connection()
    order.append("holder")
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, "holder"]
    assert again is held and await _aping(again) == b"PONG"
    await pool.release(again)
    _asettled(pool, 1)


async def test_async_a_task_cancelled_while_waiting_leaves_the_queue(apool: Any) -> None:
    pool = apool(max_connections=1)
    held = await pool.get_connection()
    tasks = []
    for i in range(3):
        tasks.append(asyncio.ensure_future(pool.get_connection()))
        await _until_waiting(pool, i + 1)
    tasks[1].cancel()
    await asyncio.wait([tasks[1]])
    assert tasks[1].cancelled() and pool.waiting() == 2
    await pool.release(held)
    assert await tasks[0] is held
    await pool.release(held)
    assert await tasks[2] is held
    await pool.release(held)
    _asettled(pool, 1)


async def test_async_a_task_cancelled_after_the_hand_over_gives_the_connection_back(
        apool: Any) -> None:
    """The release hands the connection to the waiting task's future; the task is cancelled
    before it runs: it raises CancelledError, and the connection is free again (with
    nobody else waiting), lent to the next caller."""
    pool = apool(max_connections=1)
    held = await pool.get_connection()
    task = asyncio.ensure_future(pool.get_connection())
    await _until_waiting(pool, 1)
    await pool.release(held)
    assert pool.waiting() == 0 and held in pool._in_use_connections  # (handed over)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    _asettled(pool, 1)
    assert await pool.get_connection() is held
    await pool.release(held)


async def test_async_a_wait_that_runs_out_as_the_connection_is_handed_over_keeps_it(
        apool: Any) -> None:
    pool = apool(max_connections=1, timeout=30)
    held = await pool.get_connection()
    task = asyncio.ensure_future(pool.get_connection())
    await _until_waiting(pool, 1)
    (future,) = pool._waiters
    await pool.release(held)
    pool._expire(future)  # (its timer fires before the task runs: too late, served)
    assert await task is held
    await pool.release(held)
    _asettled(pool, 1)


async def test_async_a_wait_that_runs_out_raises_and_leaves_the_queue(apool: Any) -> None:
    pool = apool(max_connections=1, timeout=0.05)
    held = await pool.get_connection()
    with pytest.raises(redis.exceptions.MaxConnectionsError):
        await pool.get_connection()
    assert not pool._waiters
    await pool.release(held)
    _asettled(pool, 1)


async def test_async_a_waiter_is_served_after_the_pool_is_disconnected(apool: Any) -> None:
    pool = apool(max_connections=1)
    held = await pool.get_connection()
    task = asyncio.ensure_future(pool.get_connection())
    await _until_waiting(pool, 1)
    await pool.disconnect()
    await pool.release(held)
    assert await task is held and await _aping(held) == b"PONG"
    await pool.release(held)
    _asettled(pool, 1)


async def test_async_cancellations_under_load_leak_no_connection(apool: Any) -> None:
    """100 tasks on 5 connections, a fifth of the calls cancelled at random points (waiting,
    just handed a connection, or using it): afterwards every connection is back and free."""
    pool = apool(max_connections=5)
    rng = random.Random(7)
    done = {"ok": 0, "cancelled": 0}

    async def call() -> None:
        conn = await pool.get_connection()
        try:
            await conn.send_command("PING")
            assert await conn.read_response() == b"PONG"
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def worker() -> None:
        for _ in range(30):
            one = asyncio.ensure_future(call())
            if rng.random() < 0.2:
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)
                one.cancel()
            try:
                await one
                done["ok"] += 1
            except asyncio.CancelledError:
                done["cancelled"] += 1

    await asyncio.gather(*(worker() for _ in range(100)))
    assert done["ok"] + done["cancelled"] == 3000 and done["cancelled"] > 0
    assert pool.waiting() == 0 and not pool._in_use_connections
    assert 1 <= len(pool._available_connections) <= 5
    conns = [await pool.get_connection() for _ in range(5)]  # all five still to be had
    assert len({id(c) for c in conns}) == 5
    for conn in conns:
        assert await _aping(conn) == b"PONG"
        await pool.release(conn)
    _asettled(pool, 5)


async def test_async_100_tasks_on_5_connections_never_wait_out_a_generous_timeout(
        apool: Any) -> None:
    """Each of 100 tasks makes 300 calls through a pool of 5 with a pool_timeout of 1 s, far
    above the wait of a call served in turn (about 20 calls' time): none fails. (A pool
    that lends to whoever asks first lets a few tasks keep the connections: the others
    waited the whole timeout, 75-105 of these calls failing.)"""
    pool = apool(max_connections=5, timeout=1.0)
    failed = 0
    served = 0

    async def worker() -> None:
        nonlocal failed, served
        for _ in range(300):
            try:
                conn = await pool.get_connection()
            except redis.exceptions.MaxConnectionsError:
                failed += 1
                continue
            try:
                assert await _aping(conn) == b"PONG"
                served += 1
            finally:
                await pool.release(conn)

    await asyncio.gather(*(worker() for _ in range(100)))
    assert (failed, served) == (0, 30000)
    _asettled(pool, 5)
