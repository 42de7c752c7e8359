"""The write layout of a model: write requests as the call records of the write scripts
(``save``, ``delete``, ``insert_many``, ``tx``, ``restore``, ``sweep``: :mod:`.calls`), and
their parsed replies (:mod:`.replies`) as results.

Pure. The index maths lives here: for each index a write touches, the list of value
encodings the document must have in it (one per element for arrays, the concatenation of
the fields' encodings for compound indexes). ``save.lua`` diffs that list against the one it
stored last time, so only entries that changed are removed and added. Key names come from
:mod:`.keys` (a partition's shared keys, cached; a document's are its prefixes + its
escaped id).
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal

from ... import jsoncodec, sortable
from ...engine.contract import Expiry, WriteRequest, WriteResult
from ...errors import (
    CorruptDocumentError,
    DamagedMetaError,
    DocumentLocked,
    DocumentTooLargeError,
    DuplicateIdError,
    TransactionError,
    UniqueViolation,
    VersionConflict,
    WriteOutcomeUnknown,
    WrongTypeError,
)
from ...fields.base import MISSING, Field
from ...fields.scalar import BooleanField, FloatField, IntField, StringField
from ...fields.structured import ArrayField, DateTimeField
from ...options import IndexSpec, ModelOptions
from . import wire
from .calls import (
    BulkDocument,
    DeleteCall,
    HeadedDeleteCall,
    HeadedSaveCall,
    InsertManyCall,
    NewDocument,
    PatchCall,
    RestoreCall,
    SaveCall,
    SweepCall,
    TxCall,
    TxCheck,
    TxDelete,
    TxRow,
    TxWrite,
    patch_argument,
)
from .commands import Call, script
from .derived import index_kinds
from .headed import Headed, index_loads, loaded_values, nested, spec_items
from .keys import KeySpace, PartitionKeys, index_suffix, manifest_field, meta_field
from .resp import ARRAY_HEADS, BULK_HEADS, CRLF, array_head, bulk_head
from .replies import TxReply, WriteReply
from .replies import layout_refused as layout_refused
from .writeids import bits as _write_id_bits
from .writeids import write_id as new_write_id

#: sortable.id_key's prefix of a canonical numeric id, by its number of digits
_NUMERIC_PREFIXES = sortable.NUMERIC_PREFIXES

_NONE = wire.pack([])  # (an empty list: what most documents send for their lenient indexes)
#: an index's entries in insert_many.lua's flat form when it has none (see _flat)
_NONE_FLAT = b"\x00"
#: the heads of MessagePack arrays of two and three items
_TWO, _THREE = wire.array_header(2), wire.array_header(3)
#: insert_many.lua's flat entries of a document at most this long (bytes, so at most as
#: many values): the script unpacks them onto Lua's stack (about 8,000 values at most);
#: a longer one is sent as an array per index
_FLAT_BYTES = 4000

#: documents above this size are refused before anything is sent (Redis takes up to 512 MB
#: per value, but one huge document would stall the server for everyone)
DEFAULT_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

#: the value types whose index encodings a bulk insert remembers per field (and per element
#: of an array): hashable, and two equal values of one of these types encode alike (not
#: float: 0.0 == -0.0). Exact types only: a subclass (an IntEnum member) is encoded afresh.
_MEMO_TYPES = frozenset({str, int, bool, type(None)})
#: values remembered per field before its memo starts again
_MEMO_LIMIT = 4096
_JUST_STR = frozenset({str})
_THIRD = operator.itemgetter(2)
#: the longest packed encodings remembered (a long value is rarely seen twice, and a memo
#: of them would hold megabytes)
_MEMO_BYTES = 256


#: patch.lua's constants come as MessagePack values one after another up to this many (one
#: table constructor gathers them: its array sized once), as one array past it (values
#: returned at once overflow Lua's C stack past about 8,000)
STREAM_MAX = 2000


#: the storage format inserts write (bench/format3.md): 3, the version and recent write
#: ids in the document's header and no meta hash but a sweep record (an expiry) or the
#: listed indexes' entries. A document stored by an earlier release (format 2: a meta hash
#: listing its entries) is read and written in its own format. 2 here makes inserts store
#: that form (insert.lua's ARGV[13], insert_many.lua's last argument): for tests of such
#: documents, never for an application (its documents would cost the memory format 3 saves)
NEW_FORMAT = 3


def _pack_constants(items: Sequence[bytes | int]) -> bytes:
    """:func:`wire.pack` of strings and of non-negative integers, each of these a MessagePack
    integer: patch.lua reads a count, a position or the size limit as the number itself,
    with no text parsed per call (about 400 server instructions each). One after another,
    not in an array, up to :data:`STREAM_MAX` items: cmsgpack makes an array's table from
    an empty one, resized as it grows (about 650 server instructions per item); the first
    item, a non-negative integer, starts with none of an array's first bytes."""
    out = [wire.array_header(len(items))] if len(items) > STREAM_MAX else []
    for item in items:
        if type(item) is int:
            out.append(wire.integer(item))
        else:
            assert isinstance(item, bytes)
            out.append(wire.item(item))
    return b"".join(out)


#: save.lua's op of an update, in RESP
_UPDATE = b"$6\r\nupdate\r\n"
#: the usual expiries' wire strings in RESP
_EXPIRIES = {"keep": b"$4\r\nkeep\r\n", "persist": b"$7\r\npersist\r\n"}
#: what a single save of a partition by one script sends alike, in RESP (see
#: WriteLayout._save_packed): the command's head after the array's, the keys after the
#: document's two, the manifests, the prefixes and events, the layout they were made for
#: and it packed, the command's count of items without the members
SaveParts = tuple[bytes, bytes, bytes, bytes, bytes, bytes, int]


def _bulk(item: bytes) -> bytes:
    """``item`` as a RESP bulk string, as hiredis's ``pack_command`` writes an argument."""
    return bulk_head(len(item)) + item + CRLF


def _keep(memo: dict[Any, Any], key: Any, entry: Any, size: int) -> None:
    """Keep ``entry`` (of ``size`` packed bytes) under ``key`` in a memo of encodings, if it
    is short; a full memo starts again."""
    if size <= _MEMO_BYTES:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = entry


def index_members(options: ModelOptions, index: IndexSpec, values: dict[str, Any]) -> list[bytes]:
    if not index.compound:
        return options.fields[index.fields[0]].index_keys(values.get(index.fields[0]))
    parts = []
    for name in index.fields:
        value = values.get(name)
        parts.append(sortable.NULL if value is None else options.fields[name].sort_key(value))
    return [b"".join(parts)]


#: what a save of some changed fields writes (see WriteLayout._touched)
Touched = tuple[list[tuple[str, Field, bytes]], list[tuple[IndexSpec, bytes]],
                list[tuple[int, IndexSpec, bytes]], bytes | None]

#: what every patch of some fields sends alike (see WriteLayout._patched)
Patch = tuple[tuple[bytes | int, ...], list[tuple[str, Field, bytes]], list[str],
              dict[Any, tuple[bytes, ...]], dict[bytes, bytes], tuple[int, ...],
              dict[int, tuple[str, str, tuple[str, ...], bytes, bytes]]]


#: the value parts of a plain pattern (see plain_pattern): a string with no escape; a number,
#: boolean or null (a run of no delimiter); an array, its brackets balanced, captured
#: (patch.lua reads its text less its strings: no quote, bracket nor brace but its two
#: brackets). Each written as the Lua matcher reads it at the least cost per byte (about
#: 90 instructions per byte of the text for a set of escaped items, against about 10 for
#: a balance): a string as ``%b""``, which matches exactly what ``"[^"]*"`` does (a quote,
#: the bytes up to the next quote, that quote: its open and close byte alike, the first
#: one after the opening closes it); a set with no escaped item but ``%w`` (in a set, "."
#: and "+" are plain, and "-" last is too)
_PLAIN_STRING, _PLAIN_SCALAR, _PLAIN_ARRAY = b'%b""', b"[%w.+-]+", b"(%b[])"
#: a byte of a key text that is magic in a Lua pattern (outside a set): escaped with "%";
#: any other byte, a quote or a colon too, is itself
_PATTERN_MAGIC = re.compile(rb"([$%()*+.?\[\]^-])")
#: the most fields a plain pattern has: Lua's matcher recurses once per quantified item (a
#: pattern of about 90,000 fields overflows the server's C stack), and the pattern is sent
#: on every patch
PLAIN_FIELDS = 64
#: the element kinds of an array a plain pattern reads (its text holds no bracket nor brace)
_PLAIN_ELEMENTS = (StringField, DateTimeField, IntField, FloatField, BooleanField)


