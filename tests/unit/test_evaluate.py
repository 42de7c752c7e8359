"""The reference semantics (quantumorm.query.evaluate), checked against hand-computed results.

Every backend is compared with this module, so the expectations below are written out by hand
from the documented rules, not derived from the code:

* ``None`` equals only ``None``; ``ne``/``nin``/``exclude`` match null values;
* ordered comparisons and string lookups never match null;
* ``contains`` on a string is a substring test, on an array a membership test;
* values compare by their sort keys (a datetime by its UTC instant, ``-0.0 == 0.0``,
  ``Decimal("1.50") == Decimal("1.5")``, JSON by canonical form).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    Q,
    StringField,
    sortable,
)
from quantumorm.query import evaluate
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import FALSE, TRUE, And, Condition, Not, Or, Ordering

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


class Item(Document):
    name = StringField()
    age = IntField()
    tags = ArrayField(StringField())
    score = FloatField()
    when = DateTimeField()
    flag = BooleanField()
    data = JSONField()
    price = DecimalField()

    class Meta:
        collection = "items"


OPTS = Item._meta

ROWS: dict[str, dict[str, Any]] = {
    "1": dict(name="apple", age=10, tags=["red", "fruit"], score=1.5, when=T0, flag=True,
              data={"a": 1, "b": [1, 2]}, price=Decimal("1.50")),
    "2": dict(name="banana", age=20, tags=["yellow", "fruit"], score=-0.0,
              when=dt.datetime(2024, 1, 1, 5, 30, tzinfo=IST), flag=False, data=[1, 2],
              price=Decimal("1.5")),
    "3": dict(),
    "10": dict(name="Apple pie", age=-5, tags=[], score=0.0,
               when=dt.datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), flag=True,
               data="apple", price=Decimal("-0.01")),
    "4": dict(name="app\x00le", age=10, tags=["fruit", "fruit"], score=2.0**53,
              when=dt.datetime(2024, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
              flag=None, data={"b": [1, 2], "a": 1}, price=Decimal("100")),
    "b": dict(name="", tags=["red"], flag=False),
}
ALL = set(ROWS)


def _values() -> dict[str, dict[str, Any]]:
    out = {}
    for id_, fields in ROWS.items():
        doc = Item(id=id_, **fields)
        doc.clean()
        out[id_] = doc._values()
    return out


VALUES = _values()


def matching(node: Any) -> set[str]:
    return {id_ for id_, values in VALUES.items() if evaluate.matches(OPTS, node, values)}


def everything_but(*ids: str) -> set[str]:
    return ALL - set(ids)


# (filter keywords, expected ids) -- computed by hand from ROWS
TABLE: list[tuple[dict[str, Any], set[str]]] = [
    # strings: equality and null
    ({"name": "apple"}, {"1"}),
    ({"name__ne": "apple"}, everything_but("1")),
    ({"name__in": ["apple", "banana"]}, {"1", "2"}),
    ({"name__in": ["apple", None]}, {"1", "3"}),
    ({"name__nin": ["apple"]}, everything_but("1")),
    ({"name__nin": ["apple", None]}, {"2", "10", "4", "b"}),
    ({"name": None}, {"3"}),
    ({"name__isnull": True}, {"3"}),
    ({"name__isnull": False}, everything_but("3")),
    ({"name": ""}, {"b"}),
    # strings: order is code point order; null never matches a range
    ({"name__gt": "apple"}, {"2"}),
    ({"name__lt": "apple"}, {"10", "4", "b"}),
    ({"name__gte": ""}, everything_but("3")),
    ({"name__lte": "Apple pie"}, {"10", "b"}),
    # string lookups: substring / prefix / suffix, case-sensitive, never null
    ({"name__contains": "pp"}, {"1", "10", "4"}),
    ({"name__contains": ""}, everything_but("3")),
    ({"name__contains": "\x00"}, {"4"}),
    ({"name__contains": "APP"}, set()),
    ({"name__startswith": "app"}, {"1", "4"}),
    ({"name__startswith": "app\x00"}, {"4"}),
    ({"name__startswith": ""}, everything_but("3")),
    ({"name__endswith": "le"}, {"1", "4"}),
    ({"name__endswith": "pie"}, {"10"}),
    # integers
    ({"age": 10}, {"1", "4"}),
    ({"age__ne": 10}, {"2", "3", "10", "b"}),
    ({"age__gt": 10}, {"2"}),
    ({"age__gte": 10}, {"1", "2", "4"}),
    ({"age__lt": 10}, {"10"}),
    ({"age__lte": -5}, {"10"}),
    ({"age__lt": 1000}, {"1", "2", "10", "4"}),
    ({"age__gt": -1000}, {"1", "2", "10", "4"}),
    ({"age__in": [10, -5]}, {"1", "4", "10"}),
    ({"age__nin": [10]}, {"2", "3", "10", "b"}),
    ({"age__isnull": True}, {"3", "b"}),
    ({"age__in": []}, set()),
    ({"age__nin": []}, ALL),
    # arrays: contains is membership; exact compares the whole list, in order
    ({"tags__contains": "fruit"}, {"1", "2", "4"}),
    ({"tags__contains": "red"}, {"1", "b"}),
    ({"tags__contains": "re"}, set()),
    ({"tags__contains": "blue"}, set()),
    ({"tags": ["red", "fruit"]}, {"1"}),
    ({"tags": ["fruit", "red"]}, set()),
    ({"tags": ["fruit", "fruit"]}, {"4"}),
    ({"tags": []}, {"10"}),
    ({"tags__ne": ["red"]}, everything_but("b")),
    ({"tags__isnull": True}, {"3"}),
    ({"tags__isnull": False}, everything_but("3")),
    # floats: -0.0 == 0.0
    ({"score": 0.0}, {"2", "10"}),
    ({"score": -0.0}, {"2", "10"}),
    ({"score__lt": 0}, set()),
    ({"score__lte": 0}, {"2", "10"}),
    ({"score__gt": 0}, {"1", "4"}),
    ({"score__gte": 9007199254740992}, {"4"}),
    ({"score__ne": 1.5}, {"2", "3", "10", "4", "b"}),
    # datetimes compare as instants, whatever the offset
    ({"when": "2024-01-01T00:00:00Z"}, {"1", "2"}),
    ({"when": "2024-01-01T05:30:00+05:30"}, {"1", "2"}),
    ({"when__lt": T0}, {"10"}),
    ({"when__gt": T0}, {"4"}),
    ({"when__gte": "2024-01-01T05:30:00+05:30"}, {"1", "2", "4"}),
    ({"when__lte": dt.datetime(2023, 12, 31, 23, 59, 59, 999999)}, {"10"}),
    ({"when__lt": dt.datetime(2023, 12, 31, 23, 59, 59, 999999)}, set()),
    ({"when__ne": T0}, {"3", "10", "4", "b"}),
    ({"when__in": ["2024-06-01T10:00:00Z", "2000-01-01T00:00:00Z"]}, {"4"}),
    # booleans
    ({"flag": True}, {"1", "10"}),
    ({"flag": False}, {"2", "b"}),
    ({"flag__ne": True}, {"2", "3", "4", "b"}),
    ({"flag__in": [False, None]}, {"2", "3", "4", "b"}),
    ({"flag__nin": [True, False]}, {"3", "4"}),
    ({"flag__isnull": True}, {"3", "4"}),
    # JSON: whole-value equality, canonical (key order does not matter)
    ({"data": {"a": 1, "b": [1, 2]}}, {"1", "4"}),
    ({"data": {"a": 1}}, set()),
    ({"data": [1, 2]}, {"2"}),
    ({"data": [2, 1]}, set()),
    ({"data": "apple"}, {"10"}),
    ({"data__ne": {"b": [1, 2], "a": 1}}, {"2", "3", "10", "b"}),
    ({"data__isnull": True}, {"3", "b"}),
    # decimals: numeric equality
    ({"price": Decimal("1.5")}, {"1", "2"}),
    ({"price": "1.500"}, {"1", "2"}),
    ({"price__gt": 1}, {"1", "2", "4"}),
    ({"price__lt": 0}, {"10"}),
    ({"price__nin": ["1.5"]}, {"3", "10", "4", "b"}),
    # ids
    ({"id": "1"}, {"1"}),
    ({"id": 10}, {"10"}),
    ({"id__in": ["1", "10", "zzz"]}, {"1", "10"}),
    ({"id__ne": "1"}, everything_but("1")),
    ({"id__nin": ["1", "2"]}, {"3", "10", "4", "b"}),
    # several keywords are ANDed
    ({"age": 10, "name__startswith": "app"}, {"1", "4"}),
    ({"age": 10, "tags__contains": "red"}, {"1"}),
    ({"age__gte": 10, "flag__ne": True}, {"2", "4"}),
]


@pytest.mark.parametrize(("kwargs", "expected"), TABLE,
                         ids=[",".join(f"{k}={v!r}" for k, v in kw.items()) for kw, _ in TABLE])
def test_lookup_table(kwargs: dict[str, Any], expected: set[str]) -> None:
    node = Item.objects.filter(**kwargs).spec.where
    assert matching(node) == expected


@pytest.mark.parametrize(("build", "expected"), [
    (lambda: Item.objects.filter(Q(age__gt=15) | Q(name="apple")), {"1", "2"}),
    (lambda: Item.objects.filter(~Q(name="apple")), everything_but("1")),
    (lambda: Item.objects.exclude(name="apple"), everything_but("1")),
    (lambda: Item.objects.exclude(age__gt=5), {"3", "10", "b"}),
    (lambda: Item.objects.exclude(age__lte=5), {"1", "2", "4", "3", "b"}),
    (lambda: Item.objects.exclude(age__isnull=True), {"1", "2", "10", "4"}),
    (lambda: Item.objects.exclude(age=10, flag=True), everything_but("1")),
    (lambda: Item.objects.exclude(tags__contains="fruit"), {"3", "10", "b"}),
    (lambda: Item.objects.exclude(name__contains="pp"), {"2", "3", "b"}),
    (lambda: Item.objects.filter(tags__contains="fruit").exclude(age=10), {"2"}),
    (lambda: Item.objects.filter((Q(age=10) | Q(age=20)) & Q(name__startswith="b")), {"2"}),
    (lambda: Item.objects.filter(Q(age=10) | (Q(age=20) & Q(name__startswith="x"))),
     {"1", "4"}),
    (lambda: Item.objects.filter(~(Q(age=10) | Q(flag=False))), {"3", "10"}),
    (lambda: Item.objects.filter(~Q(age=10) & ~Q(flag=False)), {"3", "10"}),
    (lambda: Item.objects.filter(Q(age__in=[]) | Q(name="")), {"b"}),
    (lambda: Item.objects.filter(age=10).exclude(name__contains="\x00"), {"1"}),
    (lambda: Item.objects.filter(Item.score >= 0, Item.when < "2024-01-02T00:00:00"),
     {"1", "2", "10"}),
])
def test_compound_filters(build: Any, expected: set[str]) -> None:
    assert matching(build().spec.where) == expected


def test_constants_and_hand_built_nodes() -> None:
    assert matching(TRUE) == ALL
    assert matching(FALSE) == set()
    a10 = Condition("age", Lookup.EXACT, 10)
    red = Condition("tags", Lookup.CONTAINS, "red")
    assert matching(And((a10, red))) == {"1"}
    assert matching(Or((a10, red))) == {"1", "4", "b"}
    assert matching(Not(Or((a10, red)))) == {"2", "3", "10"}
    assert matching(Not(Not(a10))) == {"1", "4"}


def test_missing_values_are_null() -> None:
    assert evaluate.matches(OPTS, Condition("age", Lookup.ISNULL, True), {"id": "x"})
    assert evaluate.matches(OPTS, Condition("age", Lookup.NE, 3), {"id": "x"})
    assert not evaluate.matches(OPTS, Condition("age", Lookup.LT, 3), {"id": "x"})


# -- ordering ----------------------------------------------------------------------------------


def ordered(*fields: str, after_id: str | None = None) -> list[str]:
    order = Item.objects.order_by(*fields).spec.order
    keyed = [(evaluate.sort_keys(OPTS, order, v), v["id"]) for v in VALUES.values()]
    descending = evaluate.directions(order)
    if after_id is not None:
        position = evaluate.sort_keys(OPTS, order, VALUES[after_id])
        keyed = [(k, i) for k, i in keyed if evaluate.compare_keys(k, position, descending) > 0]
    return [i for _, i in evaluate.sort_rows(keyed, lambda item: item[0], descending)]


@pytest.mark.parametrize(("fields", "expected"), [
    ((), ["1", "2", "3", "4", "10", "b"]),
    (("id",), ["1", "2", "3", "4", "10", "b"]),
    (("-id",), ["b", "10", "4", "3", "2", "1"]),
    # nulls first, ties broken by natural id order
    (("age",), ["3", "b", "10", "1", "4", "2"]),
    # descending: ties broken by id in the direction of the last field
    (("-age",), ["2", "4", "1", "10", "b", "3"]),
    (("name",), ["3", "b", "10", "4", "1", "2"]),
    (("flag", "-age"), ["4", "3", "2", "b", "1", "10"]),
    (("-flag", "age"), ["10", "1", "b", "2", "3", "4"]),
    (("when",), ["3", "b", "10", "1", "2", "4"]),
    (("-score",), ["4", "1", "10", "2", "b", "3"]),
    (("price", "id"), ["3", "b", "10", "1", "2", "4"]),
    (("-price", "-id"), ["4", "2", "1", "10", "b", "3"]),
])
def test_ordering(fields: tuple[str, ...], expected: list[str]) -> None:
    assert ordered(*fields) == expected


@pytest.mark.parametrize(("fields", "after_id", "expected"), [
    (("age",), "1", ["4", "2"]),
    (("age",), "b", ["10", "1", "4", "2"]),
    (("-age",), "1", ["10", "b", "3"]),
    ((), "4", ["10", "b"]),
    (("when",), "1", ["2", "4"]),
])
def test_keyset_position(fields: tuple[str, ...], after_id: str, expected: list[str]) -> None:
    assert ordered(*fields, after_id=after_id) == expected


def test_sort_keys_and_directions() -> None:
    order = (Ordering("age", True), Ordering("name"))
    keys = evaluate.sort_keys(OPTS, order, VALUES["3"])
    assert keys == (sortable.NULL, sortable.NULL, sortable.id_key("3"))
    assert evaluate.directions(order) == (True, False, False)
    assert evaluate.directions(()) == (False,)
    assert evaluate.directions((Ordering("age", True),)) == (True, True)
    assert evaluate.compare_keys((b"a", b"1"), (b"b", b"0"), (True, False)) == 1
    assert evaluate.compare_keys((b"a", b"1"), (b"a", b"0"), (True, False)) == 1
    assert evaluate.compare_keys((b"a", b"1"), (b"a", b"1"), (True, True)) == 0
