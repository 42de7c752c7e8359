"""Build indexes online on Redis: ``Model.objects.reindex()``.

An index added to a collection that has data starts *building* (:mod:`quantumorm.schema`):
every writer maintains it from then on, and this builder fills in the documents written
before. It walks each partition's ids in batches; for each batch it reads the documents and
their versions, computes their entries in Python (the scripts never decode JSON) and sends
``reindex.lua``, which writes them only for documents still at the version read: a document
written meanwhile was indexed by its writer, one deleted needs nothing. The last id done is
checkpointed in the schema hash after every batch, so an interrupted run resumes there.
When every partition is done, the indexes are marked ready and queries start using them.
With nothing building, ``reindex()`` rebuilds every index from empty (to clear whatever
damage it holds): marked building, its keys deleted, then built the same way.

A document that lacks a field with a default (the field was added since it was written) is
given that default in the same script, so that what reads show, what the index holds and
what later filters match stay one value even if the default changes later.

A format-3 document (``\x01`` header, bench/format3.md) is checked at its header's version
and stays format 3 (a backfill keeps its header); its meta hash is written only as format 3
keeps one: an expiring document's sweep record ("v" and the new fields), or a listed
index's fields (:func:`listed_index`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ... import compression, sortable
from ...engine.contract import encode_document
from ...engine.drive import Op
from ...errors import CorruptDocumentError, SchemaMismatchError, WrongTypeError
from ...maintenance import Progress, ReindexReport, UniqueConflict
from ...options import IndexSpec, ModelOptions
from ...schema import IndexState
from . import schemas, stored, wire, writeids
from .calls import FetchCall, ReindexCall, ReindexDocument
from .commands import Command, RedisPlan
from .headed import listed_names
from .keys import KeySpace, manifest_field, meta_field
from .replies import layout_refused, reindex_reply, wrong_type
from .writes import index_members

if TYPE_CHECKING:
    from ...document import Document
    from .backend import RedisBackend

#: documents per batch (one read and one script call each)
BATCH = 500
#: rounds of a batch's documents that writers keep changing before they are given up on
RETRIES = 50


def reindex(backend: RedisBackend, model: type[Document], batch: int = BATCH,
            progress: Progress | None = None) -> Op[ReindexReport]:
    options = model._meta
    state = backend._state(options)
    keys = state.keys
    started = time.monotonic()
    # (each change settles the model's transactions in flight first: see schemas.py)
    def settle() -> Op[None]:
        return backend.before_schema_change(options)

    schema = yield from schemas.take_over(options, keys, settle)
    targets = schema.building()
    if not targets:  # nothing being built: rebuild every index from empty, unused meanwhile
        targets = tuple(schema.indexes)
        schema = yield from schemas.set_states(options, keys, schema, dict.fromkeys(
            targets, IndexState.BUILDING), settle)
        # (after the stamps: no connection reads these indexes any more; writers go on
        # adding the entries of what they write, and the build adds the rest)
        yield RedisPlan(tuple(Command(("UNLINK", keys.index(p, name))) for name in targets
                              for p in range(options.partitions)), idempotent=True)
    # every partition refuses writers of an older layout before the walk starts (a stamp may
    # have been lost), so none can write a document the walk has passed without its entries
    yield from schemas.stamp(options, keys, schema)
    state.use(schema)
    report = ReindexReport(options.model_name, targets, resumed=any(
        schema.resume_at(p) is not None for p in range(options.partitions)))
    by_name = options.indexes_by_name()
    indexes = [by_name[name] for name in targets]
    totals = yield RedisPlan(tuple(Command(("ZCARD", keys.ids(p)))
                                   for p in range(options.partitions)), read_only=True)
    total, done = sum(int(n) for n in totals), 0
    for partition in range(options.partitions):
        cursor = schema.resume_at(partition)
        while True:
            low = b"-" if cursor is None else b"(" + cursor
            (ids,) = yield RedisPlan((Command(("ZRANGE", keys.ids(partition), low, b"+",
                                               "BYLEX", "LIMIT", 0, batch)),), read_only=True)
            if not ids:
                break
            id_keys = [bytes(i) for i in ids]
            yield from _batch(model, keys, str(schema.layout).encode(), partition, indexes,
                              id_keys, report)
            cursor = id_keys[-1]
            yield from schemas.checkpoint(keys, schema, partition, cursor)
            done += len(id_keys)
            if progress is not None:
                progress(done, max(done, total))  # (writers add documents meanwhile)
    if progress is not None:
        progress(done, done)
    if not report.conflicts and not report.unsettled:
        stored = yield from schemas.read(keys)
        if stored is None or stored.fingerprint != schema.fingerprint:
            raise SchemaMismatchError(f"{options.model_name}: the stored schema changed while "
                                      "its indexes were being built; run reindex() again")
        schema = yield from schemas.set_states(options, keys, stored, dict.fromkeys(
            targets, IndexState.READY), settle)
        yield from schemas.clear_checkpoints(keys, options.partitions)
        state.use(schema)
        report.ready = True
    else:
        # (not an interruption: the walk ended, with conflicts or documents writers kept
        # changing; the next run must walk everything again, not resume past them)
        yield from schemas.clear_checkpoints(keys, options.partitions)
    report.seconds = time.monotonic() - started
    return report


def _batch(model: type[Document], keys: KeySpace, layout: bytes, partition: int,
           indexes: list[IndexSpec], id_keys: list[bytes], report: ReindexReport) -> Op[None]:
    """Write the entries of one batch of documents. A document written between its read
    and the script is read again and done again (a writer changing other fields does not
    touch these indexes), until it holds still or RETRIES rounds have passed."""
    ids = [sortable.id_from_key(k) for k in id_keys]
    for _round in range(RETRIES):
        ids = yield from _attempt(model, keys, layout, partition, indexes, ids, report)
        if not ids:
            return
    report.unsettled += len(ids)


def _attempt(model: type[Document], keys: KeySpace, layout: bytes, partition: int,
             indexes: list[IndexSpec], ids: list[str], report: ReindexReport) -> Op[list[str]]:
    """One round of :func:`_batch`; returns the ids that changed under it."""
    options = model._meta
    doc_keys = [k for id in ids for k in (keys.doc(partition, id), keys.meta(partition, id))]
    (found,) = yield RedisPlan((FetchCall(doc_keys).call(),), read_only=True)
    described = wire.pack([item for index in indexes for item in (
        manifest_field(options, index).encode(), b"1" if index.unique else b"0",
        index.name.encode())])
    call = ReindexCall(keys.state(partition),
                       [keys.index(partition, index.name) for index in indexes], [],
                       described, keys.doc_prefix(partition), layout)
    sent: list[str] = []
    listed = [item for index in indexes if listed_index(options, index)
              for item in fields_of(options, index)]
    for n, id in enumerate(ids):
        raw = found[2 * n]
        headed = raw is not None and bytes(raw[:1]) == stored.HEADED
        if raw is None or (found[2 * n + 1] is None and not headed):
            report.gone += 1  # expired or deleted since the ids were read
            continue
        if headed:
            # (format 3: the header's version, which reindex.lua checks, then the meta
            # fields a listed index keeps whatever the document's expiry)
            version = _header_version(bytes(raw), options.model_name, id)
            sent_version = b"".join([b"\x01%d" % version, *(b"\x00" + f for f in listed)])
        else:
            # (the meta hash's version, which reindex.lua checks: fetch.lua returns it)
            version = int(found[2 * n + 1])
            sent_version = b"%d" % version
        data = stored.document(bytes(raw), options.model_name, id)
        values = model.from_storage(id, version, data)._values()
        filled = options.with_defaults(data, values)
        backfill = None if filled is None else compression.stored(
            options.compress, encode_document(filled))
        pairs, lenient = _entries(options, indexes, values)
        call.documents.append(ReindexDocument(
            keys.doc(partition, id), keys.meta(partition, id), sortable.id_key(id),
            sent_version, b"" if backfill is None else backfill, wire.pack(pairs),
            wire.pack(lenient)))
        sent.append(id)
    if not sent:
        return []
    (replies,) = yield RedisPlan((call.call(),), idempotent=True)
    if layout_refused(replies):
        raise SchemaMismatchError(f"{options.model_name}: the stored schema changed while its "
                                  "indexes were being built; run reindex() again")
    key = wrong_type(replies)
    if key is not None:  # (the state hash: nothing written)
        raise WrongTypeError(f"{options.model_name}: key {key!r} holds another type", key)
    again = []
    backfills = [d.backfill for d in call.documents]
    for id, raw, backfill in zip(sent, replies, backfills, strict=True):
        reply = reindex_reply(raw)
        if reply.status == "UNIQUE":
            assert reply.index is not None and reply.holder is not None
            report.conflicts.append(UniqueConflict(reply.index, id,
                                                   sortable.id_from_key(reply.holder)))
        elif reply.status != "OK":
            again.append(id)  # written meanwhile: read it again
            continue
        report.documents += 1
        report.backfilled += backfill != b""
    return again


def _entries(options: ModelOptions, indexes: list[IndexSpec],
             values: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
    """The meta fields the indexes need (each field's encodings, each compound index's
    entries) and the positions of unique indexes not enforced for these values."""
    pairs: list[bytes] = []
    seen: set[str] = set()
    lenient: list[bytes] = []
    for position, index in enumerate(indexes):
        for name in index.fields:
            if name not in seen:
                seen.add(name)
                field = options.fields[name]
                pairs += [meta_field(field).encode(),
                          sortable.pack_list(field.index_keys(values.get(name)))]
        if index.compound:
            pairs += [manifest_field(options, index).encode(),
                      sortable.pack_list(index_members(options, index, values))]
        if index.unique and index.compound and any(values.get(n) is None
                                                   for n in index.fields):
            lenient.append(b"%d" % (position + 1))
    return pairs, lenient


def listed_index(options: ModelOptions, index: IndexSpec) -> bool:
    """Whether format 3 keeps ``index``'s entries in each document's meta hash even without
    an expiry (``bench/format3.md`` sections 1 and 3: a *listed* index), by the writers'
    rule (:func:`.headed.listed_names`: a field of a kind Lua does not derive, a path into
    embedded documents, a case-folded index, an array in a compound index, a model that
    compresses its documents)."""
    return index.name in listed_names(options)


def fields_of(options: ModelOptions, index: IndexSpec) -> list[bytes]:
    """The meta fields that hold ``index``'s entries (each field's, and a compound
    index's own)."""
    out = [meta_field(options.fields[name]).encode() for name in index.fields]
    if index.compound:
        out.append(manifest_field(options, index).encode())
    return out


def _header_version(raw: bytes, model: str, id: str) -> int:
    """A format-3 document's version, from its header: :class:`CorruptDocumentError` when
    the header does not read (its write ids included), as its writers refuse it."""
    try:
        head = stored.header(raw)
        assert head is not None
        writeids.version_in_header(head[1], head[0], b"")
    except ValueError as exc:
        raise CorruptDocumentError(model, id, f"its format-3 header does not read ({exc})") \
            from exc
    return head[0]
