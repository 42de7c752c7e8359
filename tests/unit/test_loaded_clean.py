"""The save of a loaded document (``engine.prepared.clean``): it validates only the fields whose
value is not the one it was loaded with, through the fields' quick checks where they take
the value, and works out which stored forms changed. Whatever is assigned, it gives what the
general path gives (``clean()`` of every field, then every stored form compared): the same
stored data, the same changed fields, the same values left on the document, or the same
``ValidationError``. (Fields are loaded from data that ``clean()`` made, so every field the
quick path trusts unchanged passes ``clean()`` too.)"""

from __future__ import annotations

import copy
import datetime as dt
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
    StringField,
    ValidationError,
    jsoncodec,
)
from quantumorm.engine import prepared

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


class Loaded(Document):
    name = StringField(indexed=True, max_length=12)
    nick = StringField(db_field="nk", min_length=1)
    age = IntField(indexed=True, min_value=0)
    score = FloatField()
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    counts = ArrayField(IntField())
    weights = ArrayField(FloatField())
    maybe = ArrayField(StringField(max_length=2))
    when = DateTimeField()
    price = DecimalField()
    extra = JSONField()
    code = StringField(choices=["a", "b"])

    class Meta:
        collection = "loaded_clean"


FIRST: dict[str, Any] = {
    "name": "ann", "nick": "a", "age": 30, "score": 1.5, "active": True,
    "tags": ["x", "y"], "counts": [1, 2], "weights": [0.0, 2.5], "maybe": ["ab", "c"],
    "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "price": Decimal("1.50"),
    "extra": {"k": [1, 2]}, "code": "a"}
#: the stored form of FIRST, as a save makes it
STORED = Loaded(id="7", **FIRST).clean()

#: values assigned to fields: right types, near misses, in-place equal ones, edges
VALUES: list[Any] = [
    None, "", "ann", "é", "a" * 13, 0, 30, -1, 31, 10**4300, True, False, 1.5, 2, -0.0, 0.0,
    float("nan"), float("inf"), Decimal("1.50"), Decimal("1.5"), ["x", "y"], ["y", "x"],
    ["x", None], ["x", 1], [1, 2], [True, 2], [1.0, 2], [0.0, 2.5], [-0.0, 2.5], [0, 2.5],
    ["ab", None], ["abc"], [], ("x", "y"), {"k": [1, 2]}, {"k": [1, True]},
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), dt.datetime(2024, 1, 2, 3, 4, 5),
    dt.datetime(2024, 1, 2, 8, 34, 5, tzinfo=IST), "2024-01-02T03:04:05+00:00", "b", b"x",
]


def loaded(stored: dict[str, Any] | None = None) -> Loaded:
    return Loaded.from_storage("7", 3, copy.deepcopy(STORED if stored is None else stored))


def general(doc: Loaded) -> tuple[dict[str, Any], frozenset[str]]:
    """What a save of ``doc`` did before the loaded path: every field cleaned, every stored
    form compared."""
    data = doc.clean()
    stored = doc._stored or {}
    return data, frozenset(name for name, field in doc._fields.items()
                           if not prepared.same(stored.get(field.db_name), data.get(field.db_name)))


def outcome(run: Any, doc: Loaded) -> Any:
    try:
        data, changed = run(doc)
    except ValidationError as exc:
        return ("refused", exc.errors)
    values = {name: doc.__dict__[name] for name in doc._fields}
    return ("saved", data, changed, values)


def assert_same_outcome(change: Any) -> None:
    """``change(doc)`` on two loaded documents: the loaded path and the general path agree."""
    fast, slow = loaded(), loaded()
    change(fast)
    change(slow)
    got, expected = outcome(prepared.clean, fast), outcome(general, slow)
    assert got[0] == expected[0], (got, expected)
    if got[0] == "refused":
        assert got[1] == expected[1]
        return
    _, data, changed, values = got
    _, data2, changed2, values2 = expected
    assert changed is not None and changed == changed2
    assert data.keys() == data2.keys() and jsoncodec.same(data, data2)
    for name, value in values.items():  # (the document holds the cleaned values alike)
        assert type(value) is type(values2[name]) and (value == values2[name]
                                                      or value != value), name


