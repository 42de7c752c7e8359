"""The PostgreSQL backend: the contract of :mod:`quantumorm.engine.contract` as SQL plans.

Each method is an operation (a generator yielding :class:`~.plans.SqlPlan` objects); it never
performs I/O. Queries are compiled whole to SQL (:mod:`.compiler`), so filtering, ordering,
keyset positions, offset and limit all happen in PostgreSQL, with no client-side residual,
except for the lookups PostgreSQL cannot answer as the reference does (case-folded and
pattern lookups: :data:`.compiler.CLIENT_LOOKUPS`), which Python checks on the rows the rest
of the query selects, before the offset and limit (explain() names them as the client filter).

Writes: every request of a ``write()`` call runs in one SERIALIZABLE transaction, its guard
statements (id taken, version, unique indexes) before its write, each request in its own
SAVEPOINT when one is refused (see :mod:`.executor`), so a refused request is rolled back
alone and reported with the same typed errors as Redis; a serialization failure re-runs the
whole plan. ``transact()`` is one such transaction, all or nothing.

Not supported, and refused through the capability matrix: TTL (``Meta.ttl``) and change
events (an outbox table with ``LISTEN/NOTIFY`` could keep issue 4's contract; not built yet).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ... import sortable
from ...engine import autoid
from ...engine.contract import Capabilities, Explanation, Row, WriteRequest, WriteResult
from ...engine.drive import Op
from ...errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    DuplicateIdError,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)
from ...fields.scalar import FloatField
from ...fields.structured import ArrayField, JSONField
from ...maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from ...options import ModelOptions
from ...query import evaluate, paths
from ...query.nodes import FALSE, ID, Node, QuerySpec
from .. import sql_transactions
from . import compiler, lifecycle
from .plans import GroupReply, SqlPlan, Statement
from .schema import DDL_LOCK, NULL_SQL, Layout, id_text, jsonb_text, regclass

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
    extra={"server": True, "isolation": "serializable"},
)


class PostgresBackend:
    name = "postgres"
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
            # under an advisory lock, so that processes starting together do not race on
            # the catalog (CREATE ... IF NOT EXISTS alone is not safe against that)
            ddl = [Statement("SELECT pg_advisory_xact_lock(%b)", (DDL_LOCK,)),
                   *lifecycle.create_statements()]
            if present:
                ddl += layout.missing_columns(present)
            ddl += layout.create()
            yield SqlPlan((tuple(ddl),), write=True)
            # the declaration against the stored schema: rows rewritten if it changed
            yield from lifecycle.settle(options, layout)
            layout.ready = True
        return layout

    # -- writes ----------------------------------------------------------------------------

    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]:
        layout = yield from self._prepare(options)
        (reply,) = yield SqlPlan.read(Statement(
            f"SELECT nextval({regclass(layout.ids)}) FROM generate_series(1, %b::int)",
            (count,)))
        return [str(n) for n in sorted(int(row[0]) for row in reply.rows[0])]

    def write(self, options: ModelOptions,
              requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        layout = yield from self._prepare(options)

        def send(requests: list[WriteRequest],
                 pending: list[int]) -> Op[list[tuple[int, WriteResult | None]]]:
            batch = [requests[i] for i in pending]
            bulk = _bulk_insert(layout, batch, self.max_document_bytes)
            if bulk is not None:
                (reply,) = yield bulk
                if reply.refused is None:  # every insert done, in one statement
                    versions = {bytes(key): int(v) for key, v in reply.rows[-1]}
                    return [(i, WriteResult(r.id, versions[sortable.id_key(r.id or "")]))
                            for i, r in zip(pending, batch, strict=True)]
                # an id or a unique value is taken: nothing was written; request by
                # request, so that each refusal names its own document
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
        """Version checks and writes in one PostgreSQL transaction, rolled back whole at the
        first refusal (which is raised)."""
        (done,) = yield from self.transact_many([(options, checks, requests)], 0.0)
        return done

    def transact_many(self, parts: Sequence[sql_transactions.Part],
                      timeout: float) -> Op[list[list[WriteResult]]]:
        """:meth:`transact` for documents of several models (tables), all in one PostgreSQL
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
        test, params = compiler.among("id_key", keys)
        (reply,) = yield SqlPlan.read(Statement(
            f"SELECT id_key, version, doc FROM {layout.table} WHERE {test}", params))
        found = {r.id: r for r in _rows(options, reply.rows[0])}
        return [found.get(i) for i in ids]

    def query(self, options: ModelOptions, spec: QuerySpec) -> Op[list[Row]]:
        if spec.where == FALSE or spec.limit == 0:
            return []
        layout = yield from self._prepare(options)
        server, residue = compiler.client_residue(spec, options.fields)
        if residue is None or spec.limit is None or server.order != spec.order:
            # (ordered in Python, by a path with no column: every candidate is needed)
            sql, params = compiler.select(layout, server)
            (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
            found = _rows(options, reply.rows[0])
            return found if residue is None else _checked(options, spec, residue, found)
        # A window over a condition checked in Python: read the candidates in keyset
        # batches (growing) until the window is full, rather than every candidate each time
        # (iterator() and paginate() would otherwise read the rest of the table per page).
        wanted = spec.offset + spec.limit
        batch = max(2 * wanted, RESIDUE_BATCH)
        matched: list[Row] = []
        while True:
            sql, params = compiler.select(layout, replace(server, limit=batch))
            (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
            found = _rows(options, reply.rows[0])
            matched += [row for row in found
                        if evaluate.matches(options, residue, _values(options, row))]
            if len(matched) >= wanted or len(found) < batch:
                return matched[spec.offset:wanted]
            server = replace(server, after=evaluate.sort_keys(
                options, spec.order, _values(options, found[-1])))
            batch = min(batch * 2, MAX_RESIDUE_BATCH)

    def project(self, options: ModelOptions, spec: QuerySpec,
                names: Sequence[str]) -> Op[list[Row]]:
        """As :meth:`query`, with only the named stored fields (by storage name) in each
        row's data (a field missing from a document is missing from its row). The values
        are cut out of the ``body`` jsonb by the server (numbers stay exact: jsonb keeps
        them as ``numeric``); a document without a ``body`` (it holds a NUL character)
        comes whole, from ``doc``. Whole documents are read, as :meth:`query` does, for a
        query with lookups checked in Python (see :func:`.compiler.client_residue`) and for
        fields whose JSON jsonb does not keep (see :func:`_jsonb_exact`)."""
        if spec.where == FALSE or spec.limit == 0:
            return []
        if (compiler.client_residue(spec, options.fields)[1] is not None
                or not _jsonb_exact(options, names)):
            return (yield from self.query(options, spec))
        layout = yield from self._prepare(options)
        parts = ", (t.body -> %t)::text" * len(names)
        sql, params = compiler.select(
            layout, spec, "t.id_key, t.version, CASE WHEN t.body IS NULL THEN t.doc END" + parts)
        (reply,) = yield SqlPlan.read(Statement(sql, (*names, *params)))
        return _projected(options, names, reply.rows[0])

    def count(self, options: ModelOptions, spec: QuerySpec) -> Op[int]:
        if spec.where == FALSE or spec.limit == 0:
            return 0
        if compiler.client_residue(spec, options.fields)[1] is not None:
            return len((yield from self.query(options, spec)))
        layout = yield from self._prepare(options)
        sql, params = compiler.count(layout, spec)
        (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
        return int(reply.rows[0][0][0])

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Op[bool]:
        if spec.where == FALSE or spec.limit == 0:
            return False
        if compiler.client_residue(spec, options.fields)[1] is not None:
            return bool((yield from self.query(options, spec)))
        layout = yield from self._prepare(options)
        sql, params = compiler.exists(layout, spec)
        (reply,) = yield SqlPlan.read(Statement(sql, tuple(params)))
        return bool(reply.rows[0][0][0])

    def explain(self, options: ModelOptions, spec: QuerySpec) -> Op[Explanation]:
        """PostgreSQL's own plan of the query (``EXPLAIN (FORMAT JSON)``, not run)."""
        layout = yield from self._prepare(options)
        spec, residue = compiler.client_residue(spec, options.fields)
        sql, params = compiler.select(layout, spec)
        (reply,) = yield SqlPlan.read(Statement("EXPLAIN (FORMAT JSON) " + sql,
                                                tuple(params)))
        found = reply.rows[0][0][0]
        document = json.loads(found) if isinstance(found, str | bytes) else found
        nodes = list(_plan_nodes(document[0]["Plan"]))
        names = {quoted[1:-1]: name for name, quoted in layout.index_names.items()}
        used = tuple(dict.fromkeys(names[node["Index Name"]] for node in nodes
                                   if node.get("Index Name") in names))
        # a sequential scan reads every row; an index scan of the primary key without an
        # index condition walks every row in id order
        scanned = any(node["Node Type"] == "Seq Scan" or (
            node["Node Type"] in ("Index Scan", "Index Only Scan")
            and "Index Cond" not in node and node.get("Index Name") not in names)
            for node in nodes)
        sorted_by_node = any(node["Node Type"] in ("Sort", "Incremental Sort")
                             for node in nodes)
        strategy = "scan" if scanned else "index" if used else "ids"
        return Explanation(
            backend=self.name,
            strategy=strategy,
            indexes=used,
            scanned=scanned,
            server_filter=compiler.where(layout, spec.where)[0],
            client_filter=None if residue is None else repr(residue),
            ordering="server, sorted" if sorted_by_node else "server, by index walk",
            details={"postgres plan": "; ".join(_describe(node) for node in nodes)},
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
        (reply,) = yield SqlPlan((
            (Statement(f"WITH gone AS (DELETE FROM {layout.table} RETURNING 1) "
                       "SELECT COUNT(*) FROM gone"),
             # auto ids start again, as on the other backends (versions never do)
             Statement(f"ALTER SEQUENCE {layout.ids} RESTART")),), write=True)
        return int(reply.rows[0][0][0])


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def _describe(node: dict[str, Any]) -> str:
    """One plan node as EXPLAIN's text format names it (``Index Scan using i on t``)."""
    text = str(node["Node Type"])
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    if "Relation Name" in node:
        text += f" on {node['Relation Name']}"
    for key in ("Index Cond", "Recheck Cond", "Filter", "Sort Key"):
        if key in node:
            value = node[key]
            text += f" [{key}: {', '.join(value) if isinstance(value, list) else value}]"
    return text


# -- write statements ------------------------------------------------------------------------


def _statements(layout: Layout, request: WriteRequest,
                max_document_bytes: int) -> tuple[Statement, ...]:
    """One request's guards and its write, whose RETURNING gives the new version."""
    assert request.id is not None
    table, key = layout.table, sortable.id_key(request.id)
    out: list[Statement] = []
    if request.kind == "delete":
        out.append(Statement(f"SELECT version FROM {table} WHERE id_key = %b", (key,),
                             "present", "GONE"))
        if request.expected_version:
            out.append(Statement(
                f"SELECT version FROM {table} WHERE id_key = %b AND version <> %b",
                (key, request.expected_version), "absent", "VERSION"))
        out.append(Statement(f"DELETE FROM {table} WHERE id_key = %b", (key,)))
        return tuple(out)
    assert request.values is not None and request.data is not None
    values = request.values
    if request.kind == "insert":
        out.append(Statement(f"SELECT 1 FROM {table} WHERE id_key = %b", (key,),
                             "absent", "EXISTS"))
    else:
        out.append(Statement(f"SELECT version FROM {table} WHERE id_key = %b", (key,),
                             "present", "MISSING"))
        out.append(Statement(
            f"SELECT version FROM {table} WHERE id_key = %b AND version <> %b",
            (key, request.expected_version), "absent", "VERSION"))
    out += _unique_guards(layout, key, values)
    raw = request.encoded()
    if len(raw) > max_document_bytes:
        raise DocumentTooLargeError(layout.options.model_name, request.id, len(raw),
                                    max_document_bytes)
    columns = layout.assignments()
    column_values = [*layout.keys(values), *layout.elements(values)]
    version = layout.next_version()
    if request.kind == "insert":
        names = ", ".join(["id_key", "id", "version", "doc", "body", *columns])
        marks = ", ".join(["%b", "%b", version, "%b", "%b::jsonb", *("%b" for _ in columns)])
        out.append(Statement(f"INSERT INTO {table} ({names}) VALUES ({marks}) "
                             "RETURNING version",
                             (key, id_text(request.id), raw.decode(), jsonb_text(raw),
                              *column_values)))
    else:
        sets = ", ".join([f"version = {version}", "doc = %b", "body = %b::jsonb",
                          *(f"{c} = %b" for c in columns)])
        out.append(Statement(f"UPDATE {table} SET {sets} WHERE id_key = %b RETURNING version",
                             (raw.decode(), jsonb_text(raw), *column_values, key)))
    return tuple(out)


#: inserts at least this many go in one set-based INSERT when they can (see _bulk_insert)
BULK_FROM = 4


def _bulk_insert(layout: Layout, requests: list[WriteRequest],
                 max_document_bytes: int) -> SqlPlan | None:
    """Many inserts as ONE statement (``INSERT ... SELECT FROM unnest(arrays)``) after one
    guard per kind (no id taken, no unique value taken), or None when they must go request
    by request: too few, not all inserts, a model with array fields (their element arrays
    do not fit one rectangular array parameter), an id holding NUL, a document over the
    size limit, or two of them claiming one id or one unique value (the per-request path
    then refuses the later one, naming the earlier), a unique index on an array field.
    When a guard refuses, nothing was written and the caller goes request by request.

    Element arrays (``e_`` columns) differ in length from row to row, which one
    rectangular array parameter cannot hold: each row's travels as the text of an array
    literal (hex digits only) and is cast back, ``u.e0::bytea[]``."""
    if len(requests) < BULK_FROM or any(
            r.kind != "insert" or r.id is None or "\x00" in r.id for r in requests):
        return None
    raws = [r.encoded() for r in requests]
    if any(len(raw) > max_document_bytes for raw in raws):
        return None
    keys = [sortable.id_key(r.id or "") for r in requests]
    if len(set(keys)) != len(keys):
        return None
    columns = [layout.keys(r.values or {}) for r in requests]
    names = list(layout.options.fields)
    guards = [Statement(f"SELECT id_key FROM {layout.table} WHERE id_key = ANY(%b::bytea[]) "
                        "LIMIT 1", (keys,), "absent", "EXISTS")]
    for index in layout.options.indexes:
        if not index.unique:
            continue
        if index.fields[0] in layout.arrays:
            return None
        positions = [names.index(f) for f in index.fields]
        claimed = [tuple(row[p] for p in positions) for row in columns]
        claimed = [c for c in claimed if sortable.NULL not in c]  # nulls never conflict
        if len(set(claimed)) != len(claimed):
            return None
        if not claimed:
            continue
        cols = [layout.columns[f] for f in index.fields]
        arrays = ", ".join(["%b::bytea[]"] * len(cols))
        guards.append(Statement(
            f"SELECT id_key FROM {layout.table} WHERE ({', '.join(cols)}) IN "
            f"(SELECT * FROM unnest({arrays})) LIMIT 1",
            tuple([c[j] for c in claimed] for j in range(len(cols))), "absent",
            "UNIQUE:" + index.name))
    key_columns = list(layout.columns.values())
    element_columns = list(layout.arrays.values())
    aliases = [f"c{j}" for j in range(len(key_columns))]
    selected = aliases + [f"e{j}::bytea[]" for j in range(len(element_columns))]
    aliases += [f"e{j}" for j in range(len(element_columns))]
    source = ", ".join(["%b::bytea[]", "%b::text[]", "%b::text[]",
                        *(["%b::bytea[]"] * len(key_columns)),
                        *(["%b::text[]"] * len(element_columns))])
    elements = [[_array_literal(keys) for keys in layout.elements(r.values or {})]
                for r in requests]
    # (the jsonb copy is NULL for a document holding a \u0000 escape, as jsonb_text says)
    targets = ", ".join(["id_key", "id", "version", "doc", "body", *key_columns,
                         *element_columns])
    insert = Statement(
        f"INSERT INTO {layout.table} ({targets}) "
        f"SELECT u.k, u.i, {layout.next_version()}, u.d, "
        "CASE WHEN strpos(u.d, '\\u0000') = 0 THEN u.d::jsonb END"
        + "".join(f", u.{a}" for a in selected)
        + f" FROM unnest({source}) AS u(k, i, d{''.join(', ' + a for a in aliases)}) "
        "RETURNING id_key, version",
        (keys, [r.id for r in requests], [raw.decode() for raw in raws],
         *([row[j] for row in columns] for j in range(len(key_columns))),
         *([row[j] for row in elements] for j in range(len(element_columns)))))
    return SqlPlan(((*guards, insert),), write=True)


def _array_literal(keys: list[bytes]) -> str:
    """``{"\\x..",...}``: the text of a ``bytea[]`` (a parameter, never SQL text)."""
    return "{" + ",".join(f'"\\\\x{key.hex()}"' for key in keys) + "}"


def _check_statements(layout: Layout, id: str, version: int) -> tuple[Statement, ...]:
    """A transaction's read check: the document is still at ``version`` (0: still absent)."""
    table, key = layout.table, sortable.id_key(id)
    if not version:
        return (Statement(f"SELECT version FROM {table} WHERE id_key = %b", (key,),
                          "absent", "VERSION"),)
    return (Statement(f"SELECT 1 FROM {table} WHERE id_key = %b", (key,),
                      "present", "MISSING"),
            Statement(f"SELECT version FROM {table} WHERE id_key = %b AND version <> %b",
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
                    f"SELECT id_key FROM {layout.table} WHERE {layout.arrays[first]} "
                    "&& %b::bytea[] AND id_key <> %b LIMIT 1",
                    (elements, key), "absent", label))
            continue
        parts = [f"{layout.columns[n]} = %b" for n in index.fields]
        params = [options.fields[n].sort_key(values[n]) for n in index.fields]
        out.append(Statement(
            f"SELECT id_key FROM {layout.table} WHERE {' AND '.join(parts)} "
            f"AND {layout.columns[first]} <> {NULL_SQL} AND id_key <> %b LIMIT 1",
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


#: rows per read of a limited query with a condition checked in Python (the first read
#: takes at least twice the window; each next one doubles, up to the maximum)
RESIDUE_BATCH = 100
MAX_RESIDUE_BATCH = 10_000

_DECODER = json.JSONDecoder()


def _checked(options: ModelOptions, spec: QuerySpec, residue: Node, found: list[Row]) -> list[Row]:
    """The rows (already in the query's order) that match ``residue``, then the window."""
    matched = [row for row in found if evaluate.matches(options, residue, _values(options, row))]
    if any(paths.is_path(o.field) and o.field not in options.fields for o in spec.order):
        # (ordered by a path that has no column: the server did not order them)
        descending = evaluate.directions(spec.order)
        keyed = [(evaluate.sort_keys(options, spec.order, _values(options, row)), row)
                 for row in matched]
        if spec.after is not None:
            keyed = [(k, row) for k, row in keyed
                     if evaluate.compare_keys(k, spec.after, descending) > 0]
        matched = [row for _, row in evaluate.sort_rows(keyed, lambda pair: pair[0],
                                                         descending)]
    end = None if spec.limit is None else spec.offset + spec.limit
    return matched[spec.offset:end]


def _values(options: ModelOptions, found: Row) -> dict[str, Any]:
    values: dict[str, Any] = {ID: found.id}
    for name in options.fields:
        values[name] = options.read_value(name, found.data)
    return values


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


def _jsonb_exact(options: ModelOptions, names: Sequence[str]) -> bool:
    """Whether jsonb gives back the stored JSON of these fields (by storage name) exactly:
    not for floats, which it keeps as numeric (``-0.0`` becomes ``0``, ``1e+30`` an
    integer), whether they are a float field's values, an array's elements or anywhere in
    a JSON value."""
    by_name = {field.db_name: field for field in options.fields.values()}
    for name in names:
        field = by_name.get(name)
        while isinstance(field, ArrayField):
            field = field.field
        if field is None or isinstance(field, FloatField | JSONField):
            return False
    return True


def _projected(options: ModelOptions, names: Sequence[str],
               rows: list[tuple[Any, ...]]) -> list[Row]:
    """The rows of :meth:`PostgresBackend.project`: id key, version, the whole document
    where it has no ``body``, then each value's JSON text from ``body`` (SQL NULL where the
    document lacks the field). jsonb writes a float as the decimal it is (``1e+30`` comes
    back as ``1000...0``): a float field's value is made a float again."""
    floats = {field.db_name for field in options.fields.values()
              if isinstance(field, FloatField)}
    out = []
    for key, version, whole, *texts in rows:
        id = sortable.id_from_key(bytes(key))
        data: dict[str, Any] = {}
        try:
            if whole is not None:
                stored = _DECODER.decode(whole)
                if not isinstance(stored, dict):
                    raise CorruptDocumentError(options.model_name, id, "not a JSON object")
                data = {name: stored[name] for name in names if name in stored}
            else:
                for name, text in zip(names, texts, strict=True):
                    if text is not None:
                        value = _DECODER.decode(text)
                        if name in floats and isinstance(value, int):
                            value = float(value)
                        data[name] = value
        except ValueError as exc:
            raise CorruptDocumentError(options.model_name, id,
                                       f"invalid JSON ({exc})") from exc
        out.append(Row(id, int(version), data))
    return out
