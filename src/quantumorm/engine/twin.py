"""``@operation``: one definition gives a public async method and its ``_sync`` twin.

The decorated function builds an operation factory (``backend -> Op``); the object it is
called on provides ``_connection()``. The async method and the sync twin differ only in which
driver runs the operation (and the twin refuses to run from the thread running an event
loop, see :func:`~quantumorm.engine.drive.forbid_blocking`)::

    @operation
    def delete(self) -> OpFactory[bool]:
        return partial(ops.delete, doc=self)
    delete_sync = delete.sync

Typing: ``doc.delete`` is ``(...) -> Coroutine[..., bool]`` and ``doc.delete_sync`` is
``(...) -> bool``, with the builder's parameters (a ``ParamSpec``). An operation whose result
is the object it is called on (``save``, ``reload``) uses :class:`self_operation`, so that
``await user.save()`` is a ``User`` and not the base class the builder was written in.

The types cost nothing at run time: ``.sync`` is the plain function it always was (bound by
CPython like any method); only the type checker sees it through :class:`SyncTwin`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from types import MethodType
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from .drive import OpFactory, forbid_blocking

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R")
T = TypeVar("T")
S_contra = TypeVar("S_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class SyncTwin(Protocol[S_contra, P, R_co]):
    """What ``op.sync`` is to a type checker: a method returning the result itself."""

    @overload
    def __get__(self, obj: None, owner: Any) -> Callable[Concatenate[S_contra, P], R_co]: ...

    @overload
    def __get__(self, obj: S_contra, owner: Any) -> Callable[P, R_co]: ...


class SelfSyncTwin(Protocol[P]):
    """``op.sync`` of a :class:`self_operation`: returns the object it is called on."""

    @overload
    def __get__(self, obj: None, owner: type[T]) -> Callable[Concatenate[T, P], T]: ...

    @overload
    def __get__(self, obj: T, owner: Any) -> Callable[P, T]: ...


class _Twins:
    """The run-time part of both decorators: the async method and the blocking function
    made from one builder."""

    def __init__(self, build: Callable[..., OpFactory[Any]]) -> None:
        self.build = build
        name = build.__name__  # (what the connection's watcher, if any, calls it)

        @functools.wraps(build)
        async def run_async(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return await obj._connection().arun(build(obj, *args, **kwargs), obj, name)

        @functools.wraps(build)
        def run_sync(obj: Any, *args: Any, **kwargs: Any) -> Any:
            # checked here too, before anything runs, to name the call in the error (no
            # closure to build in the common case: no event loop in this thread)
            if asyncio._get_running_loop() is not None:
                forbid_blocking(lambda: f"{type(obj).__name__}.{build.__name__}_sync()")
            return obj._connection().run(build(obj, *args, **kwargs), obj, name)

        run_sync.__name__ = run_sync.__qualname__ = build.__name__ + "_sync"
        run_sync.__doc__ = f"Blocking twin of ``{build.__name__}()``.\n\n{build.__doc__ or ''}"
        self.async_fn = run_async
        self.blocking: Callable[..., Any] = run_sync
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return self.async_fn if obj is None else MethodType(self.async_fn, obj)


class operation(_Twins, Generic[S, P, R]):  # noqa: N801 - used as a decorator
    def __init__(self, build: Callable[Concatenate[S, P], OpFactory[R]]) -> None:
        super().__init__(build)
        #: the blocking twin, a plain function: ``save_sync = save.sync`` in the class body
        self.sync = cast("SyncTwin[S, P, R]", self.blocking)

    if TYPE_CHECKING:
        @overload
        def __get__(self, obj: None, owner: Any = ...
                    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]: ...

        @overload
        def __get__(self, obj: S, owner: Any = ...) -> Callable[P, Coroutine[Any, Any, R]]: ...

        def __get__(self, obj: Any, owner: Any = None) -> Any: ...


class self_operation(_Twins, Generic[S, P]):  # noqa: N801 - used as a decorator
    """Like :class:`operation`, for an operation whose result is the object it was called
    on, typed as the caller's own class (``await user.save()`` is a ``User``)."""

    def __init__(self, build: Callable[Concatenate[S, P], OpFactory[Any]]) -> None:
        super().__init__(build)
        self.sync = cast("SelfSyncTwin[P]", self.blocking)

    if TYPE_CHECKING:
        @overload
        def __get__(self, obj: None, owner: type[T] = ...
                    ) -> Callable[Concatenate[T, P], Coroutine[Any, Any, T]]: ...

        @overload
        def __get__(self, obj: T, owner: Any = ...) -> Callable[P, Coroutine[Any, Any, T]]: ...

        def __get__(self, obj: Any, owner: Any = None) -> Any: ...
