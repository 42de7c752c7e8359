"""Change events: what every write records, and the readers that follow them.

Each create, update and delete (and each purge of an expired document) appends one entry to
its partition's change stream *inside the write's atomic script*: an acknowledged write
always has its event, and no event exists for a write that was refused. Three readers:

* :class:`ChangeFeed` (``Model.objects.changes(since=...)``) tails the streams, from now,
  from the oldest kept entry, from a time, or from a position a previous feed reported.
* :class:`ConsumerGroup` / :class:`Consumer` (``Model.objects.consumer_group(name)``) share
  the events between workers: every event goes to one consumer of the group, stays pending
  until acknowledged, and can be claimed by another consumer when its holder crashed.
  Delivery is at least once; acknowledge after the work is done.
* ``Model.objects.subscribe()`` (``Meta.publish = True``): Pub/Sub notifications, sent only
  to whoever listens at that moment (no history, no acknowledgement).

Events are ordered exactly within a partition, so all events of one document come in order.
Across partitions a feed merges each batch by time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from . import logs
from .engine.drive import Op, OpFactory
from .engine.twin import operation
from .errors import BackendConnectionError, UnsupportedOperation
from .registry import connection_for, get_connection

if TYPE_CHECKING:
    from .connection import Connection
    from .document import Document
    from .engine.contract import Backend

D = TypeVar("D", bound="Document")

#: events per partition and read (one read is one round trip)
DEFAULT_BATCH = 100
#: longest single blocking read, in seconds (well inside the connection's socket timeout)
MAX_BLOCK = 1.0


@dataclass(frozen=True)
class ChangeEvent(Generic[D]):
    """One committed change of one document.

    ``changed`` names the fields an update changed (None for create, delete and expire).
    ``data`` is the document's stored form when the model sets ``Meta.changes_document``
    (after the write; for a delete, the last stored form), else None.
    """

    model: type[D]
    op: str  # "create" | "update" | "delete" | "expire"
    id: str
    version: int  # the version written; for delete and expire, the last version stored
    changed: tuple[str, ...] | None
    data: dict[str, Any] | None
    write_id: str | None
    partition: int
    stream_id: str  # "" for a Pub/Sub notification of a model without a stream

    @property
    def document(self) -> D | None:
        """The document as of this event (``Meta.changes_document``), else None."""
        if self.data is None:
            return None
        return self.model.from_storage(self.id, self.version, self.data)

    @property
    def time(self) -> datetime | None:
        """When the server recorded the event (from the stream id, millisecond precision)."""
        if not self.stream_id:
            return None
        ms = int(self.stream_id.split("-", 1)[0])
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)

    def __repr__(self) -> str:
        return (f"<ChangeEvent {self.op} {self.model.__name__} {self.id!r} v{self.version}"
                f" at {self.partition}:{self.stream_id}>")


class Subscription(Protocol[D]):
    """What ``Model.objects.subscribe()`` returns (the backend's own class): Pub/Sub
    notifications, read inside ``with`` / ``async with``."""

    def __enter__(self) -> Subscription[D]: ...

    def __exit__(self, *exc: object) -> None: ...

    def __iter__(self) -> Iterator[ChangeEvent[D]]: ...

    async def __aenter__(self) -> Subscription[D]: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def __aiter__(self) -> AsyncIterator[ChangeEvent[D]]: ...


class IdleClock:
    """When an iteration that ends after ``wait`` seconds without an event (never, when
    ``wait`` is None) must stop, and how long its next read may block (at most MAX_BLOCK)."""

    def __init__(self, wait: float | None) -> None:
        self.wait = wait
        self.restart()

    def restart(self) -> None:
        """An event came: the idle time starts again."""
        self._deadline = None if self.wait is None else time.monotonic() + self.wait

    def block(self) -> float:
        if self._deadline is None:
            return MAX_BLOCK
        return max(0.0, min(self._deadline - time.monotonic(), MAX_BLOCK))

    @property
    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline


@dataclass(frozen=True, slots=True)
class Pause:
    """A request of the iteration loops (here and in the Pub/Sub subscription): let other
    tasks run (asyncio: ``sleep(0)``, so a non-blocking read cannot starve the loop; a
    blocking iteration has nothing to do). Result: None."""


PAUSE = Pause()


@dataclass(frozen=True, slots=True)
class _Read:
    """Run this operation factory (the read of one batch). Result: the batch's events."""

    op: Any


@dataclass(frozen=True, slots=True)
class _Deliver:
    """Hand these events to the iterating code. Result: None."""

    events: list[Any]


def check_wait(wait: float | None) -> None:
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float))
                             or wait < 0):
        raise ValueError(f"wait must be a number of seconds >= 0, or None (got {wait!r})")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (got {value!r})")


def _backend_of(connection: Connection) -> Backend:
    backend: Backend = connection.backend
    if not backend.capabilities.change_events:
        raise UnsupportedOperation(backend.name, "change events")
    return backend