def test_nothing_assigned_is_nothing_changed() -> None:
    doc = loaded()
    data, changed = prepared.clean(doc)
    assert changed == frozenset() and jsoncodec.same(data, STORED)
    assert_same_outcome(lambda doc: None)


@pytest.mark.parametrize("name", list(Loaded._fields))
def test_every_value_assigned_to_every_field_gives_the_general_answer(name: str) -> None:
    for value in VALUES:
        assert_same_outcome(lambda doc, value=value: setattr(doc, name, copy.deepcopy(value)))


def test_lists_changed_in_place_and_equal_lists_of_other_json() -> None:
    changes = [
        lambda doc: doc.tags.append("z"), lambda doc: doc.tags.__setitem__(0, 1),
        lambda doc: doc.tags.reverse(), lambda doc: doc.counts.__setitem__(0, True),
        lambda doc: doc.counts.__setitem__(0, 1.0),
        lambda doc: doc.weights.__setitem__(0, -0.0),
        lambda doc: doc.weights.__setitem__(0, 0), lambda doc: doc.maybe.append("abc"),
        lambda doc: doc.maybe.__setitem__(1, None),
        lambda doc: doc.maybe.__setitem__(1, "c"), lambda doc: doc.extra["k"].append(3),
        lambda doc: setattr(doc, "counts", [1, 2]), lambda doc: setattr(doc, "age", 31),
        lambda doc: (setattr(doc, "age", 31), setattr(doc, "name", "a" * 13)),
        lambda doc: (setattr(doc, "age", -1), setattr(doc, "tags", ["x", 5])),
    ]
    for change in changes:
        assert_same_outcome(change)


def test_a_field_missing_from_the_stored_data_is_validated() -> None:
    """A field added since the document was written holds its default: checked as
    assigned (a required one without a value is refused, as clean() refuses it)."""
    old = {k: v for k, v in STORED.items() if k != "nk"}
    doc = loaded(old)
    assert doc.nick is None
    data, changed = prepared.clean(doc)
    assert changed == frozenset() and data["nk"] is None
    required = Loaded._fields["nick"]
    required.required = True
    try:
        with pytest.raises(ValidationError) as refused:
            prepared.clean(loaded(old))
        assert set(refused.value.errors) == {"nick"}
    finally:
        required.required = False


def test_an_option_changed_after_a_save_is_checked_on_the_next_one() -> None:
    doc = loaded()
    doc.name = "bob"
    assert prepared.clean(doc)[1] == {"name"}  # (the model's plan is made)
    field = Loaded._fields["name"]
    field.max_length = 2
    try:
        again = loaded()
        again.name = "bob"
        with pytest.raises(ValidationError, match="name"):
            prepared.clean(again)
        unchanged = loaded()  # ("ann" as loaded: not checked again)
        unchanged.age = 5
        assert prepared.clean(unchanged)[1] == {"age"}
    finally:
        field.max_length = 12
    doc = loaded()
    doc.name = "bob"
    assert prepared.clean(doc)[1] == {"name"}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Loaded._fields)),
       st.one_of(st.text(max_size=14), st.integers(), st.booleans(), st.floats(), st.none(),
                 st.lists(st.text(max_size=3)), st.lists(st.integers()),
                 st.lists(st.floats()), st.lists(st.one_of(st.none(), st.text(max_size=3))),
                 st.decimals(), st.datetimes(), st.datetimes(timezones=st.just(UTC))))
def test_any_value_gives_the_general_answer(name: str, value: Any) -> None:
    assert_same_outcome(lambda doc: setattr(doc, name, copy.deepcopy(value)))

