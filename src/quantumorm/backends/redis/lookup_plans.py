"""How the Redis planner serves each lookup on a field: one record per :class:`Lookup`.

A record answers each of the planner's questions about its lookup, so that the planner has
no ladder of its own (the id, a pseudo-field with its own id index, stays in the planner):

* ``on_array`` / ``on_string`` / ``on_other``: can ``query.lua`` test it from the value
  encodings in the meta hash, on an indexed field of that kind? When not, the condition is
  *scan residue*: the Python evaluator checks it on the rows the server returns;
* ``ranges``: *equality and range use* of the field's single-field index: the lex ranges
  holding exactly the matching entries (None: the index cannot say);
* ``one_value``: its ranges, when there are any, are the entries of one value, which are in
  id order (an index walk in id order) and can be an equality prefix of a compound index
  (None: when the condition's value is True, as for ``isnull``);
* ``bounds``: its ranges are one interval, which may follow a compound index's prefix;
* ``probes``: *membership*: the ``ZIN`` tokens testing whether ``value .. id`` is in the
  index (``ZSCORE``, no meta hash read), or None when that is not how to test it;
* ``test``: the predicate tokens testing the meta hash (see ``lua/query.lua``).

:data:`LOOKUPS`'s key set is the Redis backend's ``lookups`` capability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ... import sortable
from ...fields.base import Field
from ...fields.scalar import StringField
from ...fields.structured import ArrayField
from ...query.lookups import FOLDED_LOOKUPS, PATTERN_LOOKUPS, Lookup
from ...query.nodes import BoolOp

Token = bytes
Ranges = list[tuple[bytes, bytes]]
UP = sortable.UPPER
NULL = sortable.NULL
NULL_GT = b"[" + NULL + UP  # everything after the nulls
MAX_PROBES = 8  # index-membership probes per condition before reading the meta hash instead
#: the PRED tokens of the boolean nodes: query.lua's spelling of BoolOp
BOOL_TOKENS = {op: op.name.encode() for op in BoolOp}
NOT = BOOL_TOKENS[BoolOp.NOT]


@dataclass(frozen=True, slots=True)
class RedisLookup:
    """How the planner serves one lookup (each attribute: see the module docstring)."""

    on_array: bool
    on_string: bool
    on_other: bool
    ranges: Callable[[Field, Any], Ranges | None]
    one_value: bool | None
    bounds: bool
    #: (field, value, the index's KEYS position) -> tokens
    probes: Callable[[Field, Any, bytes], list[Token] | None]
    #: (field, the meta hash field, value) -> tokens
    test: Callable[[Field, bytes, Any], list[Token]]


def _key(field: Field, value: Any) -> bytes:
    return NULL if value is None else field.sort_key(value)


def _none(field: Field, value: Any) -> None:
    return None


def _no_probes(field: Field, value: Any, keypos: bytes) -> None:
    return None


def _residue(field: Field, name: bytes, value: Any) -> list[Token]:
    raise AssertionError("query.lua does not test this lookup: the planner leaves it to Python")


# -- exact / ne ---------------------------------------------------------------------------


def _exact_ranges(field: Field, value: Any) -> Ranges | None:
    if isinstance(field, ArrayField):
        return None  # whole-list equality is not one index entry
    key = field.sort_key(value)
    return [(b"[" + key, b"(" + key + UP)]


def _equal_probes(field: Field, value: Any, keypos: bytes) -> list[Token] | None:
    if isinstance(field, ArrayField):
        return None
    return [b"ZIN", keypos, b"1", _key(field, value)]


def _unequal_probes(field: Field, value: Any, keypos: bytes) -> list[Token] | None:
    if isinstance(field, ArrayField):
        return None
    return [NOT, b"ZIN", keypos, b"1", _key(field, value)]


def _eq_test(field: Field, name: bytes, value: Any) -> list[Token]:
    return [b"EQ", name, _key(field, value)]


def _ne_test(field: Field, name: bytes, value: Any) -> list[Token]:
    return [NOT, b"EQ", name, _key(field, value)]


# -- in / nin -----------------------------------------------------------------------------


def _in_ranges(field: Field, value: Any) -> Ranges | None:
    if isinstance(field, ArrayField):
        return None
    return [(b"[" + key, b"(" + key + UP) for key in sorted({_key(field, v) for v in value})]


def _in_probes(field: Field, value: Any, keypos: bytes) -> list[Token] | None:
    if isinstance(field, ArrayField) or len(value) > MAX_PROBES:
        return None  # a long list: one meta read and a set lookup beat many probes
    return [b"ZIN", keypos, b"%d" % len(value), *[_key(field, v) for v in value]]


def _nin_probes(field: Field, value: Any, keypos: bytes) -> list[Token] | None:
    if isinstance(field, ArrayField) or len(value) > MAX_PROBES:
        return None
    return [NOT, b"ZIN", keypos, b"%d" % len(value), *[_key(field, v) for v in value]]


def _in_test(field: Field, name: bytes, value: Any) -> list[Token]:
    keys = [_key(field, v) for v in value]
    return [b"IN", name, b"%d" % len(keys), *keys]


def _nin_test(field: Field, name: bytes, value: Any) -> list[Token]:
    return [NOT, *_in_test(field, name, value)]


# -- ranges -------------------------------------------------------------------------------


def _gt_ranges(field: Field, value: Any) -> Ranges | None:
    return None if isinstance(field, ArrayField) else [(b"[" + field.sort_key(value) + UP, b"+")]


def _gte_ranges(field: Field, value: Any) -> Ranges | None:
    return None if isinstance(field, ArrayField) else [(b"[" + field.sort_key(value), b"+")]


def _lt_ranges(field: Field, value: Any) -> Ranges | None:
    return None if isinstance(field, ArrayField) else [(NULL_GT, b"(" + field.sort_key(value))]


def _lte_ranges(field: Field, value: Any) -> Ranges | None:
    if isinstance(field, ArrayField):
        return None
    return [(NULL_GT, b"(" + field.sort_key(value) + UP)]


def _compare_test(op: bytes) -> Callable[[Field, bytes, Any], list[Token]]:
    def test(field: Field, name: bytes, value: Any) -> list[Token]:
        return [op, name, field.sort_key(value)]
    return test


# -- contains / startswith ----------------------------------------------------------------


def _contains_ranges(field: Field, value: Any) -> Ranges | None:
    if not isinstance(field, ArrayField):
        return None  # a substring: no index holds it
    key = field.field.sort_key(value)
    return [(b"[" + key, b"(" + key + UP)]


def _contains_probes(field: Field, value: Any, keypos: bytes) -> list[Token] | None:
    if not isinstance(field, ArrayField):
        return None
    return [b"ZIN", keypos, b"1", field.field.sort_key(value)]


def _has_test(field: Field, name: bytes, value: Any) -> list[Token]:
    assert isinstance(field, ArrayField)  # on_string is False: substrings are residue
    return [b"HAS", name, field.field.sort_key(value)]


def _prefix_ranges(field: Field, value: Any) -> Ranges | None:
    if not isinstance(field, StringField):
        return None
    prefix = sortable.encode_str_prefix(value)
    return [(b"[" + prefix, b"(" + prefix + UP)]


def _prefix_test(field: Field, name: bytes, value: Any) -> list[Token]:
    return [b"PRE", name, sortable.encode_str_prefix(value)]


# -- isnull -------------------------------------------------------------------------------


def _null_ranges(field: Field, value: Any) -> Ranges | None:
    if value:
        return [(b"[" + NULL, b"(" + NULL + UP)]
    return None if isinstance(field, ArrayField) else [(NULL_GT, b"+")]


def _null_probes(field: Field, value: Any, keypos: bytes) -> list[Token] | None:
    tokens = [b"ZIN", keypos, b"1", NULL]
    return tokens if value else [NOT, *tokens]


def _null_test(field: Field, name: bytes, value: Any) -> list[Token]:
    return [b"NULL", name] if value else [NOT, b"NULL", name]


#: how the planner serves every lookup it accepts; the key set is the ``lookups`` capability
LOOKUPS: dict[Lookup, RedisLookup] = {
    # lookup:        on_array, on_string, on_other, ranges, one_value, bounds, probes, test
    Lookup.EXACT: RedisLookup(False, True, True, _exact_ranges, True, False,
                              _equal_probes, _eq_test),
    Lookup.NE: RedisLookup(False, True, True, _none, False, False, _unequal_probes, _ne_test),
    Lookup.IN: RedisLookup(False, True, True, _in_ranges, False, False, _in_probes, _in_test),
    Lookup.NIN: RedisLookup(False, True, True, _none, False, False, _nin_probes, _nin_test),
    Lookup.GT: RedisLookup(False, True, True, _gt_ranges, False, True, _no_probes,
                           _compare_test(b"GT")),
    Lookup.GTE: RedisLookup(False, True, True, _gte_ranges, False, True, _no_probes,
                            _compare_test(b"GE")),
    Lookup.LT: RedisLookup(False, True, True, _lt_ranges, False, True, _no_probes,
                           _compare_test(b"LT")),
    Lookup.LTE: RedisLookup(False, True, True, _lte_ranges, False, True, _no_probes,
                            _compare_test(b"LE")),
    Lookup.CONTAINS: RedisLookup(True, False, False, _contains_ranges, True, False,
                                 _contains_probes, _has_test),
    Lookup.STARTSWITH: RedisLookup(False, True, False, _prefix_ranges, False, True, _no_probes,
                                   _prefix_test),
    # a suffix is in no index and query.lua has no test for it: always scan residue
    Lookup.ENDSWITH: RedisLookup(False, False, False, _none, False, False, _no_probes,
                                 _residue),
    Lookup.ISNULL: RedisLookup(True, True, True, _null_ranges, None, False,
                               _null_probes, _null_test),
    # case-folded and pattern lookups: Python's casefold() and re are the reference, which
    # Lua can reproduce for neither (its string.lower is byte-wise ASCII, its patterns are
    # not regexes): scan residue, checked by the evaluator on the candidates the other
    # conditions leave (explain() lists them as checked in Python)
    **{lookup: RedisLookup(False, False, False, _none, False, False, _no_probes, _residue)
       for lookup in FOLDED_LOOKUPS | PATTERN_LOOKUPS},
}
