"""Work that spans connections: a generator of :class:`Call` steps, and ``@staged``.

An operation (:mod:`quantumorm.engine.drive`) runs on one backend. Loading the authors of a
page of posts, or enforcing a delete rule, reaches other models, which may live on other
connections or backends (posts on SQLite, authors on Redis). Such work is written once as
a generator that yields :class:`Call` (an operation and the connection to run it on) and
receives its result; :func:`run` and :func:`arun` drive it, one operation after another,
each through its connection as any call is (metrics, logs and retries per operation).

``@staged`` is ``@operation`` (:mod:`quantumorm.engine.twin`) for a method whose builder
returns either an operation factory (the common case, run as before) or a :class:`Staged`
generator of calls, so a method pays for stages only when it needs them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from types import MethodType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from .drive import OpFactory, forbid_blocking
from .twin import SyncTwin

if TYPE_CHECKING:
    from ..connection import Connection

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One operation of a staged run: ``factory`` on ``connection``; ``subject`` and
    ``name`` say what ran, for metrics and logs (the model's queryset and the method)."""

    connection: Connection
    factory: OpFactory[Any]
    subject: Any
    name: str


#: a staged run: yields calls, receives each one's result, returns its own
Stages = Generator[Call, Any, T]


class Staged(Generic[T]):
    """What a ``@staged`` builder returns when the work spans connections."""

    __slots__ = ("stages",)

    def __init__(self, stages: Stages[T]) -> None:
        self.stages = stages


def run(stages: Stages[T]) -> T:
    """Drive a staged run with the blocking drivers of each call's connection."""
    try:
        call = next(stages)
        while True:
            try:
                result = call.connection.run(call.factory, call.subject, call.name)
            except BaseException as exc:
                call = stages.throw(exc)
            else:
                call = stages.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun(stages: Stages[T]) -> T:
    """Drive a staged run with the asyncio drivers of each call's connection."""
    try:
        call = next(stages)
        while True:
            try:
                result = await call.connection.arun(call.factory, call.subject, call.name)
            except BaseException as exc:
                call = stages.throw(exc)
            else:
                call = stages.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class staged(Generic[S, P, R]):  # noqa: N801 - used as a decorator
    """``@operation`` whose builder may return a :class:`Staged` run instead of a factory."""

    def __init__(self, build: Callable[Concatenate[S, P], OpFactory[R] | Staged[R]]) -> None:
        name = build.__name__

        @functools.wraps(build)
        async def run_async(obj: Any, *args: Any, **kwargs: Any) -> Any:
            work = build(obj, *args, **kwargs)
            if isinstance(work, Staged):
                return await arun(work.stages)
            return await obj._connection().arun(work, obj, name)

        @functools.wraps(build)
        def run_sync(obj: Any, *args: Any, **kwargs: Any) -> Any:
            if asyncio._get_running_loop() is not None:
                forbid_blocking(lambda: f"{type(obj).__name__}.{name}_sync()")
            work = build(obj, *args, **kwargs)
            if isinstance(work, Staged):
                return run(work.stages)
            return obj._connection().run(work, obj, name)

        run_sync.__name__ = run_sync.__qualname__ = name + "_sync"
        run_sync.__doc__ = f"Blocking twin of ``{name}()``.\n\n{build.__doc__ or ''}"
        self.async_fn = run_async
        #: the blocking twin, a plain function: ``delete_sync = delete.sync`` in the class body
        self.sync: SyncTwin[S, P, R] = run_sync  # type: ignore[assignment]
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    if TYPE_CHECKING:
        @overload
        def __get__(self, obj: None, owner: Any = ...
                    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]: ...

        @overload
        def __get__(self, obj: S, owner: Any = ...) -> Callable[P, Coroutine[Any, Any, R]]: ...

        def __get__(self, obj: Any, owner: Any = None) -> Any: ...
    else:
        def __get__(self, obj: Any, owner: Any = None) -> Any:
            return self.async_fn if obj is None else MethodType(self.async_fn, obj)
