"""Misuse of embedded documents that ``mypy --strict`` must reject
(tests/unit/test_embedded_typing.py): each line marked with an E comment has an error, no other."""
# ruff: noqa: B018, F841

from __future__ import annotations

from quantumorm import Document, EmbeddedDocument, EmbeddedDocumentField, StringField


class Address(EmbeddedDocument):
    city: StringField = StringField(required=True)


class Other(EmbeddedDocument):
    name: StringField = StringField()


class Person(Document):
    address: EmbeddedDocumentField[Address] = EmbeddedDocumentField(Address)


Address(town="x")  # E: no such field
Address(city=3)  # E: city is a string
person = Person(address=Other(name="x"))  # E: another embedded class
if person.address is not None:
    person.address.city = 5  # E: city is a string
    n: int = person.address.city  # E: str | None is not int
