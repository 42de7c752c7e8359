"""Which updates by id may skip reading the document (engine.ops.patchable): only those
whose new values the store can put in place exactly, with no rule over the whole document."""

from __future__ import annotations

from typing import Any

from quantumorm import ArrayField, DictField, Document, IntField, JSONField, StringField
from quantumorm.engine.ops import patchable


class Plain(Document):
    name = StringField()
    age = IntField()
    tags = ArrayField(StringField())
    extra = JSONField()
    city = StringField()
    zip = StringField()

    class Meta:
        collection = "paths_plain"
        indexes = [("city", "zip")]


class Cleaned(Document):
    name = StringField()

    def clean(self) -> dict[str, Any]:
        return super().clean()

    class Meta:
        collection = "paths_cleaned"


class Validating(Document):
    name = StringField()

    def validate(self) -> None:
        super().validate()

    class Meta:
        abstract = True


class Inheriting(Validating):
    class Meta:
        collection = "paths_inheriting"


class Nested(Document):
    data = DictField()

    class Meta:
        collection = "paths_nested"


def test_scalar_and_array_values_are_put_in_place() -> None:
    assert patchable(Plain, {"name": "x", "age": 3, "tags": ["a"]})
    assert patchable(Plain, {"city": None}) is False  # part of a compound index


def test_json_values_and_whole_document_rules_take_the_read_path() -> None:
    assert not patchable(Plain, {"extra": {"a": 1}})
    assert not patchable(Plain, {"name": "x", "extra": [1]})
    assert not patchable(Nested, {"data": {"b": 2}})
    assert not patchable(Cleaned, {"name": "x"})
    assert not patchable(Inheriting, {"name": "x"})  # a rule inherited from a base
    assert Plain._has_own_rules() is False and Inheriting._has_own_rules() is True
