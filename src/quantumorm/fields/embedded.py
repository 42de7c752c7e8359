"""Embedded documents: :class:`EmbeddedDocument` and :class:`EmbeddedDocumentField`.

An embedded document declares fields as a :class:`~quantumorm.document.Document` does (the
same Field classes, validation, defaults, ``required``, other embedded documents inside) but
has no id, no ``Meta``, no manager and no storage of its own: it lives inside a document's
field and is stored as a nested JSON object there (a field's ``db_field`` applies inside it).
Instances compare by value.

``EmbeddedDocumentField(Address)`` holds one; ``ArrayField(EmbeddedDocumentField(Address))``
(or ``ListField(...)``) a list of them. A dict assigned to the field is converted to the
embedded class (its keys are attribute names; an unknown key is a validation error).
Validation errors name the nested path: ``address.zip: 'address.zip' must be ...``.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from .. import sortable
from ..errors import ConfigurationError, FieldValueError, UnknownFieldError, ValidationError
from ..query.expressions import FieldRef
from ..query.lookups import KIND_LOOKUPS, FieldKind
from .base import MISSING, Field, show
from .structured import ArrayField

if TYPE_CHECKING:
    from .base import Holder

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
elif TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:  # Python 3.10: only type checkers read the marker
    def dataclass_transform(**_: Any) -> Callable[[type], type]:
        return lambda cls: cls

E = TypeVar("E", bound="EmbeddedDocument")

#: names an embedded document's API takes (a field cannot be named like them)
_RESERVED = frozenset({"clean", "validate", "to_dict", "from_storage", "to_storage"})


class NestedMessage(str):
    """A validation message about a value inside an embedded document: ``path`` is the
    dotted attribute path (``address.zip``) that a ValidationError reports it under."""

    path: str

    def __new__(cls, path: str, text: str) -> NestedMessage:
        message = super().__new__(cls, text)
        message.path = path
        return message


@dataclass_transform(kw_only_default=True)
class EmbeddedDocumentMeta(type):
    """Collects an embedded document's fields (its bases' first)."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
        if "Meta" in namespace or isinstance(namespace.get("meta"), dict):
            raise ConfigurationError(f"{name}: an embedded document has no Meta (it is stored "
                                     "inside a document; index its paths in that Meta)")
        cls = super().__new__(mcs, name, bases, namespace)
        fields: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(vars(base).get("_fields", {}))
        for attr, value in namespace.items():
            if not isinstance(value, Field):
                continue
            if attr in _RESERVED or attr.startswith("_") or "__" in attr:
                raise ConfigurationError(f"{name}.{attr}: not a valid embedded field name")
            if value.primary_key or value.indexed:
                raise ConfigurationError(
                    f"{name}.{attr}: an embedded field has no id and no index of its own "
                    "(declare the index on the document: Meta.indexes = ['address__city'])")
            fields[attr] = value
        cls._fields = fields  # type: ignore[attr-defined]
        return cls


