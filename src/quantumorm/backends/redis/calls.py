"""The named contract of every Lua script Python calls: one record per call.

A call record's fields are the script's parameters in the order of its header comment (KEYS,
then ARGV), named; ``call()`` lays them out as the :class:`~.commands.Call` the executors
send. Nothing else in Python knows a script's argument positions (the replies are read back
by name too: :mod:`.replies`). Variable parts (every index key, per-document groups, the
change stream) are fields of their own, tuples or lists.

The records are ``__slots__`` dataclasses but not frozen: a frozen dataclass's ``__init__``
sets each field through ``object.__setattr__`` (about four times slower), and the save and
query records are built once per operation on the hot path. Treat them as immutable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...vocabulary import Vocabulary
from . import wire
from .commands import Call

# -- the write scripts ---------------------------------------------------------------------


@dataclass(slots=True)
class SaveCall:
    """``save.lua``: compare-and-set update, or ``insert.lua``: insert, of one document
    (one record: the two scripts read the same KEYS; insert.lua's ARGV are save.lua's less
    ``op``, ``expected_version`` and ``changed``, which an insert never reads)."""

    document_key: str  # when allocating (id_key == b""): the document key prefix
    meta_key: str  # when allocating: the meta key prefix
    ids_key: str
    sequence_key: str  # the id counter when allocating; otherwise a key of the same slot
    ttl_key: str
    state_key: str
    index_keys: list[str]  # every index of the model, in index order
    event_keys: tuple[str, ...]  # the change stream, when the model emits events
    op: str  # "insert" | "update"
    expected_version: str
    id_key: bytes  # b"": allocate the next id from sequence_key
    document: bytes  # the JSON
    write_id: str  # 16 hex digits: a resent write recognises its first attempt
    #: MessagePack pairs one after another (not an array): meta field, netstring list of
    #: value encodings
    values: bytes
    #: MessagePack quadruples one after another (not an array): KEYS position, meta field,
    #: unique flag, name; b"" for an
    #: insert into a model with no unique index (every index, in KEYS order, none enforced)
    touched: bytes
    manifests: bytes  # MessagePack: every index's meta field, in index order
    expiry: bytes | str  # "keep" | "persist" | milliseconds
    doc_prefix: str
    meta_prefix: str
    events: bytes  # the spec events_on() reads, or the stream's MAXLEN alone; b"" for none
    changed: bytes  # MessagePack changed field names; b"" for all
    layout: bytes  # the caller's schema layout
    #: MessagePack, per index of ``touched`` (every index, in index order): its value
    #: encodings (an insert's, insert.lua's, in insert_many.lua's flat form: its count,
    #: then its encodings, unless very many); b"": the script reads them from ``values``
    #: (and the call leaves the argument out: every argument costs the server a string
    #: made for the script)
    members: bytes = b""
    #: the call's EVALSHA command in RESP, when its maker packed it (Call.wire)
    wire: bytes | None = None
    #: an insert stored in format 2 (insert.lua's ARGV[13]: writes.NEW_FORMAT, for tests of
    #: documents stored by earlier releases)
    format2: bool = False

    def call(self) -> Call:
        keys = (self.document_key, self.meta_key, self.ids_key, self.sequence_key,
                self.ttl_key, self.state_key, *self.index_keys, *self.event_keys)
        if self.op == "insert":
            # (an insert has a script of its own, insert.lua, sent only the arguments it
            # reads: not op, expected_version nor changed)
            args: tuple[Any, ...] = (
                self.id_key, self.document, self.write_id, self.values, self.touched,
                self.manifests, self.expiry, self.doc_prefix, self.meta_prefix, self.events,
                self.layout)
            if self.format2:
                return Call("insert", keys, (*args, self.members, b"2"), self.wire)
        else:
            args = (self.op, self.expected_version, self.id_key, self.document,
                    self.write_id, self.values, self.touched, self.manifests, self.expiry,
                    self.doc_prefix, self.meta_prefix, self.events, self.changed,
                    self.layout)
        return Call("insert" if self.op == "insert" else "save", keys,
                    (*args, self.members) if self.members else args, self.wire)


@dataclass(slots=True)
class HeadedSaveCall(SaveCall):
    """``save.lua``'s update of a document loaded as format 3 (bench/format3.md: a record of
    its own, so that a format-2 save's record and call stay what they were)."""

    #: save.lua's ARGV[16]: the loaded document's entries in the indexes the write touches,
    #: the sweep record's pairs and the listed indexes' pairs (see save.lua)
    headed: bytes = b""

    def call(self) -> Call:
        return Call("save", (
            self.document_key, self.meta_key, self.ids_key, self.sequence_key,
            self.ttl_key, self.state_key, *self.index_keys, *self.event_keys), (
            self.op, self.expected_version, self.id_key, self.document, self.write_id,
            self.values, self.touched, self.manifests, self.expiry, self.doc_prefix,
            self.meta_prefix, self.events, self.changed, self.layout, self.members,
            self.headed), self.wire)


