"""Run :class:`~.plans.SqlPlan` objects on PostgreSQL through psycopg 3, blocking or asyncio.

The only module of the backend that imports psycopg. What a plan sends is decided once, by
the generator :func:`steps` (batches of statements out, their rows in; a batch is one round
trip, pipelined); :class:`SyncPostgresExecutor` and :class:`AsyncPostgresExecutor` only drive
it on a pooled ``psycopg.Connection`` or ``psycopg.AsyncConnection`` (``psycopg_pool``).
A write costs two round trips however many requests and guards it holds (the statements,
then COMMIT); only after a refused request of a several-request write are the requests run
again one by one, each in its own savepoint.

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

from ... import logs
from ...engine import observe
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

#: runs of a write plan that keeps meeting serialization failures before giving up. Writers
#: of one row fail each other: of N at once, one commits per round, so the last of them
#: needs N rounds (the engine's atomic operations allow 100 conflicts likewise)
ATTEMPTS = 100
#: backoff before the n-th retry: up to BACKOFF * 2**min(n, 5) seconds, jittered
BACKOFF = 0.001
#: what the executor sends in one round trip: statements (SQL, parameters)
Batch = list[Statement]
Rows = list[tuple[Any, ...]]
#: what it gets back: the rows of each statement that ran, and the error that stopped the
#: batch (the statements after a failed one do not run)
Outcome = tuple[list[Rows], "psycopg.Error | None"]
_RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
#: what re-runs a plan: the above, and a unique index violation no guard foresaw, which only
#: a concurrent writer can cause (PostgreSQL usually reports that as a serialization
#: failure; the next run's guards see the other row and refuse with the typed error). It
#: is raised only when no guard of the request refused (a statement after a refusing guard
#: may well fail: that is the refusal, not an error).
_RERUN = (*_RETRIED, psycopg.errors.UniqueViolation)
#: SQLSTATEs of a refused login: invalid_authorization_specification, invalid_password
_AUTHENTICATION = ("28000", "28P01")


def parse_conninfo(url: str) -> dict[str, Any]:
    """The URL's connection parameters (ConfigurationError if libpq cannot read it)."""
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(url))
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"not a valid PostgreSQL URL: {exc}") from None


def steps(plan: SqlPlan) -> Generator[Batch, Outcome, list[GroupReply]]:
    """The batches of statements of one plan, given the outcome of each; returns the replies.

    Each batch goes in one round trip (psycopg's pipeline mode). Statements are sent
    together, guards included: the statements after a guard that fails run too, and are
    then undone by rolling back (the whole transaction, or the group's savepoint), so a
    write costs two round trips (the statements, then COMMIT) however many guards and
    requests it has. A statement that fails after a failed guard is part of that refusal,
    not an error."""
    if not plan.groups:
        return []
    guarded = any(s.guard is not None for group in plan.groups for s in group)
    if not plan.write and len(plan.groups) == 1 and len(plan.groups[0]) == 1:
        (statement,) = plan.groups[0]
        results, error = yield [statement]
        if error is not None:
            raise error
        return [GroupReply((results[0],))]
    begin = _BEGIN_WRITE if plan.write else _BEGIN_READ
    if not guarded:
        # nothing to decide on the way: the whole transaction in one round trip
        statements = [s for group in plan.groups for s in group]
        results, error = yield [begin, *statements, _COMMIT]
        if error is not None:
            raise error
        done, start = [], 1
        for group in plan.groups:
            done.append(GroupReply(tuple(results[start:start + len(group)])))
            start += len(group)
        return done
    # First, optimistically, every group at once: when no guard refuses (the common case,
    # a bulk write included) that is two round trips in all, and every statement ran as it
    # would have one by one.
    everything = [begin, *(s for group in plan.groups for s in group)]
    results, error = yield everything
    if error is not None and (isinstance(error, _RETRIED) or not results):
        raise error
    replies: list[GroupReply] = []
    start = 1
    for group in plan.groups:
        reply = _reply(group, results[start:start + len(group)])
        if reply is None:
            assert error is not None
            raise error
        replies.append(reply)
        start += len(group)
        if reply.refused is not None:
            break
    if replies[-1].refused is None:
        _, error = yield [_COMMIT]
        if error is not None:
            raise error
        return replies
    _, error = yield [_ROLLBACK]
    if plan.atomic or len(plan.groups) == 1:
        return replies  # (the first refusal: what ran before it ran as it would alone)
    # A group was refused: its statements after the failing guard ran, and the groups
    # after it saw them. Again, each group in its own savepoint, a refused one undone alone.
    return (yield from _one_by_one(plan, begin))


