"""The reference semantics of every lookup, evaluated in Python on cleaned values.

Backends that cannot evaluate part of a query on the server hand the rows here; update- and
delete-where re-check a document that changed under them here; tests compare backends with
it. Comparisons use the fields' sort keys, so this agrees with index ranges to the byte.

Null semantics (Python's): ``None`` equals only ``None``; ``ne``/``nin``/``exclude`` match
documents whose value is null; ordered comparisons and string lookups never match null.

Case-insensitive lookups (``iexact``, ``icontains``, ``istartswith``, ``iendswith``) compare
both sides after :func:`fold`, Python's full Unicode case folding (``str.casefold``): "ß"
matches "SS", "Σ"/"σ"/"ς" match each other, "İ" folds to "i" + U+0307 (so it does not
match a plain "i"). No normalisation is applied: "é" (U+00E9) and "e" + U+0301 differ.
``regex``/``iregex`` are ``re.search(pattern, value)`` (``re.IGNORECASE`` for ``iregex``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cmp_to_key
from typing import TYPE_CHECKING, Any

from .. import sortable
from ..fields.base import Field
from ..fields.structured import ArrayField
from . import paths
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
    if cond.field == ID:
        return PREDICATES[cond.lookup](None, values.get(ID), cond.value)
    field = options.fields.get(cond.field)
    if field is not None and (paths.SEP not in cond.field  # (not a path: hot, no call)
                              or cond.field.endswith(paths.EACH)):  # (an index's array)
        return PREDICATES[cond.lookup](field, values.get(cond.field), cond.value)
    if field is not None and cond.field.endswith(paths.FOLDED):  # a case-folded index's
        folded = paths.derived(field)  # value, from the field it folds
        assert folded is not None
        return PREDICATES[cond.lookup](field, folded.indexed_value(values), cond.value)
    path = paths.resolve(options, cond.field)  # a path into embedded documents
    test, leaf = PREDICATES[cond.lookup], path.field
    if not path.many:
        return test(leaf, path.read(values), cond.value)
    items = path.read(values)  # any element (see quantumorm.query.paths)
    if cond.lookup is Lookup.ISNULL:
        return all(item is None for item in items) is cond.value
    if cond.lookup in _NEGATED:
        positive = PREDICATES[_NEGATED[cond.lookup]]
        return not any(positive(leaf, item, cond.value) for item in items)
    return any(test(leaf, item, cond.value) for item in items)


_NEGATED = {Lookup.NE: Lookup.EXACT, Lookup.NIN: Lookup.IN}


# One predicate per lookup: (field, or None for the id; the document's value; the
# condition's value) -> bool. Fields compare by sort key (the order indexes use), the id as
# the string it is. A value in an ``in`` list may be None (it asks for null).


def _exact(field: Field | None, value: Any, wanted: Any) -> bool:
    if field is None:
        return bool(value == wanted)
    if value is None or wanted is None:
        return value is wanted
    return field.sort_key(value) == field.sort_key(wanted)


def _ne(field: Field | None, value: Any, wanted: Any) -> bool:
    return not _exact(field, value, wanted)


def _in(field: Field | None, value: Any, wanted: Any) -> bool:
    if field is None:
        return value in wanted
    key = field.sort_key
    mine = None if value is None else key(value)
    return any(mine == (None if w is None else key(w)) for w in wanted)


def _nin(field: Field | None, value: Any, wanted: Any) -> bool:
    return not _in(field, value, wanted)


def _ranged(field: Field | None, value: Any) -> bytes:
    # the id (field None) in the id order: numeric ids numerically, then the others
    return sortable.id_key(value) if field is None else field.sort_key(value)


def _gt(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and _ranged(field, value) > _ranged(field, wanted)


def _gte(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and _ranged(field, value) >= _ranged(field, wanted)


def _lt(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and _ranged(field, value) < _ranged(field, wanted)


def _lte(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and _ranged(field, value) <= _ranged(field, wanted)


def _contains(field: Field | None, value: Any, wanted: Any) -> bool:
    if value is None:
        return False
    if isinstance(field, ArrayField):  # one element equal to the value
        key = field.field.sort_key
        target = key(wanted)
        return any(key(item) == target for item in value)
    return wanted in value  # a substring


def _startswith(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and bool(value.startswith(wanted))


def _endswith(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and bool(value.endswith(wanted))


def _isnull(field: Field | None, value: Any, wanted: Any) -> bool:
    return (value is None) is wanted


def fold(text: str) -> str:
    """The case-insensitive form of a string: every backend compares exactly this."""
    return text.casefold()


def _iexact(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and fold(value) == fold(wanted)


def _icontains(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and fold(wanted) in fold(value)


def _istartswith(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and fold(value).startswith(fold(wanted))


def _iendswith(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and fold(value).endswith(fold(wanted))


def _regex(field: Field | None, value: Any, wanted: Any) -> bool:
    # (re caches compiled patterns; the pattern was compiled once when the query was built)
    return value is not None and re.search(wanted, value) is not None


def _iregex(field: Field | None, value: Any, wanted: Any) -> bool:
    return value is not None and re.search(wanted, value, re.IGNORECASE) is not None


Predicate = Callable[["Field | None", Any, Any], bool]

#: the reference meaning of every lookup (a test checks that each Lookup is here)
PREDICATES: dict[Lookup, Predicate] = {
    Lookup.EXACT: _exact,
    Lookup.NE: _ne,
    Lookup.IN: _in,
    Lookup.NIN: _nin,
    Lookup.GT: _gt,
    Lookup.GTE: _gte,
    Lookup.LT: _lt,
    Lookup.LTE: _lte,
    Lookup.CONTAINS: _contains,
    Lookup.STARTSWITH: _startswith,
    Lookup.ENDSWITH: _endswith,
    Lookup.ISNULL: _isnull,
    Lookup.IEXACT: _iexact,
    Lookup.ICONTAINS: _icontains,
    Lookup.ISTARTSWITH: _istartswith,
    Lookup.IENDSWITH: _iendswith,
    Lookup.REGEX: _regex,
    Lookup.IREGEX: _iregex,
}


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
        found = options.fields.get(ordering.field)
        if found is None or paths.is_path(ordering.field):  # inside an embedded document
            path = paths.resolve(options, ordering.field)
            field, value = path.field, path.read(values)
        else:
            field, value = found, values.get(ordering.field)
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
