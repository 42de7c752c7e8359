"""Where sync and async differ for an operation: the two drivers below.

Every loop at the edge (the exchange with Redis, WATCH, subscriptions, change feeds, chunked
iteration) is likewise one generator run by a blocking and an asyncio driver that only do I/O.

An operation (:data:`Op`) is a generator that yields a backend plan whenever it needs the
store, and receives the plan's replies. It never performs I/O itself, so the same body runs
under :func:`run` (blocking executor) and :func:`arun` (asyncio executor). This is psycopg 3's
generator/waiting split, applied to a whole ORM operation.

:func:`run` refuses to start from the thread that runs an asyncio event loop
(:func:`forbid_blocking`): a blocking call there stalls every task on the loop. Every blocking
operation (the ``_sync`` twins, sync transactions, blocking iteration of change feeds) goes
through :func:`run`, so this is the one check; the few blocking paths that bypass the drivers
(Pub/Sub ``with``/``for``, ``watch_sync``) call :func:`forbid_blocking` themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from ..errors import SyncInAsyncContext

if TYPE_CHECKING:
    from .contract import Backend

T = TypeVar("T")

#: what an operation yields: a plan of the backend it runs on. Each backend has its own plan
#: types, which only its executors read, so to the core a plan is opaque.
Plan: TypeAlias = Any
#: what the executor sends back for a plan (the backend's replies, likewise opaque)
Reply: TypeAlias = Any
#: an operation: yields plans, receives replies, returns its result
Op = Generator[Plan, Reply, T]


class SyncExecutor(Protocol):
    def execute(self, plan: Plan) -> Reply: ...


class AsyncExecutor(Protocol):
    def execute(self, plan: Plan) -> Awaitable[Reply]: ...


#: set to 1 to allow blocking calls from a thread running an event loop (see forbid_blocking)
ALLOW_SYNC_IN_LOOP = "QUANTUMORM_ALLOW_SYNC_IN_LOOP"


def forbid_blocking(describe: Callable[[], str]) -> None:
    """Raise :class:`~quantumorm.errors.SyncInAsyncContext` if this thread is running an
    asyncio event loop, unless the environment variable ``QUANTUMORM_ALLOW_SYNC_IN_LOOP``
    is ``1`` (read at each call, so it can be set at any time). ``describe()`` names the
    call for the error message (a callable, so the common case formats nothing).

    Only the loop's own thread is refused: a blocking call from a worker thread
    (``asyncio.to_thread``, a thread pool) blocks that thread alone and is fine. Like
    Django's ``SynchronousOnlyOperation``, this also refuses blocking calls in a Jupyter
    cell, whose code runs inside the kernel's loop.
    """
    if asyncio._get_running_loop() is None:  # the cheap common case: no loop in this thread
        return
    if os.environ.get(ALLOW_SYNC_IN_LOOP, "").strip().lower() in ("1", "true", "yes", "on"):
        return
    raise SyncInAsyncContext(describe())


def run(op: Op[T], executor: SyncExecutor) -> T:
    """Drive an operation to completion with a blocking executor (never from the thread
    running an event loop: see :func:`forbid_blocking`)."""
    if asyncio._get_running_loop() is not None:  # (no closure to build in the common case)
        forbid_blocking(lambda: f"a blocking call (operation "
                                f"{getattr(op, '__qualname__', op)!r})")
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


#: what ``@operation`` builders return: the operation, once given the connection's backend
OpFactory = Callable[["Backend"], Op[T]]