class _Reader(Generic[D]):
    """What feeds and consumers share: a model, a connection, and iteration over reads
    that ends after ``wait`` seconds without a new event (None: never)."""

    def __init__(self, model: type[D], using: str | None) -> None:
        self.model, self._using = model, using

    def _connection(self) -> Connection:
        if self._using is None:
            connection = connection_for(self.model)
        else:
            connection = connection_for(self.model, get_connection(self._using))
        _backend_of(connection)
        if self.model._meta.changes is False:
            raise UnsupportedOperation(connection.kind, "change events",
                                       f"{self.model.__name__} sets Meta.changes = False")
        return connection

    def _next(self, block: float) -> OpFactory[list[ChangeEvent[D]]]:  # reads one batch
        raise NotImplementedError

    def _reads(self, wait: float | None) -> Generator[_Read | _Deliver | Pause, Any, None]:
        """The iteration loop, for both drivers: read a batch (blocking up to the idle
        clock's next wait), hand its events out, pause; end after ``wait`` seconds without
        a new event."""
        clock = IdleClock(wait)
        while True:
            events = yield _Read(self._next(clock.block()))
            if events:
                yield _Deliver(events)
                clock.restart()
            elif clock.expired:
                return
            yield PAUSE

    def _iterate_sync(self, wait: float | None) -> Iterator[ChangeEvent[D]]:
        check_wait(wait)
        connection, loop = self._connection(), self._reads(wait)
        request = next(loop)
        while True:
            result = None
            if isinstance(request, _Read):
                result = connection.run(request.op)
            elif isinstance(request, _Deliver):
                yield from request.events
            try:
                request = loop.send(result)
            except StopIteration:
                return

    async def _iterate_async(self, wait: float | None) -> AsyncIterator[ChangeEvent[D]]:
        check_wait(wait)
        connection, loop = self._connection(), self._reads(wait)
        request = next(loop)
        while True:
            result = None
            if isinstance(request, _Read):
                result = await connection.arun(request.op)
            elif isinstance(request, _Deliver):
                for event in request.events:
                    yield event
            else:
                await asyncio.sleep(0)  # a non-blocking read must not starve the loop
            try:
                request = loop.send(result)
            except StopIteration:
                return


class ChangeFeed(_Reader[D]):
    """A tail of a model's change streams, from ``since``:

    * ``None`` or ``"$"``: events after the feed's first read;
    * ``"0"``: from the oldest event the streams still keep (``Meta.changes_maxlen``);
    * a :class:`datetime`: events recorded at or after it;
    * a position string from :attr:`position` of an earlier feed (resume where it stopped).

    ``for event in feed`` / ``async for event in feed`` wait for new events forever unless
    the feed was made with ``wait=`` seconds: iteration then ends after that long without
    one. :meth:`read` returns one batch.
    """

    def __init__(self, model: type[D], using: str | None, since: str | datetime | None,
                 wait: float | None, batch: int) -> None:
        super().__init__(model, using)
        check_wait(wait)
        _check_count("batch", batch)
        self.since, self.wait, self.batch = since, wait, batch
        self._positions: list[str] | None = None

    @property
    def position(self) -> str | None:
        """Where the feed stands (give it as ``since=`` to resume); None before any read."""
        return None if self._positions is None else ",".join(self._positions)

    def _next(self, block: float) -> OpFactory[list[ChangeEvent[D]]]:
        return partial(self._read_op, block=block)

    def _read_op(self, backend: Backend, block: float) -> Op[list[ChangeEvent[D]]]:
        options = self.model._meta
        if self._positions is None:
            self._positions = yield from backend.change_positions(options, self.since)
        events, self._positions = yield from backend.read_changes(
            self.model, self._positions, self.batch, block)
        return events

    @operation
    def read(self, wait: float = 0.0) -> OpFactory[list[ChangeEvent[D]]]:
        """The next batch of events (at most ``batch``); waits up to ``wait`` seconds for
        one when there is none (at most one second per call)."""
        check_wait(wait)
        return self._next(min(wait, MAX_BLOCK))
    read_sync = read.sync

    def __iter__(self) -> Iterator[ChangeEvent[D]]:
        return self._iterate_sync(self.wait)

    def __aiter__(self) -> AsyncIterator[ChangeEvent[D]]:
        return self._iterate_async(self.wait)


class ConsumerGroup(Generic[D]):
    """A named group of consumers sharing a model's change events (a Redis consumer group
    on every partition stream, created on first use; ``start`` says where a new group
    begins: ``"$"`` at the next event, ``"0"`` at the oldest kept one)."""

    def __init__(self, model: type[D], using: str | None, name: str, start: str) -> None:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ValueError(f"a group name is a non-empty string (got {name!r})")
        if start not in ("$", "0"):
            raise ValueError(f"start must be '$' (new events) or '0' (all kept) (got {start!r})")
        self.model, self._using, self.name, self.start = model, using, name, start

    def consumer(self, name: str, *, batch: int = DEFAULT_BATCH,
                 wait: float | None = None) -> Consumer[D]:
        """A consumer of this group; after a crash, a new consumer with the same name first
        gets back what the old one read and had not acknowledged."""
        return Consumer(self, name, batch, wait)

    def _connection(self) -> Connection:
        return _Reader(self.model, self._using)._connection()

    @operation
    def pending(self) -> OpFactory[int]:
        """How many events were delivered to this group's consumers and not acknowledged."""
        return partial(_pending, group=self)
    pending_sync = pending.sync


