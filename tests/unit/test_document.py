"""Documents: class creation and Meta checks, validation, defaults, instance state helpers."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    ConfigurationError,
    DateTimeField,
    DecimalField,
    Document,
    DoesNotExist,
    FloatField,
    IntField,
    JSONField,
    MultipleObjectsReturned,
    Q,
    QuerySet,
    StringField,
    UnknownFieldError,
    UUIDField,
    ValidationError,
)
from quantumorm.options import MAX_INDEXES, MAX_PARTITIONS, IndexSpec
from quantumorm.query.expressions import FieldRef
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import Condition

UTC = dt.timezone.utc


class Person(Document):
    name = StringField(required=True, max_length=20)
    email = StringField(unique=True, db_field="mail")
    age = IntField(min_value=0, indexed=True)
    score = FloatField()
    balance = DecimalField()
    token = UUIDField()
    born = DateTimeField()
    active = BooleanField(default=True)
    tags = ArrayField(StringField(), default=list)
    prefs = JSONField(default={"theme": "dark", "langs": []})

    class Meta:
        collection = "people"
        indexes = [("name", "age")]


def make(name: str, *, meta: dict[str, Any] | None = None, **fields: Any) -> type[Document]:
    attrs: dict[str, Any] = dict(fields)
    if meta is not None:
        attrs["Meta"] = type("Meta", (), meta)
    return type(name, (Document,), attrs)


# -- class creation -------------------------------------------------------------------------


def test_options_are_collected() -> None:
    options = Person._meta
    assert options.model_name == "Person"
    assert options.collection == "people"
    assert options.namespace == "qorm" and options.backend == "redis"
    assert options.partitions == 1 and options.ttl is None and options.connection is None
    assert list(options.fields) == ["name", "email", "age", "score", "balance", "token", "born",
                                    "active", "tags", "prefs"]
    assert options.indexes == (
        IndexSpec("mail", ("email",), unique=True),
        IndexSpec("age", ("age",), unique=False),
        IndexSpec("name__age", ("name", "age"), unique=False),
    )
    assert options.indexed_fields == ("name", "email", "age")
    assert options.single_index("age") == IndexSpec("age", ("age",))
    assert options.single_index("name") is None
    assert Person._fields["email"].db_name == "mail"
    assert Person._fields["name"].name == "name" and Person._fields["name"].model is Person


def test_default_collection_is_the_lowercased_model_name() -> None:
    model = make("SomeThing", x=IntField())
    assert model._meta.collection == "something"


@pytest.mark.parametrize("meta", [
    {"colection": "typo"},
    {"index": ["x"]},
    {"order": ["x"]},  # (Meta.ordering is the option)
])
def test_unknown_meta_option(meta: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make("Bad", meta=meta, x=IntField())
    assert "Bad" in str(info.value)
    assert next(iter(meta)) in str(info.value)


@pytest.mark.parametrize("collection", ["has space", "a:b", "{tag}", "a*", "a/b", "é", "a}b", 5])
def test_bad_collection_name(collection: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        make("Bad", meta={"collection": collection}, x=IntField())
    assert "Bad" in str(info.value)


def test_empty_collection_name_is_refused() -> None:
    """``collection = ""`` is a bad name (``namespace = ""`` is refused), not "unset": it must
    not silently fall back to the model's name."""
    with pytest.raises(ConfigurationError):
        make("Bad", meta={"collection": ""}, x=IntField())


@pytest.mark.parametrize("namespace", ["", "a:b", "{x}", "a b", None, 3])
def test_bad_namespace(namespace: Any) -> None:
    with pytest.raises(ConfigurationError):
        make("Bad", meta={"namespace": namespace}, x=IntField())


@pytest.mark.parametrize("collection", ["users", "Users_2", "a.b-c", "0"])
def test_good_collection_names(collection: str) -> None:
    assert make("Good", meta={"collection": collection}, x=IntField())._meta.collection == (
        collection)


def test_model_name_that_is_not_a_collection_name() -> None:
    with pytest.raises(ConfigurationError):
        make("Modèle", x=IntField())


