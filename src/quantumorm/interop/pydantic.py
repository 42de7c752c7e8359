"""pydantic v2 models generated from QuantumORM models, and documents built from them.

Loaded only through :func:`quantumorm.interop.pydantic_support` (``Model.pydantic_model()``,
``Model.from_pydantic()``): it imports pydantic at its top, and nothing else imports it.

Each generated field is ``Annotated[<type>, <constraints>]`` (``| None`` unless the field is
``required``), with two parts of distinct jobs:

* the **type and constraints** (``str`` with ``max_length``, ``int`` with ``ge``/``le``,
  ``Decimal``, an ``Enum``, ``list[...]`` with ``min_length``...) give the JSON schema
  (FastAPI's OpenAPI) and the serialisation: ``model_dump(mode="json")`` writes a Decimal
  as a string, a datetime in ISO 8601 with its offset, a date in ISO, a UUID as its string,
  an enum member as its value, and an int of any size as an exact JSON number;
* a **before-validator** that runs the QuantumORM field's own ``validate()`` on the input,
  so a generated model accepts exactly what the document accepts and no more: a DecimalField
  refuses a float, JSON numbers with a fraction included (they would be read as a float and
  lose digits: send decimals as strings), a DateTimeField reads ISO 8601 the field's way and
  makes a naive value UTC (the values are always aware), an EmailField or URLField applies
  the field's check, ``choices`` and ``regex`` are the field's. Its messages are the field's.

Which pydantic type a field gets is :data:`FIELD_TYPES`, keyed by field class and searched
along the field class's MRO (a subclass of StringField maps like StringField and keeps its
own ``validate()``). A field class with no entry maps to ``Any`` with a note in its
description, still checked by its ``validate()``; :func:`register_field_type` adds one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Optional

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, JsonValue, StrictBool, StrictInt

from ..errors import ConfigurationError, ValidationError
from ..fields import (
    ArrayField,
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    EmailField,
    EnumField,
    FloatField,
    IntField,
    JSONField,
    StringField,
    URLField,
    UUIDField,
)
from ..fields.base import MISSING, Field
from ..fields.embedded import EmbeddedDocument, EmbeddedDocumentField
from ..fields.reference import ReferenceField
from ..query.expressions import clean_id

if TYPE_CHECKING:
    from ..document import Document

ID = "id"

# the text a DecimalField takes (its clean(): Decimal(text), finite)
_DECIMAL_TEXT = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$"


@dataclass(frozen=True)
class Mapped:
    """A field's pydantic form: the Python type, the pydantic constraints on it (keywords
    of ``pydantic.Field``: ``max_length``, ``ge``...), and JSON schema keys to add.

    ``check``: run the field's own ``validate()`` on the input, before pydantic, and hand
    pydantic its cleaned value. False for a type that validates the value itself and would
    not take the field's cleaned form (a nested generated model, whose own fields check
    their values, where the field's ``validate()`` would make a document instance)."""

    annotation: Any
    constraints: dict[str, Any] = dataclass_field(default_factory=dict)
    schema: dict[str, Any] = dataclass_field(default_factory=dict)
    check: bool = True


#: how a field maps to pydantic: the field instance -> its :class:`Mapped` form
Mapper = Callable[[Field], Mapped]


def _string(field: Field) -> Mapped:
    assert isinstance(field, StringField)
    constraints = {"min_length": field.min_length, "max_length": field.max_length}
    # (the field matches the whole value; a JSON schema pattern matches anywhere)
    schema = {} if field.regex is None else {"pattern": f"^(?:{field.regex.pattern})$"}
    return Mapped(str, constraints, schema)


def _email(field: Field) -> Mapped:
    # (not pydantic's EmailStr: it needs email-validator and refuses addresses the field
    # takes on purpose; the field's own check runs in the before-validator)
    return _with_schema(_string(field), {"format": "email"})


def _url(field: Field) -> Mapped:
    return _with_schema(_string(field), {"format": "uri"})


def _bounds(field: Field) -> dict[str, Any]:
    return {"ge": getattr(field, "min_value", None), "le": getattr(field, "max_value", None)}


def _decimal(field: Field) -> Mapped:
    # What a DecimalField takes: a numeric string or an int (a JSON number with a fraction
    # arrives as a float, inexact, and is refused). It is written as a string in JSON.
    text = {"type": "string", "pattern": _DECIMAL_TEXT}
    return Mapped(Decimal, _bounds(field), {"__validation__": {"anyOf": [text,
                                                                        {"type": "integer"}]}})


def _enum(field: Field) -> Mapped:
    assert isinstance(field, EnumField)
    return Mapped(field.enum)


