"""Reading change events on Redis: the partitions' streams, consumer groups, Pub/Sub.

The write scripts append the entries (``emit`` in ``lua/_prelude.lua``); this module only
reads them. A stream entry's fields::

    op  create | update | delete | expire        id  the document's id key
    v   version written (delete/expire: last)    w   write id (create/update)
    f   MessagePack array of changed fields      d   document JSON (Meta.changes_document)

``d`` holds the document's stored bytes (compressed when the document is, see
:mod:`quantumorm.compression`): an event carries the decoded document all the same.

A Pub/Sub message is the same pairs as one MessagePack array, plus ``x``: the stream id.
Stream reads go to every partition in one command (one round trip); on Redis Cluster, where
one command cannot name several slots, that is for the cluster work to split per node.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ... import compression, logs, sortable
from ...engine.drive import Op, forbid_blocking
from ...errors import CorruptDocumentError
from ...events import PAUSE, ChangeEvent, IdleClock, Pause
from ...options import ModelOptions
from . import wire
from .calls import GroupCall
from .commands import Command, RedisPlan
from .keys import KeySpace
from .translation import translate

if TYPE_CHECKING:
    from ...document import Document

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}\Z")
_MAX_SEQ = 18446744073709551615


def positions(keys: KeySpace, since: Any) -> Op[list[str]]:
    """The stream id to read after, per partition, for a feed starting at ``since``."""
    count = keys.partitions
    if since is None or since == "$":
        replies = yield RedisPlan(tuple(Command(("XREVRANGE", keys.changes(p), "+", "-",
                                                 "COUNT", 1)) for p in range(count)),
                                  read_only=True)
        return [wire.text(reply[0][0]) if reply else "0-0" for reply in replies]
    if since == "0" or since == 0:
        return ["0-0"] * count
    if isinstance(since, datetime):  # (naive: UTC, as everywhere in QuantumORM)
        at = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
        ms = int(at.timestamp() * 1000)
        return [f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0-0"] * count
    if isinstance(since, str):
        parts = since.split(",")
        if len(parts) == count and all(_STREAM_ID.match(part) for part in parts):
            return parts
    raise ValueError(
        f"since must be None or '$' (new events), '0' (all kept), a datetime, or a feed "
        f"position with {count} stream id(s) (got {since!r})")


#: on Redis Cluster, how long a feed waits on one partition before polling them all again
CLUSTER_POLL = 0.25


def read(model: type[Document], keys: KeySpace, after: list[str], count: int,
         block: float, cluster: bool = False
         ) -> Op[tuple[list[ChangeEvent[Any]], list[str]]]:
    """XREAD over every partition stream: the events after ``after``, and the new positions.
    One command names every stream; on Redis Cluster (one slot per command) each partition
    is read by its own command, all in one round trip per node, and waiting is a short
    blocking read on one partition between polls."""
    streams = [keys.changes(p) for p in range(keys.partitions)]
    reply = yield from _streams_read(["XREAD", "COUNT", count], streams, after, block, cluster,
                                     read_only=True)
    events, moved = _decode_reply(model, streams, reply)
    return events, [moved.get(p, position) for p, position in enumerate(after)]


def _streams_read(head: list[Any], streams: list[str], ids: list[str], block: float,
                  cluster: bool, read_only: bool, idempotent: bool = False) -> Op[list[Any]]:
    """One XREAD / XREADGROUP (``head``) over ``streams`` after ``ids``, waiting up to
    ``block`` seconds; its reply as [[stream, entries], ...]."""
    wait = ["BLOCK", max(1, int(block * 1000))] if block >= 0.001 else []
    if not cluster or len(streams) == 1:
        (reply,) = yield RedisPlan((Command((*head, *wait, "STREAMS", *streams, *ids)),),
                                   read_only=read_only, idempotent=idempotent)
        return _by_stream(reply)
    replies = yield RedisPlan(tuple(Command((*head, "STREAMS", stream, at))
                                    for stream, at in zip(streams, ids, strict=True)),
                              read_only=read_only, idempotent=idempotent)
    found = [part for reply in replies for part in _by_stream(reply)]
    if any(entries for _, entries in found) or not wait:
        return found
    wait = ["BLOCK", max(1, int(min(block, CLUSTER_POLL) * 1000))]
    (reply,) = yield RedisPlan((Command((*head, *wait, "STREAMS", streams[0], ids[0])),),
                               read_only=read_only, idempotent=idempotent)
    return _by_stream(reply)


def _by_stream(reply: Any) -> list[Any]:
    """An XREAD/XREADGROUP reply as [[stream, entries], ...]: RESP2 sends that list, RESP3
    a map from stream to entries (``protocol=3``)."""
    if isinstance(reply, dict):  # (redis-py wraps each stream's entries in one more list)
        return [[name, _unwrapped(entries)] for name, entries in reply.items()]
    return list(reply or [])


def _unwrapped(entries: list[Any]) -> list[Any]:
    if len(entries) == 1 and isinstance(entries[0], list) and (
            not entries[0] or isinstance(entries[0][0], (list, tuple))):
        return list(entries[0])
    return entries


def create_group(keys: KeySpace, group: str, start: str) -> Op[None]:
    yield RedisPlan(tuple(GroupCall(keys.changes(p), group, start).call()
                          for p in range(keys.partitions)), idempotent=True)


def read_group(model: type[Document], keys: KeySpace, group: str, consumer: str, count: int,
               block: float, after: list[str] | None, cluster: bool = False
               ) -> Op[tuple[list[ChangeEvent[Any]], list[str] | None]]:
    """XREADGROUP: new events (``after`` None), or this consumer's own pending ones after
    ``after`` (what it read before and never acknowledged)."""
    streams = [keys.changes(p) for p in range(keys.partitions)]
    head: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    ids = [">"] * len(streams) if after is None else after
    # (XREADGROUP is a write command, even re-reading pending entries: always the master)
    reply = yield from _streams_read(head, streams, ids, block if after is None else 0.0,
                                     cluster, read_only=False, idempotent=after is not None)
    gone: dict[int, list[str]] = {}
    events, moved = _decode_reply(model, streams, reply, gone)
    if gone:  # pending entries the stream trimmed away: nothing left to deliver
        logs.events.warning("pending change events were trimmed from the stream before "
                            "delivery; acknowledged as lost model=%s group=%s count=%d",
                            model.__name__, group, sum(map(len, gone.values())))
        yield RedisPlan(tuple(Command(("XACK", streams[p], group, *ids))
                              for p, ids in gone.items()), idempotent=True)
    if after is None:
        return events, None
    return events, [moved.get(p, position) for p, position in enumerate(after)]


def pending(keys: KeySpace, group: str) -> Op[int]:
    replies = yield RedisPlan(tuple(Command(("XPENDING", keys.changes(p), group))
                                    for p in range(keys.partitions)), read_only=True)
    return sum(int(_summary_count(reply)) for reply in replies)


def ack(keys: KeySpace, group: str, events: Sequence[ChangeEvent[Any]]) -> Op[int]:
    by_partition: dict[int, list[str]] = {}
    for event in events:
        by_partition.setdefault(event.partition, []).append(event.stream_id)
    if not by_partition:
        return 0
    replies = yield RedisPlan(tuple(Command(("XACK", keys.changes(p), group, *ids))
                                    for p, ids in by_partition.items()), idempotent=True)
    return sum(int(reply) for reply in replies)


def claim(model: type[Document], keys: KeySpace, group: str, consumer: str,
          min_idle: float, count: int) -> Op[list[ChangeEvent[Any]]]:
    """XAUTOCLAIM on every partition until ``count`` events are claimed or none is left."""
    idle = str(int(min_idle * 1000))
    cursors = {p: "0-0" for p in range(keys.partitions)}
    claimed: list[ChangeEvent[Any]] = []
    while cursors and len(claimed) < count:
        order = list(cursors)
        replies = yield RedisPlan(tuple(
            Command(("XAUTOCLAIM", keys.changes(p), group, consumer, idle, cursors[p],
                     "COUNT", count - len(claimed))) for p in order))
        for p, reply in zip(order, replies, strict=True):
            cursor, entries = wire.text(reply[0]), reply[1]
            for stream_id, fields in entries:
                if fields is not None:
                    claimed.append(decode(model, p, wire.text(stream_id), fields))
            if cursor == "0-0":
                del cursors[p]
            else:
                cursors[p] = cursor
    return claimed


def decode(model: type[Document], partition: int, stream_id: str,
           fields: dict[bytes, bytes]) -> ChangeEvent[Any]:
    """A stream entry (or Pub/Sub message) as a typed event."""
    try:
        op = fields[b"op"].decode()
        id = sortable.id_from_key(bytes(fields[b"id"]))
        digits = fields[b"v"]
        # (plain digits, as the scripts write them: int() also reads "+13"; "0" is the
        # version of an expiry whose meta hash was gone, see purge_expired in _prelude.lua)
        if not (digits[:1] in b"123456789" and digits.isdigit() or digits == b"0"):
            raise ValueError(f"the version {digits[:24]!r} is not plain digits")
        version = int(digits)
        changed = (tuple(name.decode() for name in wire.unpack(fields[b"f"]))
                   if b"f" in fields else None)
        data = (json.loads(compression.decompress(fields[b"d"], model.__name__, id))
                if b"d" in fields else None)
        write_id = fields[b"w"].decode() if b"w" in fields else None
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptDocumentError(model.__name__, stream_id,
                                   f"not a change event ({exc!r})") from exc
    return ChangeEvent(model, op, id, version, changed, data, write_id, partition, stream_id)


def _decode_reply(model: type[Document], streams: list[str], reply: list[Any],
                  gone: dict[int, list[str]] | None = None
                  ) -> tuple[list[ChangeEvent[Any]], dict[int, str]]:
    """Events of an XREAD/XREADGROUP reply (in time order) and the last id per partition."""
    partition_of = {stream.encode(): p for p, stream in enumerate(streams)}
    events: list[ChangeEvent[Any]] = []
    moved: dict[int, str] = {}
    for name, entries in reply:
        p = partition_of[bytes(name)]
        for stream_id, fields in entries:
            sid = wire.text(stream_id)
            moved[p] = sid
            if fields is None:  # a pending entry that was trimmed from the stream
                if gone is not None:
                    gone.setdefault(p, []).append(sid)
                continue
            events.append(decode(model, p, sid, fields))
    if len(streams) > 1:
        events.sort(key=lambda e: tuple(int(n) for n in e.stream_id.split("-")))
    return events, moved


def _summary_count(reply: Any) -> Any:
    if isinstance(reply, dict):  # redis-py parses the XPENDING summary into a dict
        return reply.get("pending", 0)
    return reply[0]



@dataclass(frozen=True, slots=True)
class Receive:
    """Read the next Pub/Sub message, waiting up to ``timeout`` seconds. Result: the
    message, or None."""

    timeout: float


class Subscription:
    """Pub/Sub notifications of one model (``Meta.publish = True``), from the moment the
    subscription is entered: ``with Model.objects.subscribe() as sub: for event in sub``
    (or ``async with`` / ``async for``). Nothing is kept for a listener that is away.
    Iteration ends after ``wait`` seconds without a message (None: never)."""

    def __init__(self, model: type[Document], options: ModelOptions, store: Any,
                 wait: float | None) -> None:
        self.model, self._store, self.wait = model, store, wait
        self._keys = KeySpace(options)
        self._sync: Any = None
        self._async: Any = None

    # -- blocking --------------------------------------------------------------------------

    def __enter__(self) -> Subscription:
        forbid_blocking(lambda: f"with {self.model.__name__}.objects.subscribe()")
        pubsub = self._store.sync_executor().client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._keys.channel)
        except Exception as exc:
            pubsub.close()  # (its connection goes back, not leaked)
            raise translate(exc) from exc
        self._sync = pubsub
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def __iter__(self) -> Iterator[ChangeEvent[Any]]:
        if self._sync is None:
            raise RuntimeError("use the subscription inside `with Model.objects.subscribe()`")
        forbid_blocking(lambda: f"for ... in {self.model.__name__}.objects.subscribe()")
        pubsub, loop = self._sync, self._listen()
        try:
            request = next(loop)
            while True:
                if isinstance(request, Receive):
                    try:
                        message = pubsub.get_message(timeout=request.timeout)
                    except Exception as exc:
                        request = loop.throw(exc)
                        continue
                    request = loop.send(message)
                    continue
                if isinstance(request, ChangeEvent):
                    yield request
                request = loop.send(None)  # (a pause: the blocking side has no one to wait for)
        except StopIteration:
            return

    # -- asyncio ---------------------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        pubsub = self._store.async_executor().client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._keys.channel)
        except Exception as exc:
            await pubsub.aclose()
            raise translate(exc) from exc
        self._async = pubsub
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    async def __aiter__(self) -> AsyncIterator[ChangeEvent[Any]]:
        if self._async is None:
            raise RuntimeError("use the subscription inside `async with "
                               "Model.objects.subscribe()`")
        pubsub, loop = self._async, self._listen()
        try:
            request = next(loop)
            while True:
                if isinstance(request, Receive):
                    try:
                        message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                           timeout=request.timeout)
                    except Exception as exc:
                        request = loop.throw(exc)
                        continue
                    request = loop.send(message)
                    continue
                if isinstance(request, ChangeEvent):
                    yield request
                else:
                    await asyncio.sleep(0)  # (let other tasks run between empty reads)
                request = loop.send(None)
        except StopIteration:
            return

    def _listen(self) -> Generator[Receive | ChangeEvent[Any] | Pause, Any, None]:
        """The listening loop, for both drivers: yields a :class:`Receive` (result: the
        message, or None), each event to hand out, and a pause after a read without one;
        ends after ``wait`` seconds without a message."""
        clock = IdleClock(self.wait)
        while not clock.expired:
            try:
                message = yield Receive(clock.block())
            except Exception as exc:
                raise translate(exc) from exc
            if message is not None and message.get("type") == "message":
                yield self._event(message["data"])
                clock.restart()
            else:
                yield PAUSE

    def _event(self, payload: bytes) -> ChangeEvent[Any]:
        try:
            flat = wire.unpack(payload)
        except ValueError as exc:
            raise CorruptDocumentError(self.model.__name__, self._keys.channel,
                                       f"not a change notification ({exc})") from exc
        fields = {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}
        event = decode(self.model, 0, fields.get(b"x", b"").decode(errors="replace"), fields)
        return replace(event, partition=self._keys.partition_of(event.id))