def _pending(backend: Backend, group: ConsumerGroup[Any]) -> Op[int]:
    yield from backend.create_group(group.model._meta, group.name, group.start)
    return (yield from backend.group_pending(group.model._meta, group.name))


class Consumer(_Reader[D]):
    """One worker of a :class:`ConsumerGroup`.

    Reading first returns what this consumer (by name) read earlier and never
    acknowledged, then new events. :meth:`ack` acknowledges handled events; :meth:`claim`
    takes over events another consumer has held unacknowledged for ``min_idle`` seconds.
    """

    def __init__(self, group: ConsumerGroup[D], name: str, batch: int,
                 wait: float | None) -> None:
        super().__init__(group.model, group._using)
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ValueError(f"a consumer name is a non-empty string (got {name!r})")
        _check_count("batch", batch)
        check_wait(wait)
        self.group, self.name, self.batch, self.wait = group, name, batch, wait
        self._created = False
        #: where re-reading this consumer's own unacknowledged events stands (None: done)
        self._backlog: list[str] | None = ["0-0"] * group.model._meta.partitions

    def _next(self, block: float) -> OpFactory[list[ChangeEvent[D]]]:
        return partial(self._read_op, block=block)

    def _read_op(self, backend: Backend, block: float) -> Op[list[ChangeEvent[D]]]:
        try:
            return (yield from self._read(backend, block))
        except BackendConnectionError:
            self._lost()
            raise

    def _lost(self) -> None:
        """The connection broke during a read or claim: what it delivered is pending here
        unseen, so the next read starts again with this consumer's own pending events."""
        logs.events.warning("change consumer lost its connection; its pending events are "
                            "read again model=%s group=%s consumer=%s", self.model.__name__,
                            self.group.name, self.name)
        self._backlog = ["0-0"] * self.model._meta.partitions

    def _read(self, backend: Backend, block: float) -> Op[list[ChangeEvent[D]]]:
        group = self.group
        if not self._created:
            yield from backend.create_group(self.model._meta, group.name, group.start)
            self._created = True
        if self._backlog is not None:
            before = self._backlog
            events, self._backlog = yield from backend.read_group(
                self.model, group.name, self.name, self.batch, 0.0, before)
            if events or self._backlog != before:
                return events
            self._backlog = None
        events, _ = yield from backend.read_group(self.model, group.name, self.name,
                                                  self.batch, block, None)
        return events

    @operation
    def read(self, wait: float = 0.0) -> OpFactory[list[ChangeEvent[D]]]:
        """The next batch for this consumer (pending ones of its own first)."""
        check_wait(wait)
        return self._next(min(wait, MAX_BLOCK))
    read_sync = read.sync

    @operation
    def ack(self, *events: ChangeEvent[D]) -> OpFactory[int]:
        """Acknowledge handled events; returns how many were still pending."""
        return partial(_ack, model=self.model, group=self.group.name, events=events)
    ack_sync = ack.sync

    @operation
    def claim(self, min_idle: float, count: int = DEFAULT_BATCH
              ) -> OpFactory[list[ChangeEvent[D]]]:
        """Take over events other consumers hold unacknowledged for at least ``min_idle``
        seconds (a crashed worker's); they are returned, now pending here. About ``count``
        at most: the partitions are asked in one round, so with several partitions a call
        may return up to ``count`` per partition."""
        if isinstance(min_idle, bool) or not isinstance(min_idle, (int, float)) or min_idle < 0:
            raise ValueError(f"min_idle must be seconds >= 0 (got {min_idle!r})")
        _check_count("count", count)
        return partial(_claim, consumer=self, min_idle=min_idle, count=count)
    claim_sync = claim.sync

    def __iter__(self) -> Iterator[ChangeEvent[D]]:
        return self._iterate_sync(self.wait)

    def __aiter__(self) -> AsyncIterator[ChangeEvent[D]]:
        return self._iterate_async(self.wait)


def _ack(backend: Backend, model: type[Any], group: str,
         events: tuple[ChangeEvent[Any], ...]) -> Op[int]:
    for event in events:
        if not isinstance(event, ChangeEvent) or event.model is not model or not event.stream_id:
            raise ValueError(f"ack() takes stream events of {model.__name__} (got {event!r})")
    return (yield from backend.ack_changes(model._meta, group, list(events)))


def _claim(backend: Backend, consumer: Consumer[Any], min_idle: float, count: int
           ) -> Op[list[ChangeEvent[Any]]]:
    group = consumer.group
    yield from backend.create_group(group.model._meta, group.name, group.start)
    try:
        claimed = yield from backend.claim_changes(group.model, group.name, consumer.name,
                                                   min_idle, count)
    except BackendConnectionError:
        consumer._lost()
        raise
    if claimed:
        logs.events.info("claimed idle change events model=%s group=%s consumer=%s count=%d",
                         group.model.__name__, group.name, consumer.name, len(claimed))
    return claimed
