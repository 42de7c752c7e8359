"""Embedded documents as a type checker sees them (tests/unit/test_embedded_typing.py).

Never run: it only has to pass ``mypy --strict``, with ``assert_type`` pinning the types.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from quantumorm import (
    DateTimeField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    FloatField,
    ListField,
    Q,
    StringField,
)

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


class Geo(EmbeddedDocument):
    lat: FloatField = FloatField()


class Address(EmbeddedDocument):
    city: StringField = StringField(required=True)
    zip: StringField = StringField()
    since: DateTimeField = DateTimeField()
    geo: EmbeddedDocumentField[Geo] = EmbeddedDocumentField(Geo)


class Person(Document):
    name: StringField = StringField()
    address: EmbeddedDocumentField[Address] = EmbeddedDocumentField(Address)
    addresses = ListField(EmbeddedDocumentField(Address))


person = Person(name="a", address=Address(city="Portland", zip="97201"))
assert_type(person.address, Address | None)
if person.address is not None:
    assert_type(person.address.city, str | None)
    assert_type(person.address.since, dt.datetime | None)
    assert_type(person.address.geo, Geo | None)
    person.address.city = "Eugene"
assert_type(person.addresses, list[Address] | None)
assert_type(Person.objects.filter(address__city="Portland").order_by("-address__zip").first_sync(),
            Person | None)
assert_type(Person.address == Address(city="x"), Q)
assert_type(Person.address.city == "Portland", Q)
assert_type(Person.address.geo.lat > 1.5, Q)
assert_type(Address(city="x").to_dict(), dict[str, Any])
