"""Compile a :class:`~quantumorm.query.nodes.QuerySpec` to SQL over a model's :class:`Layout`.

Pure, no I/O. Every condition compares the ``k_`` sort-key BLOBs (or the id key), whose
memcmp order is the project's value order, so the SQL agrees with
:mod:`quantumorm.query.evaluate` exactly:

* nulls are stored as the NULL *encoding* (never SQL NULL), so SQL's three-valued logic never
  comes in: ``ne``/``nin``/``NOT`` match nulls exactly as the reference does;
* ranges and string lookups exclude the NULL encoding explicitly;
* string lookups work on the escaped UTF-8 body of the encoding (NUL is ``\\x00\\xff`` there,
  and ``\\xff`` never occurs in UTF-8), so substring/prefix/suffix tests on bytes are exact;
* ordering: the ``k_`` columns, then the id key in the direction of the last ordering field;
  the keyset position is the row-value comparison expanded for mixed directions.

Values only ever travel as parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import sortable
from ...fields.structured import ArrayField
from ...query import evaluate, paths
from ...query.lookups import FOLDED_LOOKUPS, PATTERN_LOOKUPS, Lookup
from ...query.nodes import ID, BoolOp, Condition, Node, Not, QuerySpec
from . import paths as path_sql
from .executor import MEMBER_FUNCTION, TEXT_FUNCTION
from .schema import NULL_SQL, Layout

Sql = tuple[str, list[Any]]
#: IN lists longer than this are one packed parameter tested by a registered function
LONG_LIST = 500
_RANGE = {Lookup.GT: ">", Lookup.GTE: ">=", Lookup.LT: "<", Lookup.LTE: "<="}
#: how an AND / OR joins its children, and what it is without any
_JOIN = {BoolOp.AND: (" AND ", "1"), BoolOp.OR: (" OR ", "0")}


def where(layout: Layout, node: Node) -> Sql:
    params: list[Any] = []
    return _node(layout, node, params), params


def _node(layout: Layout, node: Node, params: list[Any]) -> str:
    if isinstance(node, Condition):
        if paths.is_path(node.field) and node.field not in layout.columns:
            # inside an embedded document, not indexed: see .paths
            params.append(path_sql.condition_token(layout.options, node))
            return f"({path_sql.MATCH_FUNCTION}(t.doc, ?) = 1)"
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
    op = "=" if cond.lookup is Lookup.EXACT else "!="
    if op == "=" and cond.value is not None and cond.field != ID:
        # (said outright, it lets SQLite use a unique index, which is partial: not null)
        return f"({layout.column(cond.field)} = ? AND {layout.column(cond.field)} != {NULL_SQL})"
    return f"({layout.column(cond.field)} {op} ?)"


def _listed(layout: Layout, cond: Condition, params: list[Any]) -> str:
    column = layout.column(cond.field)
    if cond.field == ID:
        keys = list(dict.fromkeys(map(sortable.id_key, cond.value)))
    else:
        key = layout.options.fields[cond.field].sort_key
        keys = list(dict.fromkeys(sortable.NULL if v is None else key(v) for v in cond.value))
    inside = cond.lookup is Lookup.IN
    if not keys:
        return "0" if inside else "1"
    if len(keys) > LONG_LIST:
        params.append(sortable.pack_list(keys))
        test = f"{MEMBER_FUNCTION}({column}, ?)"
        return f"({test})" if inside else f"(NOT {test})"
    params += keys
    marks = ", ".join("?" * len(keys))
    return f"({column} {'IN' if inside else 'NOT IN'} ({marks}))"


def _range(layout: Layout, cond: Condition, params: list[Any]) -> str:
    column = layout.column(cond.field)
    params.append(_key(layout, cond, cond.value))  # (the id too: its id key's order)
    return f"({column} {_RANGE[cond.lookup]} ? AND {column} != {NULL_SQL})"


def _isnull(layout: Layout, cond: Condition, params: list[Any]) -> str:
    if cond.field == ID:
        return "0" if cond.value else "1"  # an id is never null
    return f"({layout.column(cond.field)} {'=' if cond.value else '!='} {NULL_SQL})"


def _body(value: str) -> bytes:
    """A string's encoding without its tag byte and terminator (see the module docstring)."""
    return sortable.encode_str_prefix(value)[1:]


def _contains(layout: Layout, cond: Condition, params: list[Any]) -> str:
    field = layout.options.fields[cond.field]
    if isinstance(field, ArrayField):
        params.append(field.field.sort_key(cond.value))
        return (f"EXISTS (SELECT 1 FROM {layout.arrays[cond.field]} AS s "
                "WHERE s.id = t.id_key AND s.k = ?)")
    column = layout.column(cond.field)
    body = _body(cond.value)
    if not body:
        return f"({column} != {NULL_SQL})"  # instr() of an empty needle is unreliable
    params.append(body)
    return f"({column} != {NULL_SQL} AND instr(substr({column}, 2), ?) > 0)"


def _startswith(layout: Layout, cond: Condition, params: list[Any]) -> str:
    # the keys of the strings with this prefix are exactly those from the prefix's encoding
    # up to it + 0xff (no key byte after it can be 0xff: UTF-8 has none, an escaped NUL is
    # 00 ff, the terminator 00): a range, which an index on the column serves
    low = sortable.encode_str_prefix(cond.value)
    params += [low, low + b"\xff"]
    column = layout.column(cond.field)
    return f"({column} >= ? AND {column} < ? AND {column} != {NULL_SQL})"


def _endswith(layout: Layout, cond: Condition, params: list[Any]) -> str:
    column = layout.column(cond.field)
    body = _body(cond.value)
    params += [len(body) + 1, body + sortable.END]
    return f"({column} != {NULL_SQL} AND substr(substr({column}, 2), -?) = ?)"


def _text_function(layout: Layout, cond: Condition, params: list[Any]) -> str:
    """Case-folded and pattern lookups: the evaluator, registered on the connection (SQLite
    cannot fold Unicode case nor match Python regexes itself); a scan, as explain() shows."""
    params += [cond.lookup.value, cond.value]
    return f"({TEXT_FUNCTION}(?, {layout.column(cond.field)}, ?) = 1)"


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
    **{lookup: _text_function for lookup in FOLDED_LOOKUPS | PATTERN_LOOKUPS},
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
            parts.append(f"{columns[j]} = ?")
            params.append(spec.after[j])
        parts.append(f"{column} {'<' if desc else '>'} ?")
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
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if spec.limit is None else spec.limit, spec.offset]
    return sql, params


def count(layout: Layout, spec: QuerySpec) -> Sql:
    if spec.limit is None and not spec.offset:
        return select(layout, spec, "COUNT(*)", ordered=False)
    inner, params = select(layout, spec, "1", ordered=False)
    return f"SELECT COUNT(*) FROM ({inner})", params


def exists(layout: Layout, spec: QuerySpec) -> Sql:
    inner, params = select(layout, spec, "1", ordered=False)
    if spec.limit is None and not spec.offset:
        inner += " LIMIT 1"
    return f"SELECT EXISTS ({inner})", params
