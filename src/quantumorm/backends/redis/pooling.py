"""The connection pool of a single-server Redis connection: redis-py's plain
``ConnectionPool``, which lends a free connection at once, and which waits up to
``timeout`` seconds (the ORM's ``pool_timeout``) for one to come back when all
``max_connections`` are lent, then raises ``MaxConnectionsError`` (the ORM's
:class:`~quantumorm.errors.PoolExhaustedError`, see ``translation.py``).

Waiting callers are served in turn: a caller that finds every connection lent queues up, a
release hands its connection straight to the oldest waiter (not back to the free list for
whoever asks first, which was nearly always the releasing caller's next call: a few callers
kept the connections while the others waited out ``pool_timeout``), and a new caller queues
behind the waiters rather than overtaking them. A waiter whose wait runs out at the moment
a connection is handed to it keeps it (both are decided under the pool's lock); one
interrupted or cancelled after a connection was handed to it passes it to the next waiter,
or back to the free list. When nobody waits, a checkout and a release cost what they did.

Why it is written here: redis-py's ``BlockingConnectionPool`` waits, but pays for the wait
on every checkout, also when a connection is free: a ``queue.LifoQueue`` (a lock and a
condition per get and per put), clock reads and wait-time recording, which were about 40%
of a read by id's remaining client cost; and it serves waiters no more in turn than the
plain pool. Here a free connection is taken under the pool's own lock as the plain pool
takes it; the pool queues a caller only when it is exhausted, and a release looks at the
queue only when someone waits.

What it keeps of redis-py's pools (5.0 to 8.x): ``max_connections``; fork safety (a child
process starts with an empty pool and an empty queue: ``_checkpid``, called once
``os.register_at_fork`` has seen a fork, rather than after a ``getpid`` system call per
checkout and per release); the check of a lent connection (a connection that is closed,
or has data waiting, goes through redis-py's own check, which reconnects it or reads its
push notifications); ``disconnect()``, ``close()`` and the rest of the plain pool as they
are. When redis-py's OpenTelemetry metrics are on as the pool is made, or the pool keeps a
client-side cache, or the connections have a credential provider (re-authentication on
release), connections are lent and taken back by redis-py's own ``ConnectionPool``
methods, which do those things; a release then hands the oldest waiter a *turn* (a free
connection, or room for one, kept for it) rather than the connection, and the waiter takes
it through redis-py's method. (A caller already past the queue's check when the queue
formed can still take that connection; the waiter then queues up again at the front.)

:class:`AsyncWaitingConnectionPool` is the same for ``redis.asyncio`` (one per event loop):
a caller that finds it exhausted waits on a future of its own, up to ``timeout``, and a
release hands the connection to the oldest waiter's future, whose task then checks it;
redis-py's blocking asyncio pool takes a condition, a timeout scope and a ``wait_for`` on
every checkout. A free connection is taken and given back here as redis-py's plain asyncio
pool does it, without its lock (nothing runs between a look at the pool and the taking, in
one event loop; while another holder has the lock, redis-py's methods lend, which wait for
it), its metrics and the pool name they are labelled with (a checkout and release cost about
1 µs of CPU here against about 7 µs through redis-py's methods), and with its check of a
lent connection (``ensure_connection``) asked only when the connection is not connected or
has data waiting. When redis-py's metrics are
on as the pool is made, or the connections have a credential provider or an event
dispatcher of the caller's, redis-py's methods lend and take back every connection (its
lock, its cancellation handling, metrics and release listeners as they are), and a waiter's
task records redis-py's metrics of a lent connection.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rx

try:  # (redis-py 7.x and later: OpenTelemetry metrics of its own)
    from redis.observability.recorder import is_enabled as _observing
except ImportError:  # pragma: no cover - older redis-py
    def _observing() -> bool:
        return False

try:  # (what redis-py's asyncio pool records as it lends a connection: see _lend)
    from redis.asyncio.observability.recorder import record_connection_count as _count
    from redis.observability.attributes import ConnectionState, get_pool_name

    _record_count: Callable[..., Awaitable[None]] | None = _count
    _pool_name: Callable[[Any], str] = get_pool_name
    _IDLE, _USED = ConnectionState.IDLE, ConnectionState.USED
except ImportError:  # pragma: no cover - older redis-py
    _record_count = None

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
_ARECONNECT = hasattr(redis.asyncio.Connection, "should_reconnect")
#: the asyncio connection's non-destructive check for pending data or a closed socket
#: (what redis-py's ensure_connection asks; older versions have only a destructive one)
_CAN_READ = hasattr(redis.asyncio.Connection, "can_read")


class _Waiter:
    """A thread waiting for a connection: a lock it holds until a release hands it a
    connection (``connection``; the pool's own checkout) or a turn to take one through
    redis-py's methods (``turn``), and releases then."""

    __slots__ = ("connection", "turn", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.connection: Any = None
        self.turn = False


class WaitingConnectionPool(redis.ConnectionPool):
    """``ConnectionPool`` that waits up to ``timeout`` seconds (None: without end) for a
    connection when all ``max_connections`` are lent, serving waiting callers in turn (see
    the module's docstring)."""

    def __init__(self, max_connections: int = 50, timeout: float | None = 5.0,
                 **connection_kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(max_connections=max_connections, **connection_kwargs)

    def reset(self) -> None:
        # (after a fork, the parent's waiting threads do not exist in the child: a new
        # queue; redis-py calls reset() only when the pool is made and after a fork)
        #: callers waiting for a connection, oldest first (under ``_lock``)
        self._waiters: deque[_Waiter] = deque()
        #: turns given to waiters and not yet taken (redis-py's methods lending): each
        #: keeps one free connection, or room for one, for its waiter
        self._turns = 0
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
        """A free connection, checked; else one made (below ``max_connections``); else,
        after the callers already waiting, the first to come back within ``timeout``
        seconds, or ``MaxConnectionsError``. (The arguments are redis-py 5.0's, which its
        later versions deprecate: ignored.)"""
        if self._forks != _forks:
            self._checkpid()
        if self._quick:
            connection = self._take()
            return self._wait() if connection is None else connection
        connection = self._take_by_redis()
        return self._wait_by_redis() if connection is None else connection

    def _take(self) -> Any:
        """A checked connection, or None if all are lent. (While callers wait, none is
        free: every release hands its connection to the oldest of them.)"""
        with self._lock:
            free = self._available_connections
            if free:
                connection = free.pop()
            elif self._created_connections < self.max_connections and not self._waiters:
                connection = self.make_connection()
            else:
                return None
            self._in_use_connections.add(connection)
        # (_checked's first test, inline: the one call fewer is measurable per checkout)
        try:
            if connection._sock is not None and not connection._parser.can_read(0):
                return connection
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            pass
        except BaseException:
            self.release(connection)
            raise
        return self._checked(connection)

    def _checked(self, connection: Any) -> Any:
        """``connection``, lent, once checked; given back if the check fails."""
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

    def _wait(self) -> Any:
        """Queue up, and take the connection a release hands over."""
        waiter = _Waiter()
        with self._lock:
            self._waiters.append(waiter)
            self._serve()  # (a release may have come between _take and here)
        self._sleep(waiter, None if self.timeout is None else _monotonic() + self.timeout)
        return self._checked(waiter.connection)

    def _take_by_redis(self) -> Any:
        if self._waiters or self._turns:  # (no overtaking: queue up behind them)
            return None
        try:
            return super().get_connection(*SYNC_GET)
        except rx.ConnectionError as exc:
            if _exhausted(exc):
                return None
            raise

    def _wait_by_redis(self) -> Any:
        """Queue up; given a turn, take a connection through redis-py's methods. A caller
        that passed the gate of _take_by_redis before the queue formed may take the one
        kept for the turn: the waiter then queues up again at the front."""
        deadline = None if self.timeout is None else _monotonic() + self.timeout
        again = False
        while True:
            waiter = _Waiter()
            with self._lock:
                if again:
                    self._waiters.appendleft(waiter)
                else:
                    self._waiters.append(waiter)
                self._serve()
            self._sleep(waiter, deadline)
            try:
                connection = super().get_connection(*SYNC_GET)
            except rx.ConnectionError as exc:
                if not _exhausted(exc):
                    self._turn_taken()
                    raise
                again = True
                self._turn_taken()
                continue
            except BaseException:
                self._turn_taken()
                raise
            self._turn_taken()
            return connection

    def _turn_taken(self) -> None:
        with self._lock:
            self._turns -= 1
            self._serve()

    def _sleep(self, waiter: _Waiter, deadline: float | None) -> None:
        """Until a release serves ``waiter``, or ``deadline`` passes: then
        ``MaxConnectionsError``, unless a release served it at that very moment (decided
        under the pool's lock, as the release decided, so nothing is lost nor lent
        twice)."""
        try:
            if deadline is None:
                woken = waiter.wake.acquire()
            else:
                woken = waiter.wake.acquire(True, max(0.0, deadline - _monotonic()))
        except BaseException:  # (interrupted: what it was given goes to the next waiter)
            self._abandon(waiter)
            raise
        if not woken:
            with self._lock:
                if waiter.connection is None and not waiter.turn:
                    self._waiters.remove(waiter)
                    raise _no_connection(self)

    def _abandon(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.connection is not None:
                self._in_use_connections.discard(waiter.connection)
                self._available_connections.append(waiter.connection)
            elif waiter.turn:
                self._turns -= 1
            else:
                self._waiters.remove(waiter)
            self._serve()

    def _serve(self) -> None:
        """Under ``_lock``: hand free connections (or room for new ones) to the waiting
        callers, oldest first: a connection itself on the pool's own checkout, a turn to
        take one when redis-py's methods lend."""
        waiters = self._waiters
        while waiters:
            if self._quick:
                free = self._available_connections
                if free:
                    connection = free.pop()
                elif self._created_connections < self.max_connections:
                    connection = self.make_connection()
                else:
                    return
                self._in_use_connections.add(connection)
                waiter = waiters.popleft()
                waiter.connection = connection
            else:
                room = (len(self._available_connections) + self.max_connections
                        - self._created_connections)
                if room <= self._turns:
                    return
                waiter = waiters.popleft()
                waiter.turn = True
                self._turns += 1
            waiter.wake.release()

    def release(self, connection: Any) -> None:
        """Take a connection back (one marked for reconnect is disconnected first); if
        callers wait, the oldest gets it."""
        if not self._quick:
            super().release(connection)
            if self._waiters:
                with self._lock:
                    self._serve()
            return
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
            if self._waiters:
                self._serve()

    def waiting(self) -> int:
        """Callers waiting for a connection right now (for pool statistics)."""
        return len(self._waiters)


def _no_connection(pool: Any) -> rx.MaxConnectionsError:
    return rx.MaxConnectionsError(f"No connection available: all {pool.max_connections} "
                                  f"connections stayed in use for {pool.timeout} s")


class AsyncWaitingConnectionPool(redis.asyncio.ConnectionPool):
    """redis-py's plain asyncio pool, which waits up to ``timeout`` seconds (None: without
    end) for a connection when all ``max_connections`` are lent, serving waiting callers in
    turn (see the module's docstring)."""

    def __init__(self, max_connections: int = 50, timeout: float | None = 5.0,
                 **connection_kwargs: Any) -> None:
        self.timeout = timeout
        #: the futures of callers waiting for a connection, oldest first; each gets the
        #: connection a release hands over, and whether it was made for it
        self._waiters: deque[asyncio.Future[tuple[Any, bool]]] = deque()
        super().__init__(max_connections=max_connections, **connection_kwargs)
        #: lend and take back here, not through redis-py's methods (see the module's
        #: docstring): not when redis-py's metrics are on as the pool is made, nor with a
        #: credential provider or an event dispatcher of the caller's (re-authentication
        #: and listeners on a release). (Maintenance notifications: pending push
        #: notifications go through redis-py's check, as a connection with data does,
        #: and while their handler holds the pool's lock, redis-py's methods lend.)
        kwargs = self.connection_kwargs
        self._quick = (not _observing() and kwargs.get("credential_provider") is None
                       and kwargs.get("event_dispatcher") is None)

    async def get_connection(self, command_name: Any = None, *keys: Any,
                             **options: Any) -> Any:
        """A connection from redis-py's pool; else, after the callers already waiting, the
        first to come back within ``timeout`` seconds, or ``MaxConnectionsError``."""
        if self._quick and not self._lock.locked():
            # redis-py's checkout without its lock (a checkout here never awaits between
            # its look at the pool and its taking: nothing else runs in between, and no
            # release of this pool holds the connection outside both lists; while
            # another holder has the lock, redis-py's checkout waits for it below), its
            # metrics and its pool name (both off), nor its connect() of a connected
            # connection
            if self._waiters:  # (no overtaking: queue up behind them)
                return await self._wait()
            free = self._available_connections
            if free:
                connection = free.pop()
            elif len(self._in_use_connections) < self.max_connections:
                connection = self.make_connection()  # type: ignore[no-untyped-call]
            else:
                return await self._wait()
            self._in_use_connections.add(connection)
            return await self._checked(connection)
        if not self._waiters:  # (no overtaking: queue up behind them)
            try:
                return await super().get_connection(*ASYNC_GET)  # type: ignore[no-untyped-call]
            except rx.ConnectionError as exc:
                if not _exhausted(exc):
                    raise
        return await self._wait()

    async def _wait(self) -> Any:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[Any, bool]] = loop.create_future()
        self._waiters.append(waiter)
        self._serve()  # (a release may have come since the attempt)
        timer = None if self.timeout is None or waiter.done() else loop.call_later(
            self.timeout, self._expire, waiter)
        try:
            connection, made = await waiter
        except asyncio.CancelledError:
            # cancelled while waiting, or after a release handed it a connection but
            # before it ran: that connection goes to the next waiter, or back to the pool
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result()[0])
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if self._quick:
            return await self._checked(connection)
        return await self._lend(connection, made)

    def _expire(self, waiter: asyncio.Future[tuple[Any, bool]]) -> None:
        self._serve()  # (one more look: a slot of a connection dropped unreleased)
        if not waiter.done():
            self._waiters.remove(waiter)
            waiter.set_exception(_no_connection(self))

    async def _lend(self, connection: Any, made: bool) -> Any:
        """What redis-py's ``get_connection`` does after it takes a connection: its
        metrics (a connection lent), and the check of the connection."""
        try:
            if _record_count is not None:
                name = _pool_name(self)
                if not made:
                    await _record_count(pool_name=name, connection_state=_IDLE, counter=-1)
                await _record_count(pool_name=name, connection_state=_USED, counter=1)
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def _checked(self, connection: Any) -> Any:
        """``connection``, lent, once checked as redis-py's ``ensure_connection`` checks it
        (given back if the check fails). The common case, a connected connection with
        nothing to read, is what that check concludes, without its ``connect()`` (a retry
        object's call with two lambdas, to learn that it is connected)."""
        try:
            if _CAN_READ and connection.is_connected:
                try:
                    if not await connection.can_read():
                        return connection
                except (rx.ConnectionError, rx.TimeoutError, OSError):
                    pass  # (closed: redis-py's check below reconnects it)
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    def _serve(self) -> None:
        """Hand free connections (or new ones, below ``max_connections``) to the waiting
        callers, oldest first. (Synchronous: no other task runs in between.)"""
        waiters = self._waiters
        # (not while a release holds redis-py's lock across its disconnect of the
        # connection: it is neither lent nor free then, and that release serves after)
        while waiters and not self._lock.locked() and self.can_get_connection():
            waiter = waiters.popleft()
            if waiter.done():  # (cancelled: its task removes it when it runs)
                continue
            made = not self._available_connections
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]
            waiter.set_result((connection, made))

    def _give_back(self, connection: Any) -> None:
        """A connection handed to a caller that is gone: to the next waiter, else free
        (as it was when the release handed it over: its metrics say so already)."""
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)
        self._serve()

    async def release(self, connection: Any) -> None:
        """redis-py's release; then, if callers wait, the oldest gets the connection."""
        if self._quick and not self._lock.locked():
            # redis-py's release without its lock, metrics and release event (no listener
            # is registered: no credential provider, no dispatcher of the caller's); a
            # connection marked for reconnect stays lent (so not counted free, and not
            # taken) while it is disconnected, and is free afterwards even if that fails
            if _ARECONNECT and connection.should_reconnect():
                try:
                    await connection.disconnect()
                except BaseException:
                    force = getattr(connection, "_force_disconnect", None)
                    if force is not None:  # (not known to be closed: reuse reconnects)
                        force()
                    raise
                finally:
                    self._in_use_connections.remove(connection)
                    self._available_connections.append(connection)
                    if self._waiters:
                        self._serve()
                return
            self._in_use_connections.remove(connection)  # (KeyError: not lent here)
            self._available_connections.append(connection)
            if self._waiters:
                self._serve()
            return
        try:
            await super().release(connection)
        finally:
            if self._waiters:
                self._serve()

    def waiting(self) -> int:
        """Callers waiting for a connection right now (for pool statistics)."""
        return sum(1 for waiter in list(self._waiters) if not waiter.done())


__all__ = ["ASYNC_GET", "SYNC_GET", "AsyncWaitingConnectionPool", "WaitingConnectionPool"]