def _array(field: Field) -> Mapped:
    assert isinstance(field, ArrayField)
    element = annotation_of(field.field, required=True)
    return Mapped(list[element],  # type: ignore[valid-type]
                  {"min_length": field.min_items, "max_length": field.max_items},
                  check=mapped(field.field).check)


def _reference(field: Field) -> Mapped:
    # the referenced document's id, as the API sends and receives it; the field's own check
    # would make a Ref, which is not a str: the document checks the id when it is built
    target = getattr(field, "target_name", None) or "document"
    return Mapped(str, {"min_length": 1}, {"description": f"the id of the {target} referred to"},
                  check=False)


def _embedded(field: Field) -> Mapped:
    # the nested model checks its own fields; the field's check would make an
    # EmbeddedDocument, which pydantic would not take
    assert isinstance(field, EmbeddedDocumentField)
    return Mapped(embedded_model(field.document), check=False)


def _plain(kind: Any) -> Mapper:
    return lambda field: Mapped(kind)


#: the pydantic form of each field class (searched along a field class's MRO). Add a field
#: class with :func:`register_field_type`.
FIELD_TYPES: dict[type[Field], Mapper] = {
    StringField: _string,
    EmailField: _email,
    URLField: _url,
    IntField: lambda field: Mapped(StrictInt, _bounds(field)),
    FloatField: lambda field: Mapped(float, {**_bounds(field), "allow_inf_nan": False}),
    DecimalField: _decimal,
    BooleanField: _plain(StrictBool),
    UUIDField: _plain(uuid.UUID),
    DateField: _plain(dt.date),
    DateTimeField: _plain(dt.datetime),
    EnumField: _enum,
    JSONField: _plain(JsonValue),
    ArrayField: _array,
    ReferenceField: _reference,
    EmbeddedDocumentField: _embedded,
}


def register_field_type(field_class: type[Field], mapper: Mapper) -> None:
    """Map ``field_class`` (and its subclasses without an entry of their own) to pydantic:
    ``mapper(field)`` returns its :class:`Mapped` form."""
    if not (isinstance(field_class, type) and issubclass(field_class, Field)):
        raise ConfigurationError(f"register_field_type takes a Field class (got {field_class!r})")
    FIELD_TYPES[field_class] = mapper
    _cache.clear()


def _with_schema(form: Mapped, extra: dict[str, Any]) -> Mapped:
    return Mapped(form.annotation, form.constraints, {**form.schema, **extra}, form.check)


def mapped(field: Field) -> Mapped:
    """The field's pydantic form from :data:`FIELD_TYPES`; ``Any`` for an unknown class."""
    for kind in type(field).__mro__:
        mapper = FIELD_TYPES.get(kind)
        if mapper is not None:
            return mapper(field)
    return Mapped(Any, {}, {"description": f"{type(field).__name__}: no pydantic mapping "
                                           "(any value, checked by the field)"})


def annotation_of(field: Field, *, required: bool) -> Any:
    """``Annotated[type, constraints, schema]``, ``| None`` unless ``required``, with the
    field's own check before it (unless its :class:`Mapped` form says otherwise)."""
    form = mapped(field)
    metadata: list[Any] = []
    constraints = {k: v for k, v in form.constraints.items() if v is not None}
    if constraints:
        metadata.append(pydantic.Field(**constraints))
    schema = dict(form.schema)
    validation_schema = schema.pop("__validation__", None)
    if validation_schema is not None:
        metadata.append(pydantic.WithJsonSchema(validation_schema, mode="validation"))
    if schema:
        metadata.append(pydantic.Field(json_schema_extra=schema))
    inner: Any = Annotated[(form.annotation, *metadata)] if metadata else form.annotation
    outer: Any = inner if required else Optional[inner]  # noqa: UP045 (a run-time value)
    return Annotated[outer, BeforeValidator(_check(field))] if form.check else outer


def _check(field: Field) -> Callable[[Any], Any]:
    """The field's ``validate()`` as a pydantic validator (its message, as a ValueError)."""
    def check(value: Any) -> Any:
        cleaned, problems = field.validate(value)
        if problems:
            raise ValueError(problems[0])
        return cleaned
    return check


def _check_id(value: Any) -> Any:
    return None if value is None else clean_id(value, ValueError)


_cache: dict[tuple[Any, ...], type[BaseModel]] = {}


