"""Test documents without boilerplate: :class:`Factory` fills what a model needs.

``factory.build(User, name="ada")`` returns an unsaved ``User`` with every required or
unique field given a valid value (the overrides win); ``make`` also saves it, ``make_many``
saves ``n`` of them in one ``bulk_create``; ``amake`` / ``amake_many`` are the asyncio forms.
Generated values come from a sequence, one counter per factory, so unique fields never
collide: ``"user-name-1"``, ``"user3@example.org"``, ``3``, ``2024-01-01T00:00:03Z``...

An override may be a callable of the sequence number (``email=lambda n: f"u{n}@x.org"``) for
a sequence of one's own. Fields that are neither required nor unique keep their defaults
unless overridden. A field the factory cannot fill (a required JSON value, a string with a
regex) raises :class:`TypeError` naming it: pass that field as an override.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, TypeVar

from ..document import Document
from ..fields import (
    ArrayField,
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    EmailField,
    EnumField,
    Field,
    FloatField,
    IntField,
    JSONField,
    StringField,
    URLField,
    UUIDField,
)

D = TypeVar("D", bound=Document)

#: the first generated date and time (sequence number n adds n seconds, or n days)
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _string(field: StringField, stem: str, n: int) -> str:
    if getattr(field, "regex", None) is not None:
        raise TypeError(f"{stem}: a string with a regex cannot be generated; pass it")
    text = f"{stem}-{n}"
    low, high = field.min_length, field.max_length
    if low is not None and len(text) < low:
        text = text.ljust(int(low), "x")
    if high is not None and len(text) > high:
        text = str(n)[-int(high):] if high else ""
    return text


def _number(field: IntField | FloatField | DecimalField, n: int) -> int:
    """``n`` moved into the field's bounds (wrapping around in a bounded range)."""
    low = None if field.min_value is None else int(math.ceil(field.min_value))
    high = None if field.max_value is None else int(math.floor(field.max_value))
    if low is None:
        return n if high is None else high - n
    if high is None:
        return low + n
    return low + n % max(high - low + 1, 1)


def value_for(field: Field[Any], stem: str, n: int) -> Any:
    """A valid value of ``field`` for sequence number ``n`` (``stem`` names it in strings)."""
    if field.choices is not None:
        return field.choices[n % len(field.choices)]
    if isinstance(field, EmailField):
        return f"{stem.replace('_', '-')}{n}@example.org"
    if isinstance(field, URLField):
        return f"https://example.org/{stem}/{n}"
    if isinstance(field, StringField):
        return _string(field, stem, n)
    if isinstance(field, BooleanField):
        return n % 2 == 1
    if isinstance(field, IntField):
        return _number(field, n)
    if isinstance(field, FloatField):
        return float(_number(field, n))
    if isinstance(field, DecimalField):
        return Decimal(_number(field, n))
    if isinstance(field, DateTimeField):
        return EPOCH + dt.timedelta(seconds=n)
    if isinstance(field, DateField):
        return EPOCH.date() + dt.timedelta(days=n)
    if isinstance(field, UUIDField):
        return uuid.UUID(int=n)
    if isinstance(field, EnumField):
        members: list[Any] = list(field.enum.__members__.values())
        return members[n % len(members)]
    if isinstance(field, ArrayField):
        return []
    if isinstance(field, JSONField):
        return {}
    raise TypeError(f"{stem}: cannot generate a value for a {type(field).__name__}; pass it "
                    "as an override")


class Factory:
    """Builds and saves test documents; one sequence shared by every model it builds."""

    def __init__(self, start: int = 1) -> None:
        self._numbers: Iterator[int] = itertools.count(start)

    def next_number(self) -> int:
        """The next sequence number (each built document takes one)."""
        return next(self._numbers)

    def values(self, model: type[Document], overrides: dict[str, Any]) -> dict[str, Any]:
        """The constructor arguments :meth:`build` passes: generated values for the
        required and unique fields, then the overrides (callables called with ``n``)."""
        n = self.next_number()
        values: dict[str, Any] = {}
        for name, field in model._meta.fields.items():
            if name in overrides or not (field.required or field.unique):
                continue
            values[name] = value_for(field, f"{model.__name__.lower()}-{name}", n)
        for name, value in overrides.items():
            values[name] = value(n) if callable(value) and not isinstance(value, type) \
                else value
        return values

    def build(self, model: type[D], **overrides: Any) -> D:
        """An unsaved document of ``model``."""
        return model(**self.values(model, overrides))

    def make(self, model: type[D], **overrides: Any) -> D:
        """A saved document of ``model`` (blocking ``save_sync``)."""
        doc = self.build(model, **overrides)
        doc.save_sync()
        return doc

    async def amake(self, model: type[D], **overrides: Any) -> D:
        """A saved document of ``model`` (``await save()``)."""
        doc = self.build(model, **overrides)
        await doc.save()
        return doc

    def build_many(self, model: type[D], n: int, **overrides: Any) -> list[D]:
        """``n`` unsaved documents, each with its own sequence number."""
        return [self.build(model, **overrides) for _ in range(n)]

    def make_many(self, model: type[D], n: int, **overrides: Any) -> list[D]:
        """``n`` saved documents (one ``bulk_create``), each with its own sequence number."""
        return model.objects.bulk_create_sync(self.build_many(model, n, **overrides))

    async def amake_many(self, model: type[D], n: int, **overrides: Any) -> list[D]:
        return await model.objects.bulk_create(self.build_many(model, n, **overrides))


#: a default factory (its sequence runs for the whole process)
factory = Factory()
make = factory.make
make_many = factory.make_many
amake = factory.amake
amake_many = factory.amake_many
build = factory.build

__all__ = ["EPOCH", "Factory", "amake", "amake_many", "build", "factory", "make",
           "make_many", "value_for"]
