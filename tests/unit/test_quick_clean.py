"""``Field.quick_clean`` and ``Document.clean``'s use of it: the quick path gives exactly
what ``validate`` gives for the values it takes (same value, same type, a new list for an
array), and declines (``MISSING``) every value ``validate`` refuses or converts, so the
errors and conversions of the general path are unchanged."""

from __future__ import annotations

import datetime as dt
import enum
import re
import sys
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
    Document,
    EmailField,
    FloatField,
    IntField,
    StringField,
    ValidationError,
)
from quantumorm.fields import MISSING, Field, FieldValueError

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


class Moment(dt.datetime):
    pass


#: values of every kind the fields meet: right types, near misses, subclasses, edges
VALUES: list[Any] = [
    None, "", "abc", "é", "\ud800", Text("sub"), "x" * 10, 0, 1, -1, 7, 10**4299,
    10**4300, -(10**4300), True, False, Color.RED, 1.5, 0.0, -0.0, float("nan"),
    float("inf"), -float("inf"), sys.float_info.max, Decimal("1"),
    dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1, tzinfo=IST), dt.datetime(2024, 1, 1, tzinfo=dt.timezone(
        dt.timedelta(seconds=30))), Moment(2024, 1, 1, tzinfo=UTC), dt.date(2024, 1, 1),
    "2024-01-01T00:00:00Z", [], ["a", "b"], ["a", None], ["a", 1], [Text("a")], ("a", "b"),
    [1, 2], [True], {"a": 1}, b"abc",
]

FIELDS: list[Callable[[], Field]] = [
    StringField, lambda: StringField(max_length=3), lambda: StringField(min_length=1),
    lambda: StringField(min_length=1, max_length=3), lambda: StringField(regex="a.*"),
    lambda: StringField(choices=["abc"]), EmailField, IntField,
    lambda: IntField(min_value=0), lambda: IntField(max_value=5),
    lambda: IntField(min_value=-1, max_value=1), lambda: IntField(primary_key=True),
    FloatField, lambda: FloatField(min_value=0.0), lambda: FloatField(max_value=1.5),
    BooleanField, lambda: BooleanField(choices=[True]), DateTimeField,
    lambda: ArrayField(StringField()), lambda: ArrayField(StringField(max_length=1)),
    lambda: ArrayField(IntField(min_value=0)), lambda: ArrayField(StringField(), max_items=1),
    lambda: ArrayField(BooleanField()), lambda: ArrayField(DateTimeField()),
    lambda: ArrayField(FloatField()),
]


def agrees(field: Field, value: Any) -> None:
    """The quick path of ``field`` (if any) on ``value`` agrees with ``validate``."""
    quick = field.quick_clean()
    if quick is None:
        return
    cleaned, errors = field.validate(value)
    got = quick(value)
    if got is MISSING:
        return  # (declined: validate judges it, as it did before)
    assert not errors, (field, value, errors)
    assert type(got) is type(cleaned)
    assert got == cleaned
    if isinstance(value, dt.datetime):
        assert got.tzinfo is cleaned.tzinfo
    if isinstance(value, list):
        assert got is not value  # (a list of its own, as clean() makes)
        assert [type(x) for x in got] == [type(x) for x in cleaned]
    else:
        assert got is cleaned or got == cleaned


@pytest.mark.parametrize("make", FIELDS)
def test_quick_clean_agrees_with_validate(make: Callable[[], Field]) -> None:
    field = make()
    for value in VALUES:
        agrees(field, value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.booleans(), st.floats(), st.none(),
                 st.lists(st.text()), st.lists(st.integers()), st.datetimes(),
                 st.datetimes(timezones=st.just(UTC))))
def test_quick_clean_agrees_on_any_value(value: Any) -> None:
    for make in FIELDS:
        agrees(make(), value)


