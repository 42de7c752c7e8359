"""Field types. See :mod:`quantumorm.fields.base` for the conversion contract."""

from ..errors import FieldValueError
from .base import MISSING, Field
from .embedded import EmbeddedDocument, EmbeddedDocumentField
from .reference import ReferenceField
from .scalar import BooleanField, DecimalField, FloatField, IntField, StringField, UUIDField
from .special import DateField, EmailField, EnumField, URLField
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
    "ReferenceField",
    "ArrayField",
    "BooleanField",
    "DateField",
    "DateTimeField",
    "DecimalField",
    "DictField",
    "EmbeddedDocument",
    "EmbeddedDocumentField",
    "EmailField",
    "EnumField",
    "Field",
    "FieldValueError",
    "FloatField",
    "IntField",
    "JSONField",
    "ListField",
    "StringField",
    "URLField",
    "UUIDField",
]
