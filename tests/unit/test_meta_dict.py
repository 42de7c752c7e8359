"""A MongoEngine/QuantumEngine style ``meta = {...}`` dict is refused at class creation."""

from __future__ import annotations

import pytest

from quantumorm import ConfigurationError, Document, StringField


def test_a_meta_dict_is_refused_with_the_equivalent_class_meta() -> None:
    with pytest.raises(ConfigurationError) as caught:
        class User(Document):
            name = StringField()
            meta = {"collection": "users", "indexes": ["name"], "allow-inheritance": True}
    message = str(caught.value)
    assert "class Meta:" in message
    assert "collection = 'users'" in message
    assert "indexes = ['name']" in message
    assert "# 'allow-inheritance': True" in message


def test_an_empty_meta_dict_is_refused_too() -> None:
    with pytest.raises(ConfigurationError, match="class Meta:"):
        class User(Document):
            meta: dict[str, str] = {}


def test_class_meta_still_works() -> None:
    class User(Document):
        name = StringField()

        class Meta:
            collection = "people"

    assert User._meta.collection == "people"
