"""Turn write requests into ``save.lua`` / ``delete.lua`` calls, and their replies into results.

Pure. The index maths lives here: for each index a write touches, the list of value
encodings the document must have in it (one per element for arrays, the concatenation of
the fields' encodings for compound indexes). ``save.lua`` diffs that list against the one it
stored last time, so only entries that changed are removed and added.
"""

from __future__ import annotations

import os
from typing import Any

from ... import sortable
from ...errors import (
    DocumentTooLargeError,
    DuplicateIdError,
    UniqueViolation,
    VersionConflict,
    WriteOutcomeUnknown,
    WrongTypeError,
)
from ...options import IndexSpec, ModelOptions
from ..base import WriteRequest, WriteResult
from . import wire
from .commands import Call
from .keys import KeySpace
from .planner import manifest_field, meta_field

#: documents above this size are refused before anything is sent (Redis takes up to 512 MB
#: per value, but one huge document would stall the server for everyone)
DEFAULT_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def index_members(options: ModelOptions, index: IndexSpec, values: dict[str, Any]) -> list[bytes]:
    if not index.compound:
        return options.fields[index.fields[0]].index_keys(values.get(index.fields[0]))
    parts = []
    for name in index.fields:
        value = values.get(name)
        parts.append(sortable.NULL if value is None else options.fields[name].sort_key(value))
    return [b"".join(parts)]


