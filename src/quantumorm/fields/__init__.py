"""Field types. See :mod:`quantumorm.fields.base` for the conversion contract."""

from ..errors import FieldValueError
from .base import MISSING, Field
from .scalar import BooleanField, DecimalField, FloatField, IntField, StringField, UUIDField
from .structured import (
    MAX_JSON_DEPTH,
    ArrayField,
    DateTimeField,
    DictField,
    JSONField,
    ListField,
)

__all__ = [
    "MAX_JSON_DEPTH",
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