def pydantic_model(model: type[Document], include: Iterable[str] | None = None,
                   exclude: Iterable[str] | None = None, name: str | None = None
                   ) -> type[BaseModel]:
    """The pydantic model of ``model`` (see :meth:`quantumorm.Document.pydantic_model`)."""
    include_set = None if include is None else _names(model, include, "include")
    exclude_set = frozenset() if exclude is None else _names(model, exclude, "exclude")
    if name is not None and not (isinstance(name, str) and name.isidentifier()):
        raise ConfigurationError(f"name must be an identifier (got {name!r})")
    key = (model, include_set, exclude_set, name)
    found = _cache.get(key)
    if found is not None:
        return found
    wanted = [ID, *model._fields]
    if include_set is not None:
        wanted = [n for n in wanted if n in include_set]
    definitions: dict[str, Any] = {}
    for field_name in wanted:
        if field_name in exclude_set:
            continue
        if field_name == ID:
            definitions[ID] = (Annotated[Optional[str],  # noqa: UP045
                                         BeforeValidator(_check_id)], None)
            continue
        definitions[field_name] = _definition(model._fields[field_name])
    generated: type[BaseModel] = pydantic.create_model(
        name or model.__name__,
        __config__=ConfigDict(extra="forbid"),
        __doc__=model.__doc__,
        __module__=model.__module__,
        **definitions,
    )
    _cache[key] = generated
    return generated


def embedded_model(document: type[EmbeddedDocument]) -> type[BaseModel]:
    """The pydantic model of an embedded document class (its fields, no id), made once."""
    key = (document,)
    found = _cache.get(key)
    if found is None:
        definitions: dict[str, Any] = {name: _definition(field)
                                       for name, field in document._fields.items()}
        found = _cache[key] = pydantic.create_model(
            document.__name__,
            __config__=ConfigDict(extra="forbid"),
            __doc__=document.__doc__,
            __module__=document.__module__,
            **definitions,
        )
    return found


def _definition(field: Field) -> tuple[Any, Any]:
    required = field.required and field.default is MISSING
    annotation = annotation_of(field, required=field.required)
    extra: dict[str, Any] = {}
    if field.choices is not None:
        allowed = [field.to_storage(choice) for choice in field.choices]
        extra["json_schema_extra"] = {"enum": allowed if field.required else [*allowed, None]}
    if field.help_text:
        extra["description"] = field.help_text
    if required:
        return annotation, pydantic.Field(**extra)
    if field.default is MISSING:
        return annotation, pydantic.Field(default=None, **extra)
    if callable(field.default):
        return annotation, pydantic.Field(default_factory=field.default, **extra)
    # (a copy for each instance: field.initial() deep-copies a list or dict default)
    if isinstance(field.default, (list, dict)):
        return annotation, pydantic.Field(default_factory=field.initial, **extra)
    return annotation, pydantic.Field(default=field.default, **extra)


def _names(model: type[Document], names: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(names, str):
        raise ConfigurationError(f"{what} takes a list of field names (got {names!r})")
    chosen = frozenset(names)
    unknown = sorted(n for n in chosen if n != ID and n not in model._fields)
    if unknown:
        raise ConfigurationError(f"{model.__name__}.pydantic_model({what}=...): no field "
                                 f"{unknown[0]!r} (fields: id, {', '.join(model._fields)})")
    return chosen


def from_pydantic(model: type[Document], obj: BaseModel | Mapping[str, Any]) -> Any:
    """A new document of ``model`` from a pydantic model instance or a mapping (see
    :meth:`quantumorm.Document.from_pydantic`)."""
    if isinstance(obj, BaseModel):
        values = dict(obj)  # the validated Python values, nested models kept as objects
        values = {k: _plain_value(v) for k, v in values.items()}
    elif isinstance(obj, Mapping):
        values = dict(obj)
    else:
        raise TypeError(f"{model.__name__}.from_pydantic() takes a pydantic model or a "
                        f"mapping (got {type(obj).__name__})")
    key = model._meta.primary_key()  # (an ``IntField(primary_key=True)`` names the id)
    unknown = [k for k in values
               if k != ID and k not in model._fields and (key is None or k != key.name)]
    if unknown:
        raise ValidationError({k: [f"'{k}' is not a field of {model.__name__}"]
                               for k in unknown}, model=model.__name__)
    id = values.pop(ID, None)
    if id is not None:
        try:
            id = clean_id(id, ValueError)
        except ValueError as exc:
            raise ValidationError({ID: [str(exc)]}, model=model.__name__) from None
    doc = model(id, **values)
    doc.clean()  # every invalid value in one ValidationError, before any I/O
    return doc


def _plain_value(value: Any) -> Any:
    """A pydantic value as a field takes it: a nested model as its dict."""
    if isinstance(value, BaseModel):
        return {k: _plain_value(v) for k, v in value}
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    return value
