"""``@operation``: one definition gives a public async method and its ``_sync`` twin.

The decorated function builds an operation factory (``backend -> Op``); the object it is
called on provides ``_connection()``. The async method and the sync twin differ only in which
driver runs the operation (and the twin refuses to run from the thread running an event
loop, see :func:`~quantumorm.engine.drive.forbid_blocking`)::

    @operation
    def save(self):
        return partial(ops.save, doc=self)
    save_sync = save.sync
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MethodType
from typing import Any, Generic, TypeVar

from .drive import forbid_blocking

T = TypeVar("T")


class operation(Generic[T]):  # noqa: N801 - used as a decorator
    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build

        @functools.wraps(build)
        async def run_async(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return await obj._connection().arun(build(obj, *args, **kwargs))

        @functools.wraps(build)
        def run_sync(obj: Any, *args: Any, **kwargs: Any) -> Any:
            # checked here too, before anything runs, to name the call in the error
            forbid_blocking(lambda: f"{type(obj).__name__}.{build.__name__}_sync()")
            return obj._connection().run(build(obj, *args, **kwargs))

        run_sync.__name__ = run_sync.__qualname__ = build.__name__ + "_sync"
        run_sync.__doc__ = f"Blocking twin of ``{build.__name__}()``.\n\n{build.__doc__ or ''}"
        self.async_fn = run_async
        self.sync: Callable[..., Any] = run_sync
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self.async_fn if obj is None else MethodType(self.async_fn, obj)
