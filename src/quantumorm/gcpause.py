"""Pauses of Python's cyclic garbage collector around the loops that turn a large reply into
rows and documents, and around the steps of a bulk insert (:func:`paused_steps`).

Such a loop allocates several tracked containers per row (the decoded dict, its lists, the
row, the document and its dicts), and every one of them stays alive until the caller lets
the result go. The collector counts those allocations: every 700 it traverses the young
objects, finds them all alive and moves them to an older generation; enough of them
arriving there makes it run full collections, which traverse every object of the process.
In a process that holds many objects, that costs more than the loop itself (a query of
2,343 rows in a process of about 150,000 tracked objects: 12.4 ms of client CPU, 7.4 ms
with the collector paused). Paused, the loop's objects are counted and nothing else: when
the caller drops the result they are freed by their reference counts as always, without
having been traversed or promoted.

A pause changes no result: the objects made hold no reference cycles, and any cycle made
meanwhile is found by the first collection after it. The collector's switch is the
process's: other threads run with it off during a pause too. Pauses are counted, so that
overlapping ones (threads, or a pause within a pause) turn it on again only when the last
ends, and only when it was on as the first began. An application that switches the
collector itself while a query reads a large reply on another thread can find it on again
when the pause ends (a switch made during a pause cannot be told from the pause's own).
Small batches are not paused (:data:`PAUSE_FROM`): at most one collection can happen during
them, and the pause's calls would cost more than they save.

A bulk insert is the same case the other way: it makes several containers per document
(its storage values, its index values, its request and call records) that all live until
its batch is sent. Its operation runs with each step paused (:func:`paused_steps`), its
own code between two plans, never a wait: the round trips, and an event loop's other
tasks, run with the collector as it was (issue 12's load of 500-document batches: about a
tenth of the client's CPU per document saved).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Generator
from types import TracebackType
from typing import Any, TypeVar

P = TypeVar("P")
T = TypeVar("T")

#: the number of rows from which a loop pauses the collector (a few allocations per row,
#: so below this at most one young collection falls inside the loop)
PAUSE_FROM = 64


_lock = threading.Lock()
_held = 0  # pauses under way
_resume = False  # whether the last to end turns the collector on again


class paused:
    """``with paused(): ...``: the collector off for the block, then as it was (see the
    module's docstring for overlapping pauses)."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _held, _resume
        with _lock:
            if _held == 0:
                _resume = gc.isenabled()
                if _resume:
                    gc.disable()
            _held += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        global _held, _resume
        with _lock:
            _held -= 1
            if _held == 0 and _resume:
                gc.enable()


def paused_steps(op: Generator[P, Any, T]) -> Generator[P, Any, T]:
    """What ``yield from op`` does, each of ``op``'s steps (its code from a reply, or its
    start, to its next plan or its end) run in a pause, none of the waits between them."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            with paused():
                plan = op.send(reply) if error is None else op.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        reply, error = None, None
        try:
            reply = yield plan
        except BaseException as exc:  # (an executor's error, or a close(): passed on)
            error = exc