@dataclass(slots=True)
class PatchCall:
    """``patch.lua``: set some top-level fields of one stored document, whatever its
    version, without a read before (an update by id)."""

    document_key: str
    meta_key: str
    ids_key: str
    ttl_key: str
    state_key: str
    #: the keys of the indexes the patch touches, in index order (the others are not sent:
    #: patch.lua builds their names where it writes every index, a purge or a sweep)
    index_keys: list[str]
    event_keys: tuple[str, ...]  # the change stream, when the model emits events
    id_key: bytes
    write_id: str  # 16 hex digits: a resent patch recognises its first attempt
    expiry: bytes | str  # "keep" | "persist" | milliseconds
    #: what every patch of the model and of these fields sends alike, MessagePack strings
    #: and numbers one after another (one array of them past writes.STREAM_MAX items):
    #: the size limit, the layout, the events, every index's meta field and key name after
    #: the partition's tag, the event's "f",
    #: the counts, the members' key texts and names, the meta fields, the touched indexes'
    #: quadruples (the head of patch.lua's ARGV[1]: patch_argument)
    constants: bytes
    #: the value texts, then the lists of value encodings of the meta fields
    values: tuple[bytes, ...]

    def call(self) -> Call:
        expiry = self.expiry
        return Call("patch", (
            self.document_key, self.meta_key, self.ids_key, self.ttl_key, self.state_key,
            *self.index_keys, *self.event_keys), (
            patch_argument(self.constants, expiry if isinstance(expiry, bytes)
                           else expiry.encode(), self.values)
            + wire.item(self.id_key) + wire.item(self.write_id.encode()),))


def patch_argument(constants: bytes, expiry: bytes, values: Sequence[bytes]) -> bytes:
    """patch.lua's ARGV[1] less its last two items, the id key and the write id, which
    follow it as MessagePack strings: its constants, then the expiry and the values as
    MessagePack strings (each EVALSHA argument costs the server about 1,100 instructions,
    each MessagePack string about 550). After constants one after another, the rest follow
    them one after another (fewer than the constants: at most 2 * STREAM_MAX + 3 values in
    all, below the Lua C stack's limit of about 8,000); after constants packed as one array
    (past STREAM_MAX), they join that array: its header counts them too, and the two
    items that follow."""
    rest = [wire.item(expiry), *map(wire.item, values)]
    head = constants[0]
    if head == 0xDC or head == 0xDD or head & 0xF0 == 0x90:  # (an array's header)
        size = 3 if head == 0xDC else 5 if head == 0xDD else 1
        count = (int.from_bytes(constants[1:size], "big") if size > 1 else head & 0x0F)
        return b"".join([wire.array_header(count + len(rest) + 2), constants[size:], *rest])
    return b"".join([constants, *rest])


