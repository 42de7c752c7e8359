"""Run :class:`~.plans.SqlPlan` objects on PostgreSQL through psycopg 3, blocking or asyncio.

The only module of the backend that imports psycopg. What a plan sends is decided once, by
the generator :func:`steps` (statements out, rows in); :class:`SyncPostgresExecutor` and
:class:`AsyncPostgresExecutor` only drive it on a pooled ``psycopg.Connection`` or
``psycopg.AsyncConnection`` (``psycopg_pool``).

Transactions: connections are in autocommit mode and every plan of more than one statement
opens its own transaction: ``BEGIN ISOLATION LEVEL SERIALIZABLE`` for writes (guards read,
then write: SERIALIZABLE makes that a compare-and-set against every concurrent writer), a
read-only REPEATABLE READ snapshot for multi-statement reads; a one-statement read runs alone.
A write plan that fails with a serialization failure or a deadlock was rolled back whole,
so it is run again (a bounded number of times, with jittered backoff): that is how a
PostgreSQL transaction's retry semantics meet the project's.

asyncio: psycopg's async pool belongs to the event loop that opened it, so there is one per
loop, opened on first use in that loop and closed by ``aclose()`` from it or when the loop
shuts down (see :class:`AsyncPostgresExecutor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.errors
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ...errors import (
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    ConfigurationError,
    PermissionDeniedError,
    PoolExhaustedError,
)
from .plans import GroupReply, SqlPlan, Statement

#: runs of a write plan that keeps meeting serialization failures before giving up
ATTEMPTS = 12
#: backoff before the n-th retry: up to BACKOFF * 2**n seconds, jittered
BACKOFF = 0.002
#: what the executor sends, and receives for it
Step = tuple[str, tuple[Any, ...]]
Rows = list[tuple[Any, ...]]
_RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
#: SQLSTATEs of a refused login: invalid_authorization_specification, invalid_password
_AUTHENTICATION = ("28000", "28P01")


def parse_conninfo(url: str) -> dict[str, Any]:
    """The URL's connection parameters (ConfigurationError if libpq cannot read it)."""
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(url))
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"not a valid PostgreSQL URL: {exc}") from None


def steps(plan: SqlPlan) -> Generator[Step, Rows, list[GroupReply]]:
    """The statements of one plan, in order, given the rows of each; returns the replies."""
    if not plan.write and len(plan.groups) == 1 and len(plan.groups[0]) == 1:
        (statement,) = plan.groups[0]
        rows = yield statement.sql, statement.params
        return [GroupReply((rows,))]
    yield ("BEGIN ISOLATION LEVEL SERIALIZABLE" if plan.write
           else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), ()
    # one group alone needs no savepoint: a refusal rolls the whole transaction back
    savepoints = plan.write and len(plan.groups) > 1
    replies = []
    for group in plan.groups:
        reply = yield from _group(group, savepoints)
        replies.append(reply)
        if reply.refused is not None and (plan.atomic or not savepoints):
            yield "ROLLBACK", ()
            return replies
    yield "COMMIT", ()
    return replies


def _group(group: tuple[Statement, ...],
           savepoint: bool) -> Generator[Step, Rows, GroupReply]:
    if savepoint:
        yield "SAVEPOINT qorm_request", ()
    rows: list[Rows] = []
    for statement in group:
        found = yield statement.sql, statement.params
        rows.append(found)
        if statement.guard is not None and bool(found) is (statement.guard == "absent"):
            if savepoint:
                yield "ROLLBACK TO SAVEPOINT qorm_request", ()
                yield "RELEASE SAVEPOINT qorm_request", ()
            return GroupReply(tuple(rows), statement.label)
    if savepoint:
        yield "RELEASE SAVEPOINT qorm_request", ()
    return GroupReply(tuple(rows))


def _translate(exc: Exception) -> Exception:
    """The project's error for a driver error (the driver's error becomes its cause)."""
    if isinstance(exc, PoolTimeout):
        return PoolExhaustedError(f"PostgreSQL: no pooled connection free in time ({exc})")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return BackendTimeoutError(f"PostgreSQL: {exc}")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PermissionDeniedError(f"PostgreSQL: {exc}")
    # (a refused login fails the connection: psycopg raises a bare OperationalError then,
    # carrying the server's SQLSTATE)
    if getattr(exc, "sqlstate", None) in _AUTHENTICATION:
        return AuthenticationError(f"PostgreSQL: {exc}")
    if isinstance(exc, _RETRIED):
        return BackendError(f"PostgreSQL: the transaction met serialization failures "
                            f"{ATTEMPTS} times in a row; nothing was written ({exc})")
    if isinstance(exc, psycopg.OperationalError):
        return BackendConnectionError(f"PostgreSQL: {exc}")
    return BackendError(f"PostgreSQL: {exc}")


def _delay(attempt: int) -> float:
    return random.uniform(0, BACKOFF * 2 ** min(attempt, 6))


class PoolSettings:
    """What both pools are made from: the URL, connection keywords and pool limits."""

    def __init__(self, url: str, connect: dict[str, Any], min_size: int, max_size: int,
                 pool_timeout: float, connect_timeout: float) -> None:
        self.url, self.connect = url, {"autocommit": True, **connect}
        self.min_size, self.max_size = min_size, max_size
        self.pool_timeout, self.connect_timeout = pool_timeout, connect_timeout

    def probe(self) -> None:
        """Connect once before a pool is opened: a pool retries a refused connection
        until its timeout and then only says "timed out"; this raises the real reason at
        once (no such database, authentication failed, server down)."""
        try:
            psycopg.connect(self.url, **self.connect).close()
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    async def aprobe(self) -> None:
        try:
            await (await psycopg.AsyncConnection.connect(self.url, **self.connect)).close()
        except psycopg.Error as exc:
            raise _translate(exc) from exc


