"""The watcher: runs each operation while metrics, traces or the slow-operation log are on.

Installed as :data:`quantumorm.engine.observe.watcher` only while one of the three is on
(:func:`sync`), so an unwatched operation pays one attribute check. A watched operation is
timed, runs with an executor that counts its plans (:class:`Running`), and is the current
operation of its context (a ``ContextVar``: a thread, or an asyncio task) so that what the
executors report from inside a round trip (:func:`quantumorm.engine.observe.note`) is
charged to it. Traces are a pluggable :class:`Tracer` (:mod:`.otel` provides one), so this
module imports no optional package.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from contextvars import ContextVar
from functools import partial
from inspect import isawaitable
from time import perf_counter
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
    """One watched operation while it runs, and the executor it runs with: it counts the
    plans it passes on to the connection's executor (and, when asked, keeps them for the
    slow-operation log and traces them), for blocking and asyncio executors alike (it
    returns what the inner one returns). One object per operation, made in one call: on a
    busy process every call and object of the hot path shows."""

    __slots__ = ("inner", "model", "collection", "operation", "connection", "backend",
                 "round_trips", "plans", "tracer", "trace", "calls")
    #: what the last plan's scripts ran with (:func:`.plans.sent_with`), for the tracer;
    #: set by :meth:`_sent` (not in ``__init__``: an unwatched operation never reads it)
    calls: plans.Calls

    def __init__(self, inner: Any, connection: Any, factory: Any, subject: Any,
                 name: str) -> None:
        self.inner, self.connection, self.backend = inner, connection, connection.kind
        self.operation = name or _name_of(factory)
        if subject is None:  # (run directly: a bound method's object stands for it)
            subject = getattr(_unwrapped(factory), "__self__", None)
        options = _options_of(subject)
        if options is None:
            self.model = self.collection = ""
        else:
            self.model, self.collection = options.model_name, options.collection
        self.round_trips = 0
        #: the plans sent, each with what its scripts were called with
        #: (:func:`.plans.script_command`), kept only for the slow-operation log
        self.plans: list[tuple[Any, plans.Calls]] | None = None
        self.tracer: Tracer | None = None
        self.trace: Any = None

    def execute(self, plan: Any) -> Any:
        self.round_trips += 1
        if self.plans is None and self.tracer is None:
            return self.inner.execute(plan)
        # (named once it was sent: what the executor calls the scripts with may change
        # while it sends the plan, FCALL falling back to EVALSHA when the libraries cannot
        # be loaded, and the name is what was actually sent; a failed plan is named too)
        try:
            sent = self.inner.execute(plan)
        except BaseException:
            self._failed(plan)
            raise
        if isawaitable(sent):  # (an asyncio executor: named once awaited)
            return self._awaited(plan, sent)
        self._sent(plan, sent)
        return sent

    async def _awaited(self, plan: Any, sent: Awaitable[Any]) -> Any:
        try:
            replies = await sent
        except BaseException:
            self._failed(plan)
            raise
        self._sent(plan, replies)
        return replies

    def _failed(self, plan: Any) -> None:
        """:meth:`_sent` of a plan that raised: a failure to name it is logged, not raised,
        so that the caller gets the plan's own error."""
        try:
            self._sent(plan)
        except Exception:
            SLOW_LOGGER.exception("naming a failed plan for the slow log or a span failed")

    def _sent(self, plan: Any, replies: Any = None) -> None:
        # (named by what ran: the replies say it when a reload sent scripts by their source)
        self.calls = calls = plans.sent_with(self.inner, plan, replies)
        if self.plans is not None:
            self.plans.append((plan, calls))
        if self.tracer is not None:
            self.tracer.round_trip(self.trace, plan)


class Tracer(Protocol):
    """Makes a trace of watched operations (see :mod:`.otel`). ``start`` makes the
    operation's span current in the caller's context and returns a handle, ``end``
    restores the context; both run in the same context."""

    def start(self, op: Running) -> Any: ...

    def round_trip(self, handle: Any, plan: Any) -> None: ...

    def note(self, handle: Any, kind: str, reason: str) -> None: ...

    def end(self, handle: Any, error: BaseException | None) -> None: ...


_current: ContextVar[Running | None] = ContextVar("quantumorm_operation", default=None)
_set, _reset = _current.set, _current.reset

#: classes of subjects that are not documents (querysets, change feeds): few, and fixed
_not_documents: set[type] = set()


