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

from typing import Any

from ... import sortable
from ...fields.structured import ArrayField
from ...query import evaluate
from ...query.lookups import Lookup
from ...query.nodes import ID, And, Condition, Node, Not, Or, QuerySpec
from .executor import MEMBER_FUNCTION
from .schema import NULL_SQL, Layout

Sql = tuple[str, list[Any]]
#: IN lists longer than this are one packed parameter tested by a registered function
LONG_LIST = 500
_RANGE = {Lookup.GT: ">", Lookup.GTE: ">=", Lookup.LT: "<", Lookup.LTE: "<="}


def where(layout: Layout, node: Node) -> Sql:
    params: list[Any] = []
    return _node(layout, node, params), params


def _node(layout: Layout, node: Node, params: list[Any]) -> str:
    if isinstance(node, And):
        if not node.children:
            return "1"
        return "(" + " AND ".join(_node(layout, c, params) for c in node.children) + ")"
    if isinstance(node, Or):
        if not node.children:
            return "0"
        return "(" + " OR ".join(_node(layout, c, params) for c in node.children) + ")"
    if isinstance(node, Not):
        return "(NOT " + _node(layout, node.child, params) + ")"
    return _condition(layout, node, params)


def _condition(layout: Layout, cond: Condition, params: list[Any]) -> str:
    lookup = cond.lookup
    if cond.field == ID:
        if lookup is Lookup.ISNULL:
            return "0" if cond.value else "1"  # an id is never null
        return _equality("t.id_key", lookup, cond.value, sortable.id_key, params)
    field = layout.options.fields[cond.field]
    column = layout.column(cond.field)
    if lookup is Lookup.ISNULL:
        return f"({column} {'=' if cond.value else '!='} {NULL_SQL})"
    if lookup in (Lookup.EXACT, Lookup.NE, Lookup.IN, Lookup.NIN):
        return _equality(column, lookup, cond.value,
                         lambda v: sortable.NULL if v is None else field.sort_key(v), params)
    if lookup in _RANGE:
        params.append(field.sort_key(cond.value))
        return f"({column} {_RANGE[lookup]} ? AND {column} != {NULL_SQL})"
    if lookup is Lookup.CONTAINS and isinstance(field, ArrayField):
        params.append(field.field.sort_key(cond.value))
        return (f"EXISTS (SELECT 1 FROM {layout.arrays[cond.field]} AS s "
                "WHERE s.id = t.id_key AND s.k = ?)")
    # string lookups, on the body of the encoding: tag byte, escaped UTF-8, \x00
    body = sortable.encode_str_prefix(cond.value)[1:]
    if lookup is Lookup.STARTSWITH:
        params += [len(body) + 1, sortable.STRING_TAG + body]
        return f"(substr({column}, 1, ?) = ?)"
    if lookup is Lookup.ENDSWITH:
        params += [len(body) + 1, body + sortable.END]
        return f"({column} != {NULL_SQL} AND substr(substr({column}, 2), -?) = ?)"
    if lookup is Lookup.CONTAINS:
        if not body:
            return f"({column} != {NULL_SQL})"  # instr() of an empty needle is unreliable
        params.append(body)
        return f"({column} != {NULL_SQL} AND instr(substr({column}, 2), ?) > 0)"
    raise AssertionError(f"lookup {lookup} is not supported on {cond.field}")


def _equality(column: str, lookup: Lookup, value: Any, key: Any, params: list[Any]) -> str:
    if lookup in (Lookup.EXACT, Lookup.NE):
        params.append(key(value))
        return f"({column} {'=' if lookup is Lookup.EXACT else '!='} ?)"
    keys = list(dict.fromkeys(key(v) for v in value))
    if not keys:
        return "0" if lookup is Lookup.IN else "1"
    if len(keys) > LONG_LIST:
        params.append(sortable.pack_list(keys))
        test = f"{MEMBER_FUNCTION}({column}, ?)"
        return f"({test})" if lookup is Lookup.IN else f"(NOT {test})"
    params += keys
    marks = ", ".join("?" * len(keys))
    return f"({column} {'IN' if lookup is Lookup.IN else 'NOT IN'} ({marks}))"


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
