"""What the command line's ``inspect`` reads of Redis collections, without a model class.

Every collection stores its schema in ``{ns:coll}:schema`` (:mod:`quantumorm.schema`), so
the collections of a namespace are found by SCAN (every master of a cluster) and each is
described from its schema and its keys (:meth:`KeySpace.stored`): documents and entries
per index (ZCARD), the expiry schedule (how many documents expire, the next expiry), the
change streams (XLEN, consumer groups with their pending counts and lag) and memory, from
``MEMORY USAGE`` of a random sample of documents (ZRANDMEMBER) scaled to the collection.

Blocking and read-only, on a redis-py client (single server, cluster or Sentinel: redis-py
routes each of these commands by its key). Nothing here decodes a document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rx
from redis.exceptions import RedisClusterException

from ... import sortable
from ...errors import WrongTypeError, WrongTypeSchemaError
from ...schema import Schema
from .keys import KeySpace
from .translation import translate
from .wire import text

_SCHEMA_KEY = re.compile(r"\{([A-Za-z0-9_.-]+):([A-Za-z0-9_.-]+)\}:schema\Z")
#: documents whose MEMORY USAGE is read per partition (with their meta hashes)
DEFAULT_SAMPLE = 20


@dataclass(frozen=True)
class IndexStats:
    name: str
    fields: tuple[str, ...]
    unique: bool
    #: "ready" (queries use it) or "building" (``reindex`` has not filled it yet)
    state: str
    entries: int
    #: MEMORY USAGE of its keys (Redis samples 5 members of a large sorted set and scales)
    bytes: int = 0


@dataclass(frozen=True)
class GroupStats:
    """A consumer group, summed over the partitions' streams."""

    name: str
    consumers: int
    pending: int
    #: entries not yet delivered to the group (None when the server does not say: < 7.0)
    lag: int | None


@dataclass(frozen=True)
class CollectionStats:
    namespace: str
    collection: str
    partitions: int
    partition_by: str
    layout: int
    format: int
    #: storage name -> field kind, as stored
    fields: dict[str, str]
    documents: int
    indexes: tuple[IndexStats, ...]
    #: documents with an expiry, and the next expiry (Unix time, seconds)
    expiring: int
    next_expiry: float | None
    stream_length: int
    groups: tuple[GroupStats, ...]
    #: documents whose memory was read, their bytes (document and meta keys), and that
    #: average scaled to every document (None when nothing was sampled)
    sampled: int
    sampled_bytes: int
    estimated_bytes: int | None


def collections(client: Any, namespace: str) -> list[str]:
    """The collections of ``namespace`` that have a stored schema, sorted."""
    found = set()
    try:
        for key in client.scan_iter(match=f"{{{namespace}:*}}:schema", count=1000):
            matched = _SCHEMA_KEY.match(text(key))
            if matched and matched.group(1) == namespace:
                found.add(matched.group(2))
    except (rx.RedisError, RedisClusterException) as exc:
        raise translate(exc) from exc
    return sorted(found)


def _fields(reply: Any) -> dict[str, str]:
    if isinstance(reply, Mapping):
        return {text(k): text(v) for k, v in reply.items()}
    items = list(reply or [])
    return {text(items[i]): text(items[i + 1]) for i in range(0, len(items), 2)}


def read_schema(client: Any, namespace: str, collection: str) -> Schema | None:
    """The collection's stored schema, or None."""
    probe = KeySpace.stored(namespace, collection, 1, "id", ())
    try:
        fields = _fields(client.hgetall(probe.schema))
    except (rx.RedisError, RedisClusterException) as exc:
        error = translate(exc)
        if isinstance(error, WrongTypeError):
            raise WrongTypeSchemaError(collection, probe.schema) from exc
        raise error from exc
    return Schema.load(fields, probe.schema, collection) if fields else None


def keys_of(namespace: str, collection: str, schema: Schema) -> KeySpace:
    return KeySpace.stored(namespace, collection, schema.partitions, schema.partition_by,
                           tuple(schema.indexes))