def _one_by_one(plan: SqlPlan, begin: Statement) -> Generator[
        Batch, Outcome, list[GroupReply]]:
    head: Batch = [begin]
    replies = []
    for group in plan.groups:
        opening = [*head, _SAVEPOINT]
        results, error = yield [*opening, *group]
        if error is not None and (isinstance(error, _RETRIED) or len(results) < len(opening)):
            raise error
        reply = _reply(group, results[len(opening):])
        if reply is None:
            assert error is not None  # (every statement ran: the guards decided)
            raise error
        replies.append(reply)
        head = [_ROLLBACK_TO, _RELEASE] if reply.refused is not None else [_RELEASE]
    _, error = yield [*head, _COMMIT]
    if error is not None:
        raise error
    return replies


_BEGIN_WRITE = Statement("BEGIN ISOLATION LEVEL SERIALIZABLE")
_BEGIN_READ = Statement("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
_COMMIT, _ROLLBACK = Statement("COMMIT"), Statement("ROLLBACK")
_SAVEPOINT = Statement("SAVEPOINT qorm_request")
_ROLLBACK_TO = Statement("ROLLBACK TO SAVEPOINT qorm_request")
_RELEASE = Statement("RELEASE SAVEPOINT qorm_request")
#: a batch this long or longer goes in one round trip (psycopg's pipeline mode); a shorter
#: one statement by statement, stopping at a failing guard (entering and leaving pipeline
#: mode costs about what a few round trips on a local server do)
PIPELINE_FROM = 3


def _reply(group: tuple[Statement, ...], results: list[Rows]) -> GroupReply | None:
    """The group's outcome from the rows of the statements that ran: refused at the first
    failing guard, or done; None if a statement failed before any guard refused."""
    for i, (statement, found) in enumerate(zip(group, results, strict=False)):
        if _refuses(statement, found):
            return GroupReply(tuple(results[:i + 1]), statement.label)
    if len(results) < len(group):
        return None
    return GroupReply(tuple(results))


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
    if isinstance(exc, _RERUN):
        return BackendError(f"PostgreSQL: the transaction met concurrent writers "
                            f"{ATTEMPTS} times in a row; nothing was written ({exc})")
    if isinstance(exc, psycopg.OperationalError):
        return BackendConnectionError(f"PostgreSQL: {exc}")
    return BackendError(f"PostgreSQL: {exc}")


def _delay(attempt: int) -> float:
    return random.uniform(0, BACKOFF * 2 ** min(attempt, 5))


def _retrying(exc: BaseException, attempt: int, wait: float) -> None:
    logs.postgres.warning("retrying transaction after %s attempt=%d/%d wait_ms=%d",
                          type(exc).__name__, attempt + 2, ATTEMPTS, wait * 1000)


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
            conn = psycopg.connect(self.url, **self.connect)
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        try:
            _check_encoding(conn.info.parameter_status("server_encoding"))
        finally:
            conn.close()

    async def aprobe(self) -> None:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, **self.connect)
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        try:
            _check_encoding(conn.info.parameter_status("server_encoding"))
        finally:
            await conn.close()


