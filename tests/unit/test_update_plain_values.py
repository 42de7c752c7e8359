"""``updates.plain_values``: the shortcut ``QuerySet.update()`` takes for keywords that set
fields to values gives what ``plain_sets(parse(...))`` gives, and declines (None) wherever
parse() would make operators or raise, so that parse() then raises exactly as before."""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    StringField,
)
from quantumorm.engine.updates import parse, plain_sets, plain_values


class Address(EmbeddedDocument):
    city = StringField()


class Item(Document):
    title = StringField(required=True, max_length=5)
    views = IntField(min_value=0)
    tags = ArrayField(StringField())
    address = EmbeddedDocumentField(Address)

    class Meta:
        collection = "plain_values_unit"
        backend = "sqlite"
        indexes = ["address__city"]


CASES: list[dict[str, Any]] = [
    {"title": "a"}, {"views": 3, "title": "b"}, {"tags": ["x", "y"]}, {"views": None},
    {"address": Address(city="oslo")}, {"address": {"city": "rome"}},
    # declined: parse() makes operators of these, or refuses them
    {}, {"inc__views": 1}, {"set__views": 1}, {"unset__views": True}, {"title": "toolong"},
    {"views": -1}, {"views": "x"}, {"title": None}, {"nope": 1}, {"id": "x"},
    {"address__city": "x"}, {"views": 1, "inc__views": 1}, {"push__tags": "z"}]


@pytest.mark.parametrize("fields", CASES)
def test_the_same_values_or_a_decline(fields: dict[str, Any]) -> None:
    for _ in range(2):  # (the second time from what the first remembered)
        got = plain_values(Item, fields)
        try:
            expected = plain_sets(parse(Item, fields))
        except Exception:
            assert got is None, fields  # (parse raises its own error afterwards)
            continue
        if got is not None:
            assert expected is not None and list(got.items()) == list(expected.items())
        else:  # (declined: only where parse makes an operator)
            assert expected is None or any("__" in key for key in fields), fields


def test_the_common_call_is_taken() -> None:
    assert plain_values(Item, {"views": 3, "title": "t"}) == {"views": 3, "title": "t"}
