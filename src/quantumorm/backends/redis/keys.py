r"""Every Redis key name QuantumORM uses is built here, and nowhere else.

Layout of a collection ``coll`` in namespace ``ns`` with ``P`` partitions::

    {ns:coll:pN}:d:<id>      STRING  \x01<version>\0<W>\0, then the document JSON, byte-exact
                                     as Python encoded it, or compressed (stored.py); W = the
                                     recent write ids, newest first (headed.py)
    {ns:coll:pN}:m:<id>      HASH    only where a format-3 document needs one: while it has an
                                     expiry, its sweep record (v = version and every index's
                                     f:<field> / x:<index> = the value encodings it holds);
                                     else the listed indexes' fields (headed.listed_names), or
                                     no key at all
    {ns:coll:pN}:ids         ZSET    score 0, member = id key (natural id order)
    {ns:coll:pN}:i:<index>   ZSET    score 0, member = value encodings + id key (lex ranges)
    {ns:coll:pN}:ttl         ZSET    score = expire-at ms, member = id key (expiry schedule)
    {ns:coll:pN}:z:<id>      STRING  a soft-deleted document (as stored), until it expires
    {ns:coll:pN}:x           STREAM  the partition's change events (see ``events.py``)
    {ns:coll:pN}:state       HASH    clock = the last version given (versions never repeat),
                                     layout = the newest schema layout seen (see schema.py)
    {ns:coll}:schema         HASH    the stored schema: fields, indexes and their states
    {ns:coll:p0}:seq         STRING  auto-id counter when P == 1 (same slot: one-call inserts)
    {ns:coll}:seq            STRING  auto-id counter when P > 1

Pub/Sub notifications (``Meta.publish``) go to the channel ``ns:coll:changes``.

A document stored by an earlier release is read and written in its own format: format 2,
``\0<version>\0`` then the payload, with a meta hash holding ``v``, ``r`` (its recent
writes) and every index's fields; format 1, the payload alone, its version in ``v``
(bench/format3.md, section 1; schema.FORMAT).

``N = crc32(utf-8 partition key) % P``, where the partition key is the id, or, with
``Meta.partition_by = "tag"`` and as in Redis Cluster's hash tags, the part of the id
between its first ``{`` and the next ``}`` when that part is not empty: ``"{acme}:order:7"``
and ``"{acme}:order:8"`` then share a partition, so one atomic script (a transaction) can
reach both.

The hash tag is always the first ``{...}`` of the key and is built only from the namespace,
collection and partition, which are restricted to ``[A-Za-z0-9_.-]``; ids are percent-encoded
(:func:`quantumorm.sortable.escape_id`), so no id can change a key's slot or name another key.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

from ...fields.base import Field
from ...options import IndexSpec, ModelOptions
from ...sortable import escape_id


def partition_key(id: str) -> str:
    """What decides an id's partition: its ``{tag}`` if it has a non-empty one, else itself."""
    start = id.find("{")
    if start != -1:
        end = id.find("}", start + 1)
        if end > start + 1:
            return id[start + 1:end]
    return id


def meta_field(field: Field) -> str:
    """The meta hash field holding ``field``'s value encodings (``{ns:coll:pN}:m:<id>``)."""
    return f"f:{field.db_name}"


def manifest_field(options: ModelOptions, index: IndexSpec) -> str:
    """The meta hash field that lists the entries a document has in ``index``."""
    if index.compound:
        return f"x:{index.name}"
    return meta_field(options.fields[index.fields[0]])


def index_suffix(name: str) -> str:
    """An index key's name after its partition's tag and ``:``: what ``patch.lua``'s rare
    paths (a purge, a sweep), which are sent only the keys of the indexes a patch touches,
    join to the tag of the keys they are sent (same tag, same slot)."""
    return f"i:{name}"


@dataclass(slots=True)
class PartitionKeys:
    """The keys of one partition that every script call names, built once (hot paths build
    a document's keys as ``doc_prefix + escape_id(id)``: one concatenation)."""

    ids: str
    ttl: str
    state: str
    doc_prefix: str
    meta_prefix: str
    indexes: list[str]  # every index key, in the model's index order
    changes: str