def _check_encoding(encoding: str | None) -> None:
    """The database must hold UTF-8 text: the ``doc`` column keeps the document's exact
    text, and any other encoding would refuse characters or store other bytes."""
    if encoding != "UTF8":  # (found at the first call: a BackendError, not configuration)
        raise BackendError(f"PostgreSQL: the database's encoding is {encoding}; "
                                 "QuantumORM needs a UTF8 database (CREATE DATABASE ... "
                                 "ENCODING 'UTF8')")


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

    def pools(self) -> list[ConnectionPool]:
        """The pool, once opened (for pool statistics)."""
        return [] if self._pool is None else [self._pool]

    def execute(self, plan: SqlPlan) -> list[GroupReply]:
        pool = self._get_pool()
        for attempt in range(ATTEMPTS):
            try:
                with pool.connection() as conn:
                    return _drive(conn, plan)
            except _RERUN as exc:
                if attempt + 1 == ATTEMPTS:
                    raise _translate(exc) from exc
                wait = _delay(attempt)
                _retrying(exc, attempt, wait)
                observe.note(observe.RETRY, type(exc).__name__)
                time.sleep(wait)
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
        batch = next(run)
        while True:
            batch = run.send(_send(conn, batch))
    except StopIteration as stop:
        replies: list[GroupReply] = stop.value
        return replies
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        raise


def _send(conn: psycopg.Connection[Any], batch: Batch) -> Outcome:
    if len(batch) < PIPELINE_FROM:
        out: list[Rows] = []
        try:
            with conn.cursor(binary=True) as cur:
                for statement in batch:
                    cur.execute(statement.sql, statement.params)
                    found = cur.fetchall() if cur.description is not None else []
                    out.append(found)
                    if _refuses(statement, found):
                        break  # (what would follow is rolled back anyway)
        except psycopg.Error as exc:
            return out, exc
        return out, None
    cursors = []
    error: psycopg.Error | None = None
    try:
        with conn.pipeline():
            for statement in batch:
                cur = conn.cursor(binary=True)
                # (never prepared: psycopg's prepared-statement cache loses track of a
                # PREPARE that a failed statement of the same pipeline aborted)
                cur.execute(statement.sql, statement.params, prepare=False)
                cursors.append(cur)
    except psycopg.Error as exc:
        error = exc
    return _results(cursors), error


def _refuses(statement: Statement, found: Rows) -> bool:
    return statement.guard is not None and bool(found) is (statement.guard == "absent")


def _results(cursors: list[Any]) -> list[Rows]:
    """The rows of each cursor whose statement ran (up to the first that did not)."""
    out = []
    for cur in cursors:
        if cur.pgresult is None:
            break
        out.append(cur.fetchall() if cur.description is not None else [])
    return out


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

    def pools(self) -> list[AsyncConnectionPool]:
        """The pool of every event loop (for pool statistics)."""
        return [pool for pool, _opening, _closer in list(self._pools.values())]

    async def execute(self, plan: SqlPlan) -> list[GroupReply]:
        pool = await self._get_pool()
        for attempt in range(ATTEMPTS):
            try:
                async with pool.connection() as conn:
                    return await _adrive(conn, plan)
            except _RERUN as exc:
                if attempt + 1 == ATTEMPTS:
                    raise _translate(exc) from exc
                wait = _delay(attempt)
                _retrying(exc, attempt, wait)
                observe.note(observe.RETRY, type(exc).__name__)
                await asyncio.sleep(wait)
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
        batch = next(run)
        while True:
            batch = run.send(await _asend(conn, batch))
    except StopIteration as stop:
        replies: list[GroupReply] = stop.value
        return replies
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise


async def _asend(conn: psycopg.AsyncConnection[Any], batch: Batch) -> Outcome:
    if len(batch) < PIPELINE_FROM:
        out: list[Rows] = []
        try:
            async with conn.cursor(binary=True) as cur:
                for statement in batch:
                    await cur.execute(statement.sql, statement.params)
                    found = await cur.fetchall() if cur.description is not None else []
                    out.append(found)
                    if _refuses(statement, found):
                        break
        except psycopg.Error as exc:
            return out, exc
        return out, None
    cursors = []
    error: psycopg.Error | None = None
    try:
        async with conn.pipeline():
            for statement in batch:
                cur = conn.cursor(binary=True)
                await cur.execute(statement.sql, statement.params, prepare=False)  # (_send)
                cursors.append(cur)
    except psycopg.Error as exc:
        error = exc
    out = []
    for cur in cursors:  # (as _results; the rows are here already, fetchall only awaits)
        if cur.pgresult is None:
            break
        out.append(await cur.fetchall() if cur.description is not None else [])
    return out, error
