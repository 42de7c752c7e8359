"""The one switch between running operations and whoever watches them.

:data:`watcher` is None unless something watches (metrics, traces or the slow-operation log:
:mod:`quantumorm.metrics` installs one). :meth:`Connection.run
<quantumorm.connection.Connection.run>` checks it, once per operation: that check is all an
unwatched operation pays. The executors report what happens inside a round trip that the
operation cannot see (a retry, a script reload, a slot-map relearn) with :func:`note`, which
is called only on those rare paths, never per command.

This module imports nothing of the library, so that the engine, the backends and the
metrics package can all import it without a cycle: the metrics package depends on the
engine, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from .drive import OpFactory

T = TypeVar("T")

#: what :func:`note` is told (``reason``: the error that caused a retry, by class name)
RETRY, SCRIPT_RELOAD, SLOT_RELEARN = "retry", "script_reload", "slot_relearn"


class Watcher(Protocol):
    """Runs operations in place of the plain drivers while something watches them."""

    def run(self, connection: Any, factory: OpFactory[T], subject: Any, name: str,
            executor: Any) -> T: ...

    async def arun(self, connection: Any, factory: OpFactory[T], subject: Any,
                   name: str, executor: Any) -> T: ...

    def note(self, kind: str, reason: str) -> None: ...


#: the installed watcher, or None (nothing watches: operations run as they always did)
watcher: Watcher | None = None


def note(kind: str, reason: str = "") -> None:
    """Tell the watcher, if any, of a retry, a script reload or a slot-map relearn."""
    found = watcher
    if found is not None:
        found.note(kind, reason)


@dataclass(frozen=True)
class PoolStats:
    """One connection pool of a store, as its driver reports it. ``size``: the most
    connections it may open; ``open``: those it has open, ``in_use`` of them lent out and
    ``idle`` of them free; ``waiting``: callers waiting for a free connection now, and
    ``waits``: how many callers ever had to wait (None where the driver does not say)."""

    pool: str
    size: int
    open: int
    in_use: int
    idle: int
    waiting: int | None = None
    waits: int | None = None


__all__ = ["RETRY", "SCRIPT_RELOAD", "SLOT_RELEARN", "PoolStats", "Watcher", "note", "watcher"]
