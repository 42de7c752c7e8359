"""Plans shared per query shape (``backends/redis/plan_shapes.py``): a plan bound from its
shape's template must be, field for field, the plan the planner makes for those values;
shapes whose plan depends on how their values compare get no template; hot shapes plan once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
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
    StringField,
)
from quantumorm.backends.redis import plan_shapes, wire
from quantumorm.backends.redis.planner import Plan, Planner
from quantumorm.query.nodes import Condition, QuerySpec


class Stall(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    f = FloatField(indexed=True)
    d = DecimalField(indexed=True)
    t = DateTimeField(indexed=True)
    b = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    u = StringField()
    c = IntField()
    j = JSONField()  # (no index: checked in Python, on the plan's residual)

    class Meta:
        collection = "stall"
        indexes = [("s", "n"), ("c", "b")]


objects = Stall.objects
text = st.text(max_size=6)
ints = st.integers(-10**20, 10**20)
floats = st.floats(allow_nan=False, allow_infinity=False)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=3)
times = st.datetimes(timezones=st.just(dt.timezone.utc))

#: query shapes, each a function of two values, and the strategy of those values
SHAPES: dict[str, tuple[Callable[[Any, Any], Any], st.SearchStrategy[Any]]] = {
    "eq": (lambda a, b: objects.filter(s=a), text),
    "ne": (lambda a, b: objects.filter(n__ne=a), ints),
    "range": (lambda a, b: objects.filter(n__gte=a, n__lt=b).order_by("n").limit(100), ints),
    "range desc": (lambda a, b: objects.filter(f__gt=a, f__lte=b).order_by("-f"), floats),
    "decimal": (lambda a, b: objects.filter(d__lte=a), decimals),
    "time": (lambda a, b: objects.filter(t__gt=a).order_by("t"), times),
    "prefix": (lambda a, b: objects.filter(s__startswith=a), text),
    "element": (lambda a, b: objects.filter(tags__contains=a, b=True), text),
    "or": (lambda a, b: objects.filter(Q(n=a) | Q(n__gt=b)), ints),
    "not": (lambda a, b: objects.exclude(n=a).filter(b=False), ints),
    "residual": (lambda a, b: objects.filter(s=a, u=b), text),
    "id": (lambda a, b: objects.filter(id=a or "x", s=b), text),
    "ordered by another": (lambda a, b: objects.filter(n=a).order_by("s"), ints),
    # a compound index's prefix mixes two values in one token: no template
    "compound": (lambda a, b: objects.filter(s=a, n=b), st.integers(0, 9).map(str)),
    # the planner keeps the tighter bound: which one depends on the values
    "same side": (lambda a, b: objects.filter(n__gt=a, n__gte=b), ints),
    "equal and bound": (lambda a, b: objects.filter(s=a, s__startswith=b), text),
}


def _check_same(shared: Plan, fresh: Plan) -> None:
    assert shared.tokens == fresh.tokens
    assert shared.program == fresh.program == wire.program(fresh.tokens)
    assert shared.driver == fresh.driver  # (kinds, bodies, ranges, covers, children)
    assert shared.pred == fresh.pred and shared.need == fresh.need
    assert shared.order == fresh.order and shared.after == fresh.after
    assert shared.server_order == fresh.server_order
    assert shared.residual == fresh.residual
    assert shared.server_filter == fresh.server_filter and shared.tests == fresh.tests


def _values(name: str, a: Any, b: Any) -> tuple[Any, Any]:
    if name == "compound":
        return a, int(a)
    return a, b


@pytest.mark.parametrize("name", sorted(SHAPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_bound_plan_is_the_plan_of_its_values(name: str, data: st.DataObject) -> None:
    build, values = SHAPES[name]
    shared, reference = Planner(Stall._meta), Planner(Stall._meta)
    for counting in (False, True):
        for _ in range(6):
            a, b = _values(name, data.draw(values), data.draw(values))
            spec = build(a, b).spec
            _check_same(shared.plan(spec, counting), reference._plan(spec, counting))


def test_a_hot_shape_is_planned_twice_then_bound() -> None:
    planner = Planner(Stall._meta)
    for i in range(50):
        planner.plan(objects.filter(s=f"name{i}").spec)
        planner.plan(objects.filter(n__gte=i, n__lt=i + 10).order_by("n").limit(100).spec)
        planner.plan(objects.filter(n=i, u=f"x{i}").spec)  # u: checked in Python
    # two plans of each shape teach its template; the other 48 are bound
    assert planner.counts == {"planned": 6, "bound": 144}


def test_shapes_without_a_template_are_planned_per_value() -> None:
    planner = Planner(Stall._meta)
    for i in range(10):
        planner.plan(objects.filter(n__gt=i, n__gte=20 - i).spec)  # the tighter one flips
        planner.plan(objects.filter(s=str(i), n=i).spec)  # a compound prefix
        planner.plan(objects.filter(n__in=[i, i + 1]).spec)  # a list: shapeless
    assert planner.counts == {"planned": 30, "bound": 0}


def test_zero_and_negative_zero_keep_their_own_plan_text() -> None:
    # 0.0 == -0.0 (and they hash alike): the per-values cache must not answer one for the
    # other, whose explain() text would show the other's value
    planner, reference = Planner(Stall._meta), Planner(Stall._meta)
    for a, b in [(0.0, 0.0), (0.0, 0.0), (0.0, -0.0), (-0.0, 0.0), (1.5, -0.0)]:
        spec = objects.filter(f__gt=a, f__lte=b).order_by("-f").spec
        _check_same(planner.plan(spec), reference._plan(spec, False))


def test_equal_values_of_another_text_keep_their_own_plan_text() -> None:
    # a datetime with fold=1, the same instant in another time zone and Decimal("1.00") are
    # equal to (and hash like) the value before them: each keeps its own explain() text
    plus_one = dt.timezone(dt.timedelta(hours=1))
    cases = [("t", dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)),
             ("t", dt.datetime(2024, 1, 1, 12, fold=1, tzinfo=dt.timezone.utc)),
             ("t", dt.datetime(2024, 1, 1, 13, tzinfo=plus_one)),
             ("d", Decimal("1.0")), ("d", Decimal("1.00"))]
    planner, reference = Planner(Stall._meta), Planner(Stall._meta)
    for _ in range(3):  # twice to teach the shape, then bound
        for name, value in cases:
            spec = objects.filter(**{f"{name}__gt": value}).spec
            _check_same(planner.plan(spec), reference._plan(spec, False))


def test_a_first_example_with_equal_values_is_not_the_shapes_last_chance() -> None:
    planner = Planner(Stall._meta)
    # n=1 and d=1 sort as the same bytes: which condition made that token cannot be told
    planner.plan(objects.filter(n=1, d=Decimal(1)).spec)
    for i in range(2, 50):
        planner.plan(objects.filter(n=i, d=Decimal(i + 100)).spec)
    assert planner.counts == {"planned": 3, "bound": 46}  # learnt from the next pair


def test_values_fixed_by_the_shape_and_repeats() -> None:
    planner = Planner(Stall._meta)
    # True and False are two shapes (the planner branches on them); 0 and False too
    for flag in (True, False, True, False):
        planner.plan(objects.filter(b=flag).spec)
    assert planner.counts == {"planned": 2, "bound": 0}
    # a shape seen twice with the same value learns nothing yet (repeats hit the cache)
    planner.plan(objects.filter(n=1).spec)
    planner.plan(objects.filter(n=1).spec)  # (the same plan, cached with its values)
    planner.plan(objects.filter(n=2).spec)
    planner.plan(objects.filter(n=3).spec)
    assert planner.counts == {"planned": 4, "bound": 1}


def test_shape_keys() -> None:
    spec = objects.filter(s="x", n__gt=3, b=True).order_by("n").spec
    same = objects.filter(s="y", n__gt=-1, b=True).order_by("n").spec
    assert plan_shapes.shape(spec, False) == plan_shapes.shape(same, False)
    assert plan_shapes.shape(spec, False) != plan_shapes.shape(same, True)
    flipped = objects.filter(s="y", n__gt=-1, b=False).order_by("n").spec
    assert plan_shapes.shape(spec, False) != plan_shapes.shape(flipped, False)
    with pytest.raises(plan_shapes.Shapeless):
        plan_shapes.shape(objects.filter(n__in=[1, 2]).spec, False)
    with pytest.raises(plan_shapes.Shapeless):
        plan_shapes.shape(QuerySpec(spec.where, spec.order, after=(b"x", b"y")), False)


def test_decimal_and_time_values_bind() -> None:
    planner, reference = Planner(Stall._meta), Planner(Stall._meta)
    for i in range(5):
        for qs in (objects.filter(d__gte=Decimal(i) / 3),
                   objects.filter(t__lt=dt.datetime(2024, 1, 1 + i, tzinfo=dt.timezone.utc))):
            _check_same(planner.plan(qs.spec), reference._plan(qs.spec, False))
    assert planner.counts["bound"] == 6


def test_equal_values_of_other_types_get_their_own_plans() -> None:
    # 0, 0.0 and False are equal in Python (and hash alike) but are other JSON values: a
    # plan cached for one must not serve another (here: its residual, checked in Python)
    planner, reference = Planner(Stall._meta), Planner(Stall._meta)
    for _ in range(2):
        for value in (0, False, 0.0, 1, True, 1.0, "0"):
            spec = objects.filter(j=value).spec
            plan = planner.plan(spec)
            _check_same(plan, reference._plan(spec, False))
            assert plan.residual is not None
            assert type(plan.residual.value) is type(value)  # type: ignore[union-attr]


def test_a_template_packs_its_plans_program_from_pieces() -> None:
    # the program of a bound plan is the learnt plan's packed constants with the new values
    # packed between them: long values (other string headers) and values repeated in
    # several tokens included
    planner, reference = Planner(Stall._meta), Planner(Stall._meta)
    for value in ["a", "b", "c" * 40, "", "d" * 300, "a"]:
        spec = objects.filter(s=value, tags__contains=value + "x").order_by("s").spec
        shared = planner.plan(spec)
        assert shared.program == wire.program(reference._plan(spec, False).tokens)
    # (two plans teach the template; the last "a" is the plan cached for its values)
    assert planner.counts == {"planned": 2, "bound": 3}


def test_binding_encodes_only_the_values_its_template_reads() -> None:
    # an equality's template reads its index range; the probe and the test the planner
    # could also make of the value (each encoding it again) are not made when binding
    encoded: list[Any] = []

    class Counted(StringField):
        def sort_key(self, value: Any) -> bytes:
            encoded.append(value)
            return super().sort_key(value)

    class Tally(Document):
        name = Counted(indexed=True)

        class Meta:
            collection = "tally"

    planner, reference = Planner(Tally._meta), Planner(Tally._meta)
    for i in range(3):  # (two plans teach the template)
        planner.plan(Tally.objects.filter(name=f"n{i}").spec)
    assert planner.counts == {"planned": 2, "bound": 1}
    encoded.clear()
    spec = Tally.objects.filter(name="bound").spec
    plan = planner.plan(spec)
    assert encoded == ["bound"]
    _check_same(plan, reference._plan(spec, False))


def test_a_compiled_template_encodes_each_value_once() -> None:
    # a shape whose plan holds one value in several tokens (the element's index range of a
    # BEST choice, and its ZRNG test; the bound's range and its test): each query bound
    # from it encodes each value once, however many tokens hold it
    encoded: list[Any] = []

    class Counted(StringField):
        def sort_key(self, value: Any) -> bytes:
            encoded.append(value)
            return super().sort_key(value)

    class Counted2(IntField):
        def sort_key(self, value: Any) -> bytes:
            encoded.append(value)
            return super().sort_key(value)

    class Tally2(Document):
        name = Counted(indexed=True)
        age = Counted2(indexed=True)

        class Meta:
            collection = "tally2"

    query = lambda i: Tally2.objects.filter(name=f"n{i}", age__gt=i)  # noqa: E731
    planner, reference = Planner(Tally2._meta), Planner(Tally2._meta)
    for i in range(3):  # (two plans teach the template)
        planner.plan(query(i).spec)
    assert planner.counts == {"planned": 2, "bound": 1}
    fresh = reference._plan(query(7).spec, False)
    assert fresh.tokens.count(Counted().sort_key("n7")) + fresh.tokens.count(
        b"[" + Counted().sort_key("n7")) > 1  # (the value is in several tokens)
    encoded.clear()
    spec = query(7).spec
    plan = planner.plan(spec)
    assert sorted(map(str, encoded)) == ["7", "n7"]
    _check_same(plan, reference._plan(spec, False))


def test_a_binder_is_compiled_only_for_values_between_known_marks() -> None:
    # a value token is the value's encoding with "[", "(" or nothing before it and "\xff"
    # or nothing after it; any other token (here: a mark the lookups never make) is bound
    # by deriving it, as before
    assert plan_shapes._affixes(b"[" + b"key" + b"\xff", b"key") == (b"[", b"\xff")
    assert plan_shapes._affixes(b"key", b"key") == (b"", b"")
    assert plan_shapes._affixes(b"<key", b"key") is None
    cond_a = objects.filter(s="a").spec.where
    cond_b = objects.filter(s="b").spec.where
    assert isinstance(cond_a, Condition) and isinstance(cond_b, Condition)
    encode = Stall._meta.fields["s"].sort_key
    key_a, key_b = encode("a"), encode("b")
    pieces, cuts = plan_shapes._cut([b"X", b"<" + key_a], [b"<" + key_a])
    slots = {b"<" + key_a: (0, 0)}
    assert plan_shapes.compile_binder(pieces, cuts, slots, [[b"<" + key_a]],
                                      [[b"<" + key_b]], [cond_a], [cond_b],
                                      lambda cond: encode) is None
    pieces, cuts = plan_shapes._cut([b"X", b"(" + key_a], [b"(" + key_a])
    slots = {b"(" + key_a: (0, 0)}
    binder = plan_shapes.compile_binder(pieces, cuts, slots, [[b"(" + key_a]],
                                        [[b"(" + key_b]], [cond_a], [cond_b],
                                        lambda cond: encode)
    assert binder is not None
    cond_c = objects.filter(s="c" * 40).spec.where
    assert isinstance(cond_c, Condition)
    program, values = binder([cond_c])
    assert values == (b"(" + encode("c" * 40),)
    assert program == wire.program([b"X", b"(" + encode("c" * 40)])