@dataclass(slots=True)
class DeleteCall:
    """``delete.lua``: delete (or soft-delete) one document and its index entries."""

    document_key: str
    meta_key: str
    ids_key: str
    ttl_key: str
    trash_key: str  # where a soft delete keeps the JSON until it expires
    state_key: str
    index_keys: list[str]
    event_keys: tuple[str, ...]
    expected_version: str  # "": whatever version is stored
    id_key: bytes
    #: every index's meta field, in index order: MessagePack strings one after another
    #: (not an array: delete.lua passes them on to its HMGET as they unpack)
    manifests: bytes
    soft_ms: str  # "": delete now; else how long the JSON stays at trash_key
    events: bytes  # the spec events_on() reads, or the stream's MAXLEN alone; b"" for none
    layout: bytes
    #: the call's EVALSHA command in RESP, when its maker packed it (Call.wire)
    wire: bytes | None = None

    def call(self) -> Call:
        return Call("delete", (
            self.document_key, self.meta_key, self.ids_key, self.ttl_key, self.trash_key,
            self.state_key, *self.index_keys, *self.event_keys), (
            self.expected_version, self.id_key, self.manifests, self.soft_ms, self.events,
            self.layout), self.wire)


@dataclass(slots=True)
class HeadedDeleteCall(DeleteCall):
    """``delete.lua`` with format 3's argument (a record of its own, so that a format-2
    delete's record and call stay what they were)."""

    #: ARGV[7]: the entries of the document as loaded (a MessagePack array of packed lists,
    #: one per index); for a delete of whatever version is stored, the model's spec
    #: (headed.spec_items, an array per index) when every index is derived; b"" for none
    headed: bytes = b""

    def call(self) -> Call:
        return Call("delete", (
            self.document_key, self.meta_key, self.ids_key, self.ttl_key, self.trash_key,
            self.state_key, *self.index_keys, *self.event_keys), (
            self.expected_version, self.id_key, self.manifests, self.soft_ms,
            self.events, self.layout, self.headed), self.wire)


@dataclass(slots=True)
class NewDocument:
    """One document of an ``insert_many.lua`` (or ``tx.lua`` write) call."""

    document_key: str
    meta_key: str
    id_key: bytes
    document: bytes
    write_id: str
    values: bytes  # MessagePack pairs of every meta field
    lenient: bytes  # MessagePack positions of unique indexes not enforced for it


@dataclass(slots=True)
class BulkDocument:
    """One document of an ``insert_many.lua`` call."""

    document_key: str
    meta_key: str
    id_key: bytes
    document: bytes
    write_id: str
    #: MessagePack pairs, one string after another: what its meta hash keeps (format 3:
    #: every index's with an expiry, else the listed indexes', b"" for none; format 2:
    #: every index's)
    values: bytes
    members: bytes  # per index of the model its count of value encodings, then them


@dataclass(slots=True)
class InsertManyCall:
    """``insert_many.lua``: new documents (ids known) of one partition, each checked alone."""

    ids_key: str
    ttl_key: str
    state_key: str
    index_keys: list[str]
    documents: list[BulkDocument]  # KEYS: document key, meta key; ARGV: the other five
    event_keys: tuple[str, ...]
    described: bytes  # MessagePack, per index: meta field, "1" if unique, name
    expiry: bytes | str  # "keep" | milliseconds
    doc_prefix: str
    meta_prefix: str
    events: bytes
    layout: bytes
    #: MessagePack: per document with unique indexes not enforced for it (a compound value
    #: with a null part), its number in the batch and their positions (MessagePack)
    lenient: bytes
    #: the documents stored in format 2 (insert_many.lua's last argument:
    #: writes.NEW_FORMAT, for tests of documents stored by earlier releases)
    format2: bool = False

    def call(self) -> Call:
        keys: list[str] = [self.ids_key, self.ttl_key, self.state_key, *self.index_keys]
        args: list[Any] = [self.described, self.expiry, self.doc_prefix, self.meta_prefix,
                           self.events, self.layout, self.lenient]
        for d in self.documents:
            keys += (d.document_key, d.meta_key)
            args += (d.id_key, d.document, d.write_id, d.values, d.members)
        if self.format2:
            args.append(b"2")
        keys += self.event_keys
        return Call("insert_many", tuple(keys), tuple(args))