def test_the_plain_fields_have_a_quick_path_and_take_their_common_values() -> None:
    moment = dt.datetime(2024, 1, 1, tzinfo=UTC)
    naive = dt.datetime(2024, 1, 1)
    cases: list[tuple[Field, Any, Any]] = [
        (StringField(), "abc", "abc"), (StringField(max_length=3), "abc", "abc"),
        (IntField(), 5, 5), (IntField(min_value=0), 0, 0), (FloatField(), 1.5, 1.5),
        (BooleanField(), False, False), (DateTimeField(), moment, moment),
        (DateTimeField(), naive, moment), (ArrayField(StringField()), ["a"], ["a"]),
        (ArrayField(IntField()), [1, 2], [1, 2]),
    ]
    for field, value, expected in cases:
        quick = field.quick_clean()
        assert quick is not None, field
        assert quick(value) == expected
    # declined: values the general path converts or refuses, and the limits
    assert StringField(max_length=2).quick_clean()("abc") is MISSING  # type: ignore[misc]
    assert StringField().quick_clean()("é") is MISSING  # type: ignore[misc]
    assert IntField().quick_clean()(True) is MISSING  # type: ignore[misc]
    assert IntField().quick_clean()(10**4300) is MISSING  # type: ignore[misc]
    assert IntField(max_value=5).quick_clean()(6) is MISSING  # type: ignore[misc]
    assert FloatField().quick_clean()(float("inf")) is MISSING  # type: ignore[misc]
    assert FloatField().quick_clean()(1) is MISSING  # type: ignore[misc]
    assert DateTimeField().quick_clean()(dt.datetime(2024, 1, 1, tzinfo=IST)) is MISSING  # type: ignore[misc]  # noqa: E501
    assert ArrayField(StringField()).quick_clean()(("a",)) is MISSING  # type: ignore[misc]
    assert ArrayField(StringField()).quick_clean()(["a", None]) is MISSING  # type: ignore[misc]
    # no quick path: choices, a pattern, a subclass's own checks, a primary key, bounds
    for field in (StringField(choices=["a"]), StringField(regex="a"), EmailField(),
                  IntField(primary_key=True), ArrayField(StringField(), min_items=1),
                  ArrayField(StringField(regex="a"))):
        assert field.quick_clean() is None, field


def test_a_subclass_with_its_own_clean_has_no_quick_path() -> None:
    class Upper(StringField):
        def clean(self, value: Any) -> str:
            return super().clean(value).upper()

    class Even(IntField):
        def _check(self, value: Any) -> Any:
            if value % 2:
                raise FieldValueError(f"must be even (got {value})")
            return value

    assert Upper().quick_clean() is None
    assert Even().quick_clean() is None
    assert ArrayField(Upper()).quick_clean() is None


class Person(Document):
    name = StringField(max_length=5)
    age = IntField(min_value=0)
    active = BooleanField()
    tags = ArrayField(StringField())
    when = DateTimeField()
    score = FloatField()
    kind = StringField(choices=["a", "b"], default="a")

    class Meta:
        collection = "quick_people"


def general_clean(doc: Document) -> dict[str, Any]:
    """What clean() gave before the quick path: validate() on every field."""
    storage, problems = {}, {}
    for name, field in doc._fields.items():
        cleaned, messages = field.validate(doc.__dict__.get(name))
        if messages:
            problems[name] = [f"'{name}' {m}" for m in messages]
        else:
            storage[field.db_name] = field.to_storage(cleaned)
    if problems:
        raise ValidationError(problems, model=type(doc).__name__)
    return storage


