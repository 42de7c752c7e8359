"""Embedded documents without a server: declaration rules, validation and its nested error
paths, value equality, storage form, path resolution and the lookup parser, the reference
evaluator on paths, the stored schema, and the update paths that must not patch in place."""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import (
    ConfigurationError,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    ListField,
    QueryError,
    StringField,
    UnknownFieldError,
    ValidationError,
)
from quantumorm.engine import ops
from quantumorm.query import evaluate, paths
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import Condition, Ordering
from quantumorm.schema import declared


class Inner(EmbeddedDocument):
    n = IntField(min_value=0)


class Address(EmbeddedDocument):
    city = StringField(required=True)
    zip = StringField(max_length=5, db_field="z")
    inner = EmbeddedDocumentField(Inner)
    tags = ListField(StringField())


class Person(Document):
    name = StringField()
    address = EmbeddedDocumentField(Address)
    addresses = ListField(EmbeddedDocumentField(Address))

    class Meta:
        collection = "unit_embedded_people"


def test_declaration_rules() -> None:
    with pytest.raises(ConfigurationError, match="no Meta"):
        class WithMeta(EmbeddedDocument):
            a = StringField()

            class Meta:
                collection = "x"
    with pytest.raises(ConfigurationError, match="no index of its own"):
        class Indexed(EmbeddedDocument):
            a = StringField(indexed=True)
    with pytest.raises(ConfigurationError, match="not a valid embedded field name"):
        class Reserved(EmbeddedDocument):
            to_dict = StringField()
    with pytest.raises(ConfigurationError, match="needs an EmbeddedDocument class"):
        EmbeddedDocumentField(Person)  # type: ignore[type-var]
    assert not hasattr(Address, "objects") and not hasattr(Address, "_meta")
    assert not hasattr(Address, "save")


def test_inheritance_and_defaults() -> None:
    class Base(EmbeddedDocument):
        a = StringField(default="x")

    class Child(Base):
        b = IntField(default=lambda: 3)

    assert list(Child._fields) == ["a", "b"]
    assert Child() == Child(a="x", b=3)
    with pytest.raises(UnknownFieldError, match="'c'"):
        Child(c=1)


def test_value_equality_and_repr() -> None:
    assert Address(city="P", zip="1") == Address(city="P", zip="1")
    assert Address(city="P") != Address(city="Q")
    assert Address(city="P") != Inner(n=1)
    assert repr(Inner(n=2)) == "Inner(n=2)"
    with pytest.raises(TypeError):
        hash(Address(city="P"))


def test_validation_names_nested_paths() -> None:
    doc = Person(address=Address(zip="123456", inner=Inner(n=-1)),
                 addresses=[Address(city="X"), {"zip": "1"}])
    with pytest.raises(ValidationError) as info:
        doc.clean()
    errors = info.value.errors
    assert set(errors) == {"address.city", "address.zip", "address.inner.n", "addresses"}
    assert errors["address.inner.n"] == ["'address.inner.n' must be >= 0 (got -1)"]
    assert errors["addresses"] == ["'addresses' item 1 'city' is required"]
    assert "address.zip: 'address.zip' must be at most 5" in str(info.value)
    with pytest.raises(ValidationError, match="must be a Address or a dict"):
        Person(address="Portland").clean()


def test_dict_assignment_converts() -> None:
    doc = Person()
    doc.address = {"city": "P", "inner": {"n": 1}}  # type: ignore[assignment]
    assert isinstance(doc.address, Address) and doc.address.city == "P"
    doc.address = {"town": "P"}  # type: ignore[assignment]  # kept; the save refuses it
    with pytest.raises(ValidationError, match="has no field 'town'"):
        doc.clean()


def test_storage_form_and_back() -> None:
    doc = Person(name="a", address=Address(city="P", zip="97", inner=Inner(n=1), tags=["t"]),
                 addresses=[Address(city="Q")])
    stored = doc.clean()
    assert stored["address"] == {"city": "P", "z": "97", "inner": {"n": 1}, "tags": ["t"]}
    assert stored["addresses"] == [{"city": "Q", "z": None, "inner": None, "tags": None}]
    loaded = Person.from_storage("p", 1, stored)
    assert loaded.address == doc.address and loaded.addresses == doc.addresses
    assert loaded.to_dict()["address"] == {"city": "P", "zip": "97", "inner": {"n": 1},
                                           "tags": ["t"]}
    # a loaded value is its own object: changing it in place is a change
    assert loaded.changed_fields() == []
    assert loaded.address is not None
    loaded.address.tags.append("u")  # type: ignore[union-attr]
    assert loaded.changed_fields() == ["address"]
    # an unknown stored key is ignored, a missing one gets its default
    assert Address.from_storage({"city": "P", "old": 1}) == Address(city="P")