@dataclass(slots=True)
class TxCheck:
    """A transaction row: the document read must still be at ``version`` (0: absent)."""

    document_key: str
    meta_key: str
    id_key: bytes
    version: int

    def argv(self) -> tuple[Any, ...]:
        # tx.lua reads 9 values per row; a check uses three of them
        return (b"check", b"%d" % self.version, self.id_key, b"", b"", b"", b"", b"", b"keep")


@dataclass(slots=True)
class TxDelete:
    """A transaction row: delete the document, which must be at ``expected_version``."""

    document_key: str
    meta_key: str
    id_key: bytes
    expected_version: int

    def argv(self) -> tuple[Any, ...]:
        return (b"delete", b"%d" % self.expected_version, self.id_key, b"", b"", b"", b"", b"",
                b"keep")


@dataclass(slots=True)
class TxWrite:
    """A transaction row: insert (expected version 0) or update one document."""

    op: bytes  # b"insert" | b"update"
    expected_version: int
    document: NewDocument
    changed: bytes
    expiry: bytes | str

    @property
    def document_key(self) -> str:
        return self.document.document_key

    @property
    def meta_key(self) -> str:
        return self.document.meta_key

    def argv(self) -> tuple[Any, ...]:
        d = self.document
        return (self.op, b"%d" % self.expected_version, d.id_key, d.document, d.write_id,
                d.values, d.lenient, self.changed, self.expiry)


TxRow = TxCheck | TxDelete | TxWrite


@dataclass(slots=True)
class TxCall:
    """``tx.lua``: version checks and writes of one partition, all applied or none."""

    ids_key: str
    ttl_key: str
    state_key: str
    index_keys: list[str]
    rows: list[TxRow]  # KEYS: document key, meta key; ARGV: 9 values (see TxCheck...)
    event_keys: tuple[str, ...]
    described: bytes
    doc_prefix: str
    meta_prefix: str
    events: bytes
    layout: bytes
    #: a phase of a two-phase commit (twophase.py): MessagePack {"prepare" | "apply", record
    #: key}, with the partition's intent key; b"" for one atomic transaction
    phase: bytes = b""
    intent_key: str | None = None

    def call(self) -> Call:
        keys: list[str] = [self.ids_key, self.ttl_key, self.state_key, *self.index_keys]
        args: list[Any] = [self.described, self.doc_prefix, self.meta_prefix, self.events,
                           self.layout, self.phase]
        for row in self.rows:
            keys += (row.document_key, row.meta_key)
            args += row.argv()
        if self.intent_key is not None:
            keys.append(self.intent_key)
        keys += self.event_keys
        return Call("tx", tuple(keys), tuple(args))


@dataclass(slots=True)
class RestoreCall:
    """``restore.lua``: a stored document put back as it was (a partition move)."""

    document_key: str
    meta_key: str
    ids_key: str
    ttl_key: str
    state_key: str
    index_keys: list[str]
    id_key: bytes
    document: bytes
    version: str
    write_id: str
    values: bytes
    described: bytes
    lenient: bytes
    expiry: str  # "keep" | milliseconds
    doc_prefix: str
    #: a format-3 document (``document`` its whole stored value, header included): the
    #: listed indexes' pairs its meta hash keeps (MessagePack, flat); b"" for none
    listed: bytes = b""

    def call(self) -> Call:
        return Call("restore", (
            self.document_key, self.meta_key, self.ids_key, self.ttl_key, self.state_key,
            *self.index_keys), (
            self.id_key, self.document, self.version, self.write_id, self.values,
            self.described, self.lenient, self.expiry, self.doc_prefix,
            *((self.listed,) if self.listed else ())))