def plain_pattern(options: ModelOptions, target: str) -> bytes:
    """patch.lua's plain pattern of a patch of the field ``target`` alone: a Lua pattern of
    the whole stored JSON as Python writes a document of the model (every field, in field
    order, compact), capturing the text before ``target``'s value, its text, the text
    after it, then the text of each array (at most two, after it, inside the third
    capture: patch.lua reads the captures in that order, and Lua numbers them by where
    they open; the texts around the value are those the new document is made of, taken
    by the find with no string.sub of them); b"" (none) where a
    field is of a kind it does not know (exactly a str, datetime, int, float, bool or array
    of those), an array comes before ``target``, ``target`` is an array, the model has more
    than :data:`PLAIN_FIELDS` fields, or a stored name holds a backslash or a NUL. A
    document stored otherwise (a null string, a nested object, an array holding one, blanks,
    another order...) does not match it, and patch.lua proves its member's span as before
    (its cjson proof)."""
    if len(options.fields) > PLAIN_FIELDS:
        return b""
    parts, arrays, seen = [], 0, False
    for name, field in options.fields.items():
        kind = type(field)
        seen = seen or name == target
        if kind is StringField or kind is DateTimeField:
            value = _PLAIN_STRING
        elif kind is IntField or kind is FloatField or kind is BooleanField:
            value = _PLAIN_SCALAR
        elif (kind is ArrayField and seen and name != target and arrays < 2
              and type(field.field) in _PLAIN_ELEMENTS):  # type: ignore[attr-defined]
            value, arrays = _PLAIN_ARRAY, arrays + 1
        else:
            return b""
        key = jsoncodec.encode(field.db_name)
        if b"\\" in key or b"\0" in key:
            return b""
        if name == target:  # (the text before the value, its own; the rest follows)
            value = b")(" + value + b")("
        parts.append(_PATTERN_MAGIC.sub(rb"%\1", key) + b":" + value)
    return b"^({" + b",".join(parts) + b"})$"


def _index_args(touched: list[tuple[int, IndexSpec, bytes]],
                values: dict[str, Any]) -> list[bytes]:
    """``save.lua``'s quadruples of the indexes a save touches: KEYS position, meta field,
    unique flag (a compound value with a null part is not held unique), name."""
    out: list[bytes] = []
    for position, index, manifest in touched:
        unique = index.unique and not (
            index.compound and any(values.get(n) is None for n in index.fields))
        out += [b"%d" % (7 + position), manifest, b"1" if unique else b"0",
                index.name.encode()]
    return out