class EmbeddedDocument(metaclass=EmbeddedDocumentMeta):
    """Base class of documents stored inside another document's field.

    >>> class Address(EmbeddedDocument):
    ...     city: StringField = StringField(required=True)
    ...     zip: StringField = StringField(max_length=10)
    """

    _fields: ClassVar[dict[str, Field]] = {}
    __hash__ = None  # type: ignore[assignment]  # (compared by value and mutable)

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        unknown = [k for k in values if k not in cls._fields]
        if unknown:
            raise UnknownFieldError(cls.__name__, unknown[0], list(cls._fields))
        for name, field in cls._fields.items():
            self.__dict__[name] = values[name] if name in values else field.initial()

    def _checked(self, prefix: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Clean every field in place; return the storage form and the problems by dotted
        path (``prefix`` is this document's own path)."""
        storage: dict[str, Any] = {}
        problems: dict[str, list[str]] = {}
        for name, field in self._fields.items():
            where = f"{prefix}.{name}" if prefix else name
            cleaned, messages = _validate(field, self.__dict__.get(name), where)
            for message in messages:
                if isinstance(message, NestedMessage):
                    problems.setdefault(message.path, []).append(str(message))
                else:
                    problems.setdefault(where, []).append(f"'{where}' {message}")
            if not messages:
                self.__dict__[name] = cleaned
                storage[field.db_name] = field.to_storage(cleaned)
        return storage, problems

    def clean(self) -> dict[str, Any]:
        """Validate every field; return the storage form or raise one ValidationError."""
        storage, problems = self._checked("")
        if problems:
            raise ValidationError(problems, model=type(self).__name__)
        return storage

    def validate(self) -> None:
        self.clean()

    def to_dict(self, *, storage: bool = False) -> dict[str, Any]:
        """The values by attribute name (embedded documents as dicts), or with
        ``storage=True`` the stored form by storage name."""
        if storage:
            return {f.db_name: f.to_storage(self.__dict__.get(n)) for n, f in self._fields.items()}
        return {name: plain(self.__dict__.get(name)) for name in self._fields}

    @classmethod
    def from_storage(cls: type[E], data: dict[str, Any]) -> E:
        """An instance from its stored form (a key the class does not declare is ignored;
        a field the stored form lacks gets its default)."""
        doc = cls.__new__(cls)
        for name, field in cls._fields.items():
            raw = data.get(field.db_name, MISSING)
            if raw is MISSING:
                doc.__dict__[name] = field.initial()
            else:
                doc.__dict__[name] = None if raw is None else field.from_storage(raw)
        return doc

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(self.__dict__.get(n) == other.__dict__.get(n) for n in self._fields)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={self.__dict__.get(n)!r}" for n in self._fields)
        return f"{type(self).__name__}({parts})"


def _validate(field: Field, value: Any, where: str) -> tuple[Any, list[str]]:
    if isinstance(field, EmbeddedDocumentField):
        return field.validate_at(value, where)
    return field.validate(value)


def plain(value: Any) -> Any:
    """A value with its embedded documents (also in lists) as dicts: what ``to_dict`` shows."""
    if isinstance(value, EmbeddedDocument):
        return value.to_dict()
    if isinstance(value, list) and any(isinstance(v, EmbeddedDocument) for v in value):
        return [plain(v) for v in value]
    return value


class EmbeddedDocumentField(Field[E]):
    """One embedded document of class ``document``, stored as a nested JSON object.

    Queries reach inside with paths (``filter(address__city="Portland")``, see
    :mod:`quantumorm.query.paths`); on the field itself ``exact``/``ne`` compare whole
    values and ``isnull`` tests presence. A path under a null embedded document is null.
    """

    lookups = KIND_LOOKUPS[FieldKind.WHOLE]
    indexable = False
    sortable = False

    def __init__(self, document: type[E], **options: Any) -> None:
        if not (isinstance(document, type) and issubclass(document, EmbeddedDocument)):
            raise ConfigurationError("EmbeddedDocumentField needs an EmbeddedDocument class "
                                     f"(got {document!r})")
        self.document: type[E] = document
        self.type_name = f"embedded {document.__name__}"
        super().__init__(**options)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> EmbeddedRef[E]: ...

    @overload
    def __get__(self, instance: Holder, owner: type[Any]) -> E | None: ...

    def __get__(self, instance: Holder | None, owner: type[Any]) -> EmbeddedRef[E] | E | None:
        if instance is None:  # ``Person.address``: its fields are expressions too
            return EmbeddedRef(owner, self)
        value: E | None = instance.__dict__.get(self.name)
        return value

    def __set__(self, instance: Any, value: E | dict[str, Any] | None) -> None:
        # a dict becomes the embedded class at once, so ``doc.address.city`` works after it
        if isinstance(value, dict):
            try:
                value = self.clean(value)
            except FieldValueError:
                pass  # kept as assigned: the save reports it
        instance.__dict__[self.name] = value

    def clean(self, value: Any) -> E:
        if isinstance(value, self.document):
            return value
        if isinstance(value, dict):
            unknown = [k for k in value if k not in self.document._fields]
            if unknown:
                raise FieldValueError(f"has no field {unknown[0]!r} (fields of "
                                      f"{self.document.__name__}: "
                                      f"{', '.join(self.document._fields) or 'none'})")
            return self.document(**value)
        raise FieldValueError(f"must be a {self.document.__name__} or a dict "
                              f"(got {show(value)})")

    def validate(self, value: Any) -> tuple[Any, list[str]]:
        return self.validate_at(value, self.name)

    def validate_at(self, value: Any, where: str) -> tuple[Any, list[str]]:
        """:meth:`validate`, nested messages reported under the path ``where``."""
        if value is None:
            return super().validate(value)
        try:
            doc = self.clean(value)
        except FieldValueError as exc:
            return value, [str(exc)]
        _, problems = doc._checked(where)
        messages: list[str] = []
        for path, texts in problems.items():
            if where:
                messages += [NestedMessage(path, text) for text in texts]
            else:  # (an array's element: no path of its own)
                messages += texts
        if not messages and self.choices is not None and doc not in self.choices:
            messages.append(f"must be one of the choices (got {show(doc)})")
        return doc, messages

    def to_storage(self, value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if isinstance(value, dict):  # (not cleaned yet: only changed_fields asks this)
            value = self.clean(value)
        return {f.db_name: f.to_storage(value.__dict__.get(n))
                for n, f in value._fields.items()}

    def from_storage(self, raw: Any) -> E | None:
        return None if raw is None else self.document.from_storage(raw)

    def sort_key(self, value: Any) -> bytes:
        # equality only: canonical JSON of the stored form
        text = json.dumps(self.to_storage(value), sort_keys=True, separators=(",", ":"),
                          allow_nan=False)
        return sortable.encode_str(text)


class EmbeddedRef(FieldRef[E]):
    """``Person.address``: conditions on the whole value (``Person.address == Address(...)``,
    ``.isnull()``), and its fields as expressions on their paths: ``Person.address.city ==
    "Portland"`` is ``Q(address__city="Portland")``, ``Person.address.zip.desc()`` orders by
    ``address__zip``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> EmbeddedRef[Any]:
        # (a ref of any field inside, typed as one that may have fields: a field that is not
        # an embedded document raises AttributeError for them at run time)
        field = self.field
        inner = field.document._fields.get(name) if isinstance(
            field, EmbeddedDocumentField) and not name.startswith("_") else None
        if inner is None:
            raise AttributeError(f"{self!r} has no field {name!r}")
        step = copy.copy(inner)  # (a stand-in named by the path: a ref needs only its name)
        step.name = f"{field.name}__{name}"
        return EmbeddedRef(self.model, step)


def embedded_class(field: Field) -> type[EmbeddedDocument] | None:
    """The embedded class a field holds (one, or a list of them), else None."""
    if isinstance(field, ArrayField) and isinstance(field.field, EmbeddedDocumentField):
        return field.field.document
    if isinstance(field, EmbeddedDocumentField):
        return field.document
    return None


def json_form(field: Field, value: Any) -> Any:
    """A cleaned value of ``field`` as JSON-safe data keyed by attribute names (what
    ``to_dict(json=True)`` gives): the stored form, except that an embedded document (also
    in a list) is keyed by its fields' attribute names, as the document's own fields are,
    not by their storage names."""
    if value is None:
        return None
    if isinstance(field, EmbeddedDocumentField):
        return {name: json_form(inner, value.__dict__.get(name))
                for name, inner in value._fields.items()}
    if isinstance(field, ArrayField) and isinstance(field.field, EmbeddedDocumentField):
        return [json_form(field.field, item) for item in value]
    return field.to_storage(value)
