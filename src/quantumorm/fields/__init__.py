"""Field types. See :mod:`quantumorm.fields.base` for the conversion contract."""

from .base import MISSING, Field, FieldValueError
from .scalar import BooleanField, DecimalField, FloatField, IntField, StringField, UUIDField
from .structured import ArrayField, DateTimeField, DictField, JSONField, ListField

__all__ = [
    "MISSING",
    "ArrayField",
    "BooleanField",
    "DateTimeField",
    "DecimalField",
    "DictField",
    "Field",
    "FieldValueError",
    "FloatField",
    "IntField",
    "JSONField",
    "ListField",
    "StringField",
    "UUIDField",
]
