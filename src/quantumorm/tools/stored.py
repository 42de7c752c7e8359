"""Models rebuilt from a collection's stored schema, for commands given a collection name
instead of ``module:Class`` (``inspect``, ``verify``, ``tail``).

A stored schema (:mod:`quantumorm.schema`) records what decides the stored bytes: each
field's storage name and kind, each index's fields, uniqueness and state, the partitioning.
That is enough to read documents, check indexes and decode change events, so a model is
declared from it: every field a built-in field class with its default options, every index
by name. It is used only when its fingerprint equals the stored one, so that its first use
cannot change the stored schema (a different declaration would be adopted: indexes marked
building or dropped).

What the schema does not record, and why the other commands need the real model class:
``reindex`` and ``repair`` write index entries and documents with the model's own field
classes (a custom field stores values its own way) and ``reindex`` makes the declaration
the stored schema; ``sweep`` writes expiry events as the model's ``Meta.changes`` and
``Meta.publish`` say; ``repartition`` needs the partition count the model declares now.
Validation options (``max_length``...) and defaults are not stored either, and a rebuilt
model does not need them to read.
"""

from __future__ import annotations

import keyword
from typing import Any

from ..document import Document
from ..fields.base import Field
from ..fields.scalar import (
    BooleanField,
    DecimalField,
    FloatField,
    IntField,
    StringField,
    UUIDField,
)
from ..fields.special import DateField, EmailField, URLField
from ..fields.structured import ArrayField, DateTimeField, JSONField
from ..schema import Schema, declared
from .common import CONNECTION, CommandError

#: field kinds as the schema names them (:func:`quantumorm.schema.field_kind`)
KINDS: dict[str, type[Field[Any]]] = {cls.__name__: cls for cls in (
    BooleanField, DateField, DateTimeField, DecimalField, EmailField, FloatField, IntField,
    JSONField, StringField, URLField, UUIDField)}


def field_of(kind: str, db_field: str | None = None) -> Field[Any]:
    """A field of the stored ``kind`` (``"StringField"``, ``"ArrayField[IntField]"``)."""
    if kind.startswith("ArrayField[") and kind.endswith("]"):
        return ArrayField(field_of(kind[len("ArrayField["):-1]), db_field=db_field)
    found = KINDS.get(kind)
    if found is None:
        raise CommandError(f"the stored field kind {kind!r} is not a built-in field: "
                           "pass the model as module:Class")
    return found(db_field=db_field)


def model_from_schema(namespace: str, collection: str, schema: Schema,
                      connection: str = CONNECTION) -> Any:
    """A model class declaring ``schema`` (see the module docstring), bound to the
    connection named ``connection``; CommandError when the schema cannot be declared
    exactly."""
    attributes: dict[str, Any] = {"__module__": __name__}
    names: dict[str, str] = {}  # storage name -> attribute
    reserved = set(dir(Document)) | {"DoesNotExist", "MultipleObjectsReturned"}
    for i, (stored, kind) in enumerate(sorted(schema.fields.items())):
        plain = stored.isidentifier() and not keyword.iskeyword(stored) and (
            stored not in reserved) and not stored.startswith("_")
        attribute = stored if plain else f"field_{i}"
        field = field_of(kind, None if plain else stored)
        attributes[attribute] = field
        names[stored] = attribute
    indexes = []
    for name, info in schema.indexes.items():
        missing = [f for f in info.fields if f not in names]
        if missing:
            raise CommandError(f"{collection}: index {name!r} names fields the schema does not "
                               f"list ({', '.join(missing)})")
        indexes.append({"name": name, "fields": [names[f] for f in info.fields],
                        "unique": info.unique})
    attributes["Meta"] = type("Meta", (), {
        "backend": "redis", "connection": connection, "namespace": namespace,
        "collection": collection, "partitions": schema.partitions,
        "partition_by": schema.partition_by, "indexes": indexes, "changes": True})
    try:
        # (named like the collection: reports say "orders: OK: ...")
        model: Any = type(collection, (Document,), attributes)
    except Exception as exc:  # a declaration the model layer refuses
        raise CommandError(f"{collection}: cannot declare a model from the stored schema: "
                           f"{exc}; pass the model as module:Class") from exc
    if declared(model._meta).fingerprint != schema.fingerprint:
        raise CommandError(f"{collection}: the stored schema (format {schema.format}) cannot "
                           "be declared exactly from here; pass the model as module:Class")
    return model


__all__ = ["KINDS", "field_of", "model_from_schema"]