@dataclass(slots=True)
class ExpireCall:
    """``expire.lua``: give a document an expiry, or none."""

    document_key: str
    ttl_key: str
    locks_key: str  # the partition's lock hash (twophase.py)
    meta_key: str  # (format 3: the document's sweep record)
    id_key: bytes
    expiry: str  # "persist" | milliseconds

    def call(self) -> Call:
        return Call("expire", (self.document_key, self.ttl_key, self.locks_key, self.meta_key),
                    (self.id_key, self.expiry))


@dataclass(slots=True)
class SweepCall:
    """``sweep.lua``: purge the leftovers of up to ``limit`` expired documents."""

    ids_key: str
    ttl_key: str
    state_key: str
    index_keys: list[str]
    event_keys: tuple[str, ...]
    limit: str
    manifests: bytes
    doc_prefix: str
    meta_prefix: str
    events: bytes
    layout: bytes

    def call(self) -> Call:
        return Call("sweep", (self.ids_key, self.ttl_key, self.state_key, *self.index_keys,
                              *self.event_keys),
                    (self.limit, self.manifests, self.doc_prefix, self.meta_prefix,
                     self.events, self.layout))


# -- the read scripts ----------------------------------------------------------------------


@dataclass(slots=True)
class FetchCall:
    """``fetch.lua``: documents by id, with their versions (all of one partition)."""

    keys: list[str]  # pairs: document key, meta key

    def call(self) -> Call:
        return Call("fetch", tuple(self.keys), ())


class QueryMode(Vocabulary):
    """What ``query.lua`` returns (its ARGV[3]; each member is the wire string)."""

    ROWS = "rows"  # the documents
    KEYED = "keyed"  # the documents with their sort keys (merged across partitions)
    SORTKEYS = "sortkeys"  # ids, versions and sort keys only (a two-phase merge's first)
    COUNT = "count"
    EXISTS = "exists"  # a count that stops at the first match
    PLAN = "plan"  # the plan the script chose (explain)


@dataclass(slots=True)
class QueryCall:
    """``query.lua``: one query on one partition."""

    query_keys: tuple[str, ...]  # the id index, index keys (see Plan.reach), state hash, TTL set
    doc_prefix: str
    meta_prefix: str
    mode: QueryMode
    offset: str
    limit: str  # "-1": none
    verify: str  # "1": check that each candidate's document exists
    program: bytes  # the planner's tokens (grammar in planner.py)
    layout: bytes
    #: with a program that reads values: Plan.derivable (one item), else none
    derivable: tuple[bytes, ...] = ()

    def call(self) -> Call:
        return Call("query", self.query_keys, (
            self.doc_prefix, self.meta_prefix, self.mode, self.offset, self.limit, self.verify,
            self.program, self.layout, *self.derivable))


@dataclass(slots=True)
class CountCall:
    """``count.lua``: the entries of exact index ranges, unless documents can expire."""

    ttl_key: str
    index_key: str  # or the id index
    state_key: str
    layout: bytes
    bounds: tuple[bytes, ...]  # pairs of lex bounds; none: the whole key

    def call(self) -> Call:
        return Call("count", (self.ttl_key, self.index_key, self.state_key),
                    (self.layout, *self.bounds))


# -- schema, maintenance and events ----------------------------------------------------------


@dataclass(slots=True)
class SchemaCall:
    """``schema.lua``: store a schema if the stored layout is still the one read."""

    schema_key: str
    layout_read: str  # "": none was stored
    pairs: tuple[str, ...]  # hash field, value, field, value...

    def call(self) -> Call:
        return Call("schema", (self.schema_key,), (self.layout_read, *self.pairs))


@dataclass(slots=True)
class StampCall:
    """``stamp.lua``: raise a partition's layout stamp."""

    state_key: str
    layout: str

    def call(self) -> Call:
        return Call("stamp", (self.state_key,), (self.layout,))


@dataclass(slots=True)
class NowCall:
    """``now.lua``: the server's time in microseconds, on the node of ``anchor_key``."""

    anchor_key: str

    def call(self) -> Call:
        return Call("now", (self.anchor_key,), ())