class KeySpace:
    def __init__(self, options: ModelOptions) -> None:
        self.namespace = options.namespace
        self.collection = options.collection
        self.partitions = options.partitions
        self.by_tag = options.partition_by == "tag"
        self.index_names = tuple(index.name for index in options.indexes)
        self._partitions: dict[int, PartitionKeys] = {}

    @classmethod
    def stored(cls, namespace: str, collection: str, partitions: int, partition_by: str,
               index_names: tuple[str, ...]) -> KeySpace:
        """The keys of a collection known by its stored schema only (the command line's
        ``inspect``, which imports no model)."""
        keys = cls.__new__(cls)
        keys.namespace, keys.collection, keys.partitions = namespace, collection, partitions
        keys.by_tag, keys.index_names = partition_by == "tag", index_names
        keys._partitions = {}
        return keys

    def partition(self, partition: int) -> PartitionKeys:
        """The partition's shared keys (cached)."""
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = PartitionKeys(
                self.ids(partition), self.ttl(partition), self.state(partition),
                self.doc_prefix(partition), self.meta_prefix(partition),
                self.indexes(partition), self.changes(partition))
        return found

    def partition_of(self, id: str) -> int:
        if self.partitions == 1:
            return 0
        key = partition_key(id) if self.by_tag else id
        return zlib.crc32(key.encode("utf-8")) % self.partitions

    def tag(self, partition: int) -> str:
        return f"{{{self.namespace}:{self.collection}:p{partition}}}"

    def doc(self, partition: int, id: str) -> str:
        return f"{self.tag(partition)}:d:{escape_id(id)}"

    def meta(self, partition: int, id: str) -> str:
        return f"{self.tag(partition)}:m:{escape_id(id)}"

    def doc_prefix(self, partition: int) -> str:
        return f"{self.tag(partition)}:d:"

    def meta_prefix(self, partition: int) -> str:
        return f"{self.tag(partition)}:m:"

    def trash(self, partition: int, id: str) -> str:
        """Where a soft-deleted document's JSON waits for its expiry (never read by queries)."""
        return f"{self.tag(partition)}:z:{escape_id(id)}"

    def ids(self, partition: int) -> str:
        return f"{self.tag(partition)}:ids"

    def ttl(self, partition: int) -> str:
        """The partition's expiry schedule: ZSET, score = expire-at ms, member = id key."""
        return f"{self.tag(partition)}:ttl"

    def state(self, partition: int) -> str:
        """The partition's state hash: its version clock (``next_version`` in
        ``lua/_write.lua``), which outlives every document so that no id is ever given a
        version it had before, and the schema layout scripts check (``lua/_prelude.lua``)."""
        return f"{self.tag(partition)}:state"

    def changes(self, partition: int) -> str:
        """The partition's change stream (one entry per create, update, delete, expiry)."""
        return f"{self.tag(partition)}:x"

    @cached_property
    def channel(self) -> str:
        """The Pub/Sub channel of the collection's change notifications."""
        return f"{self.namespace}:{self.collection}:changes"

    def index(self, partition: int, name: str) -> str:
        return f"{self.tag(partition)}:{index_suffix(name)}"

    def indexes(self, partition: int) -> list[str]:
        """Every index key of the partition, in the model's index order."""
        return [self.index(partition, name) for name in self.index_names]

    @cached_property
    def schema(self) -> str:
        """The collection's stored schema (:mod:`quantumorm.schema`): one hash for all its
        partitions, in the slot of ``{ns:coll}``."""
        return f"{{{self.namespace}:{self.collection}}}:schema"

    @cached_property
    def sequence(self) -> str:
        if self.partitions == 1:
            return f"{self.tag(0)}:seq"
        return f"{{{self.namespace}:{self.collection}}}:seq"

    def patterns(self) -> list[str]:
        """SCAN patterns matching every key of the collection and no other collection's."""
        base = f"{self.namespace}:{self.collection}"
        return [f"{{{base}:p[0-9]*}}:*", f"{{{base}}}:*"]
