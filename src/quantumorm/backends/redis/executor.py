"""The only module that talks to Redis: it runs :class:`RedisPlan` objects with redis-py.

* One round trip per plan: a single step is sent as is, several are pipelined without
  MULTI. Scripts go as EVALSHA; a NOSCRIPT reply (restart, failover, SCRIPT FLUSH) loads the
  scripts and re-sends only the steps that did not run.
* redis-py's own retries are switched off: it would resend writes whose outcome is unknown.
  Read-only and idempotent plans (writes that recognise their own earlier application) are
  retried here on connection errors, with bounded exponential backoff; other writes are not.
* Connect and socket timeouts are always set; the pool blocks at most ``pool_timeout``
  seconds for a free connection, then raises :class:`PoolExhaustedError`.
* Driver errors become QuantumORM's typed errors, with the driver's error as ``__cause__``.
* asyncio clients are bound to the event loop that created them, so there is one per loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ... import errors
from .commands import Call, Command, RedisPlan, Step, script

#: attempts of a retryable plan (connection option ``retries``); the waits between them,
#: 0.05 s doubled up to 1 s, add up to 0.75 s by default (raise it to ride out failovers)
RETRIES = 5
BACKOFF = 0.05
MAX_BACKOFF = 1.0


def _pause(attempt: int) -> float:
    return float(min(MAX_BACKOFF, BACKOFF * 2**attempt))


def _final(exc: BaseException) -> bool:
    """Connection errors that a retry cannot cure: bad credentials, and an exhausted pool
    (the caller chose ``pool_timeout``; waiting longer is not ours to decide)."""
    return isinstance(translate(exc), (errors.AuthenticationError, errors.PoolExhaustedError))


@dataclass(frozen=True)
class ClientOptions:
    url: str
    max_connections: int = 50
    pool_timeout: float = 5.0
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    retries: int = RETRIES
    extra: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or (
                self.retries < 1):
            raise errors.ConfigurationError(f"retries must be a positive int (got "
                                            f"{self.retries!r})")

    def pool_kwargs(self) -> dict[str, Any]:
        return {
            "max_connections": self.max_connections,
            "timeout": self.pool_timeout,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            **dict(self.extra),
        }


def translate(exc: BaseException) -> BaseException:
    """Map a redis-py exception onto QuantumORM's hierarchy (others pass through)."""
    if isinstance(exc, rx.TimeoutError):
        return errors.BackendTimeoutError(f"Redis timed out: {exc}")
    if isinstance(exc, rx.MaxConnectionsError):
        return errors.PoolExhaustedError(f"Redis connection pool exhausted: {exc}")
    if isinstance(exc, (rx.AuthenticationError, rx.AuthenticationWrongNumberOfArgsError)):
        return errors.AuthenticationError(f"Redis rejected the credentials: {exc}")
    if isinstance(exc, rx.ConnectionError):
        if "No connection available" in str(exc):  # BlockingConnectionPool's only signal
            return errors.PoolExhaustedError(f"Redis connection pool exhausted: {exc}")
        return errors.BackendConnectionError(f"cannot reach Redis: {exc}")
    if isinstance(exc, rx.NoPermissionError):
        return errors.PermissionDeniedError(f"Redis ACL refused the command: {exc}")
    if isinstance(exc, rx.OutOfMemoryError):
        return errors.OutOfMemoryError(f"Redis is out of memory: {exc}")
    if isinstance(exc, rx.ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code == "WRONGTYPE":
            return errors.WrongTypeError(f"a key holds the wrong kind of value: {exc}")
        return errors.BackendError(f"Redis error: {exc}")
    if isinstance(exc, rx.RedisError):
        return errors.BackendError(f"Redis error: {exc}")
    return exc


def _args(step: Step) -> tuple[Any, ...]:
    if isinstance(step, Command):
        return step.args
    return ("EVALSHA", script(step.script).sha, len(step.keys), *step.keys, *step.args)


def _noscript(reply: Any) -> bool:
    return isinstance(reply, rx.NoScriptError)


def _check(replies: Sequence[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, BaseException):
            raise translate(reply) from reply
    return list(replies)


class SyncRedisExecutor:
    def __init__(self, options: ClientOptions) -> None:
        self.retries = options.retries
        pool = redis.BlockingConnectionPool.from_url(options.url, **options.pool_kwargs())
        self.client: Any = redis.Redis(connection_pool=pool)

    def execute(self, plan: RedisPlan) -> list[Any]:
        attempts = self.retries if plan.retryable else 1
        for attempt in range(attempts):
            try:
                return self._send(plan.steps)
            except rx.ConnectionError as exc:
                if attempt + 1 == attempts or _final(exc):
                    raise translate(exc) from exc
                time.sleep(_pause(attempt))
            except rx.RedisError as exc:
                raise translate(exc) from exc
        raise AssertionError("unreachable")

    def _send(self, steps: Sequence[Step]) -> list[Any]:
        if len(steps) == 1:
            try:
                return [self.client.execute_command(*_args(steps[0]))]
            except rx.NoScriptError:
                self.load_scripts()
                return [self.client.execute_command(*_args(steps[0]))]
        pipe = self.client.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*_args(step))
        replies = pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if _noscript(reply)]
        if missing:
            self.load_scripts()
            again = self._send([steps[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return _check(replies)

    def load_scripts(self) -> None:
        from .commands import SCRIPT_NAMES

        for name in SCRIPT_NAMES:
            self.client.script_load(script(name).source)

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()


class AsyncRedisExecutor:
    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.options.url, **self.options.pool_kwargs()
            )
            client = redis.asyncio.Redis(connection_pool=pool)
            self._clients[loop] = client
        return client

    async def execute(self, plan: RedisPlan) -> list[Any]:
        attempts = self.options.retries if plan.retryable else 1
        for attempt in range(attempts):
            try:
                return await self._send(plan.steps)
            except rx.ConnectionError as exc:
                if attempt + 1 == attempts or _final(exc):
                    raise translate(exc) from exc
                await asyncio.sleep(_pause(attempt))
            except rx.RedisError as exc:
                raise translate(exc) from exc
        raise AssertionError("unreachable")

    async def _send(self, steps: Sequence[Step]) -> list[Any]:
        client = self.client
        if len(steps) == 1:
            try:
                return [await client.execute_command(*_args(steps[0]))]
            except rx.NoScriptError:
                await self.load_scripts()
                return [await client.execute_command(*_args(steps[0]))]
        pipe = client.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*_args(step))
        replies = await pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if _noscript(reply)]
        if missing:
            await self.load_scripts()
            again = await self._send([steps[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return _check(replies)

    async def load_scripts(self) -> None:
        from .commands import SCRIPT_NAMES

        for name in SCRIPT_NAMES:
            await self.client.script_load(script(name).source)

    async def aclose(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        client = self._clients.pop(loop, None) if loop is not None else None
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()
        self._clients.clear()


__all__ = ["AsyncRedisExecutor", "Call", "ClientOptions", "SyncRedisExecutor", "translate"]