def test_path_resolution() -> None:
    options = Person._meta
    path = paths.resolve(options, "address__inner__n")
    assert path.steps == ("address", "inner", "n") and path.db_steps == ("address", "inner", "n")
    assert isinstance(path.field, IntField) and not path.many
    assert paths.resolve(options, "address__zip").db_steps == ("address", "z")
    assert paths.resolve(options, "addresses__city").many
    with pytest.raises(UnknownFieldError, match="'address__town'"):
        paths.resolve(options, "address__town")
    with pytest.raises(UnknownFieldError, match="'name__first'"):
        paths.resolve(options, "name__first")
    with pytest.raises(UnknownFieldError, match="ends at a field that is not a list"):
        paths.resolve(options, "addresses__tags")
    stored = {"address": {"z": "97", "inner": None}, "addresses": [{"city": "A"}, {}]}
    assert path.read_stored(stored) is None  # under a null embedded document
    assert paths.resolve(options, "address__zip").read_stored(stored) == "97"
    assert paths.resolve(options, "addresses__city").read_stored(stored) == ["A", None]


def _cond(**lookup: Any) -> Any:
    return Person.objects.filter(**lookup)._where


def test_the_parser_tells_a_path_from_a_lookup() -> None:
    assert _cond(address__city="P") == Condition("address__city", Lookup.EXACT, "P")
    assert _cond(address__city__startswith="P") == Condition("address__city",
                                                             Lookup.STARTSWITH, "P")
    assert _cond(address__inner__n__gte=1) == Condition("address__inner__n", Lookup.GTE, 1)
    assert _cond(address__isnull=True) == Condition("address", Lookup.ISNULL, True)
    assert _cond(address__tags__contains="t") == Condition("address__tags", Lookup.CONTAINS,
                                                           "t")
    with pytest.raises(QueryError, match="address__inner__n__exact: value must be an integer"):
        _cond(address__inner__n="x")
    with pytest.raises(QueryError, match="lookup .startswith. is not supported"):
        _cond(address__inner__n__startswith="1")


def test_evaluator_on_paths() -> None:
    options = Person._meta

    def match(doc: Person, **lookup: Any) -> bool:
        return evaluate.matches(options, _cond(**lookup), doc._values())

    ann = Person(id="a", address=Address(city="P", inner=Inner(n=2)),
                 addresses=[Address(city="A", zip="1"), Address(city="B")])
    none = Person(id="b")
    assert match(ann, address__inner__n__gt=1) and not match(none, address__inner__n__gt=1)
    assert match(none, address__city__isnull=True) and match(none, address__city__ne="P")
    assert match(ann, addresses__city="B") and not match(ann, addresses__city__ne="B")
    assert match(ann, addresses__city__nin=["C"]) and not match(ann, addresses__zip__isnull=True)
    assert match(none, addresses__zip__isnull=True) and not match(none, addresses__city="A")
    order = (Ordering("address__inner__n", True),)
    keys = [evaluate.sort_keys(options, order, d._values()) for d in (ann, none)]
    assert keys[0][0] > keys[1][0]  # null sorts first


def test_schema_records_the_embedded_declaration() -> None:
    def kind(embedded: type[EmbeddedDocument]) -> str:
        class Holder(Document):
            address = EmbeddedDocumentField(embedded)

            class Meta:
                collection = "unit_embedded_schema"

        return declared(Holder._meta).fields["address"]

    class A1(EmbeddedDocument):
        city = StringField(max_length=5)

    class A2(EmbeddedDocument):  # validation options differ: the same stored form
        city = StringField(max_length=9)

    class A3(EmbeddedDocument):  # another storage name
        city = StringField(db_field="c")

    class A4(EmbeddedDocument):  # another type
        city = IntField()

    assert kind(A1) == kind(A2) == "EmbeddedDocumentField{city:StringField}"
    assert len({kind(A1), kind(A3), kind(A4)}) == 3


def test_updates_of_embedded_values_are_not_patched_in_place() -> None:
    assert not ops.patchable(Person, {"address": Address(city="P")})
    assert not ops.patchable(Person, {"addresses": []})
    assert ops.patchable(Person, {"name": "x"})


def test_field_expressions_reach_inside() -> None:
    assert _where(Person.address.city == "P") == _cond(address__city="P")
    assert _where(Person.address.inner.n >= 2) == _cond(address__inner__n__gte=2)
    assert _where(Person.address.city.startswith("P")) == _cond(address__city__startswith="P")
    assert _where(Person.address.isnull()) == _cond(address__isnull=True)
    assert Person.address.zip.desc() == Ordering("address__zip", True)
    assert Person.objects.order_by(-Person.address.zip)._order == (
        Ordering("address__zip", True),)
    with pytest.raises(AttributeError, match="no field 'town'"):
        Person.address.town  # noqa: B018
    with pytest.raises(AttributeError):
        Person.address.city.town  # noqa: B018


def _where(q: Any) -> Any:
    return Person.objects.filter(q)._where
