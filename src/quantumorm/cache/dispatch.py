"""One operation, two stores: how a cached model's operation reaches the cache and the
primary without a second driver.

A cached model's operations are ordinary operations (:mod:`quantumorm.engine.drive`) run by
the ordinary drivers; the plans they yield are the primary backend's own, except two
kinds made here: :class:`ToCache` (a plan of the cache store, for the cache connection's
executor) and :class:`Pause` (wait before reading again: the blocking driver sleeps, the
asyncio driver awaits). :class:`SyncDispatch` and :class:`AsyncDispatch` are the executors
of a cached model's connection: they route each plan, and nothing else. So sync and async
share every body, and no operation runs a loop or hops threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..engine.drive import Op

if TYPE_CHECKING:
    from ..connection import Connection
    from ..engine.contract import Backend

T = TypeVar("T")

#: what a guarded cache step returns when it did not run (the breaker was open) or failed
FAILED: Any = object()


@dataclass(frozen=True, slots=True)
class ToCache:
    """A plan for the cache connection's executor."""

    plan: Any


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds``, then go on (the reply is None)."""

    seconds: float


def on_cache(op: Op[T]) -> Op[T]:
    """Run an operation of the cache store inside a cached model's operation: each of its
    plans goes to the cache executor (and each error back into it)."""
    try:
        plan = next(op)
        while True:
            try:
                reply = yield ToCache(plan)
            except BaseException as exc:
                plan = op.throw(exc)
            else:
                plan = op.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _script_command(dispatch: SyncDispatch | AsyncDispatch, plan: Any) -> str | None:
    """What the executor that runs ``plan`` calls scripts with (a cache plan: the cache's,
    for the plan it wraps), or None when it does not say (see ``metrics/plans.py``)."""
    if type(plan) is ToCache:
        executor, plan = dispatch.cache, plan.plan
    else:
        executor = dispatch.primary
    named = getattr(executor, "script_command", None)
    return None if named is None else named(plan)


class SyncDispatch:
    def __init__(self, primary: Any, cache: Any) -> None:
        self.primary, self.cache = primary, cache

    def script_command(self, plan: Any) -> str | None:
        return _script_command(self, plan)

    def execute(self, plan: Any) -> Any:
        kind = type(plan)
        if kind is ToCache:
            return self.cache.execute(plan.plan)
        if kind is Pause:
            time.sleep(plan.seconds)
            return None
        return self.primary.execute(plan)


class AsyncDispatch:
    def __init__(self, primary: Any, cache: Any) -> None:
        self.primary, self.cache = primary, cache

    def script_command(self, plan: Any) -> str | None:
        return _script_command(self, plan)

    def execute(self, plan: Any) -> Awaitable[Any]:
        kind = type(plan)
        if kind is ToCache:
            return self.cache.execute(plan.plan)  # type: ignore[no-any-return]
        if kind is Pause:
            return asyncio.sleep(plan.seconds)
        return self.primary.execute(plan)  # type: ignore[no-any-return]


class CachedStore:
    """The store of a cached model's connection: its backend (a
    :class:`~quantumorm.cache.backend.CachedBackend`) and executors that reach both
    connections. It owns neither connection: closing it closes nothing."""

    def __init__(self, backend: Backend, primary: Connection, cache: Connection) -> None:
        self.backend = backend
        self.primary, self.cache = primary, cache

    def sync_executor(self) -> SyncDispatch:
        return SyncDispatch(self.primary.store.sync_executor(), self.cache.store.sync_executor())

    def async_executor(self) -> AsyncDispatch:
        return AsyncDispatch(self.primary.store.async_executor(),
                             self.cache.store.async_executor())

    def close(self) -> None:
        """Nothing: the primary and cache connections are closed by their owners."""

    async def aclose(self) -> None:
        """Nothing: see :meth:`close`."""
