"""asyncio clients, one set per event loop, released with their loop.

redis-py's asyncio connections belong to the loop that opened them, so a connection keeps
one client set per loop. Each ``asyncio.run()`` makes a new loop: the set made for it must
go when that loop ends, or every call would leave a connection, a file descriptor and the
loop itself behind (a map keyed weakly by the loop does not help: the clients refer to
their loop, so the key never dies).

asyncio has no "loop closed" callback, but a loop run by ``asyncio.run()`` (or
``asyncio.Runner``, as pytest-asyncio uses) closes every async generator it has started
before it closes (``loop.shutdown_asyncgens()``). So each client set comes with a small
async generator, started on its loop and left waiting: when the loop shuts its generators
down, the generator's ``finally`` closes the clients, on their own loop, properly. A loop
closed some other way is found closed the next time a set is made, and its set is dropped
(the garbage collector then closes its sockets).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

#: seconds to wait for another thread's loop to close its clients (``close_all``)
OTHER_LOOP_TIMEOUT = 5.0


class LoopClients:
    """The client sets of one connection, by event loop. ``make()`` builds a set for the
    running loop, ``close(clients)`` closes one (awaited on the set's own loop)."""

    def __init__(self, make: Callable[[], Any],
                 close: Callable[[Any], Awaitable[None]]) -> None:
        self._make, self._close = make, close
        #: loop -> (its client set, the generator that closes the set with the loop)
        self._sets: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}

    def get(self) -> Any:
        """The client set of the running loop, made on first use."""
        loop = asyncio.get_running_loop()
        entry = self._sets.get(loop)
        if entry is None:
            self._drop_closed()
            clients = self._make()
            closer = self._closer(loop, clients)
            # Start the generator on this loop (that registers it with the loop's async
            # generators) and leave it waiting at its yield.
            step: Any = closer.__anext__()
            with contextlib.suppress(StopIteration):
                step.send(None)
            entry = self._sets[loop] = (clients, closer)
        return entry[0]

    async def _closer(self, loop: asyncio.AbstractEventLoop, clients: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._sets.get(loop, (None,))[0] is clients:
                del self._sets[loop]
            await self._close(clients)

    def _drop_closed(self) -> None:
        for loop in [loop for loop in self._sets if loop.is_closed()]:
            self._sets.pop(loop, None)

    async def close_all(self) -> None:
        """Close every loop's clients: this loop's here; a loop running in another thread
        is asked to close its own (and awaited, up to OTHER_LOOP_TIMEOUT); a closed loop's
        set is dropped. A loop that is neither running nor closed keeps its set until it
        shuts down (no other loop can run its clients' code)."""
        here = asyncio.get_running_loop()
        for loop, (_clients, closer) in list(self._sets.items()):
            if loop is here:
                await closer.aclose()
            elif loop.is_closed():
                self._sets.pop(loop, None)
            elif loop.is_running():
                future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                    closer.aclose(), loop)
                with contextlib.suppress(concurrent.futures.TimeoutError, asyncio.TimeoutError,
                                         RuntimeError):
                    await asyncio.wait_for(asyncio.wrap_future(future), OTHER_LOOP_TIMEOUT)

    def sets(self) -> list[Any]:
        """Every loop's client set (a copy: loops may come and go meanwhile)."""
        return [clients for clients, _closer in list(self._sets.values())]

    def __len__(self) -> int:
        return len(self._sets)
