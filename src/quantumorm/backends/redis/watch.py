"""Optimistic transactions on raw keys (``Connection.watch_sync`` / ``watch``): WATCH the keys,
let the caller read and queue writes, EXEC; again while a watched key changed in between.

The loop is written once, as a generator (:func:`attempts`): it yields an :class:`Attempt`,
receives EXEC's replies (or has redis-py's error thrown in), and decides (retry after a
conflict, :class:`WatchConflict` when the attempts are spent, a typed error otherwise).
:func:`run` and :func:`arun` carry it out with a blocking or an asyncio client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, WatchError

from ...errors import WatchConflict
from .translation import translate


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try: WATCH ``keys``, call the caller's function with the pipeline, EXEC.
    Result: EXEC's replies."""

    keys: tuple[str, ...]


def check(keys: tuple[str, ...], attempts: int) -> None:
    if not keys or not all(isinstance(key, (str, bytes)) for key in keys):
        raise ValueError("watch() needs the keys to watch")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be a positive int (got {attempts!r})")


def attempts(keys: tuple[str, ...], count: int) -> Generator[Attempt, Any, Any]:
    """Up to ``count`` attempts; EXEC's replies of the first that no other client disturbed."""
    attempt = Attempt(keys)
    for _ in range(count):
        try:
            return (yield attempt)
        except WatchError:  # a watched key changed: EXEC applied nothing
            continue
        except RedisError as exc:
            raise translate(exc) from exc
    raise WatchConflict(count, keys)


def run(client: Any, fn: Callable[[Any], Any], loop: Generator[Attempt, Any, Any]) -> Any:
    """Drive :func:`attempts` with a blocking client."""
    try:
        attempt = next(loop)
        while True:
            try:
                with client.pipeline(transaction=True) as pipe:
                    pipe.watch(*attempt.keys)
                    fn(pipe)
                    replies = pipe.execute()
            except BaseException as exc:
                attempt = loop.throw(exc)
            else:
                attempt = loop.send(replies)
    except StopIteration as done:
        return done.value


async def arun(client: Any, fn: Callable[[Any], Awaitable[Any]],
               loop: Generator[Attempt, Any, Any]) -> Any:
    """Drive :func:`attempts` with an asyncio client (``fn`` is a coroutine function)."""
    try:
        attempt = next(loop)
        while True:
            try:
                async with client.pipeline(transaction=True) as pipe:
                    await pipe.watch(*attempt.keys)
                    await fn(pipe)
                    replies = await pipe.execute()
            except BaseException as exc:
                attempt = loop.throw(exc)
            else:
                attempt = loop.send(replies)
    except StopIteration as done:
        return done.value


__all__ = ["Attempt", "arun", "attempts", "check", "run"]
