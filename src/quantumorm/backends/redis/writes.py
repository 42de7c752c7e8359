"""Turn write requests into ``save.lua`` / ``delete.lua`` calls, and their replies into results.

Pure. The index maths lives here: for each index a write touches, the list of value
encodings the document must have in it (one per element for arrays, the concatenation of
the fields' encodings for compound indexes). ``save.lua`` diffs that list against the one it
stored last time, so only entries that changed are removed and added.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ... import sortable
from ...errors import DuplicateIdError, UniqueViolation, VersionConflict, WrongTypeError
from ...options import IndexSpec, ModelOptions
from ..base import WriteRequest, WriteResult
from .commands import Call
from .keys import KeySpace
from .planner import manifest_field, meta_field


def encode_document(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _touched(options: ModelOptions, request: WriteRequest) -> tuple[list[str], list[IndexSpec]]:
    changed = request.changed
    fields = [n for n in options.indexed_fields if changed is None or n in changed]
    indexes = [i for i in options.indexes if changed is None or set(i.fields) & changed]
    return fields, indexes


def index_members(options: ModelOptions, index: IndexSpec, values: dict[str, Any]) -> list[bytes]:
    if not index.compound:
        return options.fields[index.fields[0]].index_keys(values.get(index.fields[0]))
    parts = []
    for name in index.fields:
        value = values.get(name)
        parts.append(sortable.NULL if value is None else options.fields[name].sort_key(value))
    return [b"".join(parts)]


def save_call(options: ModelOptions, keys: KeySpace, request: WriteRequest) -> Call:
    assert request.values is not None and request.data is not None
    values = request.values
    fields, indexes = _touched(options, request)
    pairs: list[bytes | str] = []
    for name in fields:
        field = options.fields[name]
        pairs += [meta_field(field), sortable.pack_list(field.index_keys(values.get(name)))]
    for index in indexes:
        if index.compound:
            pairs += [manifest_field(options, index),
                      sortable.pack_list(index_members(options, index, values))]
    if request.id is None:  # allocated by the script: only with one partition (same slot)
        assert keys.partitions == 1
        partition, id_key = 0, b""
        doc_key, meta_key = keys.doc_prefix(0), keys.meta_prefix(0)
        sequence = keys.sequence
    else:
        partition, id_key = keys.partition_of(request.id), sortable.id_key(request.id)
        doc_key, meta_key = keys.doc(partition, request.id), keys.meta(partition, request.id)
        sequence = keys.ids(partition)  # unused; any key of the partition keeps one slot
    key_list = [doc_key, meta_key, keys.ids(partition), sequence]
    index_args: list[bytes | str] = []
    for index in indexes:
        key_list.append(keys.index(partition, index.name))
        unique = index.unique and not (
            index.compound and any(values.get(n) is None for n in index.fields))
        index_args += [str(len(key_list)), manifest_field(options, index),
                       "1" if unique else "0", index.name]
    args: list[Any] = [
        request.kind,
        str(request.expected_version),
        id_key,
        encode_document(request.data),
        os.urandom(8).hex(),
        str(len(pairs) // 2),
        *pairs,
        str(len(indexes)),
        *index_args,
    ]
    return Call("save", tuple(key_list), tuple(args))


def delete_call(options: ModelOptions, keys: KeySpace, request: WriteRequest) -> Call:
    assert request.id is not None
    partition = keys.partition_of(request.id)
    key_list = [keys.doc(partition, request.id), keys.meta(partition, request.id),
                keys.ids(partition), *keys.indexes(partition)]
    pairs: list[str] = []
    for position, index in enumerate(options.indexes):
        pairs += [str(position + 4), manifest_field(options, index)]
    expected = str(request.expected_version) if request.expected_version else ""
    args = (expected, sortable.id_key(request.id), str(len(options.indexes)), *pairs)
    return Call("delete", tuple(key_list), args)


def result(options: ModelOptions, request: WriteRequest, reply: list[Any]) -> WriteResult:
    """Decode a script's status reply into a result with a typed error on refusal."""
    status = _text(reply[0])
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
        error = UniqueViolation(model, _text(reply[1]), shown,
                                sortable.id_from_key(bytes(reply[2])))
    elif status == "WRONGTYPE":
        key = _text(reply[1])
        error = WrongTypeError(f"{model} {shown!r}: key {key!r} holds another type", key)
    else:
        raise AssertionError(f"unexpected script reply {reply!r}")
    return WriteResult(id, None, error)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