def describe(client: Any, namespace: str, collection: str, schema: Schema,
             sample: int = DEFAULT_SAMPLE,
             progress: Callable[[int, int], None] | None = None) -> CollectionStats:
    """Everything ``inspect`` shows of one collection (see the module docstring);
    ``progress(done, total)`` is called per partition."""
    try:
        return _describe(client, namespace, collection, schema, sample, progress)
    except (rx.RedisError, RedisClusterException) as exc:
        raise translate(exc) from exc


def _describe(client: Any, namespace: str, collection: str, schema: Schema, sample: int,
              progress: Callable[[int, int], None] | None) -> CollectionStats:
    keys = keys_of(namespace, collection, schema)
    documents = expiring = stream = sampled = sampled_bytes = 0
    names = list(schema.indexes)
    entries, index_bytes = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    next_expiry: float | None = None
    groups: dict[str, list[Any]] = {}
    for p in range(schema.partitions):
        # two round trips per partition, each to the one node serving its hash tag: the
        # counts, the next expiry and a sample of ids; then the sample's memory, each
        # index's memory and the stream's groups
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keys.ids(p))
        for name in names:
            pipe.zcard(keys.index(p, name))
        pipe.zcard(keys.ttl(p))
        pipe.zrange(keys.ttl(p), 0, 0, withscores=True)
        pipe.xlen(keys.changes(p))  # (0 for a stream that does not exist)
        pipe.exists(keys.changes(p))
        if sample > 0:
            pipe.zrandmember(keys.ids(p), sample)
        found = pipe.execute()
        if sample <= 0:
            found.append(())
        documents += int(found[0])
        for name, count in zip(names, found[1:1 + len(names)], strict=True):
            entries[name] += int(count)
        scheduled, first, length, has_stream, members = found[1 + len(names):]
        expiring += int(scheduled)
        if first:
            at = float(first[0][1]) / 1000
            next_expiry = at if next_expiry is None else min(next_expiry, at)
        stream += int(length)
        ids = [sortable.id_from_key(m if isinstance(m, bytes) else str(m).encode())
               for m in members or ()]
        pipe = client.pipeline(transaction=False)
        for id in ids:
            pipe.memory_usage(keys.doc(p, id))
            pipe.memory_usage(keys.meta(p, id))
        for name in names:
            pipe.memory_usage(keys.index(p, name))
        if has_stream:
            pipe.xinfo_groups(keys.changes(p))
        more = pipe.execute() if ids or names or has_stream else []
        used = more[:2 * len(ids)]
        sampled += len(ids)
        sampled_bytes += sum(int(u) for u in used if u is not None)
        for name, size in zip(names, more[2 * len(ids):2 * len(ids) + len(names)], strict=True):
            index_bytes[name] += int(size or 0)
        for group in more[-1] if has_stream else ():
            info = {text(k): v for k, v in group.items()}
            lag = info.get("lag")
            total = groups.setdefault(text(info["name"]), [0, 0, 0])
            total[0] += int(info.get("consumers", 0))
            total[1] += int(info.get("pending", 0))
            total[2] = None if lag is None or total[2] is None else total[2] + int(lag)
        if progress is not None:
            progress(p + 1, schema.partitions)
    indexes = tuple(IndexStats(name, info.fields, info.unique, info.state.value, entries[name],
                               index_bytes[name])
                    for name, info in schema.indexes.items())
    return CollectionStats(
        namespace=namespace, collection=collection, partitions=schema.partitions,
        partition_by=schema.partition_by, layout=schema.layout, format=schema.format,
        fields=dict(schema.fields), documents=documents, indexes=indexes,
        expiring=expiring, next_expiry=next_expiry, stream_length=stream,
        groups=tuple(GroupStats(name, c, pending, lag)
                     for name, (c, pending, lag) in sorted(groups.items())),
        sampled=sampled, sampled_bytes=sampled_bytes,
        estimated_bytes=round(sampled_bytes / sampled * documents) if sampled else None)


__all__ = ["CollectionStats", "GroupStats", "IndexStats", "collections", "describe",
           "keys_of", "read_schema"]
