"""The connection pool of a single-server Redis connection: redis-py's plain
``ConnectionPool``, which lends a free connection at once, and which waits up to
``timeout`` seconds (the ORM's ``pool_timeout``) for one to come back when all
``max_connections`` are lent, then raises ``MaxConnectionsError`` (the ORM's
:class:`~quantumorm.errors.PoolExhaustedError`, see ``translation.py``).

Why it is written here: redis-py's ``BlockingConnectionPool`` waits the same way, but pays
for the wait on every checkout, also when a connection is free: a ``queue.LifoQueue`` (a
lock and a condition per get and per put), clock reads and wait-time recording, which were
about 40% of a read by id's remaining client cost. Here a free connection is taken under
the pool's own lock as the plain pool takes it; the pool waits on a condition only when it
is exhausted, and a release notifies only when someone waits.

What it keeps of redis-py's pools (5.0 to 8.x): ``max_connections``; fork safety (a child
process starts with an empty pool: ``_checkpid``, called once ``os.register_at_fork`` has
seen a fork, rather than after a ``getpid`` system call per checkout and per release); the
check of a lent connection (a connection that is closed, or has data waiting, goes through
redis-py's own check, which reconnects it or reads its push notifications);
``disconnect()``, ``close()`` and the rest of the plain pool as they are. When redis-py's
OpenTelemetry metrics are on as the pool is made, or the pool keeps a client-side cache,
or the connections have a credential provider (re-authentication on release),
connections are lent and taken back by redis-py's own ``ConnectionPool`` methods, which
do those things; the pool only adds the wait.

:class:`AsyncWaitingConnectionPool` is the same for ``redis.asyncio`` (one per event loop):
redis-py's plain asyncio pool lends and takes back every connection (its lock, its
cancellation handling and metrics as they are), and a caller that finds it exhausted
waits on a future of its own until a release, up to ``timeout``; redis-py's blocking
asyncio pool takes a condition, a timeout scope and a ``wait_for`` on every checkout.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rx

try:  # (redis-py 7.x and later: OpenTelemetry metrics of its own)
    from redis.observability.recorder import is_enabled as _observing
except ImportError:  # pragma: no cover - older redis-py
    def _observing() -> bool:
        return False

_monotonic = time.monotonic

#: forks of this process so far, counted in each child (``os.register_at_fork``): a pool
#: compares its pid (``_checkpid``) only when it was set up before the last fork, where
#: redis-py's pools ask the system for the pid (a system call) twice per checkout
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # (no fork, and no hook, on Windows)
    os.register_at_fork(after_in_child=_forked)

#: what redis-py's plain pool raises when all its connections are lent (5.0 raises a plain
#: ConnectionError with this text, later versions MaxConnectionsError)
_TOO_MANY = "Too many connections"


def _get_args(method: Callable[..., Any]) -> tuple[str, ...]:
    """What redis-py's ``get_connection`` takes: nothing since redis-py 5.3 (its arguments
    are deprecated, with a warning per call), a command name before (it was required)."""
    parameter = inspect.signature(method).parameters.get("command_name")
    required = parameter is not None and parameter.default is inspect.Parameter.empty
    return ("EVALSHA",) if required else ()


#: the arguments to give redis-py's blocking and asyncio ``get_connection``
SYNC_GET = _get_args(redis.ConnectionPool.get_connection)
ASYNC_GET = _get_args(redis.asyncio.ConnectionPool.get_connection)


def _exhausted(exc: BaseException) -> bool:
    return isinstance(exc, rx.MaxConnectionsError) or (
        isinstance(exc, rx.ConnectionError) and str(exc) == _TOO_MANY)


def _ensure_v5(pool: Any, connection: Any) -> None:
    """redis-py 5.0's check of a lent connection (later versions name it
    ``ensure_connection``)."""
    connection.connect()
    try:
        if connection.can_read():
            raise rx.ConnectionError("Connection has data")
    except (rx.ConnectionError, OSError):
        connection.disconnect()
        connection.connect()
        if connection.can_read():
            raise rx.ConnectionError("Connection not ready") from None


_ensure: Callable[[Any, Any], None] = getattr(redis.ConnectionPool, "ensure_connection",
                                              _ensure_v5)
_RECONNECT = hasattr(redis.Connection, "should_reconnect")  # (not in redis-py 5.0)


class WaitingConnectionPool(redis.ConnectionPool):
    """``ConnectionPool`` that waits up to ``timeout`` seconds (None: without end) for a
    connection when all ``max_connections`` are lent (see the module's docstring)."""

    def __init__(self, max_connections: int = 50, timeout: float | None = 5.0,
                 **connection_kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(max_connections=max_connections, **connection_kwargs)

    def reset(self) -> None:
        # (a new condition after a fork too: a thread of the parent may have held its lock)
        self._freed = threading.Condition(threading.Lock())
        #: callers waiting for a connection, and releases that woke one (see _wait)
        self._waiting = 0
        self._released = 0
        kwargs = self.__dict__.get("_connection_kwargs") or self.__dict__.get(
            "connection_kwargs") or {}
        #: lend and take back here, not through redis-py's methods (see the docstring)
        self._quick = (getattr(self, "cache", None) is None and not _observing()
                       and kwargs.get("credential_provider") is None)
        super().reset()  # (it sets ``pid``, which _checkpid compares without a lock, last)
        #: the forks before this pool was set up (see _forks): after super().reset(), so
        #: that another thread of a child process skips _checkpid only once it is done
        self._forks = _forks

    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """A free connection, checked; else one made (below ``max_connections``); else the
        first to come back within ``timeout`` seconds, or ``MaxConnectionsError``. (The
        arguments are redis-py 5.0's, which its later versions deprecate: ignored.)"""
        if self._forks != _forks:
            self._checkpid()
        take = self._take if self._quick else self._take_by_redis
        connection = take()
        return self._wait(take) if connection is None else connection

    def _take(self) -> Any:
        """A checked connection, or None if all are lent."""
        with self._lock:
            free = self._available_connections
            if free:
                connection = free.pop()
            elif self._created_connections < self.max_connections:
                connection = self.make_connection()
            else:
                return None
            self._in_use_connections.add(connection)
        try:
            try:
                # the common case, a connected connection with nothing to read (its
                # parser's poll of the socket), is what redis-py's check concludes after
                # its own calls
                if connection._sock is not None and not connection._parser.can_read(0):
                    return connection
            except (rx.ConnectionError, rx.TimeoutError, OSError):
                pass  # (a closed socket: redis-py's check below reconnects it)
            _ensure(self, connection)
        except BaseException:
            self.release(connection)
            raise
        return connection

    def _take_by_redis(self) -> Any:
        try:
            return super().get_connection(*SYNC_GET)
        except rx.ConnectionError as exc:
            if _exhausted(exc):
                return None
            raise

    def _wait(self, take: Callable[[], Any]) -> Any:
        """Wait for a connection to come back (or a slot to come free). A release counts
        in ``_released`` under the condition's lock before it notifies: a caller that saw
        the pool exhausted waits only if no release came since it looked, so no wake-up
        is lost between its attempt and its wait."""
        deadline = None if self.timeout is None else _monotonic() + self.timeout
        freed = self._freed
        with freed:
            self._waiting += 1
        try:
            while True:
                seen = self._released
                connection = take()
                if connection is not None:
                    return connection
                with freed:
                    if self._released != seen:
                        continue
                    left = None if deadline is None else deadline - _monotonic()
                    if left is not None and left <= 0:
                        raise _no_connection(self)
                    freed.wait(left)
        finally:
            with freed:
                self._waiting -= 1

    def release(self, connection: Any) -> None:
        """Take a connection back (one marked for reconnect is disconnected first), and
        wake a caller waiting for one, if any."""
        if not self._quick:
            super().release(connection)
        else:
            if self._forks != _forks:
                self._checkpid()
            with self._lock:
                try:
                    self._in_use_connections.remove(connection)
                except KeyError:
                    return  # (not lent by this pool: lent before a fork, or twice released)
                if connection.pid == self.pid:
                    if _RECONNECT and connection.should_reconnect():
                        connection.disconnect()
                    self._available_connections.append(connection)
                else:  # (made in another process: its socket is not this process's)
                    connection.disconnect()
                    self._created_connections -= 1
        if self._waiting:
            with self._freed:
                self._released += 1
                self._freed.notify()

    def waiting(self) -> int:
        """Callers waiting for a connection right now (for pool statistics)."""
        return self._waiting


def _no_connection(pool: Any) -> rx.MaxConnectionsError:
    return rx.MaxConnectionsError(f"No connection available: all {pool.max_connections} "
                                  f"connections stayed in use for {pool.timeout} s")


class AsyncWaitingConnectionPool(redis.asyncio.ConnectionPool):
    """redis-py's plain asyncio pool, which waits up to ``timeout`` seconds (None: without
    end) for a connection when all ``max_connections`` are lent."""

    def __init__(self, max_connections: int = 50, timeout: float | None = 5.0,
                 **connection_kwargs: Any) -> None:
        self.timeout = timeout
        #: the futures of callers waiting for a connection, oldest first
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: releases so far: a caller that saw the pool exhausted waits only if none came
        #: since it looked
        self._released = 0
        super().__init__(max_connections=max_connections, **connection_kwargs)

    async def get_connection(self, command_name: Any = None, *keys: Any,
                             **options: Any) -> Any:
        """A connection from redis-py's pool, or the first to come back within
        ``timeout`` seconds, or ``MaxConnectionsError``. A caller that saw the pool
        exhausted waits only if no release came since it looked (``_released``), so no
        wake-up is lost between its attempt and its wait."""
        seen, deadline = self._released, None
        while True:
            try:
                return await super().get_connection(*ASYNC_GET)  # type: ignore[no-untyped-call]
            except rx.ConnectionError as exc:
                if not _exhausted(exc):
                    raise
            if self._released == seen:
                loop = asyncio.get_running_loop()
                if deadline is None and self.timeout is not None:
                    deadline = loop.time() + self.timeout
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    raise _no_connection(self)
                await self._released_within(left)
            seen = self._released

    async def _released_within(self, left: float | None) -> None:
        """Wait for a release's wake-up, or ``left`` seconds (None: without end)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # (not wait_for: on Python 3.10 and 3.11 it returns a waiter's result that came
            # with the caller's cancellation, swallowing the cancel; wait() leaves the
            # waiter alone and raises the cancellation. Past the deadline: one more look,
            # then the error)
            await asyncio.wait((waiter,), timeout=left)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # (woken, then cancelled: the next waiter's turn)
            else:
                waiter.cancel()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def release(self, connection: Any) -> None:
        """redis-py's release, then the oldest waiting caller (if any) is woken."""
        try:
            await super().release(connection)
        finally:
            self._released += 1
            if self._waiters:
                self._wake()

    def waiting(self) -> int:
        """Callers waiting for a connection right now (for pool statistics)."""
        return sum(1 for waiter in list(self._waiters) if not waiter.done())


__all__ = ["ASYNC_GET", "SYNC_GET", "AsyncWaitingConnectionPool", "WaitingConnectionPool"]
