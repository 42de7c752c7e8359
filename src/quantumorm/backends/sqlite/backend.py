"""The SQLite backend: the contract of :mod:`quantumorm.engine.contract` as SQL plans.

Each method is an operation (a generator yielding :class:`~.plans.SqlPlan` objects); it never
performs I/O. Queries are compiled whole to SQL (:mod:`.compiler`), so filtering, ordering,
keyset positions, offset and limit all happen in SQLite, with no client-side residual.

Writes: every request of a ``write()`` call runs in one transaction, each in its own
SAVEPOINT with guard statements (id taken, version, unique indexes) before the writes, so a
refused request is rolled back alone and reported with the same typed errors as Redis.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ... import sortable
from ...engine import autoid
from ...engine.contract import Capabilities, Explanation, Row, WriteRequest, WriteResult
from ...engine.drive import Op
from ...errors import (
    BackendError,
    CorruptDocumentError,
    DocumentTooLargeError,
    DuplicateIdError,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)
from ...maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from ...options import ModelOptions
from ...query.nodes import FALSE, QuerySpec
from .. import sql_transactions
from . import compiler, lifecycle
from .plans import GroupReply, SqlPlan, Statement
from .schema import CLOCKS, NULL_SQL, SEQUENCES, Layout, quote

#: documents above this size are refused before anything is written (as with Redis)
DEFAULT_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

CAPABILITIES = Capabilities(
    lookups=frozenset(compiler.SQL),  # what the compiler has a fragment for, by construction
    index_kinds=frozenset({"equality", "range", "prefix", "array-membership", "null",
                           "compound", "unique"}),
    ordering=True,
    keyset_pagination=True,
    unique_indexes=True,
    ttl=False,
    transactions=True,
    change_events=False,
    partitions=False,
    extra={"embedded": True},
)


#: whether this SQLite has the JSON ``->`` operator (3.38 and later), which project() uses
JSON_ARROWS = sqlite3.sqlite_version_info >= (3, 38)


class SqliteBackend:
    name = "sqlite"
    capabilities = CAPABILITIES

    def __init__(self, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES) -> None:
        self.max_document_bytes = max_document_bytes
        # one backend per connection object, so a layout's ``ready`` means "its tables exist
        # in this database"; layouts are kept by the models' options (options.state_for)

    def _layout(self, options: ModelOptions) -> Layout:
        return options.state_for(self, lambda: Layout(options))

    def _prepare(self, options: ModelOptions) -> Op[Layout]:
        """The model's layout, its tables and indexes created on first use."""
        layout = self._layout(options)
        if not layout.ready:
            if options.ttl:
                raise UnsupportedOperation(self.name, "ttl",
                                           f"{options.model_name}.Meta.ttl is set")
            (info,) = yield SqlPlan.read(layout.table_info())
            present = {row[0] for row in info.rows[0]}
            if not present and (yield from lifecycle.adopt_legacy(options, layout)):
                (info,) = yield SqlPlan.read(layout.table_info())
                present = {row[0] for row in info.rows[0]}
            ddl: list[Statement] = [Statement(
                f"CREATE TABLE IF NOT EXISTS {quote(table)} "
                "(name TEXT PRIMARY KEY, value INTEGER NOT NULL)") for table in (SEQUENCES, CLOCKS)]
            ddl.append(Statement(f"INSERT OR IGNORE INTO {quote(CLOCKS)} (name, value) "
                                 "VALUES (?, 0)", (layout.table_name,)))
            ddl += lifecycle.create_statements()
            if present:
                ddl += layout.missing_columns(present)
            ddl += layout.create()
            try:
                yield SqlPlan((tuple(ddl),), write=True)
            except BackendError as exc:
                # another operation (or process) added the column since we looked: the
                # whole DDL transaction rolled back, so look again once
                if "duplicate column" not in str(exc):
                    raise
                (info,) = yield SqlPlan.read(layout.table_info())
                present = {row[0] for row in info.rows[0]}
                yield SqlPlan(((*layout.missing_columns(present), *layout.create()),),
                              write=True)
            # the declaration against the stored schema: rows rewritten if it changed
            yield from lifecycle.settle(options, layout)
            layout.ready = True
        return layout

    # -- writes ----------------------------------------------------------------------------

    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]:
        yield from self._prepare(options)
        name = self._layout(options).table_name
        table = quote(SEQUENCES)
        (reply,) = yield SqlPlan(((
            Statement(f"INSERT OR IGNORE INTO {table} (name, value) VALUES (?, 0)", (name,)),
            Statement(f"UPDATE {table} SET value = value + ? WHERE name = ?", (count, name)),
            Statement(f"SELECT value FROM {table} WHERE name = ?", (name,)),
        ),), write=True)
        last = int(reply.rows[2][0][0])
        return [str(n) for n in range(last - count + 1, last + 1)]

    def write(self, options: ModelOptions,
              requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        layout = yield from self._prepare(options)

        def send(requests: list[WriteRequest],
                 pending: list[int]) -> Op[list[tuple[int, WriteResult | None]]]:
            groups = tuple(_statements(layout, requests[i], self.max_document_bytes)
                           for i in pending)
            replies = yield SqlPlan(groups, write=True)
            return [(i, _result(options, requests[i], reply))
                    for i, reply in zip(pending, replies, strict=True)]

        # auto ids come from the sequence first (engine/autoid.py retries taken ones)
        return (yield from autoid.write(options.model_name, requests,
                                        lambda n: self.allocate_ids(options, n), send))

    def transact(self, options: ModelOptions, checks: Sequence[tuple[str, int]],
                 requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        """Version checks and writes in one SQLite transaction, rolled back whole at the
        first refusal (which is raised)."""
        (done,) = yield from self.transact_many([(options, checks, requests)], 0.0)
        return done

    def transact_many(self, parts: Sequence[sql_transactions.Part],
                      timeout: float) -> Op[list[list[WriteResult]]]:
        """:meth:`transact` for documents of several models (tables), all in one SQLite
        transaction (``timeout`` is for stores that commit in phases: nothing here stays
        undecided longer than the transaction itself)."""
        return sql_transactions.transact_many(
            self, parts, lambda groups: SqlPlan(groups, write=True, atomic=True),
            _check_statements, _statements, _result)

    # -- reads -----------------------------------------------------------------------------

    def get_many(self, options: ModelOptions, ids: Sequence[str]) -> Op[list[Row | None]]:
        if not ids:
            return []
        layout = yield from self._prepare(options)
        keys = list(dict.fromkeys(sortable.id_key(i) for i in ids))
        statements = []
        for start in range(0, len(keys), 500):  # stay below SQLite's variable limit
            chunk = keys[start:start + 500]
            statements.append(Statement(
                f"SELECT id_key, version, doc FROM {layout.table} "
                f"WHERE id_key IN ({', '.join('?' * len(chunk))})", tuple(chunk)))
        (reply,) = yield SqlPlan.read(*statements)
        found = {r.id: r for rows in reply.rows for r in _rows(options, rows)}
        return [found.get(i) for i in ids]

    def query(self, options: ModelOptions, spec: QuerySpec) -> Op[list[Row]]:
        if spec.where == FALSE or spec.limit == 0:
            return []
        layout = yield from self._prepare(options)
        sql, params = compiler.select(layout, spec)
        (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
        return _rows(options, reply.rows[0])

    def project(self, options: ModelOptions, spec: QuerySpec,
                names: Sequence[str]) -> Op[list[Row]]:
        """As :meth:`query`, with only the named stored fields (by storage name) in each
        row's data (a field missing from a document is missing from its row): the JSON
        text of each value is cut out of the document by the server, exactly as stored,
        so the aggregates read what they need and nothing more."""
        if spec.where == FALSE or spec.limit == 0:
            return []
        if any('"' in name or "\\" in name for name in names) or not JSON_ARROWS:
            # (no JSON path for such a name; no ``->`` operator before SQLite 3.38)
            return (yield from self.query(options, spec))
        layout = yield from self._prepare(options)
        # (a document that is not a JSON object is reported, as query() does, rather than
        # read as one without the fields: ``ok`` says which, and guards the paths)
        inner, params = compiler.select(
            layout, spec, "t.id_key, t.version, t.doc, CASE WHEN json_valid(t.doc) THEN "
            "json_type(t.doc) = 'object' ELSE 0 END AS ok")
        parts = ", CASE WHEN ok THEN doc -> ? END" * len(names)
        sql = (f"SELECT id_key, version, ok, CASE WHEN ok THEN NULL ELSE doc END{parts} "
               f"FROM ({inner})")
        paths = [f'$."{name}"' for name in names]
        (reply,) = yield SqlPlan.read(Statement(sql, (*paths, *params)))
        return _projected(options, names, reply.rows[0])

    def count(self, options: ModelOptions, spec: QuerySpec) -> Op[int]:
        if spec.where == FALSE or spec.limit == 0:
            return 0
        layout = yield from self._prepare(options)
        sql, params = compiler.count(layout, spec)
        (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
        return int(reply.rows[0][0][0])

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Op[bool]:
        if spec.where == FALSE or spec.limit == 0:
            return False
        layout = yield from self._prepare(options)
        sql, params = compiler.exists(layout, spec)
        (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
        return bool(reply.rows[0][0][0])

    def explain(self, options: ModelOptions, spec: QuerySpec) -> Op[Explanation]:
        layout = yield from self._prepare(options)
        sql, params = compiler.select(layout, spec)
        (reply,) = yield SqlPlan.read(Statement("EXPLAIN QUERY PLAN " + sql, tuple(params)))
        details = [str(row[3]) for row in reply.rows[0]]
        names = {quoted[1:-1]: name for name, quoted in layout.index_names.items()}
        used = tuple(dict.fromkeys(
            names[word] for line in details for word in line.split() if word in names))
        # "SCAN t" and "SCAN t USING INDEX i" both read every row (the latter in index
        # order); only "SEARCH" narrows the rows read
        scanned = any(line.startswith("SCAN t") for line in details)
        sorted_by_temp = any("USE TEMP B-TREE FOR ORDER BY" in line for line in details)
        strategy = "scan" if scanned else "index" if used else "ids"
        return Explanation(
            backend=self.name,
            strategy=strategy,
            indexes=used,
            scanned=scanned,
            server_filter=compiler.where(layout, spec.where)[0],
            client_filter=None,
            ordering="server, sorted" if sorted_by_temp else "server, by index walk",
            details={"sqlite plan": "; ".join(details)},
        )

    # -- maintenance (see lifecycle.py) -----------------------------------------------------

    def reindex(self, model: Any, batch: int, progress: Progress | None) -> Op[ReindexReport]:
        layout = yield from self._prepare(model._meta)
        return (yield from lifecycle.reindex(model._meta, layout, batch, progress))

    def verify(self, model: Any, batch: int, progress: Progress | None) -> Op[VerifyReport]:
        layout = yield from self._prepare(model._meta)
        return (yield from lifecycle.verify(model._meta, layout, batch, progress))

    def repair(self, model: Any, batch: int, progress: Progress | None) -> Op[RepairReport]:
        layout = yield from self._prepare(model._meta)
        return (yield from lifecycle.repair(model._meta, layout, batch, progress))

    def drop_collection(self, options: ModelOptions) -> Op[int]:
        layout = yield from self._prepare(options)
        statements = [Statement(f"SELECT COUNT(*) FROM {layout.table}"),
                      Statement(f"DELETE FROM {layout.table}")]
        statements += [Statement(f"DELETE FROM {side}") for side in layout.arrays.values()]
        statements.append(Statement(f"DELETE FROM {quote(SEQUENCES)} WHERE name = ?",
                                    (layout.table_name,)))
        (reply,) = yield SqlPlan((tuple(statements),), write=True)
        return int(reply.rows[0][0][0])


# -- write statements ------------------------------------------------------------------------


def _statements(layout: Layout, request: WriteRequest,
                max_document_bytes: int) -> tuple[Statement, ...]:
    """One request's guards and writes (run in its own SAVEPOINT)."""
    assert request.id is not None
    table, key = layout.table, sortable.id_key(request.id)
    out: list[Statement] = []
    if request.kind == "delete":
        out.append(Statement(f"SELECT version FROM {table} WHERE id_key = ?", (key,),
                             "present", "GONE"))
        if request.expected_version:
            out.append(Statement(
                f"SELECT version FROM {table} WHERE id_key = ? AND version != ?",
                (key, request.expected_version), "absent", "VERSION"))
        out.append(Statement(f"DELETE FROM {table} WHERE id_key = ?", (key,)))
        out += [Statement(f"DELETE FROM {side} WHERE id = ?", (key,))
                for side in layout.arrays.values()]
        return tuple(out)
    assert request.values is not None and request.data is not None
    values = request.values
    if request.kind == "insert":
        out.append(Statement(f"SELECT 1 FROM {table} WHERE id_key = ?", (key,),
                             "absent", "EXISTS"))
    else:
        out.append(Statement(f"SELECT version FROM {table} WHERE id_key = ?", (key,),
                             "present", "MISSING"))
        out.append(Statement(
            f"SELECT version FROM {table} WHERE id_key = ? AND version != ?",
            (key, request.expected_version), "absent", "VERSION"))
    out += _unique_guards(layout, key, values)
    sort_keys = layout.keys(values)
    columns = list(layout.columns.values())
    raw = request.encoded()
    if len(raw) > max_document_bytes:
        raise DocumentTooLargeError(layout.options.model_name, request.id, len(raw),
                                    max_document_bytes)
    doc = raw.decode()
    # the version: the collection clock's next value (see schema.CLOCKS)
    clock, name = quote(CLOCKS), layout.table_name
    out.append(Statement(f"UPDATE {clock} SET value = max(value + 1, ?) WHERE name = ?",
                         (time.time_ns() // 1000, name)))
    version = f"(SELECT value FROM {clock} WHERE name = ?)"
    if request.kind == "insert":
        names = ", ".join(["id_key", "id", "version", "doc", *columns])
        marks = ", ".join(["?", "?", version, "?", *("?" * len(columns))])
        out.append(Statement(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                             (key, request.id, name, doc, *sort_keys)))
    else:
        sets = ", ".join([f"version = {version}", "doc = ?", *(f"{c} = ?" for c in columns)])
        out.append(Statement(f"UPDATE {table} SET {sets} WHERE id_key = ?",
                             (name, doc, *sort_keys, key)))
    for name, side in layout.arrays.items():
        if request.kind == "update":
            out.append(Statement(f"DELETE FROM {side} WHERE id = ?", (key,)))
        for element in layout.element_keys(name, values):
            out.append(Statement(f"INSERT INTO {side} (id, k) VALUES (?, ?)", (key, element)))
    out.append(Statement(f"SELECT version FROM {table} WHERE id_key = ?", (key,)))
    return tuple(out)


def _check_statements(layout: Layout, id: str, version: int) -> tuple[Statement, ...]:
    """A transaction's read check: the document is still at ``version`` (0: still absent)."""
    table, key = layout.table, sortable.id_key(id)
    if not version:
        return (Statement(f"SELECT version FROM {table} WHERE id_key = ?", (key,),
                          "absent", "VERSION"),)
    return (Statement(f"SELECT 1 FROM {table} WHERE id_key = ?", (key,), "present", "MISSING"),
            Statement(f"SELECT version FROM {table} WHERE id_key = ? AND version != ?",
                      (key, version), "absent", "VERSION"))


def _unique_guards(layout: Layout, key: bytes, values: dict[str, Any]) -> list[Statement]:
    """For each unique index: "no other document has these values" (nulls never conflict)."""
    options = layout.options
    out = []
    for index in options.indexes:
        if not index.unique or any(values.get(n) is None for n in index.fields):
            continue
        label = "UNIQUE:" + index.name
        first = index.fields[0]
        if first in layout.arrays:
            elements = layout.element_keys(first, values)
            if elements:
                out.append(Statement(
                    f"SELECT id FROM {layout.arrays[first]} WHERE id != ? AND k IN "
                    f"({', '.join('?' * len(elements))}) LIMIT 1",
                    (key, *elements), "absent", label))
            continue
        parts = [f"{layout.columns[n]} = ?" for n in index.fields]
        params = [options.fields[n].sort_key(values[n]) for n in index.fields]
        out.append(Statement(
            f"SELECT id_key FROM {layout.table} WHERE {' AND '.join(parts)} "
            f"AND {layout.columns[first]} != {NULL_SQL} AND id_key != ? LIMIT 1",
            (*params, key), "absent", label))
    return out


def _result(options: ModelOptions, request: WriteRequest, reply: GroupReply) -> WriteResult:
    model, id = options.model_name, request.id
    status = reply.refused
    if status is None:
        if request.kind == "delete":
            return WriteResult(id, 0)
        return WriteResult(id, int(reply.rows[-1][0][0]))
    if status == "GONE":
        return WriteResult(id, None)  # already gone: nothing to do, nothing refused
    shown = id if id is not None else "<new>"
    seen = reply.rows[-1]
    error: Exception
    if status == "VERSION":
        error = VersionConflict(model, shown, request.expected_version, int(seen[0][0]))
    elif status == "MISSING":
        error = VersionConflict(model, shown, request.expected_version, None)
    elif status == "EXISTS":
        error = DuplicateIdError(model, shown)
    elif status.startswith("UNIQUE:"):
        error = UniqueViolation(model, status[len("UNIQUE:"):], shown,
                                sortable.id_from_key(bytes(seen[0][0])))
    else:
        raise AssertionError(f"unexpected guard {status!r}")
    return WriteResult(id, None, error)



_DECODER = json.JSONDecoder()


def _rows(options: ModelOptions, rows: list[tuple[Any, ...]]) -> list[Row]:
    out = []
    for key, version, doc in rows:
        id = sortable.id_from_key(bytes(key))
        try:
            data = _DECODER.decode(doc)
        except ValueError as exc:
            raise CorruptDocumentError(options.model_name, id, f"invalid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CorruptDocumentError(options.model_name, id, "not a JSON object")
        out.append(Row(id, int(version), data))
    return out


def _projected(options: ModelOptions, names: Sequence[str],
               rows: list[tuple[Any, ...]]) -> list[Row]:
    """The rows of :meth:`SqliteBackend.project`: id key, version, whether the document is
    a JSON object (and if not, the document), then each value's JSON text (SQL NULL where
    the document lacks the field). The texts of all rows are decoded
    as one JSON array (one decoder call, not one per value); if that fails, value by
    value, to name the document whose JSON is damaged."""
    for key, _, ok, doc, *_ in rows:
        if not ok:  # (the error query() reports for the same document)
            _rows(options, [(key, 0, doc)])
            raise CorruptDocumentError(options.model_name, sortable.id_from_key(bytes(key)),
                                       "not a JSON object")
    width = len(names)
    texts = [text for row in rows for text in row[4:]]
    try:
        values = _DECODER.decode(
            "[" + ",".join("0" if text is None else text for text in texts) + "]")
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != len(texts):
        values = []
        for position, text in enumerate(texts):
            try:
                values.append(None if text is None else _DECODER.decode(text))
            except ValueError as exc:
                id = sortable.id_from_key(bytes(rows[position // width][0]))
                raise CorruptDocumentError(options.model_name, id,
                                           f"invalid JSON ({exc})") from exc
    out = []
    for index, (key, version, *_) in enumerate(rows):
        start = index * width
        data = {name: values[start + offset] for offset, name in enumerate(names)
                if texts[start + offset] is not None}
        out.append(Row(sortable.id_from_key(bytes(key)), int(version), data))
    return out