@dataclass(slots=True)
class GroupCall:
    """``group.lua``: create a consumer group on one change stream."""

    stream_key: str
    group: str
    start: str  # "$" | "0"

    def call(self) -> Call:
        return Call("group", (self.stream_key,), (self.group, self.start))


@dataclass(slots=True)
class PreflightCall:
    """``preflight.lua``: the first command the user's ACL refuses, before any write."""

    document_key: str
    meta_key: str
    ids_key: str
    ttl_key: str
    state_key: str
    trash_key: str
    sequence_key: str
    index_key: str
    event_keys: tuple[str, ...]
    has_stream: str  # "1" | "0"
    channel: str  # "": no Pub/Sub

    def call(self) -> Call:
        return Call("preflight", (
            self.document_key, self.meta_key, self.ids_key, self.ttl_key, self.state_key,
            self.trash_key, self.sequence_key, self.index_key, *self.event_keys),
            (self.has_stream, self.channel))


@dataclass(slots=True)
class ReindexDocument:
    """One document of a ``reindex.lua`` call."""

    document_key: str
    meta_key: str
    id_key: bytes
    version: bytes  # as read
    backfill: bytes  # b"": keep the stored JSON
    values: bytes
    lenient: bytes


@dataclass(slots=True)
class ReindexCall:
    """``reindex.lua``: entries of the indexes being built, for a batch of documents."""

    state_key: str
    index_keys: list[str]  # the indexes being built
    documents: list[ReindexDocument]
    described: bytes
    doc_prefix: str
    layout: bytes

    def call(self) -> Call:
        keys: list[str] = [self.state_key, *self.index_keys]
        args: list[Any] = [self.described, self.doc_prefix, self.layout]
        for d in self.documents:
            keys += (d.document_key, d.meta_key)
            args += (d.id_key, d.version, d.backfill, d.values, d.lenient)
        return Call("reindex", tuple(keys), tuple(args))


@dataclass(slots=True)
class InspectCall:
    """``inspect.lua``: what verify() reads of each id, in one call."""

    ttl_key: str
    ids_key: str
    index_keys: list[str]
    documents: list[tuple[str, str]]  # per id: document key, meta key
    manifests: bytes
    id_keys: list[bytes]

    def call(self) -> Call:
        keys: list[str] = [self.ttl_key, self.ids_key, *self.index_keys]
        for pair in self.documents:
            keys += pair
        return Call("inspect", tuple(keys), (self.manifests, *self.id_keys))


@dataclass(slots=True)
class EntriesCall:
    """``entries.lua``: judge index entries against the documents that should hold them."""

    index_key: str
    ttl_key: str
    manifest: str
    doc_prefix: str
    meta_prefix: str
    entries: list[bytes]

    def call(self) -> Call:
        return Call("entries", (self.index_key, self.ttl_key), (
            self.manifest, self.doc_prefix, self.meta_prefix, *self.entries))


@dataclass(slots=True)
class RepairFix:
    """One fix of a ``repair.lua`` call (see its header for ``what``)."""

    document_key: str
    meta_key: str
    what: bytes | str
    id_key: bytes | str
    version: bytes | str
    document: bytes | str
    values: bytes | str


@dataclass(slots=True)
class RepairCall:
    """``repair.lua``: fixes of one partition, each checked again before it is applied."""

    ids_key: str
    ttl_key: str
    state_key: str
    index_keys: list[str]
    fixes: list[RepairFix]
    manifests: bytes
    layout: bytes
    doc_prefix: str
    meta_prefix: str

    def call(self) -> Call:
        keys: list[str] = [self.ids_key, self.ttl_key, self.state_key, *self.index_keys]
        args: list[Any] = [self.manifests, self.layout, self.doc_prefix, self.meta_prefix]
        for f in self.fixes:
            keys += (f.document_key, f.meta_key)
            args += (f.what, f.id_key, f.version, f.document, f.values)
        return Call("repair", tuple(keys), tuple(args))