class SyncPostgresExecutor:
    def __init__(self, settings: PoolSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._closed = False

    def _get_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise BackendError("the PostgreSQL connection is closed")
            if self._pool is None:
                s = self._settings
                s.probe()
                pool = ConnectionPool(s.url, kwargs=s.connect, min_size=s.min_size,
                                      max_size=s.max_size, timeout=s.pool_timeout,
                                      open=False, name="quantumorm")
                try:
                    pool.open(wait=True, timeout=s.connect_timeout)
                except PoolTimeout as exc:
                    pool.close()
                    raise _translate(exc) from exc
                self._pool = pool
            return self._pool

    def execute(self, plan: SqlPlan) -> list[GroupReply]:
        pool = self._get_pool()
        for attempt in range(ATTEMPTS):
            try:
                with pool.connection() as conn:
                    return _drive(conn, plan)
            except _RETRIED as exc:
                if attempt + 1 == ATTEMPTS:
                    raise _translate(exc) from exc
                time.sleep(_delay(attempt))
            except (psycopg.Error, PoolTimeout) as exc:
                raise _translate(exc) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _drive(conn: psycopg.Connection[Any], plan: SqlPlan) -> list[GroupReply]:
    run = steps(plan)
    try:
        with conn.cursor(binary=True) as cur:
            sql, params = next(run)
            while True:
                cur.execute(sql, params)
                sql, params = run.send(cur.fetchall() if cur.description is not None else [])
    except StopIteration as stop:
        replies: list[GroupReply] = stop.value
        return replies
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        raise


class AsyncPostgresExecutor:
    """The asyncio twin: one psycopg ``AsyncConnectionPool`` per event loop.

    A pool must be closed on its own loop. asyncio has no "loop closed" callback, but a loop
    run by ``asyncio.run()`` (or ``asyncio.Runner``) closes every async generator it started
    before it closes: so each pool comes with a small async generator, started on its loop
    and left waiting, whose ``finally`` closes the pool when the loop shuts down (the
    technique of the Redis backend's ``loops.py``)."""

    def __init__(self, settings: PoolSettings) -> None:
        self._settings = settings
        #: loop -> (its pool, the future of its opening, the generator that closes it)
        self._pools: dict[asyncio.AbstractEventLoop, tuple[
            AsyncConnectionPool, asyncio.Future[None], Any]] = {}
        self._closed = False

    async def _get_pool(self) -> AsyncConnectionPool:
        if self._closed:
            raise BackendError("the PostgreSQL connection is closed")
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None:
            for other in [other for other in self._pools if other.is_closed()]:
                del self._pools[other]
            s = self._settings
            await s.aprobe()
            if loop in self._pools:  # another task of this loop made it meanwhile
                return await self._get_pool()
            pool: AsyncConnectionPool = AsyncConnectionPool(
                s.url, kwargs=s.connect, min_size=s.min_size, max_size=s.max_size,
                timeout=s.pool_timeout, open=False, name="quantumorm")
            closer: Any = self._closer(loop, pool)
            step: Any = closer.__anext__()  # started on this loop, waiting at its yield
            with contextlib.suppress(StopIteration):
                step.send(None)
            # every caller of this loop awaits the one opening
            started: asyncio.Future[None] = asyncio.ensure_future(
                pool.open(wait=True, timeout=s.connect_timeout))
            entry = self._pools[loop] = (pool, started, closer)
        pool, opening, closer = entry
        try:
            await asyncio.shield(opening)
        except PoolTimeout as exc:
            if self._pools.get(loop) is entry:
                await closer.aclose()
            raise _translate(exc) from exc
        return pool

    async def _closer(self, loop: asyncio.AbstractEventLoop,
                      pool: AsyncConnectionPool) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._pools.get(loop, (None,))[0] is pool:
                del self._pools[loop]
            await pool.close()

    async def execute(self, plan: SqlPlan) -> list[GroupReply]:
        pool = await self._get_pool()
        for attempt in range(ATTEMPTS):
            try:
                async with pool.connection() as conn:
                    return await _adrive(conn, plan)
            except _RETRIED as exc:
                if attempt + 1 == ATTEMPTS:
                    raise _translate(exc) from exc
                await asyncio.sleep(_delay(attempt))
            except (psycopg.Error, PoolTimeout) as exc:
                raise _translate(exc) from exc
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close this loop's pool (the pools of other loops close when their loop ends)."""
        entry = self._pools.get(asyncio.get_running_loop())
        if entry is not None:
            pool, opening, closer = entry
            with contextlib.suppress(Exception):  # closing: how opening failed is moot
                await opening
            await closer.aclose()

    def close(self) -> None:
        self._closed = True


async def _adrive(conn: psycopg.AsyncConnection[Any], plan: SqlPlan) -> list[GroupReply]:
    run = steps(plan)
    try:
        async with conn.cursor(binary=True) as cur:
            sql, params = next(run)
            while True:
                await cur.execute(sql, params)
                sql, params = run.send(await cur.fetchall()
                                       if cur.description is not None else [])
    except StopIteration as stop:
        replies: list[GroupReply] = stop.value
        return replies
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise
