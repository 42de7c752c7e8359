"""Compile a :class:`~quantumorm.query.nodes.QuerySpec` to PostgreSQL over a model's Layout.

Pure, no I/O. Every condition compares the ``k_`` sort-key ``bytea`` columns (or the id
key), whose byte order is the project's value order (see :mod:`.schema`), so the SQL agrees
with :mod:`quantumorm.query.evaluate` exactly:

* nulls are stored as the NULL *encoding* (never SQL NULL), so SQL's three-valued logic never
  comes in: ``ne``/``nin``/``NOT`` match nulls exactly as the reference does;
* ranges and string lookups exclude the NULL encoding explicitly;
* string lookups work on the escaped UTF-8 body of the encoding (NUL is ``\\x00\\xff`` there,
  and ``\\xff`` never occurs in UTF-8), so substring/prefix/suffix tests on bytes are exact;
* case-folded and pattern lookups are checked in Python (see :data:`CLIENT_LOOKUPS`);
* ``in`` lists are a few parameters, or one ``bytea[]`` parameter (``= ANY``) of any length;
* array membership is ``e_col @> ARRAY[key]``, which the GIN index serves;
* ordering: the ``k_`` columns, then the id key in the direction of the last ordering field;
  the keyset position is the row-value comparison expanded for mixed directions.

Values only ever travel as parameters (``%b``: bound by the server, in binary).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from ... import sortable
from ...fields.structured import ArrayField
from ...query import evaluate, paths
from ...query.lookups import FOLDED_LOOKUPS, PATTERN_LOOKUPS, Lookup
from ...query.nodes import ID, And, BoolOp, Condition, Node, Not, QuerySpec, conjoin
from .schema import NULL_SQL, Layout

Sql = tuple[str, list[Any]]
#: IN lists up to this long send each value as a parameter; longer ones one bytea[]
SHORT_LIST = 16
_RANGE = {Lookup.GT: ">", Lookup.GTE: ">=", Lookup.LT: "<", Lookup.LTE: "<="}
#: how an AND / OR joins its children, and what it is without any
_JOIN = {BoolOp.AND: (" AND ", "TRUE"), BoolOp.OR: (" OR ", "FALSE")}


def where(layout: Layout, node: Node) -> Sql:
    params: list[Any] = []
    return _node(layout, node, params), params


def _node(layout: Layout, node: Node, params: list[Any]) -> str:
    if isinstance(node, Condition):
        return SQL[node.lookup](layout, node, params)
    if isinstance(node, Not):
        return "(NOT " + _node(layout, node.child, params) + ")"
    joiner, empty = _JOIN[node.op]
    if not node.children:
        return empty
    return "(" + joiner.join(_node(layout, c, params) for c in node.children) + ")"


# One compiler per lookup: (layout, condition, params) -> an SQL fragment, its values
# appended to params. ``id`` conditions compare the id key column.


def _key(layout: Layout, cond: Condition, value: Any) -> bytes:
    if cond.field == ID:
        return sortable.id_key(value)
    return sortable.NULL if value is None else layout.options.fields[cond.field].sort_key(value)


def _equal(layout: Layout, cond: Condition, params: list[Any]) -> str:
    params.append(_key(layout, cond, cond.value))
    op = "=" if cond.lookup is Lookup.EXACT else "<>"
    if op == "=" and cond.value is not None and cond.field != ID:
        # (said outright, it lets PostgreSQL use a unique index, which is partial: not null)
        return f"({layout.column(cond.field)} = %b AND {layout.column(cond.field)} <> {NULL_SQL})"
    return f"({layout.column(cond.field)} {op} %b)"


def _listed(layout: Layout, cond: Condition, params: list[Any]) -> str:
    column = layout.column(cond.field)
    if cond.field == ID:
        keys = list(dict.fromkeys(map(sortable.id_key, cond.value)))
    else:
        key = layout.options.fields[cond.field].sort_key
        keys = list(dict.fromkeys(sortable.NULL if v is None else key(v) for v in cond.value))
    inside = cond.lookup is Lookup.IN
    if not keys:
        return "FALSE" if inside else "TRUE"
    test, values = among(column, keys)
    params += values
    # (neither the column nor the list holds SQL NULL, so NOT is exact)
    return f"({test})" if inside else f"(NOT ({test}))"


def among(column: str, keys: list[bytes]) -> tuple[str, tuple[Any, ...]]:
    """``column`` is one of ``keys`` (not empty): a few as parameters of their own, more as
    one ``bytea[]`` parameter (of any length; an array costs more to send than a few)."""
    if len(keys) == 1:
        return f"{column} = %b", (keys[0],)
    if len(keys) <= SHORT_LIST:
        return f"{column} IN ({', '.join(['%b'] * len(keys))})", tuple(keys)
    return f"{column} = ANY(%b::bytea[])", (keys,)


def _range(layout: Layout, cond: Condition, params: list[Any]) -> str:
    column = layout.column(cond.field)
    params.append(_key(layout, cond, cond.value))  # (the id too: its id key's order)
    return f"({column} {_RANGE[cond.lookup]} %b AND {column} <> {NULL_SQL})"


def _isnull(layout: Layout, cond: Condition, params: list[Any]) -> str:
    if cond.field == ID:
        return "FALSE" if cond.value else "TRUE"  # an id is never null
    return f"({layout.column(cond.field)} {'=' if cond.value else '<>'} {NULL_SQL})"


def _body(value: str) -> bytes:
    """A string's encoding without its tag byte and terminator (see the module docstring)."""
    return sortable.encode_str_prefix(value)[1:]