@pytest.mark.parametrize("partitions", [0, -1, MAX_PARTITIONS + 1, True, "2", 1.0, None])
def test_partitions_out_of_range(partitions: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        make("Bad", meta={"partitions": partitions}, x=IntField())
    assert "partitions" in str(info.value)


def test_at_most_max_indexes_per_model() -> None:
    def indexed() -> dict[str, IntField]:  # (a field instance belongs to one model)
        return {f"f{i}": IntField(indexed=True) for i in range(MAX_INDEXES)}

    assert len(make("Wide", **indexed())._meta.indexes) == MAX_INDEXES
    with pytest.raises(ConfigurationError) as info:
        make("Wider", **indexed(), extra=IntField(indexed=True))
    assert f"at most {MAX_INDEXES}" in str(info.value)
    with pytest.raises(ConfigurationError) as info:  # (declared indexes count too)
        make("Declared", meta={"indexes": [{"fields": ["f0", "f1"]}]}, **indexed())
    assert f"at most {MAX_INDEXES}" in str(info.value)


@pytest.mark.parametrize("partitions", [1, 2, MAX_PARTITIONS])
def test_partitions_in_range(partitions: int) -> None:
    assert make("Good", meta={"partitions": partitions}, x=IntField())._meta.partitions == (
        partitions)


@pytest.mark.parametrize(("fields", "meta"), [
    ({"x": StringField(unique=True)}, {"partitions": 2}),
    ({"x": StringField()}, {"partitions": 3, "indexes": [{"fields": ["x"], "unique": True}]}),
    ({"x": StringField(), "y": IntField()},
     {"partitions": 2, "indexes": [{"fields": ["x", "y"], "unique": True}]}),
])
def test_unique_index_needs_one_partition(fields: dict[str, Any], meta: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make("Bad", meta=meta, **fields)
    assert "unique" in str(info.value)


@pytest.mark.parametrize("ttl", [0, -5, True, 1.5, "60"])
def test_bad_ttl(ttl: Any) -> None:
    with pytest.raises(ConfigurationError):
        make("Bad", meta={"ttl": ttl}, x=IntField())


@pytest.mark.parametrize(("fields", "indexes"), [
    ({"x": IntField()}, ["y"]),
    ({"x": IntField()}, [("x", "y")]),
    ({"x": IntField()}, [{"fields": ["nope"]}]),
    ({"x": JSONField()}, ["x"]),
    ({"x": IntField(), "t": ArrayField(IntField())}, [("x", "t")]),
    ({"x": IntField()}, [("x", "x")]),
    ({"x": IntField()}, "x"),
    ({"x": IntField()}, [5]),
    ({"x": IntField()}, [()]),
    ({"x": IntField()}, [{"fields": ["x"], "colour": "red"}]),
    ({"x": IntField()}, [{"fields": ["x"], "name": "not an identifier"}]),
    ({"x": IntField()}, [{"fields": ["x"], "unique": "yes"}]),
    ({"x": IntField(), "y": IntField()}, [{"fields": ["x", "y"], "name": "dup"},
                                          {"fields": ["y", "x"], "name": "dup"}]),
])
def test_bad_indexes(fields: dict[str, Any], indexes: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        make("Bad", meta={"indexes": indexes}, **fields)
    assert "Bad" in str(info.value)


def test_meta_index_on_an_array_of_json_is_refused() -> None:
    """The field declaration refuses ``ArrayField(JSONField(), indexed=True)`` ("an indexed
    ArrayField needs scalar elements"); declaring the same index through Meta must too."""
    with pytest.raises(ConfigurationError):
        make("Bad", meta={"indexes": ["tags"]}, tags=ArrayField(JSONField()))


def test_meta_index_on_an_indexed_field_is_the_same_index() -> None:
    model = make("Good", meta={"indexes": ["x", {"fields": ["x"], "unique": True}]},
                 x=IntField(indexed=True))
    assert model._meta.indexes == (IndexSpec("x", ("x",), unique=True),)


@pytest.mark.parametrize("fields", [
    {"a": StringField(db_field="b"), "b": StringField()},
    {"a": StringField(db_field="z"), "b": StringField(db_field="z")},
])
def test_duplicate_db_field(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make("Bad", **fields)
    assert "Bad" in str(info.value)


@pytest.mark.parametrize("fields", [
    {"id": StringField()},
    {"ident": StringField(db_field="id")},
    {"_private": StringField()},
])
def test_reserved_field_names(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make("Bad", **fields)


@pytest.mark.parametrize("name", ["objects", "save", "delete", "reload", "clean", "validate",
                                  "to_dict", "DoesNotExist"])
def test_field_names_that_shadow_the_document_api_are_refused(name: str) -> None:
    """A field named ``objects`` replaces ``Model.objects`` with an expression builder, one
    named ``save`` makes ``doc.save`` the field's value, ``DoesNotExist`` is overwritten by
    the exception class: the model is silently broken. Declaring it is a mistake that must
    raise ConfigurationError at class creation."""
    with pytest.raises(ConfigurationError):
        make("Shadow", **{name: StringField()})


@pytest.mark.parametrize("name", ["x__gte", "x__in", "x__isnull", "a__exact"])
def test_every_declared_field_can_be_filtered_on(name: str) -> None:
    """A field whose name ends like a lookup (``x__gte``) cannot be reached by filter(): the
    key is read as field ``x`` with lookup ``gte``. Either the declaration is refused, or
    ``filter(<name>=value)`` is an exact match on that field."""
    try:
        model = make("Odd", **{name: IntField()})
    except ConfigurationError:
        return
    assert model.objects.filter(**{name: 1}).spec.where == Condition(name, Lookup.EXACT, 1)


def test_double_underscore_field_names_are_refused() -> None:
    """``__`` separates a field from its lookup, so a field name containing it is ambiguous
    in filters (``a__b__gte``) and is refused at class creation."""
    with pytest.raises(ConfigurationError, match="__"):
        make("Odd", a__b=IntField())


def test_field_instance_cannot_belong_to_two_models() -> None:
    shared = StringField()
    make("First", x=shared)
    with pytest.raises(ConfigurationError):
        make("Second", y=shared)


def test_abstract_models_and_inheritance() -> None:
    class Base(Document):
        name = StringField()

        class Meta:
            abstract = True
            namespace = "app"
            collection = "never_used"

    class Child(Base):
        age = IntField()

    assert not hasattr(Base, "_meta")
    with pytest.raises(ConfigurationError):
        Base()
    assert Child._meta.namespace == "app"
    assert Child._meta.collection == "child"
    assert list(Child._meta.fields) == ["name", "age"]
    assert Child(name="x", age=1).name == "x"
    assert isinstance(Child.name, FieldRef) and Child.name.model is Child


def test_per_model_exceptions() -> None:
    other = make("Other", x=IntField())
    assert issubclass(Person.DoesNotExist, DoesNotExist)
    assert issubclass(Person.MultipleObjectsReturned, MultipleObjectsReturned)
    assert Person.DoesNotExist is not other.DoesNotExist
    assert not issubclass(Person.DoesNotExist, other.DoesNotExist)
    assert Person.DoesNotExist.__qualname__ == "Person.DoesNotExist"


# -- construction and validation -------------------------------------------------------------


def test_unknown_constructor_kwarg() -> None:
    with pytest.raises(UnknownFieldError) as info:
        Person(name="x", nmae="typo")
    assert isinstance(info.value, TypeError)
    assert info.value.model == "Person" and info.value.field == "nmae"
    assert "nmae" in str(info.value) and "name" in str(info.value)


@pytest.mark.parametrize(("given", "stored"),
                         [("abc", "abc"), (5, "5"), (0, "0"), ("x:{y}", "x:{y}")])
def test_ids(given: Any, stored: str) -> None:
    assert Person(id=given, name="x").id == stored
    assert Person(name="x").id is None


@pytest.mark.parametrize("bad_id", ["", True, 1.5, b"x", ["1"], "\ud800"])
def test_bad_ids(bad_id: Any) -> None:
    with pytest.raises(ValidationError) as info:
        Person(id=bad_id, name="x")
    assert "id" in info.value.errors


def test_validation_error_collects_every_invalid_field() -> None:
    doc = Person(name=None, email=5, age=-3, score="high", balance=1.5, token="nope",
                 born="yesterday", active="yes", tags=["ok", 7], prefs={1, 2})
    with pytest.raises(ValidationError) as info:
        doc.validate()
    error = info.value
    assert error.model == "Person"
    assert set(error.errors) == {"name", "email", "age", "score", "balance", "token", "born",
                                 "active", "tags", "prefs"}
    values = {"email": 5, "age": -3, "score": "high", "balance": 1.5, "token": "nope",
              "born": "yesterday", "active": "yes", "tags": 7, "prefs": {1, 2}}
    message = str(error)
    assert message.startswith("Person: ")
    for name, value in values.items():
        (text,) = error.errors[name]
        assert text.startswith(f"'{name}' ")
        assert repr(value) in text, (name, text)
        assert text in message
    assert error.errors["name"] == ["'name' is required"]
    assert isinstance(error, ValueError)


def test_validation_error_names_an_over_long_value() -> None:
    """Document.clean() promises one ValidationError "that names every invalid field and
    value"; the max_length message reports only the length."""
    long_name = "x" * 25
    with pytest.raises(ValidationError) as info:
        Person(name=long_name).validate()
    (text,) = info.value.errors["name"]
    assert repr(long_name) in text


def test_clean_returns_the_storage_form_and_cleans_values() -> None:
    doc = Person(name="Ann", email="a@x", age=3, balance="1.50", token=str(uuid.UUID(int=1)),
                 born="2024-01-01T00:00:00", score=2)
    storage = doc.clean()
    assert storage["mail"] == "a@x" and "email" not in storage
    assert storage["balance"] == "1.50"
    assert storage["token"] == "00000000-0000-0000-0000-000000000001"
    assert storage["born"] == "2024-01-01T00:00:00+00:00"
    assert storage["score"] == 2.0 and isinstance(storage["score"], float)
    assert storage["active"] is True and storage["tags"] == []
    assert doc.balance == Decimal("1.50") and doc.born.tzinfo is not None
    assert isinstance(doc.token, uuid.UUID)


def test_valid_document_passes() -> None:
    Person(name="Ann").validate()


def test_defaults() -> None:
    a, b = Person(name="a"), Person(name="b")
    assert a.active is True
    assert a.tags == [] and a.tags is not b.tags
    assert a.prefs == {"theme": "dark", "langs": []}
    a.prefs["langs"].append("fr")
    a.tags.append("t")
    assert b.prefs == {"theme": "dark", "langs": []} and b.tags == []
    assert Person(name="c").prefs == {"theme": "dark", "langs": []}
    assert Person(name="d", active=False).active is False
    assert Person(name="e").age is None


def test_callable_default_is_called_for_each_document() -> None:
    counter = iter(range(100))
    model = make("Counted", n=IntField(default=lambda: next(counter)))
    assert [model().n for _ in range(3)] == [0, 1, 2]


def test_to_dict() -> None:
    token = uuid.UUID(int=7)
    doc = Person(id="p1", name="Ann", email="a@x", balance=Decimal("2.50"), token=token,
                 born=dt.datetime(2024, 1, 1, tzinfo=UTC))
    plain = doc.to_dict()
    assert plain["id"] == "p1" and plain["email"] == "a@x" and plain["token"] == token
    assert set(plain) == {"id", *Person._meta.fields}
    storage = doc.to_dict(storage=True)
    assert storage["mail"] == "a@x" and "email" not in storage
    assert storage["balance"] == "2.50" and storage["token"] == str(token)
    assert storage["born"] == "2024-01-01T00:00:00+00:00" and storage["id"] == "p1"


def test_changed_fields() -> None:
    doc = Person(name="Ann")
    assert doc.changed_fields() == list(Person._meta.fields)
    stored = Person(name="Ann", age=3).clean()
    loaded = Person.from_storage("1", 4, stored)
    assert loaded.version == 4 and loaded.is_saved and loaded.id == "1"
    assert loaded.changed_fields() == []
    loaded.age = 4
    loaded.email = "new@x"
    assert loaded.changed_fields() == ["email", "age"]
    loaded.age = 3
    assert loaded.changed_fields() == ["email"]
    loaded.email = None
    assert loaded.changed_fields() == []


def test_changed_fields_compares_cleaned_values() -> None:
    stored = Person(name="Ann", born="2024-01-01T00:00:00+00:00", balance="1.5").clean()
    loaded = Person.from_storage("1", 1, stored)
    loaded.born = dt.datetime(2024, 1, 1)  # naive = UTC: the same stored value
    loaded.balance = "1.5"
    assert loaded.changed_fields() == []
    loaded.age = "not a number"
    assert loaded.changed_fields() == ["age"]


def test_from_storage_converts_values() -> None:
    doc = Person.from_storage("9", 2, {"name": "Z", "mail": "z@x", "balance": "3.10",
                                       "born": "2024-01-01T05:30:00+05:30", "tags": ["a"]})
    assert doc.email == "z@x" and doc.balance == Decimal("3.10")
    assert doc.born == dt.datetime(2024, 1, 1, tzinfo=UTC) and doc.tags == ["a"]
    assert doc.age is None
    assert repr(doc) == "<Person id='9' v2>"


def test_new_document_state() -> None:
    doc = Person(name="x")
    assert doc.version == 0 and not doc.is_saved


def test_equality_and_hash() -> None:
    a, b = Person(id="1", name="a"), Person(id="1", name="b")
    assert a == b and hash(a) == hash(b)
    assert Person(name="x") != Person(name="x")
    unsaved = Person(name="x")
    assert unsaved == unsaved


# -- class-level access -----------------------------------------------------------------------


def test_objects_is_a_fresh_queryset_each_time() -> None:
    first, second = Person.objects, Person.objects
    assert isinstance(first, QuerySet) and isinstance(second, QuerySet)
    assert first is not second
    assert first.model is Person
    narrowed = first.filter(age=3)
    assert Person.objects.spec.where != narrowed.spec.where
    with pytest.raises(AttributeError):
        Person(name="x").objects  # noqa: B018


def test_class_attribute_is_an_expression_builder() -> None:
    ref = Person.age
    assert isinstance(ref, FieldRef)
    assert ref.field is Person._fields["age"] and ref.model is Person
    q = Person.age >= 3
    assert isinstance(q, Q)
    assert q.resolve(Person._meta) == Condition("age", Lookup.GTE, 3)
    assert (Person.email == "a").resolve(Person._meta) == Condition("email", Lookup.EXACT, "a")
    doc = Person(name="x", age=5)
    assert doc.age == 5  # on an instance it is the value
