"""The watcher: runs each operation while metrics, traces or the slow-operation log are on.

Installed as :data:`quantumorm.engine.observe.watcher` only while one of the three is on
(:func:`sync`), so an unwatched operation pays one attribute check. A watched operation is
timed, runs with an executor that counts its plans (:class:`Counting`), and is the current
operation of its context (a ``ContextVar``: a thread, or an asyncio task) so that what the
executors report from inside a round trip (:func:`quantumorm.engine.observe.note`) is
charged to it. Traces are a pluggable :class:`Tracer` (:mod:`.otel` provides one), so this
module imports no optional package.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from ..engine import drive, observe
from ..engine.drive import OpFactory
from . import plans
from .series import Recorder

T = TypeVar("T")

#: the slow-operation log's logger (WARNING per operation above the threshold)
SLOW_LOGGER = logging.getLogger("quantumorm.slow")
#: at most this many plans are summarised in one slow-operation line
SLOW_PLANS = 10


class Running:
    """One watched operation while it runs."""

    __slots__ = ("model", "collection", "operation", "connection", "round_trips", "plans",
                 "tracer", "trace")

    def __init__(self, model: str, collection: str, operation: str, connection: Any) -> None:
        self.model, self.collection, self.operation = model, collection, operation
        self.connection = connection
        self.round_trips = 0
        #: the plans sent, kept only for the slow-operation log
        self.plans: list[Any] | None = None
        self.tracer: Tracer | None = None
        self.trace: Any = None

    @property
    def backend(self) -> str:
        return str(self.connection.kind)


class Tracer(Protocol):
    """Makes a trace of watched operations (see :mod:`.otel`). ``start`` makes the
    operation's span current in the caller's context and returns a handle, ``end``
    restores the context; both run in the same context."""

    def start(self, op: Running) -> Any: ...

    def round_trip(self, handle: Any, plan: Any) -> None: ...

    def note(self, handle: Any, kind: str, reason: str) -> None: ...

    def end(self, handle: Any, error: BaseException | None) -> None: ...


_current: ContextVar[Running | None] = ContextVar("quantumorm_operation", default=None)


class Counting:
    """An executor that counts (and, when asked, keeps and traces) the plans it passes on;
    for blocking and asyncio executors alike (it returns what the inner one returns)."""

    __slots__ = ("inner", "op")

    def __init__(self, inner: Any, op: Running) -> None:
        self.inner, self.op = inner, op

    def execute(self, plan: Any) -> Any:
        op = self.op
        op.round_trips += 1
        if op.plans is not None:
            op.plans.append(plan)
        if op.tracer is not None:
            op.tracer.round_trip(op.trace, plan)
        return self.inner.execute(plan)


def _options_of(subject: Any) -> Any:
    """A document's or a queryset's model options (None for an operation run directly)."""
    if subject is None:
        return None
    found = getattr(type(subject), "_meta", None)
    if found is None:
        found = getattr(getattr(subject, "model", None), "_meta", None)
    return found


def _name_of(factory: Any) -> str:
    name = getattr(factory, "__name__", "")
    return name if name.isidentifier() else "run"


class Watch:
    """What is on, and the counters. One per process (:data:`WATCH`)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.recording = False
        self.tracer: Tracer | None = None
        #: the slow-operation threshold in seconds, or None
        self.slow: float | None = None

    # -- running an operation ------------------------------------------------------------

    def _begin(self, connection: Any, factory: Any, subject: Any, name: str) -> Running:
        options = _options_of(subject)
        op = Running(options.model_name if options is not None else "",
                     options.collection if options is not None else "",
                     name or _name_of(factory), connection)
        if self.slow is not None:
            op.plans = []
        tracer = self.tracer
        if tracer is not None:
            op.tracer = tracer
            op.trace = tracer.start(op)
        return op

    def _end(self, op: Running, seconds: float, error: BaseException | None) -> None:
        if op.tracer is not None:
            op.tracer.end(op.trace, error)
        if self.recording:
            self.recorder.operation((op.model, op.operation, op.backend), seconds,
                                    op.round_trips,
                                    None if error is None else type(error).__name__)
        slow = self.slow
        if slow is not None and seconds >= slow and op.plans is not None:
            _log_slow(op, seconds, slow)

    def run(self, connection: Any, factory: OpFactory[T], subject: Any, name: str) -> T:
        op = self._begin(connection, factory, subject, name)
        token = _current.set(op)
        error: BaseException | None = None
        start = time.perf_counter()
        try:
            return drive.run(factory(connection.backend),
                             Counting(connection.store.sync_executor(), op))
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - start
            _current.reset(token)
            self._end(op, seconds, error)

    async def arun(self, connection: Any, factory: OpFactory[T], subject: Any,
                   name: str) -> T:
        op = self._begin(connection, factory, subject, name)
        token = _current.set(op)
        error: BaseException | None = None
        start = time.perf_counter()
        try:
            return await drive.arun(factory(connection.backend),
                                    Counting(connection.store.async_executor(), op))
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - start
            _current.reset(token)
            self._end(op, seconds, error)

    def note(self, kind: str, reason: str) -> None:
        op = _current.get()
        recording = self.recording
        if kind == observe.RETRY:
            if recording:
                self.recorder.retry(reason or "unknown")
            extra = 1  # (the plan is sent again)
        elif kind == observe.SCRIPT_RELOAD:
            if recording:
                self.recorder.script_reload()
            extra = 2  # (the scripts are loaded, then the steps sent again)
        else:
            if recording:
                self.recorder.slot_relearn()
            extra = 1
        if op is not None:
            op.round_trips += extra
            if op.tracer is not None:
                op.tracer.note(op.trace, kind, reason)


WATCH = Watch()


def sync() -> None:
    """Install the watcher while anything watches, and remove it when nothing does."""
    watching = WATCH.recording or WATCH.tracer is not None or WATCH.slow is not None
    observe.watcher = WATCH if watching else None


def _log_slow(op: Running, seconds: float, threshold: float) -> None:
    sent = op.plans or []
    shown = [plans.summary(plan) for plan in sent[:SLOW_PLANS]]
    if len(sent) > SLOW_PLANS:
        shown.append(f"... {len(sent) - SLOW_PLANS} more")
    SLOW_LOGGER.warning(
        "slow operation: %s.%s on %s took %.1f ms (threshold %.1f ms), %d round trip(s): %s",
        op.model or "-", op.operation, op.backend, seconds * 1000, threshold * 1000,
        op.round_trips, " | ".join(shown) or "(no plan)",
        extra={"qorm_model": op.model, "qorm_operation": op.operation,
               "qorm_backend": op.backend, "qorm_duration_ms": seconds * 1000,
               "qorm_round_trips": op.round_trips, "qorm_plans": shown})


__all__ = ["SLOW_LOGGER", "SLOW_PLANS", "WATCH", "Counting", "Running", "Tracer", "Watch",
           "sync"]