def _contains(layout: Layout, cond: Condition, params: list[Any]) -> str:
    field = layout.options.fields[cond.field]
    if isinstance(field, ArrayField):
        params.append([field.field.sort_key(cond.value)])
        return f"(t.{layout.arrays[cond.field]} @> %b::bytea[])"
    column = layout.column(cond.field)
    body = _body(cond.value)
    if not body:
        return f"({column} <> {NULL_SQL})"
    params.append(body)
    return f"({column} <> {NULL_SQL} AND position(%b::bytea in substring({column} from 2)) > 0)"


def _startswith(layout: Layout, cond: Condition, params: list[Any]) -> str:
    # the keys of the strings with this prefix are exactly those from the prefix's encoding
    # up to it + 0xff (no key byte after it can be 0xff: UTF-8 has none, an escaped NUL is
    # 00 ff, the terminator 00): a range, which an index on the column serves
    low = sortable.encode_str_prefix(cond.value)
    params += [low, low + b"\xff"]
    column = layout.column(cond.field)
    return f"({column} >= %b AND {column} < %b AND {column} <> {NULL_SQL})"


def _endswith(layout: Layout, cond: Condition, params: list[Any]) -> str:
    column = layout.column(cond.field)
    body = _body(cond.value)
    needle = body + sortable.END
    # the last len(needle) bytes after the tag byte: a value shorter than that yields
    # itself whole, which is shorter than the needle and so never equal
    params += [len(needle), needle]
    return (f"({column} <> {NULL_SQL} AND substring(substring({column} from 2) "
            f"from octet_length({column}) - %b::int) = %b)")


def _client_side(layout: Layout, cond: Condition, params: list[Any]) -> str:
    raise AssertionError("checked in Python: the backend leaves it out of the SQL (see "
                         "client_residue)")


#: lookups PostgreSQL cannot answer exactly as the reference does: its lower()/ILIKE fold
#: case by the database's collation and ctype (not Unicode full case folding), and ``~`` is
#: POSIX ERE, not Python ``re``. The backend checks them in Python on the rows the rest of
#: the query selects (see :func:`client_residue`), never by an approximate SQL test.
CLIENT_LOOKUPS = FOLDED_LOOKUPS | PATTERN_LOOKUPS


