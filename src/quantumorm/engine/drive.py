"""The only place where sync and async differ in the core.

An operation (:data:`Op`) is a generator that yields a backend plan whenever it needs the
store, and receives the plan's replies. It never performs I/O itself, so the same body runs
under :func:`run` (blocking executor) and :func:`arun` (asyncio executor). This is psycopg 3's
generator/waiting split, applied to a whole ORM operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: an operation: yields plans, receives replies, returns its result
Op = Generator[Any, Any, T]


class SyncExecutor(Protocol):
    def execute(self, plan: Any) -> Any: ...


class AsyncExecutor(Protocol):
    def execute(self, plan: Any) -> Awaitable[Any]: ...


def run(op: Op[T], executor: SyncExecutor) -> T:
    """Drive an operation to completion with a blocking executor."""
    try:
        plan = next(op)
        while True:
            try:
                reply = executor.execute(plan)
            except BaseException as exc:
                plan = op.throw(exc)
            else:
                plan = op.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun(op: Op[T], executor: AsyncExecutor) -> T:
    """Drive an operation to completion with an asyncio executor."""
    try:
        plan = next(op)
        while True:
            try:
                reply = await executor.execute(plan)
            except BaseException as exc:
                plan = op.throw(exc)
            else:
                plan = op.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


OpFactory = Callable[[Any], Op[T]]