class WriteLayout:
    """What every write of one model sends, worked out once: the meta fields that hold index
    values, the indexes and their manifests; and the script call records of its writes."""

    def __init__(self, options: ModelOptions, keys: KeySpace,
                 max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.options, self.keys = options, keys
        self.max_document_bytes = max_document_bytes
        #: Meta.compress (None: off): applied to every document this layout sends
        self.compress = options.compress
        self.value_fields = [
            (name, options.fields[name], meta_field(options.fields[name]).encode())
            for name in options.indexed_fields]
        self.indexes = [(index, manifest_field(options, index).encode(), frozenset(index.fields))
                        for index in options.indexes]
        #: the compound indexes: (position, index, meta field of its entries)
        self.compound = [(position, index, manifest) for position, (index, manifest, _) in
                         enumerate(self.indexes) if index.compound]
        #: whether any index is unique: an insert into a model with none sends no
        #: quadruples (insert.lua then reads every index in KEYS order, none enforced)
        self.any_unique = any(index.unique for index in options.indexes)
        #: the meta field of every index, in index order (what a purge removes)
        self.manifests = wire.pack([manifest for _, manifest, _ in self.indexes])
        #: of every index, in index order, its meta field then its key's name after the
        #: partition's tag: patch.lua is sent only the keys of the indexes a patch touches,
        #: and its purge or sweep (every index) builds the others' names
        self._patch_indexes = wire.pack([item for index, manifest, _ in self.indexes
                                         for item in (manifest, index_suffix(index.name).encode())])
        #: the same one after another, not an array (delete.lua passes them on to its
        #: HMGET as they unpack: no table made of them)
        self.manifest_items = wire.items([manifest for _, manifest, _ in self.indexes])
        #: per index: meta field of its entries, "1" if unique, name (insert_many, tx)
        self.described = wire.pack([item for index, manifest, _ in self.indexes for item in
                                    (manifest, b"1" if index.unique else b"0",
                                     index.name.encode())])
        #: what the scripts' events_on() reads: b"" when the model emits no change events
        self.events = events_spec(options, keys)
        #: what save.lua and delete.lua read for change events: the stream's MAXLEN alone
        #: (its digits) for the usual events, a stream entry without the document nor Pub/Sub, which
        #: it reads with no MessagePack to unpack; else the spec
        self._save_events = (
            str(options.changes_maxlen).encode() if self.events and options.changes is not False
            and not options.changes_document and not options.publish else self.events)
        self._changed: dict[frozenset[str], bytes] = {}
        self._touched_by: dict[frozenset[str] | None, Touched] = {}
        #: per value field of a bulk insert: (attribute, field, meta field, memo, element
        #: memo or None); see bulk_values
        self._memos: list[MemoSlot] = [
            (name, field, meta_name, {}, _Elements.of(field, meta_name))
            for name, field, meta_name in self.value_fields]
        #: per index: which meta field pair holds its entries (bulk_values' order), or none
        held = [meta_name for _, _, meta_name in self.value_fields] + [
            manifest for _, _, manifest in self.compound]
        sources = [held.index(manifest) if manifest in held else len(held)
                   for _, manifest, _ in self.indexes]
        # (the per-index items of a document's entries in one C call; a tuple even of one)
        self._sources: Callable[[list[bytes]], tuple[bytes, ...]] = (
            operator.itemgetter(*sources) if len(sources) > 1 else
            lambda entries: tuple(entries[i] for i in sources))
        self._index_header = wire.array_header(len(self.indexes))
        self._patch_by: dict[frozenset[str], Patch] = {}
        #: the shapes of _patch_by of one field, by its attribute name (patch_calls)
        self._patch_one: dict[str, Patch] = {}
        #: per (partition, script kind, sequence key): what its single saves send alike
        self._save_parts: dict[tuple[int, str, str], SaveParts] = {}
        #: a patch's ARGV[1] less its id key and write id, by the expiry, constants and
        #: members it packs (patch_calls)
        self._patch_tails: dict[tuple[str, bytes, tuple[bytes, ...]], bytes] = {}
        #: what patch.lua reads for change events (the spec's items, at the head of its
        #: ARGV[1])
        self._events_flat = events_flat(options, keys)
        #: a one-field update's packed meta field pair, by (attribute name, type, value)
        self._update_pairs: dict[tuple[str, type, Any], bytes] = {}
        #: per partition: the prefix of its soft-deleted documents' keys (+ escaped id)
        self._trash_prefixes: dict[int, str] = {}
        #: per partition: what its deletes send alike, in RESP (_delete_packed)
        self._delete_parts: dict[int, tuple[bytes, tuple[bytes, bytes, bytes], bytes,
                                            bytes, tuple[bytes, bytes] | None]] = {}
        #: delete.lua's ARGV[7] for a delete of whatever version is stored (blind_spec)
        self._blind_spec: bytes | None = None
        #: the stored schema's layout the calls carry (b"": none); set by the backend
        #: whenever it reads the schema (scripts refuse a layout older than the partition's)
        self.layout = b""
        #: format 3 (headed.py), worked out at its first write: the meta fields of the
        #: indexes not derived (listed: a format-3 document's meta hash keeps them)
        self._listed: frozenset[bytes] | None = None
        #: (attribute, storage name, loader, default) of each field an index names, as
        #: _index_values loads them; False when an index names the id or a path (worked
        #: out at the first loaded save or delete)
        self._loads: list[tuple[str, str, Any, Any]] | Literal[False] | None = None
        #: the bulk insert's memo slot (_memos) of each indexed field, by attribute
        self._slots = {slot[0]: slot for slot in self._memos}

    def listed(self) -> frozenset[bytes]:
        """The meta fields of the listed indexes (see ``_listed``)."""
        listed = self._listed
        if listed is None:
            listed = self._listed = frozenset(
                manifest for (_, manifest, _), derived in zip(
                    self.indexes, spec_items(self.options), strict=True) if not derived)
        return listed

    def listed_pairs(self, pairs: list[bytes]) -> list[bytes]:
        """Of ``pairs`` (meta field, packed list, flat: :meth:`all_entries`), those of the
        listed indexes, which a format-3 document's meta hash keeps."""
        listed = self.listed()
        if not listed:
            return []
        return [item for k in range(0, len(pairs), 2) if pairs[k] in listed
                for item in pairs[k:k + 2]]

    def kept_pairs(self, values: dict[str, Any], expire: Expiry | int, every: bytes) -> bytes:
        """What the meta hash of a new format-3 document keeps, packed one pair after
        another: ``every`` pair (its sweep record) when it expires, else the listed
        indexes' pairs, or nothing."""
        if type(expire) is not Expiry:
            return every
        if not self.listed():
            return b""
        return wire.items(self.listed_pairs(self.all_entries(values)[0]))

    def _headed_save(self, request: WriteRequest, call: HeadedSaveCall,
                     touched: list[tuple[int, IndexSpec, bytes]]) -> HeadedSaveCall:
        """``call`` as an update of a document loaded as format 3 (save.lua's ARGV[16]):
        the entries its loaded data has in the indexes the write touches, every index's
        new pair (the sweep record, unless the expiry is removed) and the listed ones."""
        version = request.expected_version
        assert isinstance(version, Headed) and request.values is not None
        # (every index's pairs only for a new expiry, whose sweep record is written whole;
        # an expiry kept updates the record there with the touched indexes' pairs, and
        # the listed indexes' pairs only where the model has some)
        pairs: list[bytes] = []
        kept: list[bytes] = []
        if type(request.expire) is not Expiry:
            pairs = self.all_entries(request.values)[0]
            kept = self.listed_pairs(pairs)
        elif self.listed():
            kept = self.listed_pairs(self.all_entries(request.values)[0])
        lists = self.loaded_lists([index for _, index, _ in touched], request.id,
                                  version.stored)
        if not pairs and not kept and len(lists) <= 1:
            # (the common save's form: no MessagePack for the script to unpack)
            call.headed = b"=" + lists[0] if lists else b"="
        else:
            call.headed = b"".join((_THREE, wire.pack(lists),
                                    wire.pack(pairs) if pairs else _NONE,
                                    wire.pack(kept) if kept else _NONE))
        return call

    def loaded_lists(self, indexes: list[IndexSpec], id: str | None,
                     stored: dict[str, Any]) -> list[bytes]:
        """The entries a loaded format-3 document (its storage form ``stored``) has in
        each of ``indexes``, as packed lists (as a meta field holds them): an index of one
        field from the bulk insert's memos, by the loaded value (only the indexed fields
        are loaded)."""
        values = self._index_values(id, stored)
        slots = self._slots
        out: list[bytes] = []
        for index in indexes:
            slot = None if index.compound else slots.get(index.fields[0])
            if slot is None:
                out.append(sortable.pack_list(index_members(self.options, index, values)))
                continue
            meta_name = slot[2]
            pair = _known(slot, values.get(slot[0]))[0]
            # (the pair's meta field name and the list's string head cut off: the list)
            at = len(meta_name) + 1 if len(meta_name) < 32 else len(wire.item(meta_name))
            head = pair[at]
            out.append(pair[at + (1 if head < 0xc0 else 2 if head == 0xd9 else
                                  3 if head == 0xda else 5):])
        return out

    def headed_delete(self, request: WriteRequest, call: DeleteCall) -> HeadedDeleteCall:
        """``call`` (:meth:`delete`'s) as the delete of a document loaded as format 3 (its
        expected version a :class:`.Headed`): delete.lua's ARGV[7], the value encodings
        its loaded data has in every index (:meth:`loaded_members`)."""
        version = request.expected_version
        assert isinstance(version, Headed)
        headed = self.loaded_members(request.id, version.stored)
        packed = call.wire
        if packed is not None:
            # (the same command with one argument more, ARGV[7], as a blind delete's: a
            # lone delete's first round still sends the bytes packed here, see Call.wire)
            head = array_head(15 + len(call.index_keys) + len(call.event_keys))
            packed = b"".join((array_head(16 + len(call.index_keys) + len(call.event_keys)),
                               packed[len(head):], _bulk(headed)))
        return HeadedDeleteCall(
            call.document_key, call.meta_key, call.ids_key, call.ttl_key, call.trash_key,
            call.state_key, call.index_keys, call.event_keys, call.expected_version,
            call.id_key, call.manifests, call.soft_ms, call.events, call.layout, packed,
            headed)

    def event_keys(self, partition: int) -> tuple[str, ...]:
        """The stream key appended to a write's KEYS when the model emits events."""
        return (self.keys.changes(partition),) if self.events else ()

    def changed_names(self, changed: frozenset[str] | None) -> bytes:
        """An event's "f": the changed attribute names, MessagePack; b"" for all of them.
        (The stored fields only: not the indexed paths into embedded documents.)"""
        if changed is None or not self.events:
            return b""
        packed = self._changed.get(changed)
        if packed is None:
            if len(self._changed) > 1024:
                self._changed.clear()
            packed = self._changed[changed] = wire.pack(
                [name.encode() for name, _, _ in self.options.loaders if name in changed])
        return packed

    def document(self, request: WriteRequest) -> bytes:
        """The stored bytes of the request's document, within the size limit (of its JSON,
        as the engine checks it before a bulk write: compressed or not), compressed if the
        model says so (Meta.compress)."""
        raw = request.encoded()
        if len(raw) > self.max_document_bytes:
            raise DocumentTooLargeError(self.options.model_name, request.id, len(raw),
                                        self.max_document_bytes)
        compress = self.compress
        return raw if compress is None else compress.encode(raw)

    def save(self, request: WriteRequest) -> SaveCall:
        """The call of an insert (``insert.lua``) or an update (``save.lua``): one record."""
        assert request.values is not None and request.data is not None
        values, changed, keys = request.values, request.changed, self.keys
        # (_touched's remembered answer looked up in line: a tuple, never empty)
        fields, compound, touched, packed_indexes = (
            self._touched_by.get(changed) or self._touched(changed))
        if changed is None and request.kind == "insert":
            # every field of a new document: its entries as a bulk insert packs them,
            # remembered per value, in insert_many.lua's flat form (per index in index
            # order its count, then its encodings, one value after another), and its pairs
            # one after another, not an array: insert.lua gathers the entries into one
            # table and passes the pairs on to the meta hash's HSET as they unpack (each
            # item of a MessagePack array costs the server its table's growth)
            packed_pairs, members, _ = self.bulk_values(values, True)
            if NEW_FORMAT == 3:  # (only what a format-3 meta hash keeps)
                packed_pairs = self.kept_pairs(values, request.expire, packed_pairs)
            if not self.any_unique:
                # (nothing to enforce: no quadruples to unpack)
                packed_indexes = b""
        elif changed is None:
            # every field (an update of all): its entries as a bulk insert packs them,
            # remembered per value, and per index in index order, which save.lua reads
            # whole (one MessagePack decode) instead of parsing the netstrings index by
            # index; its pairs one after another (wire.items), as every save sends them
            packed_pairs, members, _ = self.bulk_values(values)
        elif len(fields) == 1 and not compound and type(
                value := values.get(fields[0][0])) in _MEMO_TYPES:
            # (the common update: one indexed field set to a plain value; its packed pair
            # remembered by value, as a patch's and a bulk insert's entries are)
            name, field, meta_name = fields[0]
            memo = self._update_pairs
            known = memo.get((name, type(value), value))
            if known is None:
                known = wire.items([meta_name, sortable.pack_list(field.index_keys(value))])
                _keep(memo, (name, type(value), value), known, len(known))
            packed_pairs, members = known, b""
        else:
            pack_list = sortable.pack_list
            pairs: list[bytes] = []
            for name, field, meta_name in fields:
                pairs += [meta_name, pack_list(field.index_keys(values.get(name)))]
            for index, manifest in compound:
                pairs += [manifest, pack_list(index_members(self.options, index, values))]
            packed_pairs, members = wire.items(pairs), b""
        if request.id is None:  # allocated by the script: only with one partition (same slot)
            assert keys.partitions == 1
            p = keys.partition(0)
            id_key, doc_key, meta_key, sequence = b"", p.doc_prefix, p.meta_prefix, keys.sequence
            partition = 0
        else:
            id = request.id
            partition = 0 if keys.partitions == 1 else keys.partition_of(id)
            p = keys.partition(partition)
            size = len(id)
            if size < 40 and id.isdigit() and id.isascii() and (size == 1 or id[0] != "0"):
                # (sortable.id_key's first case in line, as patch_calls makes it)
                id_key, escaped = _NUMERIC_PREFIXES[size] + id.encode(), id
            else:
                id_key, escaped = sortable.id_key(id), sortable.escape_id(id)
            doc_key, meta_key = p.doc_prefix + escaped, p.meta_prefix + escaped
            sequence = p.ids  # unused; any key of the partition keeps one slot
        if packed_indexes is None:  # (a unique compound index: its flag depends on values)
            packed_indexes = wire.items(_index_args(touched, values))
        events = self._save_events
        raw = request.raw
        if raw is None or len(raw) > self.max_document_bytes or self.compress is not None:
            raw = self.document(request)  # (else what document() gives, without the call)
        kind, write_id = request.kind, "%016x" % _write_id_bits(64)
        # (an Expiry is a str: its wire string)
        expiry = expire if type(expire := request.expire) is Expiry else str(expire)
        # (changed is None, an insert's or an update of every field: changed_names gives
        # b"" for it, here without the call; else its remembered answer, never b"" when
        # events are on, looked up in line)
        names = ((self._changed.get(changed) or self.changed_names(changed))
                 if events and changed is not None else b"")
        # the call's EVALSHA command in RESP (Call.wire), from the parts of its partition
        # and script kept packed, as SaveCall.call() lays the arguments out
        parts = self._save_parts.get((partition, kind, sequence))
        if parts is None or parts[4] is not self.layout:
            parts = self._save_packed(partition, p, kind, sequence)
        front, shared, middle, after, _, layout_part, count = parts
        heads = BULK_HEADS  # (a head by length in line: a call only past 1,023 bytes)
        packed_doc, packed_meta = doc_key.encode(), meta_key.encode()
        # (format 2 asked for: insert.lua's ARGV[13], after ARGV[12] even when empty)
        format2 = NEW_FORMAT == 2 and kind == "insert"
        out = [array_head(count + (2 if format2 else 1 if members else 0)), front,
               heads[n] if (n := len(packed_doc)) < 1024 else bulk_head(n), packed_doc, CRLF,
               heads[n] if (n := len(packed_meta)) < 1024 else bulk_head(n), packed_meta,
               CRLF, shared]
        if kind != "insert":
            version = str(request.expected_version).encode()
            out += (_UPDATE, heads[len(version)], version, CRLF)
        out += (heads[n] if (n := len(id_key)) < 1024 else bulk_head(n), id_key, CRLF,
                heads[n] if (n := len(raw)) < 1024 else bulk_head(n), raw, CRLF,
                b"$16\r\n", write_id.encode(), CRLF,
                heads[n] if (n := len(packed_pairs)) < 1024 else bulk_head(n), packed_pairs,
                CRLF,
                heads[n] if (n := len(packed_indexes)) < 1024 else bulk_head(n),
                packed_indexes, CRLF, middle,
                _EXPIRIES.get(expiry) or _bulk(expiry.encode()), after)
        if kind != "insert":
            out += (heads[n] if (n := len(names)) < 1024 else bulk_head(n), names, CRLF)
        out.append(layout_part)
        if members or format2:
            out += (heads[n] if (n := len(members)) < 1024 else bulk_head(n), members, CRLF)
        if format2:
            out.append(b"$1\r\n2\r\n")
        if type(request.expected_version) is Headed:  # (format 3: see headed.py)
            headed = self._headed_save(request, HeadedSaveCall(
                doc_key, meta_key, p.ids, sequence, p.ttl, p.state, p.indexes,
                (p.changes,) if events else (),
                kind, str(request.expected_version), id_key, raw, write_id, packed_pairs,
                packed_indexes, self.manifests, expiry, p.doc_prefix, p.meta_prefix, events,
                names, self.layout, members), touched)
            # (its command packed as a format-2 save's, with ARGV[15], empty or not, and
            # ARGV[16]: a lone save's first round sends these bytes, see Call.wire)
            out[0] = array_head(count + 2)
            if not members:
                out.append(b"$0\r\n\r\n")
            extra = headed.headed
            out += (heads[n] if (n := len(extra)) < 1024 else bulk_head(n), extra, CRLF)
            headed.wire = b"".join(out)
            return headed
        return SaveCall(
            doc_key, meta_key, p.ids, sequence, p.ttl, p.state, p.indexes,
            (p.changes,) if events else (),
            kind, str(request.expected_version), id_key, raw, write_id, packed_pairs,
            packed_indexes, self.manifests, expiry, p.doc_prefix, p.meta_prefix, events,
            names, self.layout, members, b"".join(out), format2)

    def _save_packed(self, partition: int, p: PartitionKeys, kind: str,
                     sequence: str) -> SaveParts:
        """What every single save of partition ``p`` by ``kind``'s script sends alike, in
        RESP (see :meth:`save`), remembered under the schema layout it carries."""
        events = self._save_events
        others = (p.ids, sequence, p.ttl, p.state, *p.indexes,
                  *((p.changes,) if events else ()))
        insert = kind == "insert"
        parts = (
            _bulk(b"EVALSHA") + _bulk(script("insert" if insert else "save").sha.encode())
            + _bulk(b"%d" % (2 + len(others))),
            b"".join([_bulk(key.encode()) for key in others]), _bulk(self.manifests),
            _bulk(p.doc_prefix.encode()) + _bulk(p.meta_prefix.encode()) + _bulk(events),
            self.layout, _bulk(self.layout),
            # (the command's items, but the members: EVALSHA, SHA, key count, the keys, the
            # arguments)
            3 + 2 + len(others) + (11 if insert else 14))
        if len(self._save_parts) > 64:
            self._save_parts.clear()
        self._save_parts[(partition, kind, sequence)] = parts
        return parts

    def _touched(self, changed: frozenset[str] | None) -> Touched:
        """What a save of the fields ``changed`` (None: all) writes, worked out once per
        set of changed fields: the value fields and compound indexes whose entries it
        sends, the indexes it touches, and their packed arguments (None when a unique
        compound index among them makes them depend on the values)."""
        touched = self._touched_by.get(changed)
        if touched is None:
            fields = [entry for entry in self.value_fields
                      if changed is None or entry[0] in changed]
            indexes = [(position, index, manifest) for position, (index, manifest, names)
                       in enumerate(self.indexes) if changed is None or names & changed]
            compound = [(index, manifest) for _, index, manifest in indexes if index.compound]
            lenient = any(index.compound and index.unique for _, index, _ in indexes)
            packed = None if lenient else wire.items(_index_args(indexes, {}))
            if len(self._touched_by) > 1024:
                self._touched_by.clear()
            touched = self._touched_by[changed] = (fields, compound, indexes, packed)
        return touched

    def patch(self, id: str, values: dict[str, Any], storage: dict[str, Any],
              expire: Expiry | int) -> PatchCall:
        """The ``patch.lua`` call that sets fields of the stored document ``id``, whatever
        its version, without reading it first: ``values`` are the cleaned values by
        attribute name, ``storage`` their stored forms by stored name. No field may be part
        of a compound index (its entries need the other fields' values)."""
        (call,) = self.patches((id,), values, storage, expire)
        return call

    def patches(self, ids: Sequence[str], values: dict[str, Any], storage: dict[str, Any],
                expire: Expiry | int) -> list[PatchCall]:
        """:meth:`patch` of each of ``ids`` (the arguments they share are built once): as
        records, for :meth:`patch` and as the reference :meth:`patch_calls` is tested
        against (the update by id sends what patch_calls makes)."""
        constants, members, shape = self._patch_args(values, storage)
        expiry = wire_expiry(expire)
        keys, events, touched = self.keys, self.events, shape[5]
        make_id, escape_id, id_key = new_write_id, sortable.escape_id, sortable.id_key
        calls = []
        for id in ids:
            p, escaped = keys.partition(keys.partition_of(id)), escape_id(id)
            calls.append(PatchCall(
                p.doc_prefix + escaped, p.meta_prefix + escaped, p.ids, p.ttl, p.state,
                [p.indexes[position] for position in touched],
                (p.changes,) if events else (), id_key(id), make_id(), expiry, constants,
                members))
        return calls

    def patch_calls(self, ids: Sequence[str], values: dict[str, Any],
                    storage: dict[str, Any], expire: Expiry | int) -> tuple[Call, ...]:
        """``[call.call() for call in self.patches(...)]``, made without the records: the
        KEYS after a document's two keys are the same for every patch of a partition, kept
        per partition (the update by id's hot path)."""
        if len(values) == 1:
            ((name, value),) = values.items()  # (no iter()/next() calls)
            if type(value) in _MEMO_TYPES:
                # (what _patch_args remembers for the common patch, looked up in line: its
                # shape by the field's name, no frozenset made; its members by value, as
                # _memo_key gives the key)
                shape = self._patch_one.get(name)
                members = None if shape is None else shape[3].get(
                    value if type(value) is str else (type(value), value))
                constants = None if shape is None else shape[4].get(self.layout)
                if members is None or constants is None:
                    constants, members, shape = self._patch_args(values, storage)
            else:
                constants, members, shape = self._patch_args(values, storage)
        else:
            constants, members, shape = self._patch_args(values, storage)
        assert shape is not None
        # (wire_expiry, in line)
        expiry = expire if type(expire) is Expiry else str(expire)
        # (per partition: the document and meta key prefixes and the KEYS every patch of
        # these fields sends after its document's two, kept in the shape)
        keys, shared = self.keys, shape[6]
        one = keys.partitions == 1
        # (the call's EVALSHA command in RESP, Call.wire, from parts kept packed: its one
        # argument less the id key and write id, made once for all the ids; remembered by
        # its parts, which are themselves remembered: the same objects)
        tails = self._patch_tails
        argument = tails.get((expiry, constants, members))
        if argument is None:
            argument = patch_argument(constants, expiry.encode(), members)
            if len(argument) <= 4 * _MEMO_BYTES:
                if len(tails) >= _MEMO_LIMIT:
                    tails.clear()
                tails[(expiry, constants, members)] = argument
        calls, heads, str_heads = [], BULK_HEADS, _STR_HEADERS
        for id in ids:
            partition = 0 if one else keys.partition_of(id)
            found = shared.get(partition)
            if found is None:
                p = keys.partition(partition)
                others = (p.ids, p.ttl, p.state, *[p.indexes[i] for i in shape[5]],
                          *((p.changes,) if self.events else ()))
                found = shared[partition] = (
                    p.doc_prefix, p.meta_prefix, others,
                    # (the command's head, after the array's: EVALSHA, the SHA, the key count)
                    _bulk(b"EVALSHA") + _bulk(script("patch").sha.encode())
                    + _bulk(b"%d" % (2 + len(others))),
                    b"".join([_bulk(key.encode()) for key in others]))
            size = len(id)
            if size < 40 and id.isdigit() and id.isascii() and (size == 1 or id[0] != "0"):
                # (a canonical numeric id, sortable.id_key's first case, in line: its
                # escaped form is itself, every digit being a safe byte)
                escaped, key = id, _NUMERIC_PREFIXES[size] + id.encode()
            else:
                escaped, key = sortable.escape_id(id), sortable.id_key(id)
            doc, meta = found[0] + escaped, found[1] + escaped
            # (the id key and the write id, 16 characters: MessagePack strings at the end)
            sent = b"".join((argument, str_heads[n] if (n := len(key)) < 256
                             else wire.str_header(n), key, b"\xb0%016x" % _write_id_bits(64)))
            packed_doc, packed_meta, others = doc.encode(), meta.encode(), found[2]
            # (the command: EVALSHA, SHA, key count, 2 + len(others) keys, 1 argument)
            count = 6 + len(others)
            call = Call("patch", (doc, meta, *others), (sent,), b"".join((
                array_head(count), found[3],
                heads[n] if (n := len(packed_doc)) < 1024 else bulk_head(n), packed_doc,
                CRLF, heads[n] if (n := len(packed_meta)) < 1024 else bulk_head(n),
                packed_meta, CRLF, found[4],
                heads[n] if (n := len(sent)) < 1024 else bulk_head(n), sent, CRLF)))
            if len(ids) == 1:  # (the update by id: no list made)
                return (call,)
            calls.append(call)
        return tuple(calls)

    def _patch_args(self, values: dict[str, Any], storage: dict[str, Any]
                    ) -> tuple[bytes, tuple[bytes, ...], Patch]:
        """What the patches of ``values`` share: the constants (ARGV[1]'s head), the
        members, and their shape (:meth:`_patched`)."""
        changed = frozenset(values)
        shape = self._patch_by.get(changed) or self._patched(changed)
        known = shape[3]
        if len(values) == 1 and type(value := next(iter(values.values()))) in _MEMO_TYPES:
            # (the common patch: one field; what it sends remembered by value, as a bulk
            # insert remembers a value's entries: a str under itself, others under their
            # type and value, as 1 and True differ)
            key = _memo_key(value)
            members = known.get(key)
            if members is None:
                members = self._members(shape, values, storage)
                _keep(known, key, members, sum(map(len, members)))
        else:
            members = self._members(shape, values, storage)
        layout = self.layout
        return shape[4].get(layout) or self._constants(shape, layout), members, shape

    def _constants(self, shape: Patch, layout: bytes) -> bytes:
        """``patch.lua``'s constants (the head of ARGV[1]) for the patches of ``shape`` with
        the schema layout ``layout`` (:func:`_pack_constants`), remembered per layout."""
        items = (self.max_document_bytes, layout, *self._events_flat, self._patch_indexes,
                 *shape[0])
        by_layout = shape[4]
        if len(by_layout) > 8:  # (a layout is replaced by a newer one: the old ones go)
            by_layout.clear()
        packed = by_layout[layout] = _pack_constants(items)
        return packed

    @staticmethod
    def _members(shape: Patch, values: dict[str, Any], storage: dict[str, Any]
                 ) -> tuple[bytes, ...]:
        """``patch.lua``'s values after the constants and the expiry in ARGV[1]: the value
        texts, then the lists of the meta fields (see :meth:`_patched`)."""
        fields, stored_names = shape[1], shape[2]
        # each member apart, as the key and value texts an encoded document holds (the
        # encoder writes a value alike at the top level and inside an object): the script
        # has no fragment to parse. (An int, the most common value set by id: its text
        # without the encoder's setup, the digits json writes.)
        texts = tuple([b"%d" % value if type(value := storage[db_name]) is int
                       else jsoncodec.encode(value) for db_name in stored_names])
        lists = tuple([sortable.pack_list(field.index_keys(values[name]))
                       for name, field, _ in fields])
        return texts + lists

    def _patched(self, changed: frozenset[str]) -> Patch:
        """What every patch of the fields ``changed`` sends alike, worked out once per set
        of fields: the items of ``patch.lua``'s constants that depend on the fields (the
        event's "f" when every value changes, the counts, the key texts, the names, the
        meta fields, the touched indexes' quadruples), the value fields whose entries it
        sends, the stored names in field order; for a patch of one field, what it sends by
        value, and the constants whole per schema layout (both filled by :meth:`patches`);
        the positions of the indexes it touches, in the model's index order (their keys
        alone are sent), and per partition what :meth:`patch_calls` sends alike (filled
        there)."""
        fields = self.options.fields
        ordered = [name for name in fields if name in changed]
        entries = [entry for entry in self.value_fields if entry[0] in changed]
        pair_of = {meta_name: number for number, (_, _, meta_name) in
                   enumerate(entries, start=1)}
        quads: list[bytes | int] = []
        touched: list[int] = []
        for position, (index, manifest, of) in enumerate(self.indexes):
            if of & changed:
                assert not index.compound
                # (its member's position and kind code, read for a format-3 document; its
                # key sent after the partition's three, those of the indexes before it)
                kinds = index_kinds(self.options, index)
                quads += [6 + len(touched), pair_of[manifest], b"1" if index.unique else b"0",
                          b"%d %s %s" % (ordered.index(index.fields[0]) + 1,
                                         (kinds[0] if kinds else "").encode(),
                                         index.name.encode())]
                touched.append(position)
        names = [name.encode() for name in ordered]
        # (then, for a patch of one field, the plain pattern of its documents)
        plain = plain_pattern(self.options, ordered[0]) if len(ordered) == 1 else b""
        items = (wire.pack(names), len(ordered), len(entries), len(quads) // 4,
                 *[jsoncodec.encode(fields[name].db_name) for name in ordered], *names,
                 *[meta_name for _, _, meta_name in entries], *quads, plain)
        if len(self._patch_by) > 1024:
            self._patch_by.clear()
            self._patch_one.clear()
        patch: Patch = (items, entries, [fields[name].db_name for name in ordered], {}, {},
                        tuple(touched), {})
        self._patch_by[changed] = patch
        if len(ordered) == 1:  # (patch_calls finds it by the field's name)
            self._patch_one[ordered[0]] = patch
        return patch

    def new_document(self, partition: int, request: WriteRequest,
                     write_id: str | None = None) -> NewDocument:
        """A document with every meta field and index entry (insert_many, tx, restore)."""
        assert request.id is not None and request.values is not None
        p, escaped = self.keys.partition(partition), sortable.escape_id(request.id)
        pairs, lenient = self.all_entries(request.values)
        return NewDocument(p.doc_prefix + escaped, p.meta_prefix + escaped,
                           sortable.id_key(request.id), self.document(request),
                           write_id or new_write_id(), wire.pack(pairs),
                           wire.pack(lenient) if lenient else _NONE)

    def insert_many(self, partition: int, requests: list[WriteRequest]) -> InsertManyCall:
        """One ``insert_many.lua`` call inserting new documents (ids known) of a partition."""
        p = self.keys.partition(partition)
        expiry = requests[0].expire  # one batch, one expiry (bulk_create sends Meta.ttl)
        # (the write ids of the batch from one read of the system's random source)
        ids = os.urandom(8 * len(requests)).hex()
        doc_prefix, meta_prefix = p.doc_prefix, p.meta_prefix
        documents: list[BulkDocument] = []
        lenient_of: list[bytes] = []
        bulk_values, limit, plain = self.bulk_values, self.max_document_bytes, self.compress is None
        # what each document's meta hash keeps (kept_pairs, decided once for the batch, as
        # its expiry is one): format 2 and an expiring batch keep every pair, else only the
        # listed indexes' (none: nothing, and the pairs are not even made)
        format3 = NEW_FORMAT == 3
        every = not format3 or type(expiry) is not Expiry
        listed = not every and bool(self.listed())
        # (a batch whose documents keep no pairs, of a model without compound indexes: the
        # entries of every document made field by field, the batch's values of a field
        # looked up in its memo together: bulk_members)
        batch = None if every or listed or self.compound else self.bulk_members(
            [request.values for request in requests])
        pairs, lenient = b"", _NONE
        for n, request in enumerate(requests):  # (new_document's, with bulk_values)
            id = request.id
            assert id is not None and request.values is not None
            size = len(id)
            if size < 40 and id.isdigit() and id.isascii() and (size == 1 or id[0] != "0"):
                # (sortable.id_key's first case in line, as save() makes it: an auto id's)
                id_key, escaped = _NUMERIC_PREFIXES[size] + id.encode(), id
            else:
                id_key, escaped = sortable.id_key(id), sortable.escape_id(id)
            if batch is not None:
                members = batch[n]
            else:
                pairs, members, lenient = bulk_values(request.values, True, every)
            if listed:  # (only what a format-3 meta hash keeps: kept_pairs')
                pairs = wire.items(self.listed_pairs(self.all_entries(request.values)[0]))
            if lenient is not _NONE:
                lenient_of += (b"%d" % (n + 1), lenient)
            raw = request.raw
            if raw is None or len(raw) > limit or not plain:
                raw = self.document(request)  # (else what document() gives, without the call)
            documents.append(BulkDocument(
                doc_prefix + escaped, meta_prefix + escaped, id_key, raw,
                ids[16 * n:16 * n + 16], pairs, members))
        return InsertManyCall(
            p.ids, p.ttl, p.state, p.indexes, documents,
            self.event_keys(partition), self.described,
            # a new document has no expiry to keep or drop
            Expiry.KEEP if expiry is Expiry.PERSIST else wire_expiry(expiry),
            p.doc_prefix, p.meta_prefix,
            self.events, self.layout, wire.pack(lenient_of) if lenient_of else _NONE,
            not format3)

    def all_entries(self, values: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
        """Every meta field pair (field or compound index, its value encodings) of a
        document, and the 1-based positions of the unique indexes its values do not hold
        unique (a compound value with a null part never conflicts)."""
        pack_list = sortable.pack_list
        pairs: list[bytes] = []
        for name, field, meta_name in self.value_fields:
            pairs += [meta_name, pack_list(field.index_keys(values.get(name)))]
        lenient: list[bytes] = []
        for position, index, manifest in self.compound:
            pairs += [manifest, pack_list(index_members(self.options, index, values))]
            if index.unique and any(values.get(n) is None for n in index.fields):
                lenient.append(b"%d" % (position + 1))
        return pairs, lenient

    def bulk_values(self, values: dict[str, Any], flat: bool = False,
                    pairs_too: bool = True) -> tuple[bytes, bytes, bytes]:
        """A new document's meta field pairs (:meth:`all_entries`' items, packed one after
        another: not an array) and lenient positions (packed), and its value encodings per
        index (``BulkDocument``), as a bulk insert builds them by the thousand: what a value
        already seen in a field packs to (an element already seen, in an array) is
        remembered, not computed again. (A str is remembered under itself, other values
        under their type and value: no str equals a tuple.)

        The encodings per index: a packed array of one packed array per index, or with
        ``flat`` (what ``insert_many.lua`` reads) one value after another, per index its
        count, then its encodings (no table per index for the script to make): unless that
        is longer than ``_FLAT_BYTES``, when it is the arrays. ``pairs_too`` False: b"" in
        the pairs' place, none made (a format-3 document's meta hash keeps none of them
        unless it expires or an index is listed)."""
        pairs: list[bytes] = []
        entries: list[bytes] = []
        which = 2 if flat else 1
        for slot in self._memos:
            known = _known(slot, values.get(slot[0]), flat, pairs_too)
            if pairs_too:
                pairs.append(known[0])
            entries.append(known[which])
        lenient: list[bytes] = []
        for position, index, manifest in self.compound:
            known = _packed(manifest, index_members(self.options, index, values))
            if pairs_too:
                pairs.append(known[0])
            entries.append(known[which])
            if index.unique and any(values.get(n) is None for n in index.fields):
                lenient.append(b"%d" % (position + 1))
        # (what an index no pair holds entries for finds: none)
        entries.append(_NONE_FLAT if flat else _NONE)
        if flat:
            members = b"".join(self._sources(entries))
            if len(members) > _FLAT_BYTES:
                return self.bulk_values(values, False, pairs_too)
        else:
            members = self._index_header + b"".join(self._sources(entries))
        return b"".join(pairs), members, wire.pack(lenient) if lenient else _NONE

    def loaded_members(self, id: str | None, stored: dict[str, Any]) -> bytes:
        """What a loaded format-3 document (its storage form ``stored``) has in every index,
        as delete.lua's ARGV[7] reads it: a packed array of one packed array per index, of
        its entries' value encodings (the script appends the id key to each). Made by
        :meth:`bulk_values`, as a new document's, from the same memos (a value or element
        seen before, by a load or a delete, is not encoded again), of the indexed fields
        alone: no other field of the document is loaded."""
        return self.bulk_values(self._index_values(id, stored), False, False)[1]

    def _index_values(self, id: str | None, stored: dict[str, Any]) -> dict[str, Any]:
        """The values of the fields the model's indexes name, by attribute, of a document
        whose storage form is ``stored``, loaded as ``options.fill`` loads them (a missing
        one gets its default); all its values (:func:`.headed.loaded_values`) when an index
        names the id or a path into an embedded document."""
        loads = self._loads
        if loads is None:
            by_index = index_loads(self.options)
            loads = self._loads = (
                list({member[0]: member for index in self.options.indexes
                      for member in by_index[index.name]}.values())
                if all(index.name in by_index for index in self.options.indexes) else False)
        if loads is False:
            return loaded_values(self.options, id, stored)
        values: dict[str, Any] = {}
        for name, db_name, convert, initial in loads:
            raw = stored.get(db_name, MISSING)
            values[name] = (initial() if raw is MISSING else
                            raw if convert is None or raw is None else convert(raw))
        return values

    def bulk_members(self, batch: list[dict[str, Any] | None]) -> list[bytes]:
        """Of a model without compound indexes, what :meth:`bulk_values` gives each of the
        documents whose values are ``batch`` for their encodings per index (``flat``): the
        same bytes, made field by field for the whole batch, so that the lookups of a
        field's values in its memo are one C loop (a value not found is encoded, and
        remembered, as bulk_values does)."""
        assert not self.compound
        count = len(batch)
        columns: list[Any] = []
        for name, field, meta_name, memo, elements in self._memos:
            column = [values.get(name) for values in batch]  # type: ignore[union-attr]
            kinds = set(map(type, column))
            if kinds <= _MEMO_TYPES:  # (keyed as bulk_values keys them)
                if kinds <= _JUST_STR:
                    keys: list[Any] = column
                elif len(kinds) == 1:
                    keys = list(zip(repeat(kinds.pop()), column))
                else:
                    keys = [value if type(value) is str else (type(value), value)
                            for value in column]
                found: list[Any] = list(map(memo.get, keys))
                if None in found:
                    for i, known in enumerate(found):
                        if known is None:
                            known = memo.get(keys[i])  # (a value met earlier in the batch)
                            if known is None:
                                known = _packed(meta_name, field.index_keys(column[i]))
                                _keep(memo, keys[i], known, len(known[0]))
                            found[i] = known
                columns.append(list(map(_THIRD, found)))
            elif elements is not None and kinds == {list}:
                packed = elements.packed
                columns.append([packed(value, True, False)[2]  # type: ignore[arg-type]
                                for value in column])
            else:  # (bulk_values' own way, value by value)
                slot = (name, field, meta_name, memo, elements)
                columns.append([_known(slot, value, True, False)[2] for value in column])
        columns.append(repeat(_NONE_FLAT, count))  # (an index no field holds entries for)
        if not self.indexes:  # (no entries: each document's are b"", as bulk_values' are)
            return [b""] * count
        members = list(map(b"".join, zip(*self._sources(columns))))
        for n, flat in enumerate(members):
            if len(flat) > _FLAT_BYTES:  # (as bulk_values gives it: the arrays)
                members[n] = self.bulk_values(batch[n], False, False)[1]  # type: ignore[arg-type]
        return members

    def tx(self, partition: int, checks: list[tuple[str, int]],
           requests: list[WriteRequest]) -> TxCall:
        """One ``tx.lua`` call: version checks of documents read (version 0: absent), then
        the writes, all in ``partition``; applied all together or not at all. An update or
        delete of a document loaded as format 3 (its expected version a :class:`.Headed`)
        carries its loaded entries (:meth:`headed_entries`), an insert the listed indexes'
        pairs to be stored in format 3 (:meth:`headed_insert`; ``NEW_FORMAT = 2``: format
        2, no more sent); a check sends its version alone."""
        keys, p = self.keys, self.keys.partition(partition)
        rows: list[TxRow] = [TxCheck(keys.doc(partition, id), keys.meta(partition, id),
                                     sortable.id_key(id), version) for id, version in checks]
        for request in requests:
            assert request.id is not None
            headed = type(request.expected_version) is Headed
            row: TxRow
            if request.kind == "delete":
                doc_key, meta_key = keys.doc(partition, request.id), keys.meta(partition,
                                                                               request.id)
                id_key = sortable.id_key(request.id)
                if headed:
                    row = HeadedTxDelete(doc_key, meta_key, id_key, request.expected_version,
                                         self.headed_entries(request))
                else:
                    row = TxDelete(doc_key, meta_key, id_key, request.expected_version)
            else:
                write = TxWrite(request.kind.encode(), request.expected_version,
                                self.new_document(partition, request),
                                self.changed_names(request.changed), wire_expiry(request.expire))
                if headed and request.kind == "update":
                    write = HeadedTxWrite(write.op, write.expected_version, write.document,
                                          write.changed, write.expiry,
                                          self.headed_entries(request))
                elif request.kind == "insert" and NEW_FORMAT == 3:
                    # (stored in format 3, as insert.lua stores it: see headed_insert)
                    write = HeadedTxWrite(write.op, write.expected_version, write.document,
                                          write.changed, write.expiry,
                                          self.headed_insert(request))
                row = write
            rows.append(row)
        return TxCall(p.ids, p.ttl, p.state, p.indexes, rows, self.event_keys(partition),
                      self.described, p.doc_prefix, p.meta_prefix, self.events, self.layout)

    def headed_insert(self, request: WriteRequest) -> bytes:
        """What a transaction row of an insert sends after its expected version (0, in 20
        digits) and a NUL to have its document stored in format 3 (tx.lua, ARGV[7..]):
        nothing for a model with no listed index, else the listed indexes' pairs (a flat
        MessagePack array), which its meta hash keeps whatever its expiry."""
        if not self.listed():
            return b""
        assert request.values is not None
        return wire.pack(self.listed_pairs(self.all_entries(request.values)[0]))

    def headed_entries(self, request: WriteRequest) -> bytes:
        """What a transaction row of an update or a delete of a document loaded as format 3
        sends after its expected version (tx.lua, ARGV[7..]): per index, the entries its
        loaded data has there, and the listed indexes' new pairs (an update's; none for a
        delete)."""
        version = request.expected_version
        assert isinstance(version, Headed)
        kept: list[bytes] = []
        if request.kind != "delete" and request.values is not None and self.listed():
            kept = self.listed_pairs(self.all_entries(request.values)[0])
        return b"".join((_TWO, wire.pack(self.loaded_lists(
            [index for index, _, _ in self.indexes], request.id, version.stored)),
            wire.pack(kept) if kept else _NONE))

    def restore_call(self, id: str, raw: bytes, version: int, values: dict[str, Any],
                     ttl_ms: int | None) -> Call:
        """One ``restore.lua`` call: the stored document ``raw`` put back as it was (its
        version, index entries and remaining ``ttl_ms``) into its partition here."""
        keys, partition = self.keys, self.keys.partition_of(id)
        p = keys.partition(partition)
        pairs, lenient = self.all_entries(values)
        kept = b""
        if raw[:1] == b"\x01":  # (format 3, ``raw`` its whole stored value: restore.lua)
            kept = wire.pack(self.listed_pairs(pairs))
        return RestoreCall(
            keys.doc(partition, id), keys.meta(partition, id), p.ids, p.ttl, p.state,
            p.indexes, sortable.id_key(id), raw, str(version), new_write_id(),
            wire.pack(pairs), self.described, wire.pack(lenient),
            Expiry.KEEP if ttl_ms is None else str(ttl_ms), p.doc_prefix, kept).call()

    def delete(self, request: WriteRequest) -> DeleteCall:
        id = request.id
        assert id is not None
        keys = self.keys
        partition = 0 if keys.partitions == 1 else keys.partition_of(id)
        p, size = keys.partition(partition), len(id)
        if size < 40 and id.isdigit() and id.isascii() and (size == 1 or id[0] != "0"):
            # (sortable.id_key's first case in line, as save makes it)
            id_key, escaped = _NUMERIC_PREFIXES[size] + id.encode(), id
        else:
            id_key, escaped = sortable.id_key(id), sortable.escape_id(id)
        expected = str(request.expected_version) if request.expected_version else ""
        expire = request.expire
        soft = str(expire) if type(expire) is int else ""  # milliseconds: a soft delete
        trash = self._trash_prefixes.get(partition)
        if trash is None:  # (keys.trash of an empty id: the partition's prefix)
            trash = self._trash_prefixes[partition] = keys.trash(partition, "")
        doc_key, meta_key, trash_key = (p.doc_prefix + escaped, p.meta_prefix + escaped,
                                        trash + escaped)
        # the call's EVALSHA command in RESP (Call.wire), from the parts of its partition
        # kept packed, as DeleteCall.call() lays the keys and arguments out
        parts = self._delete_parts.get(partition)
        if parts is None or parts[3] is not self.layout:
            parts = self._delete_packed(partition, p)
        front, middle, after, _, blind = parts
        derive = blind is not None and not expected
        if derive:  # (a delete of whatever version is stored: ARGV[7], the spec)
            assert blind is not None
            front, after = blind
        heads = BULK_HEADS  # (a head by length in line: a call only past 1,023 bytes)
        packed_doc, packed_meta, packed_trash = (
            doc_key.encode(), meta_key.encode(), trash_key.encode())
        packed = b"".join((
            front, heads[n] if (n := len(packed_doc)) < 1024 else bulk_head(n), packed_doc,
            CRLF, heads[n] if (n := len(packed_meta)) < 1024 else bulk_head(n),
            packed_meta, CRLF, middle[0],
            heads[n] if (n := len(packed_trash)) < 1024 else bulk_head(n), packed_trash,
            CRLF, middle[1], heads[len(expected)], expected.encode(), CRLF,
            heads[n] if (n := len(id_key)) < 1024 else bulk_head(n), id_key, CRLF,
            middle[2], heads[len(soft)], soft.encode(), CRLF, after))
        if derive:  # (one record, the spec its ARGV[7]: made once per model)
            return HeadedDeleteCall(
                doc_key, meta_key, p.ids, p.ttl, trash_key, p.state, p.indexes,
                (p.changes,) if self.events else (), expected, id_key,
                self.manifest_items, soft, self._save_events, self.layout, packed,
                self._blind_spec or b"")
        call = DeleteCall(
            doc_key, meta_key, p.ids, p.ttl, trash_key, p.state, p.indexes,
            (p.changes,) if self.events else (), expected, id_key,
            self.manifest_items, soft, self._save_events, self.layout, packed)
        if type(request.expected_version) is Headed:  # (format 3: see headed.py)
            return self.headed_delete(request, call)
        return call

    def blind_spec(self) -> bytes:
        """What a delete of whatever version is stored sends as delete.lua's ARGV[7], so
        that it deletes a format-3 document without a sweep record in one call, its entries
        derived from its JSON: per index, its members' key texts and kind codes
        (:func:`.headed.spec_items`); b"" (not sent) when an index is listed, whose
        entries the document's JSON does not give. Made once per model."""
        spec = self._blind_spec
        if spec is None:
            items = spec_items(self.options)
            spec = self._blind_spec = b"" if not all(items) else nested(items)
        return spec

    def _delete_packed(self, partition: int, p: PartitionKeys
                       ) -> tuple[bytes, tuple[bytes, bytes, bytes], bytes, bytes,
                                  tuple[bytes, bytes] | None]:
        """What every delete of partition ``p`` sends alike, in RESP (see :meth:`delete`):
        the command's head to its first key, the runs between its own items (after the
        meta key, after the trash key, after the id key), what follows the soft delete's
        milliseconds, and the layout it was made for; then, when the model sends
        :meth:`blind_spec`, a blind delete's head and tail; remembered per partition."""
        events = self._save_events
        after = (p.state, *p.indexes, *((p.changes,) if self.events else ()))
        nkeys = 5 + len(after)
        parts: tuple[bytes, tuple[bytes, bytes, bytes], bytes, bytes,
                     tuple[bytes, bytes] | None] = (
            array_head(3 + nkeys + 6) + _bulk(b"EVALSHA")
            + _bulk(script("delete").sha.encode()) + _bulk(b"%d" % nkeys),
            (_bulk(p.ids.encode()) + _bulk(p.ttl.encode()),
             b"".join([_bulk(key.encode()) for key in after]), _bulk(self.manifest_items)),
            _bulk(events) + _bulk(self.layout), self.layout, None)
        spec = self.blind_spec()
        if spec:  # (a blind delete's front and tail: one argument more, the spec)
            parts = (*parts[:4], (array_head(3 + nkeys + 7) + parts[0][
                len(array_head(3 + nkeys + 6)):], parts[2] + _bulk(spec)))
        if len(self._delete_parts) > 64:
            self._delete_parts.clear()
        self._delete_parts[partition] = parts
        return parts

    def sweep_call(self, partition: int, limit: int) -> Call:
        p = self.keys.partition(partition)
        return SweepCall(p.ids, p.ttl, p.state, p.indexes, self.event_keys(partition),
                         str(limit), self.manifests, p.doc_prefix, p.meta_prefix, self.events,
                         self.layout).call()


@dataclass(slots=True)
class HeadedTxDelete(TxDelete):
    """A transaction row deleting a document loaded as format 3: its expected version in 20
    digits, then a NUL and ``headed`` (tx.lua, ARGV[7..])."""

    headed: bytes = b""

    def argv(self) -> tuple[Any, ...]:
        args = TxDelete.argv(self)
        # (20 digits: longer than any version "%d" writes, which tells tx.lua the row)
        return (args[0], b"%020d\0" % self.expected_version + self.headed, *args[2:])


@dataclass(slots=True)
class HeadedTxWrite(TxWrite):
    """A transaction row updating a document loaded as format 3 (see HeadedTxDelete)."""

    headed: bytes = b""

    def argv(self) -> tuple[Any, ...]:
        args = TxWrite.argv(self)
        # (20 digits: longer than any version "%d" writes, which tells tx.lua the row)
        return (args[0], b"%020d\0" % self.expected_version + self.headed, *args[2:])


def tx_version(request: WriteRequest, version: int) -> int:
    """The version a transaction's write reports: a :class:`.Headed` for an update of a
    document loaded as format 3 (it stays format 3: its next write sends this data's
    entries) and for an insert stored in format 3 (``NEW_FORMAT``), else ``version``."""
    if request.data is not None and version > 0 and (
            (type(request.expected_version) is Headed and request.kind == "update")
            or (request.kind == "insert" and NEW_FORMAT == 3)):
        return Headed.of(version, request.data)
    return version


def _packed(meta_name: bytes, keys: list[bytes]) -> tuple[bytes, bytes, bytes]:
    """A meta field pair (the field's name, its value encodings as a netstring list) as
    items of a :func:`wire.pack` array, the encodings as a packed array of their own, and
    the encodings in ``insert_many.lua``'s flat form (:func:`_flat`)."""
    packed = wire.pack(keys)
    return (wire.item(meta_name) + wire.item(sortable.pack_list(keys)), packed,
            _flat(len(keys), packed[len(wire.array_header(len(keys))):]))


def _flat(count: int, items: bytes) -> bytes:
    """An index's ``count`` encodings (``items``: packed one after another) as
    ``insert_many.lua`` reads them among a document's: the count (a MessagePack integer),
    then the encodings."""
    return (_COUNTS[count] if count < 128 else wire.integer(count)) + items


_COUNTS = [wire.integer(n) for n in range(128)]  # (MessagePack's positive fixints)
_STR_HEADERS = [wire.str_header(n) for n in range(256)]  # (of strings of 0 to 255 bytes)
_ARRAY_HEADERS = [wire.array_header(n) for n in range(16)]  # (of 0 to 15 items)


class _Elements:
    """The remembered sort keys of the elements of one array field, for
    :meth:`WriteLayout.bulk_values`: the field's entries are its elements' sort keys, each
    once, sorted (``ArrayField.index_keys``)."""

    __slots__ = ("element", "memo", "meta_name", "packed_name")

    def __init__(self, element: Field, meta_name: bytes) -> None:
        self.element, self.meta_name = element, meta_name
        #: the field's meta field name as an item of a packed array
        self.packed_name = wire.item(meta_name)
        #: element (a str) or (type, element) -> (sort key, as a netstring, as an item of a
        #: packed array)
        self.memo: dict[Any, tuple[bytes, bytes, bytes]] = {}

    @staticmethod
    def of(field: Field, meta_name: bytes) -> _Elements | None:
        """For an array field whose entries are ``ArrayField``'s own, else None."""
        if isinstance(field, ArrayField) and type(field).index_keys is ArrayField.index_keys:
            return _Elements(field.field, meta_name)
        return None

    def packed(self, value: list[Any], flat: bool = False,
               pair: bool = True) -> tuple[bytes, bytes, bytes]:
        """:func:`_packed` of the array ``value``'s entries (of its two forms of the
        entries, only the one ``flat`` asks for is made: b"" in the other's place; the
        meta field pair only with ``pair``, else b"")."""
        memo, found = self.memo, []
        for item in value:
            kind = type(item)
            if kind is str:  # (the common element: keyed by itself, no str equals a tuple)
                entry = memo.get(item)
            elif kind in _MEMO_TYPES:
                entry = memo.get((kind, item))
            else:
                return _packed(self.meta_name, sorted({self.element.sort_key(v) for v in value}))
            if entry is None:
                entry = self._remember(kind, item)
            found.append(entry)
        if not found:
            return (self.packed_name + wire.str_header(0), wire.array_header(0), _NONE_FLAT)
        # (one entry per sort key: equal keys come with equal netstrings and items. Sorted
        # as they are, then a set of the netstrings, bytes whose hash is kept, tells
        # whether two are equal: a set of the triples hashes each triple again, and most
        # arrays hold no element twice)
        found.sort()
        _, netstrings, items = zip(*found)  # (each entry a triple)
        count = len(netstrings)
        if count > 1 and len(set(netstrings)) < count:
            _, netstrings, items = zip(*sorted(set(found)))
            count = len(netstrings)
        packed = b"".join(items)
        made = b""
        if pair:
            listed = b"".join(netstrings)
            size = len(listed)
            # (wire's headers, looked up here for the usual sizes: a call fewer for each)
            made = self.packed_name + (_STR_HEADERS[size] if size < 256
                                       else wire.str_header(size)) + listed
        if flat:  # (_flat's, without a call for the usual count)
            return made, b"", (_COUNTS[count] + packed if count < 128 else _flat(count, packed))
        return made, (_ARRAY_HEADERS[count] if count < 16
                      else wire.array_header(count)) + packed, b""

    def _remember(self, kind: type, item: Any) -> tuple[bytes, bytes, bytes]:
        """The entry of an element not in the memo, remembered if it is short."""
        key = self.element.sort_key(item)
        entry = (key, b"%d:%s" % (len(key), key), wire.item(key))
        _keep(self.memo, item if kind is str else (kind, item), entry, len(key))
        return entry


#: a value field's memo slot (see WriteLayout._memos): attribute, field, meta field, memo
#: of its values' encodings, memo of its elements' (an array field's) or None
MemoSlot = tuple[str, Field, bytes, dict[Any, tuple[bytes, bytes, bytes]], "_Elements | None"]


def _known(slot: MemoSlot, value: Any, flat: bool = False,
           pair: bool = True) -> tuple[bytes, bytes, bytes]:
    """:func:`_packed` of the entries of ``value`` in the field of ``slot``: a plain value
    from the field's memo (remembered when new: a str under itself, any other under its type
    and value, as 1 and True differ), an array by its elements' memo (only the forms
    ``flat`` and ``pair`` ask for), any other value encoded afresh."""
    _, field, meta_name, memo, elements = slot
    kind = type(value)
    if kind in _MEMO_TYPES:
        key = value if kind is str else (kind, value)
        known = memo.get(key)
        if known is None:
            known = _packed(meta_name, field.index_keys(value))
            _keep(memo, key, known, len(known[0]))
        return known
    if elements is not None and isinstance(value, list):
        return elements.packed(value, flat, pair)
    return _packed(meta_name, field.index_keys(value))


def _memo_key(value: Any) -> Any:
    """The key a one-field patch's members are remembered under: a str under itself, other
    values (of ``_MEMO_TYPES``) under their type and value, as 1 and True differ."""
    return value if type(value) is str else (type(value), value)


def wire_expiry(expire: Expiry | int) -> str:
    """What the scripts read for an expiry: "keep", "persist" or milliseconds."""
    return expire if type(expire) is Expiry else str(expire)  # (an Expiry is a str)


def events_spec(options: ModelOptions, keys: KeySpace) -> bytes:
    """The change-event spec the write scripts read (``events_on`` in ``_prelude.lua``)."""
    stream = options.changes is not False
    if not stream and not options.publish:
        return b""
    return wire.pack([str(options.changes_maxlen).encode() if stream else b"",
                      b"1" if options.changes_document else b"0",
                      keys.channel.encode() if options.publish else b""])


def events_flat(options: ModelOptions, keys: KeySpace) -> tuple[bytes, bytes, bytes]:
    """The items of :func:`events_spec` apart, as ``patch.lua`` reads them (among the
    strings of its ARGV[1], no array to unpack): the stream's MAXLEN (b"": none), b"1" if
    events carry the document, the channel (b"": none); all three b"" when the model emits
    no change events."""
    stream = options.changes is not False
    if not stream and not options.publish:
        return b"", b"", b""
    return (str(options.changes_maxlen).encode() if stream else b"",
            b"1" if options.changes_document else b"0",
            keys.channel.encode() if options.publish else b"")


def result(options: ModelOptions, request: WriteRequest, reply: WriteReply) -> WriteResult:
    """A write script's reply (parsed: :func:`.replies.write_reply`) as a result, with a
    typed error on refusal."""
    status = reply.status
    model, id = options.model_name, request.id
    if status == "OK":
        if request.kind == "delete":
            return WriteResult(id, 0)
        assert reply.version is not None
        new_id = id if id is not None else sortable.id_from_key(reply.id_key or b"")
        if request.data is not None and (type(request.expected_version) is Headed or (
                request.kind == "insert" and NEW_FORMAT == 3)):
            # (a format-3 document, written so or kept so: its next write sends this
            # data's entries)
            return WriteResult(new_id, Headed.of(reply.version, request.data))
        return WriteResult(new_id, reply.version)
    if status == "MISSING" and request.kind == "delete":
        return WriteResult(id, None)  # already gone: nothing to do, nothing refused
    shown = id if id is not None else "<new>"
    error: Exception
    if status == "VERSION":
        error = VersionConflict(model, shown, request.expected_version, reply.version)
    elif status == "MISSING":
        error = VersionConflict(model, shown, request.expected_version, None)
    elif status == "EXISTS":
        error = DuplicateIdError(model, shown)
    elif status == "UNIQUE":
        assert reply.name is not None and reply.id_key is not None
        error = UniqueViolation(model, reply.name, shown, sortable.id_from_key(reply.id_key))
    elif status == "WRONGTYPE":
        key = reply.name or ""
        error = WrongTypeError(f"{model} {shown!r}: key {key!r} holds another type", key)
    elif status == "LOCKED":  # (a prepared transaction holds it: twophase.py)
        error = DocumentLocked(model, shown, request.expected_version, reply.name or "")
    elif status == "DAMAGED":  # (its meta hash does not read: nothing written; repair())
        error = DamagedMetaError(model, shown, reply.name or "", reply.field)
    elif status == "CORRUPT":  # (a format-3 header that does not read: nothing written)
        error = CorruptDocumentError(model, shown, "a format-3 header (its version or recent "
                                     "write ids) that does not read")
    else:
        raise AssertionError(f"unexpected script reply {reply!r}")
    return WriteResult(id, None, error)


def tx_results(options: ModelOptions, checks: list[tuple[str, int]],
               requests: list[WriteRequest], reply: TxReply) -> list[WriteResult]:
    """The results of a ``tx.lua`` call, one per request; a refusal raises its typed error
    (nothing was written)."""
    status = reply.status
    if status == "OK":
        versions = reply.versions[len(checks):]
        return [WriteResult(r.id, tx_version(r, v))
                for r, v in zip(requests, versions, strict=True)]
    if status == "WRONGTYPE":
        key = reply.refusal.name or "" if reply.refusal is not None else ""
        raise WrongTypeError(f"{options.model_name}: key {key!r} holds another type", key)
    if status == "APPLIED":  # (a resent transaction: applied, new versions unknown)
        raise WriteOutcomeUnknown(options.model_name, requests[0].id if requests else None,
                                  VersionConflict(options.model_name, "<several>", 0, None))
    position = reply.position - 1
    refusal = reply.refusal
    assert refusal is not None
    if refusal.status == "LOCKED":  # (a prepared transaction holds it: twophase.py)
        id, expected = (checks[position] if position < len(checks) else
                        (requests[position - len(checks)].id or "<new>",
                         requests[position - len(checks)].expected_version))
        raise DocumentLocked(options.model_name, id, expected, refusal.name or "")
    if position < len(checks):  # a document read in the transaction changed since
        id, expected = checks[position]
        if refusal.status == "DAMAGED":  # (its meta hash does not read: repair())
            raise DamagedMetaError(options.model_name, id, refusal.name or "", refusal.field)
        if refusal.status == "CORRUPT":  # (a format-3 header that does not read)
            raise CorruptDocumentError(options.model_name, id, "a format-3 header (its "
                                       "version or recent write ids) that does not read")
        raise VersionConflict(options.model_name, id, expected, refusal.version)
    request = requests[position - len(checks)]
    if refusal.status == "ENTRIES":
        # (a document read as format 2 and stored in format 3 since, at the version read:
        # its entries were not sent. A conflict: a transaction's writes follow its reads,
        # which run_transaction makes again, now of a format-3 document)
        conflict = VersionConflict(options.model_name, request.id or "<new>",
                                   request.expected_version, refusal.version)
        conflict.args = (f"{options.model_name} {request.id!r} was stored in format 3 since "
                         "it was read (at the same version): read it again",)
        raise conflict
    refused = result(options, request, refusal)
    if refused.error is None:  # (a delete of a document that is gone: the read was stale)
        raise VersionConflict(options.model_name, request.id or "<new>",
                              request.expected_version, None)
    raise refused.error
