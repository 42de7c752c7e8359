"""The reference semantics of every lookup, evaluated in Python on cleaned values.

Backends that cannot evaluate part of a query on the server hand the rows here; update- and
delete-where re-check a document that changed under them here; tests compare backends with
it. Comparisons use the fields' sort keys, so this agrees with index ranges to the byte.

Null semantics (Python's): ``None`` equals only ``None``; ``ne``/``nin``/``exclude`` match
documents whose value is null; ordered comparisons and string lookups never match null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cmp_to_key
from typing import TYPE_CHECKING, Any

from .. import sortable
from ..fields.base import Field
from ..fields.structured import ArrayField
from .lookups import Lookup
from .nodes import ID, And, Condition, Node, Not, Or, Ordering

if TYPE_CHECKING:
    from ..options import ModelOptions

#: a document as the evaluator sees it: attribute name (or "id") -> cleaned value
Values = dict[str, Any]


def matches(options: ModelOptions, node: Node, values: Values) -> bool:
    if isinstance(node, And):
        return all(matches(options, child, values) for child in node.children)
    if isinstance(node, Or):
        return any(matches(options, child, values) for child in node.children)
    if isinstance(node, Not):
        return not matches(options, node.child, values)
    return _condition(options, node, values)


def _condition(options: ModelOptions, cond: Condition, values: Values) -> bool:
    value = values.get(cond.field)
    lookup = cond.lookup
    if lookup is Lookup.ISNULL:
        return (value is None) is cond.value
    if cond.field == ID:
        return _equality(lookup, value, cond.value, lambda v: v)
    field = options.fields[cond.field]
    key = field.sort_key
    if lookup in (Lookup.EXACT, Lookup.NE, Lookup.IN, Lookup.NIN):
        return _equality(lookup, value, cond.value, lambda v: None if v is None else key(v))
    if value is None:
        return False
    if lookup is Lookup.CONTAINS:
        if isinstance(field, ArrayField):
            wanted = field.field.sort_key(cond.value)
            return any(field.field.sort_key(item) == wanted for item in value)
        return cond.value in value
    if lookup is Lookup.STARTSWITH:
        return bool(value.startswith(cond.value))
    if lookup is Lookup.ENDSWITH:
        return bool(value.endswith(cond.value))
    mine, bound = key(value), key(cond.value)
    if lookup is Lookup.GT:
        return mine > bound
    if lookup is Lookup.GTE:
        return mine >= bound
    if lookup is Lookup.LT:
        return mine < bound
    return mine <= bound


def _equality(lookup: Lookup, value: Any, wanted: Any, key: Callable[[Any], Any]) -> bool:
    mine = key(value)
    if lookup in (Lookup.EXACT, Lookup.NE):
        return (mine == key(wanted)) is (lookup is Lookup.EXACT)
    hit = any(mine == key(w) for w in wanted)
    return hit is (lookup is Lookup.IN)


# -- ordering -------------------------------------------------------------------------------


def sort_keys(
    options: ModelOptions, order: Sequence[Ordering], values: Values
) -> tuple[bytes, ...]:
    """The row's position: each ordering field's sort key, then the id's natural key."""
    keys = []
    for ordering in order:
        if ordering.field == ID:
            keys.append(sortable.id_key(values[ID]))
            continue
        field: Field = options.fields[ordering.field]
        value = values.get(ordering.field)
        keys.append(sortable.NULL if value is None else field.sort_key(value))
    keys.append(sortable.id_key(values[ID]))
    return tuple(keys)


def directions(order: Sequence[Ordering]) -> tuple[bool, ...]:
    """Descending flags for each position of :func:`sort_keys`.

    The trailing id tie-breaker runs in the direction of the last ordering field, so a
    descending index scan and an in-memory sort give the same order.
    """
    flags = [o.descending for o in order]
    flags.append(flags[-1] if flags else False)
    return tuple(flags)


def compare_keys(a: Sequence[bytes], b: Sequence[bytes], descending: Sequence[bool]) -> int:
    for x, y, desc in zip(a, b, descending, strict=True):
        if x != y:
            return (1 if x > y else -1) * (-1 if desc else 1)
    return 0


def sort_rows(rows: list[Any], key: Callable[[Any], Sequence[bytes]],
              descending: Sequence[bool]) -> list[Any]:
    return sorted(rows, key=cmp_to_key(lambda a, b: compare_keys(key(a), key(b), descending)))