def client_residue(spec: QuerySpec, columns: Collection[str] = ()
                   ) -> tuple[QuerySpec, Node | None]:
    """``(what PostgreSQL runs, what Python checks on its rows)``.

    With no client-side lookup in the query: the query itself and None. Otherwise the server
    keeps the top-level AND's conditions free of them (a superset of the matches) in the
    query's order and keyset position, without offset or limit, and Python checks the whole
    condition, then slices."""
    client_order = any(paths.is_path(o.field) and o.field not in columns for o in spec.order)
    if not client_order and not _has_client_lookup(spec.where, columns):
        return spec, None
    parts = spec.where.children if isinstance(spec.where, And) else (spec.where,)
    server = conjoin(*(part for part in parts if not _has_client_lookup(part, columns)))
    if client_order:  # ordered by a path into an embedded document: in Python too
        return QuerySpec(where=server), spec.where
    return QuerySpec(where=server, order=spec.order, after=spec.after), spec.where


def _has_client_lookup(node: Node, columns: Collection[str]) -> bool:
    if isinstance(node, Condition):
        # (and paths into embedded documents that have no column: no index declared)
        return node.lookup in CLIENT_LOOKUPS or (paths.is_path(node.field)
                                                 and node.field not in columns)
    if isinstance(node, Not):
        return _has_client_lookup(node.child, columns)
    return any(_has_client_lookup(child, columns) for child in node.children)


#: the SQL of every lookup this backend serves; its key set is the backend's ``lookups``
#: capability
SQL: dict[Lookup, Callable[[Layout, Condition, list[Any]], str]] = {
    Lookup.EXACT: _equal,
    Lookup.NE: _equal,
    Lookup.IN: _listed,
    Lookup.NIN: _listed,
    Lookup.GT: _range,
    Lookup.GTE: _range,
    Lookup.LT: _range,
    Lookup.LTE: _range,
    Lookup.CONTAINS: _contains,
    Lookup.STARTSWITH: _startswith,
    Lookup.ENDSWITH: _endswith,
    Lookup.ISNULL: _isnull,
    **{lookup: _client_side for lookup in CLIENT_LOOKUPS},
}


def order_by(layout: Layout, spec: QuerySpec) -> str:
    descending = evaluate.directions(spec.order)
    columns = [layout.column(o.field) for o in spec.order] + ["t.id_key"]
    return ", ".join(f"{c} {'DESC' if d else 'ASC'}"
                     for c, d in zip(columns, descending, strict=True))


def after(layout: Layout, spec: QuerySpec, params: list[Any]) -> str:
    """Rows strictly after the keyset position, in the query's order (OR of ANDs)."""
    assert spec.after is not None
    descending = evaluate.directions(spec.order)
    columns = [layout.column(o.field) for o in spec.order] + ["t.id_key"]
    if len(spec.after) != len(columns):
        raise ValueError("the keyset position does not match the ordering")
    branches = []
    for i, (column, desc) in enumerate(zip(columns, descending, strict=True)):
        parts = []
        for j in range(i):
            parts.append(f"{columns[j]} = %b")
            params.append(spec.after[j])
        parts.append(f"{column} {'<' if desc else '>'} %b")
        params.append(spec.after[i])
        branches.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(branches) + ")"


def select(layout: Layout, spec: QuerySpec, what: str = "t.id_key, t.version, t.doc",
           window: bool = True, ordered: bool = True) -> Sql:
    """``SELECT what FROM table WHERE ... ORDER BY ... LIMIT ... OFFSET ...``."""
    condition, params = where(layout, spec.where)
    if spec.after is not None:
        condition = f"{condition} AND {after(layout, spec, params)}"
    sql = f"SELECT {what} FROM {layout.table} AS t WHERE {condition}"
    if ordered:
        sql += f" ORDER BY {order_by(layout, spec)}"
    if window and (spec.limit is not None or spec.offset):
        sql += " LIMIT %b::bigint OFFSET %b::bigint"  # (LIMIT NULL: no limit)
        params += [spec.limit, spec.offset]
    return sql, params


def count(layout: Layout, spec: QuerySpec) -> Sql:
    if spec.limit is None and not spec.offset:
        return select(layout, spec, "COUNT(*)", ordered=False)
    inner, params = select(layout, spec, "1", ordered=False)
    return f"SELECT COUNT(*) FROM ({inner}) AS c", params


def exists(layout: Layout, spec: QuerySpec) -> Sql:
    inner, params = select(layout, spec, "1", ordered=False)
    if spec.limit is None and not spec.offset:
        inner += " LIMIT 1"
    return f"SELECT EXISTS ({inner})", params
