"""QuerySet builder methods, Q objects and field expressions: resolution into the IR, build-time
errors, value cleaning, immutability, slicing and cursors. Nothing here touches a store."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    QueryError,
    StringField,
    UnknownFieldError,
    UUIDField,
    sortable,
)
from quantumorm.query.lookups import Lookup, split_key
from quantumorm.query.nodes import (
    FALSE,
    TRUE,
    And,
    Condition,
    Not,
    Or,
    Ordering,
    QuerySpec,
    conjoin,
    disjoin,
    negate,
)

UTC = dt.timezone.utc
L = Lookup


class User(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    score = FloatField()
    balance = DecimalField()
    token = UUIDField()
    joined = DateTimeField(indexed=True)
    active = BooleanField()
    tags = ArrayField(StringField(), indexed=True)
    data = JSONField()

    class Meta:
        collection = "users"


class Post(Document):
    title = StringField()

    class Meta:
        collection = "posts"


OPTS = User._meta


def C(field: str, lookup: Lookup, value: Any) -> Condition:
    return Condition(field, lookup, value)


def where(*args: Any, **kwargs: Any) -> Any:
    return User.objects.filter(*args, **kwargs).spec.where


# -- lookups parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "expected"), [
    ("age", ("age", L.EXACT, "")),
    ("age__gte", ("age", L.GTE, "gte")),
    ("age__exact", ("age", L.EXACT, "exact")),
    ("age__gtee", ("age", None, "gtee")),
    ("a__b__in", ("a__b", L.IN, "in")),
    ("id__nin", ("id", L.NIN, "nin")),
])
def test_split_key(key: str, expected: tuple[Any, ...]) -> None:
    assert split_key(key) == expected


# -- the three spellings build the same node ---------------------------------------------------


@pytest.mark.parametrize(("kwargs", "expr", "node"), [
    ({"age__gte": 3}, lambda: User.age >= 3, C("age", L.GTE, 3)),
    ({"age__gt": 3}, lambda: User.age > 3, C("age", L.GT, 3)),
    ({"age__lt": 3}, lambda: User.age < 3, C("age", L.LT, 3)),
    ({"age__lte": 3}, lambda: User.age <= 3, C("age", L.LTE, 3)),
    ({"age": 3}, lambda: User.age == 3, C("age", L.EXACT, 3)),
    ({"age__exact": 3}, lambda: User.age == 3, C("age", L.EXACT, 3)),
    ({"age__ne": 3}, lambda: User.age != 3, C("age", L.NE, 3)),
    ({"age__in": [1, 2]}, lambda: User.age.in_([1, 2]), C("age", L.IN, (1, 2))),
    ({"age__nin": [1, 2]}, lambda: User.age.not_in([1, 2]), C("age", L.NIN, (1, 2))),
    ({"name__contains": "x"}, lambda: User.name.contains("x"), C("name", L.CONTAINS, "x")),
    ({"name__startswith": "x"}, lambda: User.name.startswith("x"), C("name", L.STARTSWITH, "x")),
    ({"name__endswith": "x"}, lambda: User.name.endswith("x"), C("name", L.ENDSWITH, "x")),
    ({"name__isnull": True}, lambda: User.name.isnull(), C("name", L.ISNULL, True)),
    ({"name__isnull": False}, lambda: User.name.isnull(False), C("name", L.ISNULL, False)),
    ({"tags__contains": "t"}, lambda: User.tags.contains("t"), C("tags", L.CONTAINS, "t")),
    ({"id": "7"}, None, C("id", L.EXACT, "7")),
])
def test_keyword_q_and_expression_build_the_same_node(kwargs: dict[str, Any], expr: Any,
                                                      node: Condition) -> None:
    assert where(**kwargs) == node
    assert Q(**kwargs).resolve(OPTS) == node
    assert User.objects.filter(Q(**kwargs)).spec.where == node
    assert User.objects.filter(kwargs).spec.where == node
    if expr is not None:
        assert expr().resolve(OPTS) == node
        assert where(expr()) == node


def test_several_keywords_are_anded() -> None:
    expected = And((C("age", L.GTE, 3), C("name", L.EXACT, "x")))
    assert where(name="x", age__gte=3) == expected
    assert where(Q(name="x"), age__gte=3) == And((C("name", L.EXACT, "x"), C("age", L.GTE, 3)))
    assert User.objects.filter(name="x").filter(age__gte=3).spec.where == And(
        (C("name", L.EXACT, "x"), C("age", L.GTE, 3)))


def test_no_conditions_is_true() -> None:
    assert User.objects.spec.where == TRUE
    assert User.objects.filter().spec.where == TRUE
    assert Q().resolve(OPTS) == TRUE


# -- nesting ---------------------------------------------------------------------------------

A, B, Cc, D, E = (Q(age=1), Q(name="b"), Q(age__gt=5), Q(name__startswith="d"), Q(active=True))
NA, NB, NC, ND, NE = (C("age", L.EXACT, 1), C("name", L.EXACT, "b"), C("age", L.GT, 5),
                      C("name", L.STARTSWITH, "d"), C("active", L.EXACT, True))


@pytest.mark.parametrize(("q", "node"), [
    (A & B, And((NA, NB))),
    (A | B, Or((NA, NB))),
    (~A, Not(NA)),
    (~~A, NA),
    (A | (B & Cc), Or((NA, And((NB, NC))))),
    ((A | B) & (Cc | D), And((Or((NA, NB)), Or((NC, ND))))),
    ((A | B) & Cc | D, Or((And((Or((NA, NB)), NC)), ND))),
    (A | (B & (Cc | (D & ~E))), Or((NA, And((NB, Or((NC, And((ND, Not(NE)))))))))),
    (~(A | B) & Cc, And((Not(Or((NA, NB))), NC))),
    (~(A & (B | Cc)), Not(And((NA, Or((NB, NC)))))),
    ((A | B) | (Cc | D), Or((NA, NB, NC, ND))),  # OR of ORs is one OR: same meaning
    ((A & B) & (Cc & D), And((NA, NB, NC, ND))),
    ((A & B) | (Cc & D), Or((And((NA, NB)), And((NC, ND))))),
    (~((A | B) & ~(Cc | D)), Not(And((Or((NA, NB)), Not(Or((NC, ND))))))),
])
def test_nested_q_keeps_its_structure(q: Q, node: Any) -> None:
    assert q.resolve(OPTS) == node
    assert where(q) == node


def test_or_nested_inside_and_is_not_flattened_into_the_outer_or() -> None:
    # (age=1 | (name=b & (age>5 | name^=d))): flattening the inner OR into the outer one
    # would turn "b and (c or d)" into "b or c or d"
    node = where(A | (B & (Cc | D)))
    assert isinstance(node, Or) and len(node.children) == 2
    inner = node.children[1]
    assert isinstance(inner, And) and inner.children[1] == Or((NC, ND))


def test_exclude_negates_the_conjunction() -> None:
    assert User.objects.exclude(age=1, name="b").spec.where == Not(And((NA, NB)))
    assert User.objects.filter(active=True).exclude(A | B).spec.where == And(
        (NE, Not(Or((NA, NB)))))
    assert User.objects.exclude(~A).spec.where == NA


def test_an_empty_q_is_neutral() -> None:
    # Q() is no condition: neutral in & and | (the loop idiom `q |= Q(...)` starts from it)
    assert (Q() | A).resolve(OPTS) == NA and (A | Q()).resolve(OPTS) == NA
    assert (Q() & A).resolve(OPTS) == NA and (A & Q()).resolve(OPTS) == NA
    assert (Q() | (User.age == 1)).resolve(OPTS) == NA
    assert (~Q()).empty and (Q() & Q()).empty and (Q() | ~Q()).empty
    assert not A.empty and not Q(id__in=[]).empty and not (~A).empty
    q = Q()
    for name in ("b", "c"):
        q |= Q(name=name)
    assert q.resolve(OPTS) == Or((NB, C("name", L.EXACT, "c")))
    assert (A | Q() | B).resolve(OPTS) == Or((NA, NB))
    assert (~(Q() | A)).resolve(OPTS) == Not(NA)
    # on its own it filters nothing out, and excludes nothing either
    for qs in (User.objects.filter(Q()), User.objects.filter(~Q()), User.objects.exclude(Q()),
               User.objects.exclude(~Q()), User.objects.exclude(), User.objects.exclude({})):
        assert qs.spec.where == TRUE
    assert User.objects.filter(A).exclude(Q()).spec.where == NA
    assert User.objects.filter(Q(), A).spec.where == NA
    # matching nothing stays expressible
    assert User.objects.filter(Q(id__in=[])).spec.where == FALSE
    assert User.objects.exclude(id__nin=[]).spec.where == FALSE


def test_a_queryset_has_no_truth_and_no_len() -> None:
    qs = User.objects.filter(age=1)
    with pytest.raises(TypeError) as caught:
        bool(qs)
    assert "exists_sync()" in str(caught.value) and "count()" in str(caught.value)
    with pytest.raises(TypeError):
        if qs:
            pass
    with pytest.raises(TypeError):
        User.objects or None  # noqa: B018
    with pytest.raises(TypeError) as caught:
        len(qs)
    assert "count_sync()" in str(caught.value)
    assert qs is not None  # what `if qs:` may have meant


def test_node_helpers() -> None:
    assert conjoin() == TRUE and disjoin() == FALSE
    assert conjoin(TRUE, NA) == NA and disjoin(FALSE, NA) == NA
    assert conjoin(NA, FALSE) == FALSE and disjoin(NA, TRUE) == TRUE
    assert negate(TRUE) == FALSE and negate(FALSE) == TRUE and negate(Not(NA)) == NA
    assert repr(And((NA, Or((NB, NC))))) == "(age__exact=1 & (name__exact='b' | age__gt=5))"
    assert repr(TRUE) == "TRUE" and repr(FALSE) == "FALSE" and repr(Not(NA)) == "~age__exact=1"


def test_q_misuse() -> None:
    with pytest.raises(TypeError):
        bool(Q(age=1))
    with pytest.raises(TypeError):
        Q(age=1) & {"age": 2}  # type: ignore[operator]
    with pytest.raises(TypeError):
        Q(age=1) | 3  # type: ignore[operator]
    with pytest.raises(TypeError):
        1 < User.age < 5  # noqa: B015  (a chained comparison needs bool(Q))
    with pytest.raises(QueryError):
        User.objects.filter("age=3")


def test_expression_of_another_model_is_refused() -> None:
    with pytest.raises(QueryError) as info:
        User.objects.filter(Post.title == "x")
    assert "Post" in str(info.value) and "User" in str(info.value)
    with pytest.raises(QueryError):
        User.objects.filter(Q(age=1) | (Post.title == "x"))


# -- build-time errors -----------------------------------------------------------------------


def test_unknown_field() -> None:
    with pytest.raises(QueryError) as info:
        where(agee__gte=3)
    message = str(info.value)
    assert "User" in message and "'agee'" in message
    with pytest.raises(QueryError) as info:
        where(nope=1)
    assert "User" in str(info.value) and "'nope'" in str(info.value)
    with pytest.raises(QueryError):
        Q(nope=1).resolve(OPTS)
    with pytest.raises(QueryError):
        where(Q(age=1) | Q(nope=1))


@pytest.mark.parametrize("key", ["age__gtee", "name__ilike", "age__regex", "id__like"])
def test_unknown_lookup(key: str) -> None:
    with pytest.raises(QueryError) as info:
        where(**{key: 1})
    field, _, lookup = key.partition("__")
    message = str(info.value)
    assert "User" in message and field in message and repr(lookup) in message


@pytest.mark.parametrize(("key", "value"), [
    ("age__startswith", "1"), ("age__contains", 1), ("age__endswith", "1"),
    ("active__gt", True), ("active__lte", False), ("active__contains", True),
    ("token__gt", str(uuid.UUID(int=1))), ("token__startswith", "1"),
    ("joined__startswith", "2024"), ("joined__contains", "2024"),
    ("tags__gt", ["a"]), ("tags__in", [["a"]]), ("tags__startswith", "a"),
    ("data__gt", 1), ("data__in", [1]), ("data__contains", 1),
    ("score__startswith", "1"), ("balance__contains", "1"),
    ("id__isnull", True), ("id__startswith", "1"), ("id__contains", "1"),
])
def test_lookup_not_valid_for_the_field_type(key: str, value: Any) -> None:
    with pytest.raises(QueryError) as info:
        where(**{key: value})
    field, _, lookup = key.partition("__")
    message = str(info.value)
    assert "User" in message and field in message and repr(lookup) in message


# -- values are cleaned ----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "node"), [
    ({"joined": "2024-01-01T05:30:00+05:30"},
     C("joined", L.EXACT, dt.datetime(2024, 1, 1, tzinfo=UTC))),
    ({"joined__gt": "2024-01-01T00:00:00"},
     C("joined", L.GT, dt.datetime(2024, 1, 1, tzinfo=UTC))),
    ({"joined__lt": dt.datetime(2024, 1, 1)},
     C("joined", L.LT, dt.datetime(2024, 1, 1, tzinfo=UTC))),
    ({"balance": "1.50"}, C("balance", L.EXACT, Decimal("1.50"))),
    ({"balance__gte": 2}, C("balance", L.GTE, Decimal(2))),
    ({"token": "12345678123456781234567812345678"},
     C("token", L.EXACT, uuid.UUID("12345678-1234-5678-1234-567812345678"))),
    ({"score": 1}, C("score", L.EXACT, 1.0)),
    ({"age__in": (3, 3, 4)}, C("age", L.IN, (3, 4))),
    ({"age__in": iter([5, 6])}, C("age", L.IN, (5, 6))),
    ({"joined__in": ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"]},
     C("joined", L.IN, (dt.datetime(2024, 1, 1, tzinfo=UTC),))),
    ({"tags__contains": "x"}, C("tags", L.CONTAINS, "x")),
    ({"tags": ("a", "b")}, C("tags", L.EXACT, ["a", "b"])),
    ({"data": {"a": [1]}}, C("data", L.EXACT, {"a": [1]})),
    ({"id": 7}, C("id", L.EXACT, "7")),
    ({"id__in": [1, "1", "x"]}, C("id", L.IN, ("1", "x"))),
])
def test_values_are_cleaned_by_the_field(kwargs: dict[str, Any], node: Condition) -> None:
    got = where(**kwargs)
    assert got == node
    assert type(got.value) is type(node.value)
    if isinstance(node.value, dt.datetime):
        assert got.value.tzinfo is not None


@pytest.mark.parametrize(("key", "value"), [
    ("age", "3"), ("age", 3.0), ("age", True), ("age__gt", "x"), ("age__in", [1, "2"]),
    ("active", 1), ("active", "true"), ("balance", 1.5), ("score", "1.5"), ("score", float("nan")),
    ("joined", "not a date"), ("joined__lt", 5), ("token", "nope"), ("name", 5),
    ("name__startswith", 5), ("name__contains", None), ("name__endswith", b"x"),
    ("tags__contains", 5), ("tags__contains", None), ("tags", "abc"), ("data", {1, 2}),
    ("age__in", "12"), ("age__in", 5), ("age__nin", {"a": 1}), ("id", ""), ("id", True),
    ("id", 1.5), ("age__isnull", "yes"), ("age__isnull", None), ("age__isnull", 1),
    ("age__gt", None), ("age__lte", None), ("joined__gte", None),
])
def test_wrong_values_are_refused_at_build_time(key: str, value: Any) -> None:
    with pytest.raises(QueryError) as info:
        where(**{key: value})
    assert "User." in str(info.value) or "User " in str(info.value)


def test_constraints_are_not_applied_to_query_values() -> None:
    # a query for an impossible value simply matches nothing
    class Limited(Document):
        code = StringField(max_length=2, choices=["ab", "cd"])
        n = IntField(min_value=0)

    assert Limited.objects.filter(code="zzzz", n__lt=-5).spec.where == And(
        (C("code", L.EXACT, "zzzz"), C("n", L.LT, -5)))


@pytest.mark.parametrize(("kwargs", "node"), [
    ({"age": None}, C("age", L.ISNULL, True)),
    ({"age__exact": None}, C("age", L.ISNULL, True)),
    ({"age__ne": None}, C("age", L.ISNULL, False)),
    ({"tags": None}, C("tags", L.ISNULL, True)),
    ({"data__ne": None}, C("data", L.ISNULL, False)),
])
def test_exact_none_becomes_isnull(kwargs: dict[str, Any], node: Condition) -> None:
    assert where(**kwargs) == node
    assert (User.age == None).resolve(OPTS) == C("age", L.ISNULL, True)  # noqa: E711
    assert (User.age != None).resolve(OPTS) == C("age", L.ISNULL, False)  # noqa: E711


def test_in_lists() -> None:
    assert where(age__in=[]) == FALSE
    assert where(age__nin=[]) == TRUE
    assert where(age__in=[], name="x") == FALSE
    assert where(Q(age__in=[]) | Q(name="x")) == C("name", L.EXACT, "x")
    assert where(age__nin=[], name="x") == C("name", L.EXACT, "x")
    assert where(age__in=[None, 1, None]) == C("age", L.IN, (None, 1))
    assert where(age__nin=[2, None]) == C("age", L.NIN, (2, None))
    assert where(id__in=[]) == FALSE


def test_id_compared_with_none_can_be_planned() -> None:
    """``filter(id=None)`` is accepted and becomes ``id__isnull=True`` (a lookup the id does not
    otherwise allow); whatever it means, it must either be refused with a QueryError when
    built, or be plannable (ids are never null: it matches nothing)."""
    from quantumorm.backends.redis.planner import Planner

    for kwargs in ({"id": None}, {"id__ne": None}, {"id__in": [None, "1"]}):
        try:
            qs = User.objects.filter(**kwargs)
        except QueryError:
            continue
        Planner(OPTS).plan(qs.spec)  # must not raise


# -- immutability ----------------------------------------------------------------------------


def test_builder_methods_return_new_querysets_and_never_mutate() -> None:
    base = User.objects.filter(age__gte=1)
    before = (base.spec, base._only, base._values, base._using)
    derived = [
        base.filter(name="x"), base.exclude(name="x"), base.order_by("-age"), base.limit(3),
        base.offset(2), base.start(2), base[1:4], base[2:], base.only("name"),
        base.values("age"), base.using("other"), base.after(None),
    ]
    for qs in derived:
        assert qs is not base
        assert qs.model is User
    assert (base.spec, base._only, base._values, base._using) == before
    assert base.spec == QuerySpec(C("age", L.GTE, 1))
    assert derived[0].spec.where == And((C("age", L.GTE, 1), C("name", L.EXACT, "x")))
    assert derived[2].spec.order == (Ordering("age", True),)
    assert derived[3].spec.limit == 3 and derived[4].spec.offset == 2
    assert derived[8]._only == ("name",) and derived[9]._values == ("age",)
    assert derived[10]._using == "other"
    assert User.objects.values()._values == tuple(OPTS.fields)


def test_chained_derivations_do_not_leak_into_siblings() -> None:
    base = User.objects.order_by("age")
    a = base.filter(name="a")[:5]
    b = base.filter(name="b")
    assert a.spec.where == C("name", L.EXACT, "a") and a.spec.limit == 5
    assert b.spec.where == C("name", L.EXACT, "b") and b.spec.limit is None
    assert base.spec == QuerySpec(TRUE, (Ordering("age"),))


def test_only_and_values_check_names() -> None:
    with pytest.raises(UnknownFieldError):
        User.objects.only("nope")
    with pytest.raises(UnknownFieldError):
        User.objects.values("age", "nope")
    assert User.objects.only("id", "age")._only == ("id", "age")


# -- slicing, limit, offset ----------------------------------------------------------------------


def window(qs: Any) -> tuple[int, int | None]:
    return qs.spec.offset, qs.spec.limit


@pytest.mark.parametrize(("build", "expected"), [
    (lambda q: q[5:10], (5, 5)),
    (lambda q: q[5:10][2:4], (7, 2)),
    (lambda q: q[5:10][2:], (7, 3)),
    (lambda q: q[5:10][:100], (5, 5)),
    (lambda q: q[5:10][6:], (11, 0)),
    (lambda q: q[5:][2:4], (7, 2)),
    (lambda q: q[:3][5:], (5, 0)),
    (lambda q: q[:3][1:2], (1, 1)),
    (lambda q: q[2:1], (2, 0)),
    (lambda q: q[:], (0, None)),
    (lambda q: q[3:], (3, None)),
    (lambda q: q[None:4], (0, 4)),
    (lambda q: q[0:0], (0, 0)),
    (lambda q: q[::1], (0, None)),
    (lambda q: q.offset(3)[2:4], (5, 2)),
    (lambda q: q.limit(10)[2:], (2, 8)),
    (lambda q: q.offset(3).limit(10)[2:5], (5, 3)),
    (lambda q: q.limit(0)[1:], (1, 0)),
    (lambda q: q[10:20][1:3][1:], (12, 1)),
    (lambda q: q.limit(None), (0, None)),
])
def test_slicing_arithmetic(build: Any, expected: tuple[int, int | None]) -> None:
    assert window(build(User.objects)) == expected


slices = st.tuples(st.one_of(st.none(), st.integers(0, 30)),
                   st.one_of(st.none(), st.integers(0, 30)))


@settings(max_examples=300)
@given(st.lists(slices, min_size=1, max_size=4), st.integers(0, 40))
def test_slicing_matches_python_list_slicing(chain: list[tuple[int | None, int | None]],
                                             total: int) -> None:
    rows = list(range(total))
    expected = rows
    qs = User.objects
    for start, stop in chain:
        expected = expected[start:stop]
        qs = qs[start:stop]
    offset, limit = window(qs)
    got = rows[offset:] if limit is None else rows[offset:offset + limit]
    assert got == expected


@pytest.mark.parametrize("bad", [
    lambda q: q[-1:], lambda q: q[:-1], lambda q: q[::2], lambda q: q.limit(-1),
    lambda q: q.limit(True), lambda q: q.limit(1.5), lambda q: q.offset(-1),
    lambda q: q.offset(None), lambda q: q.offset(False),
])
def test_bad_windows(bad: Any) -> None:
    with pytest.raises(QueryError):
        bad(User.objects)


def test_integer_index_is_refused() -> None:
    with pytest.raises(TypeError):
        User.objects[3]  # noqa: B018


# -- ordering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("age",), (Ordering("age"),)),
    (("-age",), (Ordering("age", True),)),
    (("+age",), (Ordering("age"),)),
    (("-age", "name"), (Ordering("age", True), Ordering("name"))),
    ((User.age,), (Ordering("age"),)),
    ((-User.age,), (Ordering("age", True),)),
    ((User.age.desc(), User.name.asc()), (Ordering("age", True), Ordering("name"))),
    (("id",), (Ordering("id"),)),
    (("-id",), (Ordering("id", True),)),
    (("score", "balance", "token", "joined", "active"),
     tuple(Ordering(n) for n in ("score", "balance", "token", "joined", "active"))),
    ((), ()),
])
def test_order_by(args: tuple[Any, ...], expected: tuple[Ordering, ...]) -> None:
    assert User.objects.order_by(*args).spec.order == expected


def test_order_by_replaces_the_previous_ordering() -> None:
    assert User.objects.order_by("age").order_by("-name").spec.order == (Ordering("name", True),)


@pytest.mark.parametrize("bad", ["nope", "-nope", "tags", "-data", "data", 5, None])
def test_order_by_validation(bad: Any) -> None:
    with pytest.raises(QueryError) as info:
        User.objects.order_by(bad)
    if isinstance(bad, str):
        assert "User" in str(info.value) and bad.lstrip("-") in str(info.value)


# -- cursors -----------------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    qs = User.objects.order_by("-age", "name")
    doc = User(id="42", name="ann", age=7)
    cursor = qs.cursor_for(doc)
    assert isinstance(cursor, str) and "=" not in cursor
    resumed = qs.after(cursor)
    assert resumed.spec.after == (sortable.encode_number(7), sortable.encode_str("ann"),
                                  sortable.id_key("42"))
    assert resumed.spec.order == qs.spec.order
    # the cursor survives filtering and slicing, but not a new ordering
    assert resumed.filter(age__lt=100)[:5].spec.after == resumed.spec.after
    assert resumed.order_by("-age", "name").spec.after is None
    assert resumed.after(None).spec.after is None


def test_cursor_of_a_null_value_and_odd_ids() -> None:
    qs = User.objects.order_by("name")
    for some_id in ["x:{y}*%", "é", "0", "a\x00b"]:
        cursor = qs.cursor_for(User(id=some_id))
        assert qs.after(cursor).spec.after == (sortable.NULL, sortable.id_key(some_id))


def test_cursor_without_ordering_is_the_id() -> None:
    qs = User.objects.filter(age=1)
    assert qs.after(qs.cursor_for(User(id="5"))).spec.after == (sortable.id_key("5"),)


@pytest.mark.parametrize(("make_on", "use_on"), [
    (lambda: User.objects.order_by("age"), lambda: User.objects.order_by("name")),
    (lambda: User.objects.order_by("age"), lambda: User.objects.order_by("-age")),
    (lambda: User.objects.order_by("age"), lambda: User.objects.order_by("age", "name")),
    (lambda: User.objects.order_by("age"), lambda: User.objects),
    (lambda: User.objects, lambda: User.objects.order_by("id")),
    (lambda: Post.objects.order_by("title"), lambda: User.objects.order_by("name")),
])
def test_cursor_from_another_ordering_or_model_is_refused(make_on: Any, use_on: Any) -> None:
    source = make_on()
    doc = source.model(id="1")
    cursor = source.cursor_for(doc)
    with pytest.raises(QueryError):
        use_on().after(cursor)


@pytest.mark.parametrize("cursor", ["", "!!!", "a", "AAAA", "not base64 at all ¤",
                                    base64.urlsafe_b64encode(b"x" * 30).decode()])
def test_malformed_cursor(cursor: str) -> None:
    with pytest.raises(QueryError):
        User.objects.order_by("age").after(cursor)


def test_hostile_cursor_is_refused_promptly() -> None:
    """Cursors come back from clients. One whose netstring claims a negative length (right
    after a valid fingerprint) must raise QueryError, not loop forever inside unpack_list."""
    code = textwrap.dedent("""
        import base64, resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from quantumorm import Document, IntField, QueryError

        class User(Document):
            age = IntField(indexed=True)

        qs = User.objects.order_by("age")
        raw = qs._fingerprint() + b"-3:"
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        try:
            qs.after(cursor)
        except QueryError:
            print("QueryError")
        else:
            print("accepted")
    """)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("after() with a cursor holding a negative netstring length never returned "
                    "(sortable.unpack_list loops forever)")
    assert result.stdout.strip() == "QueryError", (result.stdout, result.stderr[-2000:])
