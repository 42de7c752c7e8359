"""Fields: cleaning, constraints, storage round trips, sort keys and declaration errors."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumorm import (
    ArrayField,
    BooleanField,
    ConfigurationError,
    DateTimeField,
    DecimalField,
    DictField,
    FloatField,
    IntField,
    JSONField,
    ListField,
    StringField,
    UUIDField,
    sortable,
)
from quantumorm.fields import MISSING, Field, FieldValueError
from quantumorm.query.lookups import Lookup

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
U = uuid.UUID("12345678-1234-5678-1234-567812345678")


def ok(field: Field, value: Any) -> Any:
    cleaned, errors = field.validate(value)
    assert errors == [], errors
    return cleaned


def bad(field: Field, value: Any) -> str:
    _, errors = field.validate(value)
    assert len(errors) == 1, (value, errors)
    with pytest.raises(FieldValueError):
        field._check(field.clean(value))
    return errors[0]


# -- accepted values and their cleaned form ------------------------------------------------

ACCEPTED: list[tuple[str, Field, Any, Any]] = [
    ("str", StringField(), "hello", "hello"),
    ("str-empty", StringField(), "", ""),
    ("str-nul", StringField(), "a\x00b", "a\x00b"),
    ("str-unicode", StringField(), "😀é", "😀é"),
    ("int", IntField(), 5, 5),
    ("int-big", IntField(), 2**64 + 1, 2**64 + 1),
    ("int-neg", IntField(), -(2**70), -(2**70)),
    ("float", FloatField(), 1.5, 1.5),
    ("float-from-int", FloatField(), 3, 3.0),
    ("float-neg-zero", FloatField(), -0.0, -0.0),
    ("float-subnormal", FloatField(), 5e-324, 5e-324),
    ("decimal", DecimalField(), Decimal("1.10"), Decimal("1.10")),
    ("decimal-from-int", DecimalField(), 7, Decimal(7)),
    ("decimal-from-str", DecimalField(), "12345678901234567890.123456789",
     Decimal("12345678901234567890.123456789")),
    ("decimal-exp", DecimalField(), "1E+30", Decimal("1E+30")),
    ("bool-true", BooleanField(), True, True),
    ("bool-false", BooleanField(), False, False),
    ("uuid", UUIDField(), U, U),
    ("uuid-str", UUIDField(), str(U), U),
    ("uuid-upper", UUIDField(), str(U).upper(), U),
    ("uuid-hex", UUIDField(), U.hex, U),
    ("uuid-braces", UUIDField(), "{" + str(U) + "}", U),
    ("uuid-urn", UUIDField(), U.urn, U),
    ("dt-aware", DateTimeField(), dt.datetime(2024, 1, 1, 5, 30, tzinfo=IST),
     dt.datetime(2024, 1, 1, 5, 30, tzinfo=IST)),
    ("dt-iso-offset", DateTimeField(), "2024-01-01T05:30:00+05:30",
     dt.datetime(2024, 1, 1, 5, 30, tzinfo=IST)),
    ("dt-iso-z", DateTimeField(), "2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("dt-iso-micro", DateTimeField(), "2024-01-01T00:00:00.000001+00:00",
     dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ("dt-year-1", DateTimeField(), dt.datetime(1, 1, 1, tzinfo=UTC),
     dt.datetime(1, 1, 1, tzinfo=UTC)),
    ("dt-year-9999", DateTimeField(), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
     dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("json-dict", JSONField(), {"a": [1, 2.5, None, True, "x"]}, {"a": [1, 2.5, None, True, "x"]}),
    ("json-list", JSONField(), [1, "a"], [1, "a"]),
    ("json-str", JSONField(), "s", "s"),
    ("json-num", JSONField(), 3.5, 3.5),
    ("json-bool", JSONField(), False, False),
    ("array", ArrayField(IntField()), [1, 2, 2], [1, 2, 2]),
    ("array-tuple", ArrayField(IntField()), (1, 2), [1, 2]),
    ("array-empty", ArrayField(StringField()), [], []),
    ("array-clean-items", ArrayField(DateTimeField()), ["2024-01-01T00:00:00"],
     [dt.datetime(2024, 1, 1, tzinfo=UTC)]),
    ("array-nested", ArrayField(ArrayField(IntField())), [[1], []], [[1], []]),
]


@pytest.mark.parametrize(("field", "value", "expected"), [a[1:] for a in ACCEPTED],
                         ids=[a[0] for a in ACCEPTED])
def test_accepted_values_are_cleaned(field: Field, value: Any, expected: Any) -> None:
    cleaned = ok(field, value)
    assert cleaned == expected
    assert type(cleaned) is type(expected)
    if isinstance(expected, dt.datetime):
        assert cleaned.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(("field", "value", "expected"), [a[1:] for a in ACCEPTED],
                         ids=[a[0] for a in ACCEPTED])
def test_storage_round_trip_through_json(field: Field, value: Any, expected: Any) -> None:
    cleaned = ok(field, value)
    stored = field.to_storage(cleaned)
    text = json.dumps(stored, allow_nan=False)
    back = field.from_storage(json.loads(text))
    assert back == cleaned
    assert field.sort_key(back) == field.sort_key(cleaned)
    if isinstance(cleaned, Decimal):
        assert str(back) == str(cleaned)  # every digit and the exponent are kept
    if isinstance(cleaned, dt.datetime):
        assert back.utcoffset() == cleaned.utcoffset()


def test_none_passes_through_storage() -> None:
    for field in [StringField(), IntField(), DecimalField(), UUIDField(), DateTimeField(),
                  ArrayField(IntField()), JSONField()]:
        assert field.validate(None) == (None, [])
        assert field.to_storage(None) is None
        assert field.from_storage(None) is None
        assert field.index_keys(None) == [sortable.NULL]


def test_specific_storage_forms() -> None:
    assert DecimalField().to_storage(Decimal("1.00")) == "1.00"
    assert DecimalField().to_storage(Decimal("-1E+3")) == "-1E+3"
    assert UUIDField().to_storage(U) == "12345678-1234-5678-1234-567812345678"
    assert DateTimeField().to_storage(dt.datetime(2024, 1, 1, 5, 30, tzinfo=IST)) == (
        "2024-01-01T05:30:00+05:30")
    assert ArrayField(UUIDField()).to_storage([U]) == [str(U)]
    assert ArrayField(DecimalField()).from_storage(["1.50"]) == [Decimal("1.50")]


# -- rejected values ------------------------------------------------------------------------

REJECTED: list[tuple[str, Field, Any]] = [
    ("str-int", StringField(), 5),
    ("str-bytes", StringField(), b"x"),
    ("str-surrogate", StringField(), "\ud800"),
    ("int-bool", IntField(), True),
    ("int-false", IntField(), False),
    ("int-float", IntField(), 1.0),
    ("int-str", IntField(), "1"),
    ("int-decimal", IntField(), Decimal("1")),
    ("float-bool", FloatField(), True),
    ("float-str", FloatField(), "1.5"),
    ("float-nan", FloatField(), float("nan")),
    ("float-inf", FloatField(), float("inf")),
    ("float-minus-inf", FloatField(), float("-inf")),
    ("float-too-big-int", FloatField(), 10**400),
    ("float-decimal", FloatField(), Decimal("1.5")),
    ("decimal-float", DecimalField(), 1.5),
    ("decimal-bool", DecimalField(), True),
    ("decimal-garbage", DecimalField(), "abc"),
    ("decimal-nan-str", DecimalField(), "NaN"),
    ("decimal-nan", DecimalField(), Decimal("NaN")),
    ("decimal-snan", DecimalField(), Decimal("sNaN")),
    ("decimal-inf", DecimalField(), "Infinity"),
    ("decimal-huge-exponent", DecimalField(), Decimal("1E+5000000000")),
    ("decimal-list", DecimalField(), [1]),
    ("bool-int", BooleanField(), 1),
    ("bool-zero", BooleanField(), 0),
    ("bool-str", BooleanField(), "true"),
    ("uuid-garbage", UUIDField(), "not-a-uuid"),
    ("uuid-int", UUIDField(), 123),
    ("uuid-bytes", UUIDField(), U.bytes),
    ("dt-garbage", DateTimeField(), "yesterday"),
    ("dt-bad-month", DateTimeField(), "2024-13-01T00:00:00"),
    ("dt-date", DateTimeField(), dt.date(2024, 1, 1)),
    ("dt-int", DateTimeField(), 1700000000),
    ("dt-year-1-east", DateTimeField(), dt.datetime(1, 1, 1, tzinfo=IST)),
    ("dt-year-9999-west", DateTimeField(),
     dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
    ("json-nan", JSONField(), float("nan")),
    ("json-inf-nested", JSONField(), {"a": [float("inf")]}),
    ("json-set", JSONField(), {1, 2}),
    ("json-object", JSONField(), object()),
    ("json-bytes", JSONField(), b"x"),
    ("array-str", ArrayField(StringField()), "abc"),
    ("array-bytes", ArrayField(IntField()), b"ab"),
    ("array-dict", ArrayField(StringField()), {"a": 1}),
    ("array-int", ArrayField(IntField()), 5),
    ("array-none-item", ArrayField(IntField()), [1, None]),
    ("array-bad-item", ArrayField(IntField()), [1, "x"]),
    ("array-item-constraint", ArrayField(StringField(max_length=2)), ["ok", "too long"]),
    ("array-item-choices", ArrayField(StringField(choices=["a", "b"])), ["a", "c"]),
]


@pytest.mark.parametrize(("field", "value"), [r[1:] for r in REJECTED],
                         ids=[r[0] for r in REJECTED])
def test_rejected_values(field: Field, value: Any) -> None:
    message = bad(field, value)
    assert message


def test_array_accepts_any_iterable_of_items() -> None:
    assert ok(ArrayField(IntField()), (i for i in range(3))) == [0, 1, 2]
    assert ok(ArrayField(StringField()), ("a", "b")) == ["a", "b"]


def test_array_item_errors_name_the_position() -> None:
    assert bad(ArrayField(IntField()), [1, 2, "x"]).startswith("item 2 ")
    assert bad(ArrayField(IntField()), [None]).startswith("item 0 ")


def test_datetime_naive_is_utc() -> None:
    cleaned = ok(DateTimeField(), dt.datetime(2024, 5, 6, 7, 8, 9, 10))
    assert cleaned.tzinfo is not None and cleaned.utcoffset() == dt.timedelta(0)
    assert cleaned == dt.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
    assert ok(DateTimeField(), "2024-05-06T07:08:09") == dt.datetime(2024, 5, 6, 7, 8, 9,
                                                                     tzinfo=UTC)
    assert ok(DateTimeField(), "2024-05-06") == dt.datetime(2024, 5, 6, tzinfo=UTC)


def test_datetime_sort_key_is_the_instant() -> None:
    f = DateTimeField()
    a = ok(f, "2024-01-01T05:30:00+05:30")
    b = ok(f, "2024-01-01T00:00:00")
    assert a == b and f.sort_key(a) == f.sort_key(b)
    assert f.to_storage(a) != f.to_storage(b)  # the offset is kept in storage


@settings(max_examples=200)
@given(st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31)),
       st.integers(-(24 * 3600 - 1), 24 * 3600 - 1))
def test_datetime_storage_round_trip_property(naive: dt.datetime, offset_seconds: int) -> None:
    f = DateTimeField()
    value = naive.replace(tzinfo=dt.timezone(dt.timedelta(seconds=offset_seconds)))
    cleaned = ok(f, value)
    back = f.from_storage(json.loads(json.dumps(f.to_storage(cleaned))))
    assert back == cleaned and back.utcoffset() == cleaned.utcoffset()
    assert f.sort_key(back) == f.sort_key(cleaned)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_storage_keeps_every_digit(value: Decimal) -> None:
    f = DecimalField()
    cleaned = ok(f, value)
    back = f.from_storage(json.loads(json.dumps(f.to_storage(cleaned))))
    assert back == cleaned and str(back) == str(cleaned)


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_int_storage_is_exact(value: int) -> None:
    f = IntField()
    assert f.from_storage(json.loads(json.dumps(f.to_storage(ok(f, value))))) == value


def test_int_field_values_of_any_size_can_be_stored() -> None:
    """IntField documents "an integer of any size; exact in storage". A value clean() accepts
    must have a JSON storage form that reads back exactly (or be refused by validate())."""
    f = IntField()
    for value in (10**4299, -(10**4299), 10**5000, -(10**5000)):
        cleaned, errors = f.validate(value)
        if errors:
            continue  # refusing it cleanly is acceptable
        text = json.dumps(f.to_storage(cleaned))
        assert f.from_storage(json.loads(text)) == value
        assert f.sort_key(cleaned) == sortable.encode_number(value)
    assert f.validate(10**4299)[1] == []  # large integers are still accepted


# -- constraints ----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "good", "bad_values"), [
    (StringField(min_length=2), ["ab", "abc"], ["", "a"]),
    (StringField(max_length=3), ["", "abc", "😀😀😀"], ["abcd", "😀😀😀😀"]),
    (StringField(min_length=2, max_length=2), ["ab"], ["a", "abc"]),
    (StringField(regex=r"[a-z]+"), ["abc"], ["", "abc1", "1abc", "ABC"]),
    (StringField(regex=re.compile(r"\d{3}")), ["123"], ["1234", "12", "a123"]),
    (StringField(regex=r"a|ab"), ["a", "ab"], ["abc", "b"]),  # fullmatch, not match
    (StringField(choices=["x", "y"]), ["x", "y"], ["z", "X"]),
    (IntField(min_value=0), [0, 10**30], [-1]),
    (IntField(max_value=10), [10, -(10**30)], [11]),
    (IntField(min_value=-5, max_value=5), [-5, 0, 5], [-6, 6]),
    (IntField(choices=[1, 2]), [1, 2], [3]),
    (FloatField(min_value=0.5), [0.5, 1], [0.4999, -1]),
    (FloatField(max_value=0), [0, -0.0, -1e300], [5e-324]),
    (DecimalField(min_value="0.01"), [Decimal("0.01"), "0.010", 1], [Decimal("0.00999"), 0]),
    (DecimalField(max_value=Decimal("1.00")), [Decimal("1"), "0.5"], ["1.0000001"]),
    (DecimalField(choices=["1.0", "2"]), [Decimal("1"), "1.00", 2], ["3"]),
    (ArrayField(IntField(), min_items=1), [[1], [1, 2]], [[]]),
    (ArrayField(IntField(), max_items=2), [[], [1, 2]], [[1, 2, 3]]),
    (ArrayField(IntField(min_value=0)), [[0, 1]], [[0, -1]]),
    (UUIDField(choices=[U]), [U, str(U)], [uuid.UUID(int=0)]),
    (BooleanField(choices=[True]), [True], [False]),
])
def test_constraints(field: Field, good: list[Any], bad_values: list[Any]) -> None:
    for value in good:
        ok(field, value)
    for value in bad_values:
        _, errors = field.validate(value)
        assert errors, value


def test_required() -> None:
    assert StringField(required=True).validate(None) == (None, ["is required"])
    assert StringField(required=True).validate("") == ("", [])
    assert StringField().validate(None) == (None, [])


def test_constraint_messages_quote_the_value() -> None:
    assert "'a'" in bad(StringField(min_length=2), "a")
    assert "'abc1'" in bad(StringField(regex=r"[a-z]+"), "abc1")
    assert "-1" in bad(IntField(min_value=0), -1)
    _, errors = StringField(choices=["x"]).validate("z")
    assert len(errors) == 1 and "'z'" in errors[0] and "'x'" in errors[0]


# -- lookups and capabilities ---------------------------------------------------------------


@pytest.mark.parametrize(("field", "allowed", "refused"), [
    (StringField(), {"exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains",
                     "startswith", "endswith", "isnull"}, set()),
    (IntField(), {"exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"},
     {"contains", "startswith", "endswith"}),
    (DateTimeField(), {"gt", "lte"}, {"contains", "startswith"}),
    (BooleanField(), {"exact", "ne", "in", "nin", "isnull"}, {"gt", "gte", "lt", "lte",
                                                              "contains", "startswith"}),
    (UUIDField(), {"exact", "in"}, {"gt", "startswith"}),
    (JSONField(), {"exact", "ne", "isnull"}, {"in", "nin", "gt", "contains"}),
    (ArrayField(IntField()), {"exact", "ne", "contains", "isnull"}, {"in", "gt", "startswith"}),
])
def test_lookups(field: Field, allowed: set[str], refused: set[str]) -> None:
    names = {lookup.value for lookup in field.lookups}
    assert allowed <= names
    assert not refused & names


def test_sortability_and_indexability() -> None:
    assert JSONField.indexable is False and JSONField.sortable is False
    assert ArrayField(IntField()).sortable is False
    assert ArrayField(IntField()).indexable is True
    for cls in (StringField, IntField, FloatField, DecimalField, BooleanField, UUIDField,
                DateTimeField):
        assert cls().sortable and cls().indexable
    assert DictField is JSONField and ListField is ArrayField
    assert ArrayField(IntField()).type_name == "array of integer"
    assert Lookup.CONTAINS in ArrayField(IntField()).lookups


def test_json_sort_key_is_canonical() -> None:
    f = JSONField()
    assert f.sort_key({"a": 1, "b": [1, 2]}) == f.sort_key({"b": [1, 2], "a": 1})
    assert f.sort_key([1, 2]) != f.sort_key([2, 1])
    assert f.sort_key("1") != f.sort_key(1)


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(json_like)
def test_json_values_accepted_by_clean_have_a_sort_key_and_read_back(value: Any) -> None:
    """exact/ne on a JSONField compare sort keys, so every value clean() accepts needs one.
    A dict mixing int and str keys is JSON-serialisable (json turns 1 into "1"), but
    ``sort_keys=True`` cannot order its keys."""
    f = JSONField()
    cleaned, errors = f.validate(value)
    if errors:
        return
    assert f.sort_key(cleaned).endswith(b"\x00")
    back = f.from_storage(json.loads(json.dumps(f.to_storage(cleaned))))
    assert f.sort_key(back) == f.sort_key(cleaned)


def test_json_dict_with_mixed_key_types() -> None:
    f = JSONField()
    cleaned, errors = f.validate({1: "a", "b": 2})
    if not errors:
        assert f.sort_key(cleaned).endswith(b"\x00")


def test_array_index_keys_are_distinct_and_sorted() -> None:
    f = ArrayField(StringField())
    keys = f.index_keys(["b", "a", "b", "a\x00"])
    assert keys == sorted({sortable.encode_str(s) for s in ["a", "b", "a\x00"]})
    assert f.index_keys([]) == []
    assert f.index_keys(None) == [sortable.NULL]


@pytest.mark.parametrize(("a", "b"), [
    (["a", "b"], ["ab"]), (["a", "b"], ["b", "a"]), (["a"], ["a", ""]), ([], [""]),
    (["a\x00"], ["a", ""]), (["a\x00b"], ["a", "b"]),
])
def test_array_sort_key_distinguishes_lists(a: list[str], b: list[str]) -> None:
    f = ArrayField(StringField())
    assert f.sort_key(a) != f.sort_key(b)
    assert f.sort_key(list(a)) == f.sort_key(a)


@given(st.lists(st.text(max_size=3), max_size=4), st.lists(st.text(max_size=3), max_size=4))
def test_array_sort_key_is_injective(a: list[str], b: list[str]) -> None:
    f = ArrayField(StringField())
    assert (a == b) == (f.sort_key(a) == f.sort_key(b))


# -- declarations ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: StringField(min_length=5, max_length=2),
    lambda: StringField(min_length=-1),
    lambda: StringField(max_length=-1),
    lambda: StringField(max_length=True),
    lambda: StringField(min_length="1"),
    lambda: StringField(max_length=2.0),
    lambda: StringField(regex="("),
    lambda: StringField(regex="[a-"),
    lambda: StringField(default=5),
    lambda: StringField(max_length=2, default="abc"),
    lambda: StringField(regex=r"\d+", default="x"),
    lambda: StringField(choices=[]),
    lambda: StringField(choices=["a", 1]),
    lambda: StringField(choices=["a", "toolong"], max_length=3),
    lambda: IntField(min_value=5, max_value=1),
    lambda: IntField(min_value="0"),
    lambda: IntField(min_value=1.5),
    lambda: IntField(max_value=True),
    lambda: IntField(default="3"),
    lambda: IntField(default=True),
    lambda: IntField(min_value=0, default=-1),
    lambda: FloatField(min_value=float("nan")),
    lambda: FloatField(max_value=float("inf")),
    lambda: FloatField(default=float("nan")),
    lambda: DecimalField(min_value=0.1),
    lambda: DecimalField(default=1.5),
    lambda: DecimalField(min_value="2", max_value="1"),
    lambda: BooleanField(default=1),
    lambda: UUIDField(default="nope"),
    lambda: DateTimeField(default="not a date"),
    lambda: JSONField(default=float("nan")),
    lambda: JSONField(indexed=True),
    lambda: JSONField(unique=True),
    lambda: ArrayField(int),
    lambda: ArrayField("StringField"),
    lambda: ArrayField(JSONField(), indexed=True),
    lambda: ArrayField(ArrayField(IntField()), indexed=True),
    lambda: ArrayField(IntField(), default=[1, None]),
    lambda: ArrayField(IntField(), max_items=1, default=[1, 2]),
    lambda: StringField(required="yes"),
    lambda: StringField(indexed=1),
    lambda: StringField(unique="yes"),
    lambda: StringField(db_field="1abc"),
    lambda: StringField(db_field="a-b"),
    lambda: StringField(db_field="a b"),
    lambda: StringField(db_field=""),
    lambda: StringField(db_field=5),
])
def test_bad_declarations_raise_configuration_error(make: Any) -> None:
    with pytest.raises(ConfigurationError):
        make()


# Declarations the module's contract says are mistakes, but which are accepted today.
@pytest.mark.parametrize("make", [
    pytest.param(lambda: StringField(regex=123), id="regex-not-a-pattern"),
    pytest.param(lambda: StringField(choices=["a", "b"], default="c"), id="default-not-a-choice"),
    pytest.param(lambda: IntField(choices=[1, 2], default=3), id="int-default-not-a-choice"),
    pytest.param(lambda: StringField(indexed=True, unique="yes"), id="unique-not-bool-indexed"),
    pytest.param(lambda: ArrayField(JSONField(), unique=True), id="unique-array-of-json"),
    pytest.param(lambda: ArrayField(ArrayField(IntField()), unique=True),
                 id="unique-array-of-arrays"),
    pytest.param(lambda: ArrayField(IntField(), min_items=5, max_items=2), id="min-items-gt-max"),
    pytest.param(lambda: ArrayField(IntField(), min_items=-1), id="negative-min-items"),
    pytest.param(lambda: ArrayField(IntField(), max_items="3"), id="max-items-not-int"),
])
def test_more_bad_declarations_raise_configuration_error(make: Any) -> None:
    with pytest.raises(ConfigurationError):
        make()


def test_good_declarations() -> None:
    f = StringField(indexed=True, unique=True, db_field="e_mail", help_text="x")
    assert f.indexed and f.unique and f.db_field == "e_mail"
    assert StringField(unique=True).indexed is True
    assert StringField().indexed is False and StringField().unique is False
    assert ArrayField(IntField).field.__class__ is IntField
    assert ArrayField(StringField(), indexed=True).indexed
    assert DecimalField(default="1.50").default == Decimal("1.50")
    assert DateTimeField(default="2024-01-01T00:00:00").default == dt.datetime(2024, 1, 1,
                                                                                tzinfo=UTC)
    assert IntField(min_value=0, max_value=0).min_value == 0
    assert FloatField(min_value=1).min_value == 1.0
    assert StringField(choices=("a", "b")).choices == ("a", "b")
    assert StringField(default=None).initial() is None


def test_initial_values() -> None:
    assert StringField().default is MISSING
    assert StringField().initial() is None
    assert StringField(default="x").initial() == "x"
    calls: list[int] = []

    def factory() -> list[int]:
        calls.append(1)
        return [len(calls)]

    f = ArrayField(IntField(), default=factory)
    assert f.initial() == [1] and f.initial() == [2]
    shared = ArrayField(IntField(), default=[1, 2])
    first, second = shared.initial(), shared.initial()
    first.append(3)
    assert second == [1, 2] and shared.initial() == [1, 2]
    j = JSONField(default={"a": []})
    j.initial()["a"].append(1)
    assert j.initial() == {"a": []}


# -- bad input: typed errors, never RecursionError / UnicodeEncodeError / ValueError ---------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_json_depth_limit_is_exact_and_named() -> None:
    from quantumorm.fields.structured import MAX_JSON_DEPTH

    assert MAX_JSON_DEPTH == 100
    f = JSONField()
    assert ok(f, _nested(MAX_JSON_DEPTH)) == _nested(MAX_JSON_DEPTH)
    assert ok(f, {"a": _nested(MAX_JSON_DEPTH - 1)})
    for depth in (MAX_JSON_DEPTH + 1, 990, 100_000):
        assert bad(f, _nested(depth)) == "is nested deeper than 100 levels"
    assert bad(DictField(), {"a": _nested(MAX_JSON_DEPTH)}) == "is nested deeper than 100 levels"
    assert bad(ListField(JSONField()), [1, _nested(101)]) == (
        "item 1 is nested deeper than 100 levels")
    # the limit holds for query values too
    with pytest.raises(FieldValueError):
        f.clean(_nested(MAX_JSON_DEPTH + 1))


def test_json_containers_that_hold_themselves_are_refused() -> None:
    f = JSONField()
    loop: list[Any] = []
    loop.append(loop)
    assert "contains itself" in bad(f, loop)
    cycle: dict[str, Any] = {}
    cycle["x"] = [{"y": cycle}]
    assert "contains itself" in bad(f, cycle)
    assert "value['x'][0]['y']" in bad(f, cycle)
    shared = {"k": 1}
    assert ok(f, [shared, shared, {"again": shared}]) == [{"k": 1}, {"k": 1}, {"again": {"k": 1}}]


@pytest.mark.parametrize("value", ["\ud800", ["a", "x\udfffy"], {"k": {"\udc80": 1}},
                                   {"\ud83d": "v"}])
def test_json_lone_surrogates_are_refused(value: Any) -> None:
    assert "not valid Unicode" in bad(JSONField(), value)


def test_json_valid_non_ascii_text_is_accepted() -> None:
    assert ok(JSONField(), {"é": ["😀", "\u2028", "a\x00b"]}) == {"é": ["😀", "\u2028", "a\x00b"]}


def test_json_ints_python_cannot_write_are_refused_without_repr() -> None:
    f = JSONField()
    assert ok(f, [10**4300 - 1, -(10**4300 - 1)])
    for value in (10**4300, [-(10**5000)], {"n": {"m": 10**20000}}):
        assert "more than 4300 digits" in bad(f, value)


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"a": {"b": -float("inf")}}])
def test_json_nan_and_infinities_are_refused(value: Any) -> None:
    assert "must be a finite number" in bad(JSONField(), value)


def test_messages_never_fail_on_a_value_without_repr() -> None:
    huge = 10**5000
    assert "<int of" in bad(FloatField(), huge)
    assert "<int of" in bad(ArrayField(IntField()), huge)
    assert "<int of" in bad(StringField(), huge)
    assert "<int of" in bad(DateTimeField(), huge)
    assert "too large to show" in bad(StringField(), [huge])
    assert bad(IntField(), huge) == "must have at most 4300 digits"


def test_string_field_lone_surrogate_is_refused() -> None:
    assert "valid Unicode" in bad(StringField(), "a\ud800")
    assert "valid Unicode" in bad(ArrayField(StringField()), ["ok", "\udfff"])


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01t00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 00:00:00+00:00", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T05:30:00.5+05:30", dt.datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("2024-01-01T05:30+0530", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T05+05", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00.123456-01:00", dt.datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=UTC)),
    ("20240101T000000Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("20240101T000000,25Z", dt.datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ("2024-01-01", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T10:20", dt.datetime(2024, 1, 1, 10, 20, tzinfo=UTC)),
    ("2024-01-01T00:00:01+00:00:01", dt.datetime(2024, 1, 1, tzinfo=UTC)),
])
def test_datetime_iso_strings_parse_the_same_on_every_python(text: str,
                                                              expected: dt.datetime) -> None:
    cleaned = ok(DateTimeField(), text)
    assert cleaned == expected
    assert cleaned.utcoffset() is not None


def test_datetime_iso_strings_keep_whole_minute_offsets() -> None:
    cleaned = ok(DateTimeField(), "2024-01-01T05:30:00+05:30")
    assert cleaned.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert ok(DateTimeField(), "2024-01-01T00:00:00Z").utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("text", [
    "", "2024", "2024-01", "2024-13-01", "2024-02-30", "2024-01-01T25:00", "2024-01-01T00:60",
    "2024-01-01T00:00:00.1234567", "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00 Z",
    "2024-01-01T00:00:00ZZ", "2024-01-01T00:00:00+5", "٢٠٢٤-01-01", "2024-01-01T00:00:00\n",
    "yesterday", "2024-W01-1",
])
def test_datetime_bad_iso_strings_are_refused(text: str) -> None:
    assert bad(DateTimeField(), text).startswith("must be an ISO 8601 datetime")


@pytest.mark.parametrize("offset", [
    dt.timedelta(seconds=1, microseconds=500), dt.timedelta(microseconds=1),
    -dt.timedelta(seconds=59), dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
])
def test_datetime_sub_minute_offsets_are_converted_to_utc(offset: dt.timedelta) -> None:
    f = DateTimeField()
    value = dt.datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=dt.timezone(offset))
    cleaned = ok(f, value)
    assert cleaned == value and cleaned.utcoffset() == dt.timedelta(0)
    stored = f.to_storage(cleaned)
    assert stored.endswith("+00:00")
    back = f.from_storage(json.loads(json.dumps(stored)))
    assert back == value and back.utcoffset() == dt.timedelta(0)
    assert f.sort_key(back) == f.sort_key(value) == f.sort_key(cleaned)
    assert ok(f, value.isoformat()) == value


def test_datetime_whole_minute_offsets_are_kept() -> None:
    value = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(-dt.timedelta(hours=9, minutes=30)))
    cleaned = ok(DateTimeField(), value)
    assert cleaned.utcoffset() == value.utcoffset()
    assert DateTimeField().to_storage(cleaned).endswith("-09:30")