@pytest.mark.parametrize("values", [
    {"name": "ann", "age": 3, "active": True, "tags": ["a", "b"],
     "when": dt.datetime(2024, 1, 1, tzinfo=UTC), "score": 1.5},
    {"name": "ann", "when": dt.datetime(2024, 1, 1)},  # (naive: UTC)
    {"when": dt.datetime(2024, 1, 1, tzinfo=IST), "tags": ("x",), "score": 2},
    {"name": "é", "tags": [Text("t")], "when": "2024-01-01T00:00:00Z", "age": Color.RED},
    {},
])
def test_document_clean_gives_what_validate_gives(values: dict[str, Any]) -> None:
    doc = Person(**values)
    expected = general_clean(Person(**values))
    storage = doc.clean()
    assert storage == expected
    assert [type(v) for v in storage.values()] == [type(v) for v in expected.values()]
    for name, field in Person._fields.items():  # (the cleaned values are kept)
        assert doc.__dict__[name] == field.validate(values.get(name, field.initial()))[0]
    if isinstance(values.get("tags"), list):
        assert doc.tags is not values["tags"]
        assert storage["tags"] is not doc.tags  # (the stored form is a list of its own)


@pytest.mark.parametrize("values", [
    {"name": "toolongname", "age": -1, "active": 1, "tags": ["a", None], "score": "x"},
    {"name": 5, "age": True, "tags": "abc", "when": "not a date", "kind": "c"},
    {"age": 10**4300, "score": float("nan"), "tags": [1]},
])
def test_document_clean_refuses_as_validate_does(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        Person(**values).clean()
    with pytest.raises(ValidationError) as expected:
        general_clean(Person(**values))
    assert caught.value.errors == expected.value.errors
    assert str(caught.value) == str(expected.value)


def test_construction_sets_every_field_in_order_with_defaults() -> None:
    given = Person(name="a", age=1, active=True, tags=["t"], when=None, score=None, kind="b")
    assert list(given.__dict__)[-7:] == list(Person._fields)
    assert given.kind == "b" and given.tags == ["t"]
    partial = Person(age=2)
    assert [partial.__dict__[n] for n in Person._fields] == [
        None, 2, None, None, None, None, "a"]
    with pytest.raises(Exception, match="nme"):
        Person(nme="x")  # type: ignore[call-arg]


@pytest.mark.parametrize("option, value, given, refused", [
    ("max_length", 3, {"name": "abcdef"}, "at most 3 characters"),
    ("min_length", 8, {"name": "abcdef"}, "at least 8 characters"),
    ("regex", r"^x", {"name": "abcdef"}, "must match"),
    ("choices", ("x",), {"name": "abcdef"}, "must be one of"),
    ("min_value", 5, {"n": 1}, "must be >= 5"),
    ("max_value", 0, {"n": 1}, "must be <= 0"),
    ("max_items", 1, {"tags": ["a", "b"]}, "at most 1"),
])
def test_an_option_changed_after_the_declaration_is_checked(option: str, value: Any,
                                                            given: dict[str, Any],
                                                            refused: str) -> None:
    """Document.clean's quick checks are made from the fields' options when the class is
    made; an option set later is checked as set (the plan is made again), as validate()
    checks it, never by the old rule."""

    class Changed(Document):
        name = StringField(max_length=10)
        n = IntField(min_value=0)
        tags = ArrayField(StringField())

        class Meta:
            collection = "quick_changed"

    Changed(**given).clean()  # (the old rule takes it, and made the plan)
    field = Changed._fields[next(iter(given))]
    if option == "regex":
        value = re.compile(value)
    setattr(field, option, value)
    with pytest.raises(ValidationError, match=refused):
        Changed(**given).clean()


def test_a_new_document_takes_each_fields_initial_value_as_declared_or_changed() -> None:
    """A field left out of a new document holds its initial value: a field class's own
    initial() is called (never skipped as "no default"), and a default set after the
    declaration is used."""

    class Stamped(StringField):
        def initial(self) -> Any:
            return "from initial()"

    class Fresh(Document):
        a = StringField()
        b = Stamped()
        c = IntField()

        class Meta:
            collection = "quick_fresh"

    assert (Fresh(a="x").b, Fresh(a="x").c) == ("from initial()", None)
    Fresh._fields["c"].default = 5
    assert Fresh(a="x").c == 5
