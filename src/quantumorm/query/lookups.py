"""The lookup vocabulary: an enum, and the parser for Django-style ``field__lookup`` keys."""

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


RANGE_LOOKUPS = frozenset({Lookup.GT, Lookup.GTE, Lookup.LT, Lookup.LTE})
LIST_LOOKUPS = frozenset({Lookup.IN, Lookup.NIN})
_BY_NAME = {lookup.value: lookup for lookup in Lookup}


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
