"""Query and fetch replies as rows: decoding (decompressed first when a document is stored
compressed: :mod:`quantumorm.compression`), the merge of several partitions' ordered
windows, and the Python-side filter, order and slice of rows the server could not order.

Pure: no I/O. A "keyed" ``query.lua`` reply carries each row's sort keys (the encodings
the script ordered by, then the id key), so a merge never decodes a row it does not keep.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from functools import cmp_to_key
from itertools import islice
from operator import itemgetter
from typing import Any

from ... import compression, gcpause, jsoncodec, sortable
from ...engine.contract import Row
from ...errors import CorruptDocumentError
from ...options import ModelOptions
from ...query import evaluate
from ...query.nodes import Node, QuerySpec
from . import stored
from .headed import Headed

#: what makes each row of a reply from (id, version, data): :class:`Row` itself, or a
#: model's loader (``Document._loader``)
Make = Callable[[str, int, dict[str, Any]], Any]


def row(options: ModelOptions, id: str, version: Any, raw: bytes) -> Row:
    """A document key's value (``version``: the meta hash's, read beside it when the value
    carries none) as a row."""
    headed = raw[:1] == stored.HEADED
    try:
        number, raw = stored.split(raw, version)
    except ValueError as exc:
        raise CorruptDocumentError(options.model_name, id, "a version that does not read "
                                   f"({exc})") from exc
    if raw[:1] == compression.MARKER:  # (whatever the model says now: see compression.py)
        raw = compression.decompress(raw, options.model_name, id)
    try:
        data = jsoncodec.decode(raw)
    except ValueError as exc:
        raise CorruptDocumentError(options.model_name, id, f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptDocumentError(options.model_name, id, "not a JSON object")
    if headed:  # (format 3: its writes send the entries of this data, see headed.py)
        return Row(id, Headed.of(number, data), data)
    return Row(id, number, data)


def documents(options: ModelOptions, ids: list[str], reply: list[Any],
              found: dict[str, Row | None], older: list[str]) -> None:
    """An MGET of document keys (``ids``' keys, in order): each id's row in ``found`` (None
    where there is no document), and in ``older`` the ids whose document was stored
    without its version (read again with their meta hashes). Common rows decode inline,
    as in :func:`rows` (many: with the cyclic garbage collector paused, as there); a
    format-3 document (:data:`.stored.HEADED`) is read by :func:`row`."""
    if len(ids) < gcpause.PAUSE_FROM:
        return _documents(options, ids, reply, found, older)
    with gcpause.paused():
        return _documents(options, ids, reply, found, older)


def _documents(options: ModelOptions, ids: list[str], reply: list[Any],
               found: dict[str, Row | None], older: list[str]) -> None:
    decode = jsoncodec.decode
    versioned, headed = stored.VERSIONED, stored.HEADED
    for id, raw in zip(ids, reply, strict=True):
        if raw is None:
            found[id] = None
            continue
        first = raw[:1]
        if first == versioned:
            end = raw.find(b"\x00", 1)
            start = end + 1
        elif first == headed:  # (format 3: the write ids skipped; see _rows)
            end = raw.find(b"\x00", 1)
            start = raw.find(b"\x00", end + 1) + 1 if 1 < end < 18 else 0
        else:
            older.append(id)
            continue
        # (plain digits, as the scripts write them: int() also reads "+13", " 13", "13 ",
        # "013" and "1_3", refused here with no call per row: a digit first and last, no
        # "_", and int() refuses anything else between them)
        if (end > 1 and raw[start:start + 1] == b"{" and 48 < raw[1] < 58
                and 47 < raw[end - 1] < 58 and (digits := raw[1:end]).find(b"_") < 0):
            try:
                data = decode(raw[start:])
                number = int(digits)
            except ValueError:
                pass
            else:
                if type(data) is dict:
                    if first == versioned:
                        found[id] = Row(id, number, data)
                    else:  # (Headed.of in line, as in _rows)
                        version = Headed(number)
                        version.stored = data
                        found[id] = Row(id, version, data)
                    continue
        found[id] = row(options, id, None, raw)


def rows(options: ModelOptions, reply: list[Any], make: Make = Row) -> list[Any]:
    """A "rows" reply of ``query.lua``: flat, each row {escaped id, value} when the value
    (the document key's) carries its version (format 2 or 3: :data:`.stored.VERSIONED` or
    :data:`.stored.HEADED` first), else {escaped id, version, value} (the meta hash's
    version: digits, never such a byte first), each row as ``make(id, version, data)``
    makes it (a :class:`Row`, or a model's document: see
    :meth:`~.reader.Reader.query_loaded`). The escaped id is the id as its document key
    holds it (:func:`~quantumorm.sortable.escape_id`): a numeric id's digits, as they are.

    The loop runs once per row of every query, so the common row (an id with no escape, a
    document key that carries its version, JSON that is not compressed) is decoded inline
    here, without the three calls of :func:`row` (by orjson itself when the batch allows,
    see :func:`~quantumorm.jsoncodec.batch_decoder`); any other row, and any row that
    does not decode, goes through :func:`row`, which decodes it as
    :func:`~quantumorm.jsoncodec.decode` does or raises the precise error. A large reply
    is decoded with the cyclic garbage collector paused (see :mod:`quantumorm.gcpause`).
    From the first row with a version of its own (format 1, legacy), the rest are read by
    :func:`_rows_versioned`."""
    if len(reply) < 2 * gcpause.PAUSE_FROM:
        return _rows(options, reply, make)
    with gcpause.paused():
        return _rows(options, reply, make)


def _rows(options: ModelOptions, reply: list[Any], make: Make) -> list[Any]:
    out: list[Any] = []
    append, decode = out.append, jsoncodec.batch_decoder(reply[1::2])
    # (locals: read once per row)
    versioned, headed = stored.VERSIONED, stored.HEADED
    for i in range(0, len(reply), 2):
        id, raw = reply[i].decode(), reply[i + 1]
        if "%" in id:  # (an escape: see escape_id)
            id = sortable.unescape_id(id)
        # (stored.py's formats: NUL, the version's digits, NUL, the document; format 3's
        # 0x01, the version's digits, NUL, the write ids, NUL, the document; any other
        # first byte, and a version of more than 16 digits, is read by row())
        first = raw[:1]
        if first == headed:
            end = raw.find(b"\x00", 1)
            start = raw.find(b"\x00", end + 1) + 1 if 1 < end < 18 else 0
        elif first == versioned:
            end = raw.find(b"\x00", 1)
            start = end + 1
        else:  # (the row's version, then its value: the rows from here on, by their form)
            out += _rows_versioned(options, reply, i, make)
            return out
        # (plain digits, as the scripts write them: int() also reads "+13", " 13", "13 ",
        # "013" and "1_3", refused here with no call per row: a digit first and last, no
        # "_", and int() refuses anything else between them)
        if (end > 1 and raw[start:start + 1] == b"{" and 48 < raw[1] < 58
                and 47 < raw[end - 1] < 58 and (digits := raw[1:end]).find(b"_") < 0):
            try:
                data = decode(raw[start:])
                number = int(digits)
            except ValueError:
                pass
            else:
                if type(data) is dict:
                    if first == versioned:
                        append(make(id, number, data))
                    else:
                        # (format 3: its writes send the entries of this data, see
                        # headed.py; Headed.of in line: a call fewer per row, about half
                        # of what the version costs)
                        version = Headed(number)
                        version.stored = data
                        append(make(id, version, data))
                    continue
        found = row(options, id, None, raw)
        append(found if make is Row else make(found.id, found.version, found.data))
    return out


def _rows_versioned(options: ModelOptions, reply: list[Any], i: int,
                    make: Make) -> list[Any]:
    """The rows of a "rows" reply from position ``i``, some with a version of their own
    (see :func:`rows`), each read by :func:`row`."""
    out: list[Any] = []
    own = (stored.VERSIONED, stored.HEADED)
    while i < len(reply):
        id = reply[i].decode()
        if "%" in id:
            id = sortable.unescape_id(id)
        item = reply[i + 1]
        if item[:1] in own:
            version, raw, i = None, item, i + 2
        else:
            version, raw, i = item, reply[i + 2], i + 3
        found = row(options, id, version, raw)
        out.append(found if make is Row else make(found.id, found.version, found.data))
    return out


def made(found: list[Row], make: Make) -> list[Any]:
    """Rows as ``make`` makes them (themselves for :class:`Row`); many with the cyclic
    garbage collector paused, as :func:`rows` does."""
    if make is Row:
        return found
    if len(found) < gcpause.PAUSE_FROM:
        return [make(item.id, item.version, item.data) for item in found]
    with gcpause.paused():
        return [make(item.id, item.version, item.data) for item in found]


def merge(options: ModelOptions, spec: QuerySpec, replies: list[Any]) -> list[Row]:
    """Merge the partitions' "keyed" windows (each already in order) and slice. Lazily: the
    merge stops at offset + limit, and only the rows it reaches are decoded (with P windows
    of n rows it looks at about P + n of them, not P x n). Many rows: decoded with the
    cyclic garbage collector paused, as :func:`rows` does."""
    if spec.limit is not None and spec.offset + spec.limit < gcpause.PAUSE_FROM:
        return _merge(options, spec, replies)
    with gcpause.paused():
        return _merge(options, spec, replies)


def _merge(options: ModelOptions, spec: QuerySpec, replies: list[Any]) -> list[Row]:
    return [row(options, sortable.id_from_key(bytes(reply[i])), reply[i + 1], reply[i + 2])
            for i, reply in _merged(spec, replies, 3)]


def merge_keys(spec: QuerySpec, replies: list[Any]) -> list[tuple[str, int]]:
    """Merge the partitions' "sortkeys" windows (rows without documents) and slice: the ids
    and versions of the rows the query returns, in order."""
    return [(sortable.id_from_key(bytes(reply[i])), int(reply[i + 1] or 0))
            for i, reply in _merged(spec, replies, 2)]


def _merged(spec: QuerySpec, replies: list[Any], fields: int) -> Iterator[tuple[int, list[Any]]]:
    """Where each row of the merged, sliced windows starts: (position, reply). A row is
    ``fields`` values (id key, version and, in "keyed" windows, the JSON), then a sort key
    per ordering."""
    descending = evaluate.directions(spec.order)
    key: Any
    reverse = False
    if not any(descending) or all(descending):
        key, reverse = tuple, all(descending)  # byte tuples compare as the positions do
    else:
        key = cmp_to_key(lambda a, b: evaluate.compare_keys(a, b, descending))
    stride = fields + len(spec.order)

    def placed(reply: list[Any]) -> Iterator[tuple[Any, int, list[Any]]]:
        for i in range(0, len(reply), stride):
            yield key((*reply[i + fields:i + stride], reply[i])), i, reply

    end = None if spec.limit is None else spec.offset + spec.limit
    merged = heapq.merge(*(placed(reply) for reply in replies), key=itemgetter(0),
                         reverse=reverse)
    for _, i, reply in islice(merged, spec.offset, end):
        yield i, reply


def arrange(options: ModelOptions, spec: QuerySpec, found: list[Row],
            residual: Node | None = None) -> list[Row]:
    """Filter (``residual``), order, apply the keyset position and slice, in Python."""
    if len(found) <= 1 and residual is None and spec.after is None:
        return found[spec.offset:][:spec.limit]  # nothing to order
    descending = evaluate.directions(spec.order)
    keyed = []
    for item in found:
        values = _values(options, item)
        if residual is not None and not evaluate.matches(options, residual, values):
            continue
        keyed.append((evaluate.sort_keys(options, spec.order, values), item))
    if spec.after is not None:
        keyed = [(k, r) for k, r in keyed if evaluate.compare_keys(k, spec.after, descending) > 0]
    ordered = [item for _, item in evaluate.sort_rows(keyed, lambda pair: pair[0], descending)]
    end = None if spec.limit is None else spec.offset + spec.limit
    return ordered[spec.offset:end]


def _values(options: ModelOptions, found: Row) -> dict[str, Any]:
    values: dict[str, Any] = {"id": found.id}
    for name in options.fields:
        values[name] = options.read_value(name, found.data)
    return values
