"""Format 3's writes from the client (``bench/format3.md``, sections 2 and 7; step 3).

A format-3 document keeps no record of its index entries: a write that removes them (a
save of a loaded document, a delete) sends the entries its *loaded* document has, which
the script trusts because it compares the version first. So a version read from a
format-3 document is a :class:`Headed`: an ``int`` (equal to the plain version, and used
as one everywhere) that also holds the storage-form data it was read with. The write
layout (:mod:`.writes`) sends the entries of that data with a write whose expected version
is one; a plain ``int`` (a format-2 document's version) sends nothing more, so the format-2
path costs what it did. Where the marker is missing (the document was read as format 2 and
converted by another writer since), the script answers ``{"ENTRIES", version}`` and
:func:`entries_retry` reads the document and sends the write again with a :class:`Headed`
version (a compare-and-set: a version that moved since is the usual conflict).

Pure but for :func:`entries_retry`, an operation (``yield`` of plans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import jsoncodec
from ...engine.contract import WriteRequest, WriteResult
from ...engine.drive import Op
from ...errors import VersionConflict
from ...options import ModelOptions
from . import wire
from .commands import Command, RedisPlan
from .derived import derivation
from .replies import WriteReply, write_reply

if TYPE_CHECKING:
    from .calls import DeleteCall, SaveCall
    from .writes import WriteLayout


class Headed(int):
    """A version read from a format-3 document, with the storage-form data it was read
    with (``stored``): what the document's index entries are made of."""

    stored: dict[str, Any]

    @classmethod
    def of(cls, version: int, stored: dict[str, Any]) -> Headed:
        made = cls(version)
        made.stored = stored
        return made


def loaded_values(options: ModelOptions, id: str | None, stored: dict[str, Any]
                  ) -> dict[str, Any]:
    """The values by attribute name (and indexed path) of a document whose storage form is
    ``stored``, as ``Document._values()`` gives them for a loaded instance not changed
    since: the loaded state, never an instance's current values."""
    values: dict[str, Any] = {}
    options.fill(values, stored)
    values["id"] = id
    for name, path in options.derived:
        values[name] = path.indexed_value(values)
    return values


def nested(arrays: list[list[bytes]]) -> bytes:
    """A MessagePack array of arrays of strings."""
    return wire.array_header(len(arrays)) + b"".join([wire.pack(a) for a in arrays])


def spec_items(options: ModelOptions) -> list[list[bytes]]:
    """Per index, the quoted key text and kind code (:func:`.derived.derivation`) of each
    of its fields, as Lua would derive its entries from a format-3 document's JSON
    (bench/format3.md, section 3; a compound index's entry is its fields' joined); an empty
    list for an index not derived (a field of a kind Lua does not derive, a path into an
    embedded document, a case-folded index, an array in a compound index): a *listed*
    index, whose fields a format-3 document's meta hash keeps. Every index of a model that
    compresses its documents (``Meta.compress``) is listed: Redis's Lua has no zlib to read
    the payload with, so a query testing values, a patch or a blind delete could derive
    nothing from it."""
    if options.compress is not None:
        return [[] for _ in options.indexes]
    return kind_items(options)


def kind_items(options: ModelOptions) -> list[list[bytes]]:
    """:func:`spec_items` by the kinds of the indexes' fields alone, whatever the model's
    compression: what Lua derives from a document stored uncompressed (``verify()`` judges
    each document by its own payload)."""
    paths = {name for name, _ in options.derived}
    out: list[list[bytes]] = []
    for index in options.indexes:
        items: list[bytes] = []
        for name in index.fields:
            field = options.fields.get(name) if name not in paths else None
            code = derivation(field) if field is not None else None
            if field is None or code is None or (index.compound and code.startswith("[")):
                items = []
                break
            items += [jsoncodec.encode(field.db_name), code.encode()]
        out.append(items)
    return out


