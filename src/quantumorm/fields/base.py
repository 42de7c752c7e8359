"""The Field descriptor: declaration options, validation, storage conversion, sort keys.

A field converts between three forms of a value:

* the *Python* value on a document (``datetime``, ``Decimal``, ``UUID``...), produced by
  :meth:`Field.clean` from whatever the user assigned;
* the *storage* value, JSON-compatible, produced by :meth:`Field.to_storage` and read back by
  :meth:`Field.from_storage`;
* the *sort key*, order-preserving bytes (:mod:`quantumorm.sortable`) that indexes, filters and
  sorting compare.

``Field[T]`` is generic in its Python value type: to a type checker ``user.age`` is
``int | None`` for an ``IntField``, ``user.age = "x"`` is an error, and ``User.age`` (on the
class) is a ``FieldRef[int]`` whose comparisons build query expressions.

Query values go through the same :meth:`clean` as stored values, so a query on a datetime,
Decimal or UUID compares exactly what was stored.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, overload

from .. import sortable
from ..errors import ConfigurationError, FieldValueError
from ..query.expressions import FieldRef
from ..query.lookups import KIND_LOOKUPS, FieldKind, Lookup

if TYPE_CHECKING:
    from typing import TypeAlias

    from ..document import Document
    from .embedded import EmbeddedDocument

    #: what holds fields' values, to a type checker: a document or an embedded document
    Holder: TypeAlias = "Document | EmbeddedDocument"

if TYPE_CHECKING:
    # a default (PEP 696), so that a bare ``Field`` in annotations means ``Field[Any]``
    from typing_extensions import TypeVar

    T = TypeVar("T", default=Any)
else:
    from typing import TypeVar

    T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

EQUALITY = KIND_LOOKUPS[FieldKind.EQUALITY]
ORDERED = KIND_LOOKUPS[FieldKind.ORDERED]


#: the options a field's :meth:`~Field.quick_clean` and :meth:`~Field.storer` are made from,
#: and its default (which a model's plan for new documents reads)
QUICK_OPTIONS = frozenset({"min_length", "max_length", "regex", "choices", "min_value",
                           "max_value", "min_items", "max_items", "primary_key", "field",
                           "default"})
#: how many times one of QUICK_OPTIONS was set on any field: a model's plan for
#: ``Document.clean`` (its fields' quick checks) is made again when this moved since it was
#: made, so an option changed after the class was declared is never checked by an old rule
OPTION_CHANGES = [0]


class Field(Generic[T]):
    """Base class of all fields; ``T`` is the Python type of its values.

    Args:
        required: ``None`` (or a missing value) is a validation error.
        default: a value, or a callable called for each new document.
        choices: the allowed values (after conversion).
        indexed: keep a secondary index on this field.
        unique: at most one document per value (implies ``indexed``).
        db_field: the name in storage, if not the attribute name.
        help_text: free text for documentation.
        primary_key: the field is the document's id under its own name and type (fields
            whose class allows it: ``IntField``). See :class:`quantumorm.document.Document`.
    """

    #: the lookups a query may use on this field
    lookups: ClassVar[frozenset[Lookup]] = EQUALITY
    #: whether the field can carry a secondary index, and be ordered by
    indexable: bool = True
    sortable: bool = True
    #: the type name in messages and capability tables
    type_name: str = "value"
    #: whether ``primary_key=True`` is allowed (the value must have a canonical id form)
    can_be_primary_key: bool = False

    def __init__(
        self,
        *,
        required: bool = False,
        default: Any = MISSING,
        choices: Iterable[Any] | None = None,
        indexed: bool = False,
        unique: bool = False,
        db_field: str | None = None,
        help_text: str | None = None,
        primary_key: bool = False,
    ) -> None:
        self.name = ""
        self.primary_key = _flag("primary_key", primary_key)
        if primary_key and not self.can_be_primary_key:
            raise ConfigurationError(f"{type(self).__name__} cannot be a primary key "
                                     "(IntField can)")
        if primary_key and (indexed or unique or default is not MISSING or db_field):
            raise ConfigurationError("a primary key is the id: it takes no indexed, unique, "
                                     "default or db_field")
        self.model: type[Document] | None = None
        self.required = _flag("required", required)
        self.unique = _flag("unique", unique)
        self.indexed = _flag("indexed", indexed) or self.unique
        if db_field is not None and not (isinstance(db_field, str) and _DB_NAME.match(db_field)):
            raise ConfigurationError(f"db_field must be an identifier (got {db_field!r})")
        self.db_field = db_field
        self.help_text = help_text
        if self.indexed and not self.indexable:
            raise ConfigurationError(f"{type(self).__name__} cannot be indexed")
        self.choices: tuple[Any, ...] | None = None
        if choices is not None:
            raw = tuple(choices)
            if not raw:
                raise ConfigurationError("choices must not be empty")
            try:
                self.choices = tuple(self._clean_declared(c, "choice") for c in raw)
            except FieldValueError as exc:
                raise ConfigurationError(f"invalid choice: {exc}") from None
        self.default = default
        if default is not MISSING and default is not None and not callable(default):
            try:
                self.default = self._clean_declared(default, "default")
            except FieldValueError as exc:
                raise ConfigurationError(f"invalid default: {exc}") from None
            if self.choices is not None and self.default not in self.choices:
                raise ConfigurationError(f"default {default!r} is not one of the choices")

    # -- declaration ----------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in QUICK_OPTIONS:
            OPTION_CHANGES[0] += 1

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def db_name(self) -> str:
        return self.db_field or self.name

    def _clean_declared(self, value: Any, what: str) -> Any:
        return self._check(self.clean(value))

    def __repr__(self) -> str:
        owner = self.model.__name__ + "." if self.model is not None else ""
        return f"<{type(self).__name__} {owner}{self.name}>"

    # -- descriptor -----------------------------------------------------------------------

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> FieldRef[T]: ...

    @overload
    def __get__(self, instance: Holder, owner: type[Any]) -> T | None: ...

    def __get__(self, instance: Holder | None, owner: type[Any]) -> FieldRef[T] | T | None:
        if instance is None:
            return FieldRef(owner, self)
        return instance.__dict__.get(self.name)

    # (values are converted by clean() at save, so any value is kept as assigned until then;
    # the type says what clean() accepts)
    def __set__(self, instance: Holder, value: T | None) -> None:
        instance.__dict__[self.name] = value

    def initial(self) -> Any:
        """The value of a new document that does not set this field."""
        if self.default is MISSING:
            return None
        if callable(self.default):
            return self.default()
        return copy.deepcopy(self.default)

    # -- conversion -----------------------------------------------------------------------

    def clean(self, value: Any) -> Any:
        """Convert an assigned or queried value to the field's Python type, or raise
        :class:`FieldValueError`. ``None`` is not passed here."""
        return value

    def _check(self, value: Any) -> Any:
        """Constraint checks (lengths, bounds...) on a cleaned value; raise on failure."""
        return value

    def validate(self, value: Any) -> tuple[Any, list[str]]:
        """Clean and check a value; return the cleaned value and the list of errors."""
        if value is None:
            return None, (["is required"] if self.required else [])
        try:
            cleaned = self._check(self.clean(value))
        except FieldValueError as exc:
            return value, [str(exc)]
        if self.choices is not None and cleaned not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            return value, [f"must be one of {allowed} (got {show(value)})"]
        return cleaned, []

    def quick_clean(self) -> Callable[[Any], Any] | None:
        """A cheaper :meth:`validate` for the values most documents hold, or None (the field
        has none). The function returns the cleaned value of a value of the plain type the
        field keeps (an exact ``str`` of ASCII text for a ``StringField``, an exact ``int``
        within the bounds for an ``IntField``), the value ``validate`` would return with no
        error; for any other value (None included) it returns ``MISSING`` and changes
        nothing, and ``validate`` then judges it (its answer or its errors, as always).
        ``Document.clean`` calls it for every field of every document it validates. A field
        with ``choices``, or of a subclass with checks of its own, has none (see
        :func:`plain_checks`)."""
        return None

    def storer(self) -> Callable[[Any], Any] | None:
        """:meth:`to_storage` of a cleaned value that is not None, or None when the storage
        form of such a value is the value itself."""
        if type(self).to_storage is Field.to_storage:
            return None
        return self.to_storage

    def to_storage(self, value: Any) -> Any:
        """The JSON-compatible form of a cleaned value (``None`` stays ``None``)."""
        return value

    def from_storage(self, raw: Any) -> Any:
        return raw

    def loader(self) -> Callable[[Any], Any] | None:
        """The cheapest function giving :meth:`from_storage` of a stored value that is not
        None, or None when the stored value is the Python value itself (str, int, float,
        bool). Loading a stored document calls it for each field without validating: what
        was stored was validated when it was written. A subclass that overrides
        ``from_storage`` gets its own ``from_storage``."""
        if type(self).from_storage is Field.from_storage:
            return None
        return self.from_storage

    def sort_key(self, value: Any) -> bytes:
        """Order-preserving bytes of a cleaned value; ``None`` sorts first. A pure function
        of the value: a bulk insert computes it once per distinct value of a batch."""
        raise NotImplementedError

    def index_keys(self, value: Any) -> list[bytes]:
        """The index entries of a cleaned value (one per element for arrays); a pure function
        of the value, as :meth:`sort_key` is."""
        return [sortable.NULL if value is None else self.sort_key(value)]


def plain_checks(field: Field, owner: type[Field]) -> bool:
    """Whether ``field`` has no choices and checks values as the class ``owner`` does (a
    subclass that overrides ``validate``, ``clean`` or ``_check`` has rules of its own):
    what a :meth:`Field.quick_clean` of ``owner`` assumes."""
    kind = type(field)
    return (field.choices is None and kind.validate is Field.validate
            and kind.clean is owner.clean and kind._check is owner._check)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False (got {value!r})")
    return value


def show(value: Any, limit: int = 80) -> str:
    """``repr`` of a value for an error message, shortened if it is long.

    Never raises: an int beyond Python's int-to-text limit (``sys.get_int_max_str_digits``),
    or anything holding one, has no ``repr``, and a message must not fail on the value it
    reports."""
    try:
        text = repr(value)
    except ValueError:
        if isinstance(value, int):
            return f"<int of {value.bit_length()} bits>"
        return f"<{type(value).__name__} too large to show>"
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]}"


def is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_bound(name: str, value: Any, kind: Callable[[Any], bool]) -> Any:
    if value is not None and not kind(value):
        raise ConfigurationError(f"{name} has the wrong type (got {value!r})")
    return value
