"""Query keys resolved once per model (``expressions.resolve_lookup`` keeps what a key of a
plain field says): a key met again resolves to what it resolved to the first time, its
value is checked and cleaned again each time, and keys that did not resolve are refused
again, with the same error. Nothing here touches a store."""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import Document, IntField, QueryError, StringField
from quantumorm.query.expressions import resolve_lookup
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import And, Condition


class Keyed(Document):
    name = StringField(indexed=True)
    age = IntField()

    class Meta:
        collection = "lookup_keys"
        namespace = "qlookupkeys"


@pytest.mark.parametrize("key, value, node", [
    ("name", "x", Condition("name", Lookup.EXACT, "x")),
    ("name__iexact", "X", Condition("name", Lookup.IEXACT, "X")),
    ("age__gte", 3, Condition("age", Lookup.GTE, 3)),
    ("age__in", [2, 1, 2], Condition("age", Lookup.IN, (2, 1))),
    ("age", None, Condition("age", Lookup.ISNULL, True)),
    ("id", 7, Condition("id", Lookup.EXACT, "7")),
    ("id__in", ["a", "b"], Condition("id", Lookup.IN, ("a", "b"))),
])
def test_a_key_met_again_resolves_as_the_first_time(key: str, value: Any, node: Any) -> None:
    options = Keyed._meta
    first = resolve_lookup(options, key, value)
    again = resolve_lookup(options, key, value)
    assert first == again == node
    assert key in options.__dict__["_lookup_keys"]


def test_the_value_is_checked_and_cleaned_each_time() -> None:
    options = Keyed._meta
    assert resolve_lookup(options, "age__lt", 5) == Condition("age", Lookup.LT, 5)
    assert resolve_lookup(options, "age__lt", 9) == Condition("age", Lookup.LT, 9)
    for _ in range(2):
        with pytest.raises(QueryError, match=r"Keyed\.age__lt: value must be an integer"):
            resolve_lookup(options, "age__lt", "abc")
        with pytest.raises(QueryError, match=r"Keyed\.age__lt: cannot compare with None"):
            resolve_lookup(options, "age__lt", None)
        with pytest.raises(QueryError, match=r"Keyed\.id__exact: an id is a non-empty"):
            resolve_lookup(options, "id", "")


@pytest.mark.parametrize("key, message", [
    ("agee__gte", "Keyed has no field 'agee'"),
    ("age__gtee", "Keyed.age: unknown lookup 'gtee'"),
    ("age__contains", "Keyed.age: lookup 'contains' is not supported on an integer field"),
])
def test_keys_that_do_not_resolve_are_refused_every_time(key: str, message: str) -> None:
    for _ in range(2):
        with pytest.raises(QueryError, match=message):
            resolve_lookup(Keyed._meta, key, 1)
    assert key not in Keyed._meta.__dict__.get("_lookup_keys", {})


def test_filter_builds_the_same_tree_with_the_keys_known() -> None:
    first = Keyed.objects.filter(age__gte=1, name="a").spec.where
    again = Keyed.objects.filter(age__gte=1, name="a").spec.where
    assert first == again == And((Condition("age", Lookup.GTE, 1),
                                  Condition("name", Lookup.EXACT, "a")))
