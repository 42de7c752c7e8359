"""quantumorm.testing's factory: generated values are valid and unique, overrides win, and
the ``qorm`` fixture (used here by the project's own tests) isolates each test."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal

import pytest

from quantumorm import (
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    Document,
    EmailField,
    EnumField,
    FloatField,
    IntField,
    JSONField,
    ListField,
    StringField,
    URLField,
    UUIDField,
)
from quantumorm.testing import Factory, QuantumORMTest, value_for


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Everything(Document):
    code = StringField(required=True, unique=True, min_length=12, max_length=20)
    email = EmailField(required=True, unique=True)
    site = URLField(required=True)
    small = IntField(required=True, min_value=5, max_value=7)
    below = IntField(required=True, max_value=-1)
    ratio = FloatField(required=True, min_value=0.5)
    price = DecimalField(required=True, min_value=Decimal("0.5"))
    flag = BooleanField(required=True)
    at = DateTimeField(required=True, indexed=True)
    day = DateField(required=True)
    key = UUIDField(required=True, unique=True)
    colour = EnumField(Colour, required=True)
    size = StringField(required=True, choices=["S", "M", "L"])
    tags = ListField(StringField(), required=True)
    extra = JSONField(required=True)
    note = StringField()  # neither required nor unique: left to its default


def test_every_kind_of_field_gets_a_valid_value(qorm: QuantumORMTest) -> None:
    docs = qorm.make_many(Everything, 4)
    assert Everything.objects.count_sync() == 4
    for doc in docs:
        assert 12 <= len(doc.code) <= 20 and doc.email.endswith("@example.org")
        assert 5 <= doc.small <= 7 and doc.below <= -1
        assert doc.ratio >= 0.5 and doc.price >= Decimal("0.5")
        assert isinstance(doc.at, dt.datetime) and isinstance(doc.day, dt.date)
        assert isinstance(doc.key, uuid.UUID) and doc.colour in Colour
        assert doc.size in ("S", "M", "L") and doc.tags == [] and doc.note is None
    for unique in ("code", "email", "key"):
        assert len({getattr(doc, unique) for doc in docs}) == 4
    again = Everything.objects.get_sync(email=docs[0].email)
    assert again.to_dict() == docs[0].to_dict()


def test_overrides_and_sequences(qorm: QuantumORMTest) -> None:
    first = qorm.make(Everything, code="fixed-code-0001", note=lambda n: f"note {n}")
    second = qorm.build(Everything, note=lambda n: f"note {n}")
    assert first.code == "fixed-code-0001"
    assert first.note == "note 1" and second.note == "note 2"  # the sequence starts at 1
    assert second.id is None or not Everything.objects.filter(id=second.id).exists_sync()


async def test_async_helpers(qorm: QuantumORMTest) -> None:
    made = await qorm.amake_many(Everything, 3)
    assert await Everything.objects.count() == 3
    assert {doc.id for doc in made} == {doc.id for doc in await Everything.objects.all()}


def test_a_field_it_cannot_fill_is_named() -> None:
    with pytest.raises(TypeError, match="pass it"):
        value_for(StringField(regex=r"[a-z]+\Z"), "thing-name", 1)


def test_factories_have_their_own_sequences() -> None:
    one, two = Factory(), Factory(start=100)
    assert one.values(Everything, {})["email"] == "everything-email1@example.org"
    assert two.values(Everything, {})["email"] == "everything-email100@example.org"


def test_the_fixture_isolates_models(qorm: QuantumORMTest) -> None:
    assert Everything._meta.namespace == qorm.namespace == f"qorm.{qorm.isolation.token}"
    qorm.make(Everything)
    keys = list(qorm.connection.store.sync_executor().client.scan_iter(
        match=f"*{qorm.namespace}:*"))
    assert keys and all(qorm.namespace.encode() in key for key in keys)
