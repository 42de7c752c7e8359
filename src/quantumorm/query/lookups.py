"""The lookup vocabulary: an enum, the lookups each kind of field allows, and the parser for
Django-style ``field__lookup`` keys.

What a lookup *means* lives in one table per consumer, each keyed by :class:`Lookup`: the
Python evaluator (:data:`quantumorm.query.evaluate.PREDICATES`), the SQLite compiler and the
Redis planner. A backend's ``lookups`` capability is the key set of its table.
"""

from __future__ import annotations

import enum


class Lookup(enum.Enum):
    EXACT = "exact"
    NE = "ne"
    IN = "in"
    NIN = "nin"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"
    STARTSWITH = "startswith"
    ENDSWITH = "endswith"
    ISNULL = "isnull"
    # case-insensitive: both sides compared after str.casefold() (see evaluate.fold)
    IEXACT = "iexact"
    ICONTAINS = "icontains"
    ISTARTSWITH = "istartswith"
    IENDSWITH = "iendswith"
    # patterns: Python ``re.search`` semantics, the value is the pattern
    REGEX = "regex"
    IREGEX = "iregex"

    # Members are singletons compared by identity, so the identity hash is exact; Enum's own
    # __hash__ is a Python call, paid by every table dispatch and plan-cache key.
    __hash__ = object.__hash__


RANGE_LOOKUPS = frozenset({Lookup.GT, Lookup.GTE, Lookup.LT, Lookup.LTE})
LIST_LOOKUPS = frozenset({Lookup.IN, Lookup.NIN})
#: lookups that compare case-folded strings
FOLDED_LOOKUPS = frozenset({Lookup.IEXACT, Lookup.ICONTAINS, Lookup.ISTARTSWITH,
                            Lookup.IENDSWITH})
#: lookups whose value is a regular expression
PATTERN_LOOKUPS = frozenset({Lookup.REGEX, Lookup.IREGEX})
_BY_NAME = {lookup.value: lookup for lookup in Lookup}


class FieldKind(enum.Enum):
    """Families of fields that allow the same lookups."""

    ID = "id"  # the document id: never null; ranges follow the id order (sortable.id_key)
    EQUALITY = "equality"  # booleans, UUIDs: equal or not
    ORDERED = "ordered"  # numbers, datetimes: ranges too
    TEXT = "text"  # strings: ranges and substring lookups too
    WHOLE = "whole"  # JSON values: compared whole
    ARRAY = "array"  # lists: whole-list equality and element membership


_EQUALITY = frozenset({Lookup.EXACT, Lookup.NE, Lookup.IN, Lookup.NIN, Lookup.ISNULL})

#: the lookups a query may use on each kind of field (``Field.lookups`` reads this)
KIND_LOOKUPS: dict[FieldKind, frozenset[Lookup]] = {
    FieldKind.ID: (_EQUALITY - {Lookup.ISNULL}) | RANGE_LOOKUPS,
    FieldKind.EQUALITY: _EQUALITY,
    FieldKind.ORDERED: _EQUALITY | RANGE_LOOKUPS,
    FieldKind.TEXT: _EQUALITY | RANGE_LOOKUPS
    | {Lookup.CONTAINS, Lookup.STARTSWITH, Lookup.ENDSWITH} | FOLDED_LOOKUPS | PATTERN_LOOKUPS,
    FieldKind.WHOLE: frozenset({Lookup.EXACT, Lookup.NE, Lookup.ISNULL}),
    FieldKind.ARRAY: frozenset({Lookup.EXACT, Lookup.NE, Lookup.CONTAINS, Lookup.ISNULL}),
}


def split_key(key: str) -> tuple[str, Lookup | None, str]:
    """Split ``"age__gte"`` into ``("age", Lookup.GTE, "gte")``.

    A key without a known lookup suffix is an exact match on the whole key. The returned
    string is the suffix as written, so an error can quote it when the field does not
    exist either (``agee__gte``) or the suffix is a typo (``age__gtee``).
    """
    field, sep, suffix = key.rpartition("__")
    if not sep:
        return key, Lookup.EXACT, ""
    lookup = _BY_NAME.get(suffix)
    if lookup is None:
        return field, None, suffix
    return field, lookup, suffix