def _options_of(subject: Any) -> Any:
    """A document's, a queryset's or a change feed's model options, or None."""
    if subject is None:
        return None
    kind = type(subject)
    if kind not in _not_documents:
        found = getattr(kind, "_meta", None)  # (a document: its class's)
        if found is not None:
            return found
        _not_documents.add(kind)
    return getattr(getattr(subject, "model", None), "_meta", None)


def _unwrapped(factory: Any) -> Any:
    """The function behind a factory made with ``functools.partial``."""
    while isinstance(factory, partial):
        factory = factory.func
    return factory


def _name_of(factory: Any) -> str:
    """What an operation run without a name is called: its factory's function name
    (``commit``; ``_read_op`` as ``read``), or ``run`` (a lambda)."""
    name = getattr(_unwrapped(factory), "__name__", "").strip("_").removesuffix("_op")
    return name if name.isidentifier() else "run"


#: operations that wait for something to happen by design (change feeds' and consumers'
#: reads, up to their ``wait``): never reported by the slow-operation log
WAITING = frozenset({"read"})


class Watch:
    """What is on, and the counters. One per process (:data:`WATCH`)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.recording = False
        self.tracer: Tracer | None = None
        #: the slow-operation threshold in seconds, or None
        self.slow: float | None = None

    # -- running an operation ------------------------------------------------------------

    def _watched(self, op: Running) -> Running:
        """Ask for what is on besides counting: the plans kept, the span started."""
        if self.slow is not None and op.operation not in WAITING:
            op.plans = []
        tracer = self.tracer
        if tracer is not None:
            op.tracer = tracer
            op.trace = tracer.start(op)
        return op

    def _end(self, op: Running, seconds: float, error: BaseException | None) -> None:
        """Record a finished operation. Never raises: a failure to record (a tracer's, a log
        handler's) must not turn a committed write into an error, nor replace the
        operation's own exception."""
        try:
            self._record(op, seconds, error)
        except Exception:
            SLOW_LOGGER.getChild("errors").exception(
                "recording an operation failed model=%s operation=%s", op.model or "-",
                op.operation)

    def _record(self, op: Running, seconds: float, error: BaseException | None) -> None:
        if op.tracer is not None:
            op.tracer.end(op.trace, error)
        if self.recording:
            self.recorder.operation((op.model, op.operation, op.backend), seconds,
                                    op.round_trips,
                                    None if error is None else type(error).__name__)
        slow = self.slow
        if slow is not None and seconds >= slow and op.plans is not None:
            _log_slow(op, seconds, slow)

    def run(self, connection: Any, factory: OpFactory[T], subject: Any, name: str,
            executor: Any) -> T:
        op = Running(executor, connection, factory, subject, name)
        if self.tracer is not None or self.slow is not None:
            self._watched(op)
        token = _set(op)
        start = perf_counter()
        try:
            result = drive.run(factory(connection.backend), op)
        except BaseException as exc:
            seconds = perf_counter() - start
            _reset(token)
            self._end(op, seconds, exc)
            raise
        seconds = perf_counter() - start
        _reset(token)
        self._end(op, seconds, None)
        return result

    async def arun(self, connection: Any, factory: OpFactory[T], subject: Any,
                   name: str, executor: Any) -> T:
        op = Running(executor, connection, factory, subject, name)
        if self.tracer is not None or self.slow is not None:
            self._watched(op)
        token = _set(op)
        start = perf_counter()
        try:
            result = await drive.arun(factory(connection.backend), op)
        except BaseException as exc:
            seconds = perf_counter() - start
            _reset(token)
            self._end(op, seconds, exc)
            raise
        seconds = perf_counter() - start
        _reset(token)
        self._end(op, seconds, None)
        return result

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
    shown = [plans.summary(plan, calls) for plan, calls in sent[:SLOW_PLANS]]
    if len(sent) > SLOW_PLANS:
        shown.append(f"... {len(sent) - SLOW_PLANS} more")
    SLOW_LOGGER.warning(
        "slow operation model=%s operation=%s backend=%s ms=%.1f threshold_ms=%.1f "
        "round_trips=%d plans=%s",
        op.model or "-", op.operation, op.backend, seconds * 1000, threshold * 1000,
        op.round_trips, " | ".join(shown) or "(no plan)",
        extra={"qorm_model": op.model, "qorm_operation": op.operation,
               "qorm_backend": op.backend, "qorm_duration_ms": seconds * 1000,
               "qorm_round_trips": op.round_trips, "qorm_plans": shown})


__all__ = ["SLOW_LOGGER", "SLOW_PLANS", "WAITING", "WATCH", "Running", "Tracer", "Watch",
           "sync"]