def listed_names(options: ModelOptions, by_kind: bool = False) -> frozenset[str]:
    """The names of the model's listed indexes (:func:`spec_items`: the one rule every
    writer, reindex and repair follow); ``by_kind``: those :func:`kind_items` lists (every
    index but those Lua derives from an uncompressed payload)."""
    items = kind_items(options) if by_kind else spec_items(options)
    return frozenset(index.name for index, each in
                     zip(options.indexes, items, strict=True) if not each)


#: per index of a model whose members are stored fields (not the id, nor an indexed path
#: into an embedded document): (attribute, storage name, loader, default) of each member;
#: kept in the model's options (see index_loads)
_LOADS = "_qorm_old_entry_loads"


def index_loads(options: ModelOptions) -> dict[str, list[tuple[str, str, Any, Any]]]:
    """What a loaded document's entries are made of (``WriteLayout.loaded_lists`` and
    ``loaded_members``): per index, its members as ``options.fill`` loads them; worked out
    once per model."""
    made: dict[str, list[tuple[str, str, Any, Any]]] | None = options.__dict__.get(_LOADS)
    if made is None:
        by_name = {name: (name, db_name, convert, options.fields[name].initial)
                   for name, db_name, convert in options.loaders}
        made = {index.name: [by_name[name] for name in index.fields]
                for index in options.indexes if all(name in by_name for name in index.fields)}
        options.__dict__[_LOADS] = made
    return made


#: how many times a write that met a format-3 document it could not write at once is sent
#: again (read, then compare-and-set: a delete of whatever version is stored retries when
#: another writer moved the version in between, as the other compare-and-set loops do)
ENTRIES_ATTEMPTS = 5


def entries_retry(options: ModelOptions, layout: WriteLayout, request: WriteRequest,
                  reply: WriteReply) -> Op[WriteResult]:
    """The outcome of ``request``, whose script answered ``{"ENTRIES", version}``: a
    format-3 document whose entries it was not sent (a save or delete of an instance loaded
    as format 2, converted by another writer since, or a delete of whatever version is
    stored, which cannot know them). The document is read and the write sent again as
    loaded at the version read (:class:`Headed`); a save or loaded delete whose expected
    version is not that one is the usual conflict, a delete of whatever version is stored
    reads again."""
    from .results import row
    from .writes import result

    id = request.id
    assert id is not None
    keys = layout.keys
    doc_key = keys.doc(0 if keys.partitions == 1 else keys.partition_of(id), id)
    blind = request.kind == "delete" and not request.expected_version
    call: DeleteCall | SaveCall
    for _ in range(ENTRIES_ATTEMPTS):
        (raw,) = yield RedisPlan((Command(("GET", doc_key)),), idempotent=True)
        if raw is None:
            if request.kind == "delete":
                return WriteResult(id, None)  # (gone: nothing to do)
            return WriteResult(id, None, VersionConflict(
                options.model_name, id, request.expected_version, None))
        found = row(options, id, None, bytes(raw))
        if not blind and found.version != request.expected_version:
            return WriteResult(id, None, VersionConflict(
                options.model_name, id, request.expected_version, found.version))
        sent = WriteRequest(request.kind, id, found.version, request.data, request.values,
                            request.changed, request.expire, request.raw)
        call = layout.delete(sent) if request.kind == "delete" else layout.save(sent)
        (answer,) = yield RedisPlan((call.call(),), idempotent=request.kind != "delete")
        reply = write_reply(answer)
        if reply.status == "ENTRIES" or (blind and reply.status == "VERSION"):
            continue  # (converted, or written, in between: read again)
        return result(options, sent, reply)
    return WriteResult(id, None, VersionConflict(
        options.model_name, id, request.expected_version, reply.version))


__all__ = ["ENTRIES_ATTEMPTS", "Headed", "entries_retry", "index_loads", "kind_items",
           "listed_names", "loaded_values", "nested", "spec_items"]