class WriteLayout:
    """What every write of one model sends, worked out once: the meta fields that hold index
    values, the indexes and their manifests, and per partition the index key names."""

    def __init__(self, options: ModelOptions, keys: KeySpace,
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.options, self.keys = options, keys
        self.max_document_bytes = max_document_bytes
        self.value_fields = [
            (name, options.fields[name], meta_field(options.fields[name]).encode())
            for name in options.indexed_fields]
        self.indexes = [(index, manifest_field(options, index).encode(), frozenset(index.fields))
                        for index in options.indexes]
        self._index_keys: dict[int, list[str]] = {}
        self._partition_keys: dict[int, tuple[str, str, str, str, str, str]] = {}
        #: the meta field of every index, in index order (what a purge removes)
        self.manifests = wire.pack([manifest for _, manifest, _ in self.indexes])
        #: per index: meta field of its entries, "1" if unique, name (insert_many, tx)
        self.described = wire.pack([item for index, manifest, _ in self.indexes for item in
                                    (manifest, b"1" if index.unique else b"0",
                                     index.name.encode())])
        #: what the scripts' events_on() reads: b"" when the model emits no change events
        self.events = events_spec(options, keys)
        self._changed: dict[frozenset[str], bytes] = {}
        #: the stored schema's layout the calls carry (b"": none); set by the backend
        #: whenever it reads the schema (scripts refuse a layout older than the partition's)
        self.layout = b""

    def event_keys(self, partition: int) -> tuple[str, ...]:
        """The stream key appended to a write's KEYS when the model emits events."""
        return (self.keys.changes(partition),) if self.events else ()

    def changed_names(self, changed: frozenset[str] | None) -> bytes:
        """An event's "f": the changed attribute names, MessagePack; b"" for all of them."""
        if changed is None or not self.events:
            return b""
        packed = self._changed.get(changed)
        if packed is None:
            if len(self._changed) > 1024:
                self._changed.clear()
            packed = self._changed[changed] = wire.pack(
                [name.encode() for name in self.options.fields if name in changed])
        return packed

    def index_keys(self, partition: int) -> list[str]:
        keys = self._index_keys.get(partition)
        if keys is None:
            keys = self._index_keys[partition] = self.keys.indexes(partition)
        return keys

    def partition_keys(self, partition: int) -> tuple[str, str, str, str, str, str]:
        """The partition's ids, TTL schedule, document and meta prefixes, sequence, state."""
        found = self._partition_keys.get(partition)
        if found is None:
            k = self.keys
            found = self._partition_keys[partition] = (
                k.ids(partition), k.ttl(partition), k.doc_prefix(partition),
                k.meta_prefix(partition), k.sequence, k.state(partition))
        return found

    def document(self, request: WriteRequest) -> bytes:
        """The stored bytes of the request's document, within the size limit."""
        raw = request.encoded()
        if len(raw) > self.max_document_bytes:
            raise DocumentTooLargeError(self.options.model_name, request.id, len(raw),
                                        self.max_document_bytes)
        return raw

    def save_call(self, request: WriteRequest) -> Call:
        assert request.values is not None and request.data is not None
        values, changed, keys = request.values, request.changed, self.keys
        pairs: list[bytes] = []
        for name, field, meta_name in self.value_fields:
            if changed is None or name in changed:
                pairs += [meta_name, sortable.pack_list(field.index_keys(values.get(name)))]
        touched = [(position, entry) for position, entry in enumerate(self.indexes)
                   if changed is None or entry[2] & changed]
        for _, (index, manifest, _names) in touched:
            if index.compound:
                pairs += [manifest,
                          sortable.pack_list(index_members(self.options, index, values))]
        if request.id is None:  # allocated by the script: only with one partition (same slot)
            assert keys.partitions == 1
            partition, id_key = 0, b""
            ids, ttl, doc_prefix, meta_prefix, sequence, state = self.partition_keys(0)
            doc_key, meta_key = doc_prefix, meta_prefix
        else:
            partition, id_key = keys.partition_of(request.id), sortable.id_key(request.id)
            ids, ttl, doc_prefix, meta_prefix, _, state = self.partition_keys(partition)
            escaped = sortable.escape_id(request.id)
            doc_key, meta_key = doc_prefix + escaped, meta_prefix + escaped
            sequence = ids  # unused; any key of the partition keeps one slot
        key_list = [doc_key, meta_key, ids, sequence, ttl, state, *self.index_keys(partition),
                    *self.event_keys(partition)]
        index_args: list[bytes] = []
        for position, (index, manifest, _names) in touched:
            unique = index.unique and not (
                index.compound and any(values.get(n) is None for n in index.fields))
            index_args += [b"%d" % (7 + position), manifest, b"1" if unique else b"0",
                           index.name.encode()]
        args = (
            request.kind,
            str(request.expected_version),
            id_key,
            self.document(request),
            os.urandom(8).hex(),
            wire.pack(pairs),
            wire.pack(index_args),
            self.manifests,
            request.expire,
            doc_prefix,
            meta_prefix,
            self.events,
            self.changed_names(request.changed),
            self.layout,
        )
        return Call("save", tuple(key_list), args)


    def insert_many_call(self, partition: int, requests: list[WriteRequest]) -> Call:
        """One ``insert_many.lua`` call inserting new documents (ids known) of a partition."""
        keys = self.keys
        key_list = [keys.ids(partition), keys.ttl(partition), keys.state(partition),
                    *self.index_keys(partition)]
        expiry = requests[0].expire  # one batch, one expiry (bulk_create sends Meta.ttl)
        args: list[Any] = [self.described, "keep" if expiry == "persist" else expiry,
                           keys.doc_prefix(partition), keys.meta_prefix(partition), self.events,
                           self.layout]
        for request in requests:
            assert request.id is not None and request.values is not None
            key_list += [keys.doc(partition, request.id), keys.meta(partition, request.id)]
            pairs, lenient = self.all_entries(request.values)
            args += [sortable.id_key(request.id), self.document(request),
                     os.urandom(8).hex(), wire.pack(pairs), wire.pack(lenient)]
        key_list += self.event_keys(partition)
        return Call("insert_many", tuple(key_list), tuple(args))

    def all_entries(self, values: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
        """Every meta field pair (field or compound index, its value encodings) of a
        document, and the 1-based positions of the unique indexes its values do not hold
        unique (a compound value with a null part never conflicts)."""
        pairs: list[bytes] = []
        for name, field, meta_name in self.value_fields:
            pairs += [meta_name, sortable.pack_list(field.index_keys(values.get(name)))]
        lenient: list[bytes] = []
        for position, (index, manifest, _names) in enumerate(self.indexes):
            if index.compound:
                pairs += [manifest, sortable.pack_list(index_members(self.options, index, values))]
                if index.unique and any(values.get(n) is None for n in index.fields):
                    lenient.append(b"%d" % (position + 1))
        return pairs, lenient

    def tx_call(self, partition: int, checks: list[tuple[str, int]],
                requests: list[WriteRequest]) -> Call:
        """One ``tx.lua`` call: version checks of documents read (version 0: absent), then
        the writes, all in ``partition``; applied all together or not at all."""
        keys = self.keys
        key_list = [keys.ids(partition), keys.ttl(partition), keys.state(partition),
                    *self.index_keys(partition)]
        args: list[Any] = [self.described, keys.doc_prefix(partition),
                           keys.meta_prefix(partition), self.events, self.layout]
        for id, version in checks:
            key_list += [keys.doc(partition, id), keys.meta(partition, id)]
            args += [b"check", b"%d" % version, sortable.id_key(id), b"", b"", b"", b"", b"",
                     b"keep"]
        for request in requests:
            assert request.id is not None
            key_list += [keys.doc(partition, request.id), keys.meta(partition, request.id)]
            if request.kind == "delete":
                args += [b"delete", b"%d" % request.expected_version,
                         sortable.id_key(request.id), b"", b"", b"", b"", b"", b"keep"]
                continue
            assert request.values is not None
            pairs, lenient = self.all_entries(request.values)
            args += [request.kind.encode(), b"%d" % request.expected_version,
                     sortable.id_key(request.id), self.document(request), os.urandom(8).hex(),
                     wire.pack(pairs), wire.pack(lenient), self.changed_names(request.changed),
                     request.expire]
        key_list += self.event_keys(partition)
        return Call("tx", tuple(key_list), tuple(args))

    def restore_call(self, id: str, raw: bytes, version: int, values: dict[str, Any],
                     ttl_ms: int | None) -> Call:
        """One ``restore.lua`` call: the stored document ``raw`` put back as it was (its
        version, index entries and remaining ``ttl_ms``) into its partition here."""
        keys, partition = self.keys, self.keys.partition_of(id)
        pairs, lenient = self.all_entries(values)
        return Call("restore", (
            keys.doc(partition, id), keys.meta(partition, id), keys.ids(partition),
            keys.ttl(partition), keys.state(partition), *self.index_keys(partition)), (
            sortable.id_key(id), raw, str(version), os.urandom(8).hex(), wire.pack(pairs),
            self.described, wire.pack(lenient), "keep" if ttl_ms is None else str(ttl_ms),
            keys.doc_prefix(partition)))

    def delete_call(self, request: WriteRequest) -> Call:
        assert request.id is not None
        keys, partition = self.keys, self.keys.partition_of(request.id)
        key_list = [keys.doc(partition, request.id), keys.meta(partition, request.id),
                    keys.ids(partition), keys.ttl(partition), keys.trash(partition, request.id),
                    keys.state(partition), *self.index_keys(partition),
                    *self.event_keys(partition)]
        expected = str(request.expected_version) if request.expected_version else ""
        soft = "" if request.expire in ("keep", "persist") else request.expire
        return Call("delete", tuple(key_list),
                    (expected, sortable.id_key(request.id), self.manifests, soft, self.events,
                     self.layout))

    def sweep_call(self, partition: int, limit: int) -> Call:
        keys = self.keys
        return Call("sweep", (keys.ids(partition), keys.ttl(partition), keys.state(partition),
                              *self.index_keys(partition), *self.event_keys(partition)),
                    (str(limit), self.manifests, keys.doc_prefix(partition),
                     keys.meta_prefix(partition), self.events, self.layout))


def events_spec(options: ModelOptions, keys: KeySpace) -> bytes:
    """The change-event spec the write scripts read (``events_on`` in ``_prelude.lua``)."""
    stream = options.changes is not False
    if not stream and not options.publish:
        return b""
    return wire.pack([str(options.changes_maxlen).encode() if stream else b"",
                      b"1" if options.changes_document else b"0",
                      keys.channel.encode() if options.publish else b""])


def save_call(options: ModelOptions, keys: KeySpace, request: WriteRequest) -> Call:
    return WriteLayout(options, keys).save_call(request)


def delete_call(options: ModelOptions, keys: KeySpace, request: WriteRequest) -> Call:
    return WriteLayout(options, keys).delete_call(request)


def layout_refused(reply: Any) -> bool:
    """Whether a script refused because its partition has seen a newer schema layout than
    the caller's (``{"LAYOUT", n}``; ``-2`` from count.lua): nothing was done."""
    if isinstance(reply, list):
        return len(reply) == 2 and isinstance(reply[0], (bytes, str)) and \
            wire.text(reply[0]) == "LAYOUT"
    return isinstance(reply, int) and reply == -2


def result(options: ModelOptions, request: WriteRequest, reply: list[Any]) -> WriteResult:
    """Decode a script's status reply into a result with a typed error on refusal."""
    status = wire.text(reply[0])
    model, id = options.model_name, request.id
    if status == "OK":
        if request.kind == "delete":
            return WriteResult(id, 0)
        new_id = id if id is not None else sortable.id_from_key(bytes(reply[2]))
        return WriteResult(new_id, int(reply[1]))
    if status == "MISSING" and request.kind == "delete":
        return WriteResult(id, None)  # already gone: nothing to do, nothing refused
    shown = id if id is not None else "<new>"
    error: Exception
    if status == "VERSION":
        error = VersionConflict(model, shown, request.expected_version, int(reply[1]))
    elif status == "MISSING":
        error = VersionConflict(model, shown, request.expected_version, None)
    elif status == "EXISTS":
        error = DuplicateIdError(model, shown)
    elif status == "UNIQUE":
        error = UniqueViolation(model, wire.text(reply[1]), shown,
                                sortable.id_from_key(bytes(reply[2])))
    elif status == "WRONGTYPE":
        key = wire.text(reply[1])
        error = WrongTypeError(f"{model} {shown!r}: key {key!r} holds another type", key)
    else:
        raise AssertionError(f"unexpected script reply {reply!r}")
    return WriteResult(id, None, error)


def tx_results(options: ModelOptions, checks: list[tuple[str, int]],
               requests: list[WriteRequest], reply: list[Any]) -> list[WriteResult]:
    """The results of a ``tx.lua`` call, one per request; a refusal raises its typed error
    (nothing was written)."""
    status = wire.text(reply[0])
    if status == "OK":
        versions = [int(v) for v in reply[1]][len(checks):]
        return [WriteResult(r.id, v) for r, v in zip(requests, versions, strict=True)]
    if status == "WRONGTYPE":
        key = wire.text(reply[1])
        raise WrongTypeError(f"{options.model_name}: key {key!r} holds another type", key)
    if status == "APPLIED":  # (a resent transaction: applied, new versions unknown)
        raise WriteOutcomeUnknown(options.model_name, requests[0].id if requests else None,
                                  VersionConflict(options.model_name, "<several>", 0, None))
    position = int(reply[1]) - 1
    if position < len(checks):  # a document read in the transaction changed since
        id, expected = checks[position]
        actual = wire.text(reply[2]) if len(reply) > 2 else ""
        raise VersionConflict(options.model_name, id, expected, int(actual) if actual else None)
    request = requests[position - len(checks)]
    refused = result(options, request, [reply[0], *reply[2:]])
    if refused.error is None:  # (a delete of a document that is gone: the read was stale)
        raise VersionConflict(options.model_name, request.id or "<new>",
                              request.expected_version, None)
    raise refused.error

