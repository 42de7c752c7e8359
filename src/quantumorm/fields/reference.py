"""``ReferenceField``: a document's pointer to another document, and what reading it gives.

A reference stores the referenced document's id (its storage form is the id string) and is
indexed by default: delete rules (:mod:`quantumorm.engine.delete_rules`) and
``prefetch_related`` find the referencing documents with an ``field__in=[ids]`` query,
which without an index is a scan of the whole referencing collection.

Reading ``post.author`` never does I/O: it is a :class:`Ref` (or None) holding the id.
Its document is there only once loaded, by ``select_related("author")`` on the query, by
``await post.author.fetch()`` (``fetch_sync()``), or because a loaded document was
assigned; ``post.author.value`` before that raises :class:`~quantumorm.errors.NotLoaded`
instead of querying behind the caller's back. A referenced document that no longer exists
(a dangling id) loads as None.

The target may be named (``ReferenceField("Category")``) for a reference to the model
being declared or to one declared later; :mod:`quantumorm.relations` resolves the name.
``related_name="posts"`` puts a reverse accessor on the target (``author.posts``, a
:class:`Reverse`), filled by ``prefetch_related("posts")``.
"""

from __future__ import annotations

import copy
import enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .. import sortable
from ..errors import ConfigurationError, FieldValueError, NotLoaded, ValidationError
from ..query.lookups import KIND_LOOKUPS, FieldKind
from .base import MISSING, Field, show

if TYPE_CHECKING:
    from ..document import Document
    from ..query.expressions import FieldRef
    from ..query.queryset import QuerySet
    from .base import Holder

D = TypeVar("D", bound="Document")


class OnDelete(enum.Enum):
    """What deleting a referenced document does to the documents that refer to it."""

    #: refuse the delete (:class:`~quantumorm.errors.DeleteDenied`) while any refer to it
    DENY = "deny"
    #: delete the referencing documents too (recursively)
    CASCADE = "cascade"
    #: set the referencing field to None (the field must not be required)
    NULLIFY = "nullify"
    #: leave the referencing documents as they are (their reference dangles)
    DO_NOTHING = "do_nothing"


DENY = OnDelete.DENY
CASCADE = OnDelete.CASCADE
NULLIFY = OnDelete.NULLIFY
DO_NOTHING = OnDelete.DO_NOTHING


class Ref(Generic[D]):
    """The value of a reference field: the referenced id, and the document once loaded.

    ``ref.id`` is always there; ``ref.value`` is the loaded document (None if the id
    dangles) or raises :class:`~quantumorm.errors.NotLoaded`; ``await ref.fetch()``
    (``fetch_sync()``) reads it (``Model.DoesNotExist`` if it is gone) and keeps it.
    Two refs are equal when they point at the same document of the same model.
    """

    __slots__ = ("_field", "_value", "id")

    def __init__(self, field: ReferenceField[D], id: str, value: Any = MISSING) -> None:
        self._field = field
        self.id = id
        self._value = value

    @property
    def model(self) -> type[D]:
        """The referenced model."""
        return self._field.target

    @property
    def loaded(self) -> bool:
        """Whether :attr:`value` can be read without I/O."""
        return self._value is not MISSING

    @property
    def value(self) -> D | None:
        """The referenced document as loaded (None: it did not exist when loaded)."""
        if self._value is MISSING:
            field = self._field
            owner = field.model.__name__ if field.model is not None else "?"
            raise NotLoaded(
                f"{owner}.{field.name} -> {field.target_name} {self.id!r} is not loaded: "
                f"query with select_related({field.name!r}), or await "
                f"{owner.lower()}.{field.name}.fetch() (or fetch_sync())")
        value: D | None = self._value
        return value

    async def fetch(self) -> D:
        """Read the referenced document (and keep it as :attr:`value`)."""
        doc: D = await self.model.objects.get(id=self.id)
        self._value = doc
        return doc

    def fetch_sync(self) -> D:
        """The blocking twin of :meth:`fetch`."""
        doc: D = self.model.objects.get_sync(id=self.id)
        self._value = doc
        return doc

    def __copy__(self) -> Ref[D]:
        return Ref(self._field, self.id, self._value)

    def __deepcopy__(self, memo: dict[int, Any]) -> Ref[D]:
        value = self._value if self._value is MISSING else copy.deepcopy(self._value, memo)
        return Ref(self._field, self.id, value)

    def _load(self, doc: D | None) -> None:
        self._value = doc

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ref):
            return self.id == other.id and self._field._same_target(other._field)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Ref", self.id))

    def __repr__(self) -> str:
        state = "" if self.loaded else ", not loaded"
        return f"<Ref {self._field.target_name} {self.id!r}{state}>"


class ReferenceField(Field[Ref[D]]):
    """A reference to a document of ``to`` (a model, or its class name as a string).

    Args:
        to: the referenced model, or its name (``"Author"``, or ``"app.models.Author"``
            when several models share the name; the model being declared may name
            itself).
        on_delete: what deleting a referenced document through the ORM does to the
            documents referring to it (:class:`OnDelete`); ``DENY`` by default. The rule
            guards deletes made through the ORM only: a write is not checked (any id is
            accepted, existing or not), nor is a TTL expiry, so a reference may dangle.
        related_name: the name of the reverse accessor put on the referenced model
            (``author.posts``), loaded by ``prefetch_related``.
        indexed: True by default (delete rules and ``prefetch_related`` query by it).

    Assign a saved document, a :class:`Ref` to the same model or an id (not looked up);
    a document not stored (never saved, or deleted) is refused.
    Queries take the same: ``filter(author=some_author)``, ``filter(author="a1")``,
    ``author__in=[...]``, ``author__isnull=True``.
    """

    lookups = KIND_LOOKUPS[FieldKind.EQUALITY]
    type_name = "reference"

    @overload
    def __init__(self: ReferenceField[D], to: type[D], *,
                 on_delete: OnDelete = ..., related_name: str | None = ...,
                 indexed: bool = ..., **options: Any) -> None: ...

    @overload
    def __init__(self: ReferenceField[Any], to: str, *,
                 on_delete: OnDelete = ..., related_name: str | None = ...,
                 indexed: bool = ..., **options: Any) -> None: ...

    def __init__(self, to: type[D] | str, *, on_delete: OnDelete = OnDelete.DENY,
                 related_name: str | None = None, indexed: bool = True,
                 **options: Any) -> None:
        if not isinstance(on_delete, OnDelete):
            raise ConfigurationError(f"on_delete must be CASCADE, NULLIFY, DENY or "
                                     f"DO_NOTHING (got {on_delete!r})")
        if options.get("primary_key"):
            raise ConfigurationError("a ReferenceField cannot be a primary key")
        if on_delete is OnDelete.NULLIFY and options.get("required"):
            raise ConfigurationError("on_delete=NULLIFY sets the field to None: the field "
                                     "cannot be required")
        if related_name is not None and not (isinstance(related_name, str)
                                             and related_name.isidentifier()):
            raise ConfigurationError(f"related_name must be an identifier "
                                     f"(got {related_name!r})")
        if isinstance(to, str):
            if not all(part.isidentifier() for part in to.split(".")):
                raise ConfigurationError(f"a model name is an identifier, or a dotted path "
                                         f"module.Name (got {to!r})")
            self._target: type[D] | None = None
            #: the class name (a dotted name's last part); ``target_path``: the whole
            self.target_name = to.rpartition(".")[2]
            self.target_path: str | None = to if "." in to else None
        elif isinstance(to, type) and hasattr(to, "_fields"):
            self._target, self.target_name, self.target_path = to, to.__name__, None
        else:
            raise ConfigurationError(f"ReferenceField takes a Document class or a model "
                                     f"name (got {to!r})")
        self.on_delete = on_delete
        self.related_name = related_name
        super().__init__(indexed=indexed, **options)

    @property
    def target(self) -> type[D]:
        """The referenced model (resolved by :mod:`quantumorm.relations` if named)."""
        if self._target is None:
            owner = self.model.__name__ if self.model is not None else "?"
            raise ConfigurationError(f"{owner}.{self.name} refers to a model named "
                                     f"{self.target_name!r}, which is not declared")
        return self._target

    # -- typing of the descriptor (at run time: Field's, plus the conversion on access) -----

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type[Any]) -> FieldRef[D | Ref[D] | str]: ...

        @overload
        def __get__(self, instance: Holder, owner: type[Any]) -> Ref[D] | None: ...

        def __get__(self, instance: Holder | None, owner: type[Any]) -> Any: ...

        def __set__(self, instance: Holder, value: D | Ref[D] | str | int | None) -> None: ...
    else:
        def __get__(self, instance, owner):
            if instance is None:
                return super().__get__(instance, owner)
            value = instance.__dict__.get(self.name)
            if value is None or (isinstance(value, Ref) and value._field is self):
                return value
            # (given to the constructor: made a Ref on first read, as an assignment is)
            ref = self._ref_or_refuse(instance, value)
            instance.__dict__[self.name] = ref
            return ref

        def __set__(self, instance, value):
            # (a Ref too: it must point at this field's model)
            if value is not None and not (isinstance(value, Ref) and value._field is self):
                value = self._ref_or_refuse(instance, value)
            instance.__dict__[self.name] = value

    def _ref_or_refuse(self, instance: Document, value: Any) -> Ref[D]:
        try:
            return self.clean(value)
        except FieldValueError as exc:
            raise ValidationError({self.name: [f"'{self.name}' {exc}"]},
                                  model=type(instance).__name__) from None

    # -- conversion -------------------------------------------------------------------------

    def clean(self, value: Any) -> Ref[D]:
        if isinstance(value, Ref):
            if not self._same_target(value._field):
                same_name = value._field.target_name == self.target_name
                raise FieldValueError(
                    f"must refer to a {self._describe(same_name)} (got a reference to a "
                    f"{value._field._describe(same_name)})")
            return value if value._field is self else Ref(self, value.id, value._value)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            if isinstance(value, int):
                return Ref(self, str(value))
            if not value:
                raise FieldValueError("must be a document or a non-empty id (got '')")
            return Ref(self, value)
        if hasattr(type(value), "_fields"):  # a document
            target = self.target
            # (exactly the model: a subclass model has its own collection, where this
            # reference would not look)
            if type(value) is not target:
                raise FieldValueError(f"must be an instance of {target.__name__} (got a "
                                      f"{type(value).__name__})")
            if value.id is None:
                raise FieldValueError(f"must be a saved {target.__name__} (got an unsaved "
                                      f"one: save it first, it has no stored id)")
            if not value.is_saved:
                # (a document deleted keeps its id but no stored version, as one never saved)
                raise FieldValueError(
                    f"must be a saved {target.__name__} (got one with id {value.id!r} that "
                    f"is not stored: deleted, or never saved; give its id to refer to it "
                    f"anyway)")
            return Ref(self, value.id, value)
        raise FieldValueError(f"must be an instance of {self.target_name}, a Ref or an id "
                              f"(got {show(value)})")

    def _same_target(self, other: ReferenceField[Any]) -> bool:
        """Whether ``other`` refers to the same model: the resolved models when both are
        resolved (two models may share a class name), else the names given."""
        mine, theirs = self._target, other._target
        if mine is not None and theirs is not None:
            return mine is theirs
        return (self.target_name == other.target_name
                and (self.target_path is None or other.target_path is None
                     or self.target_path == other.target_path))

    def _describe(self, qualified: bool) -> str:
        """The target's name; ``qualified``: with its module (to tell same-named apart)."""
        target = self._target
        if not qualified:
            return self.target_name
        if target is None:
            return self.target_path or self.target_name
        return f"{target.__module__}.{target.__qualname__}"

    def to_storage(self, value: Ref[D] | None) -> str | None:
        return None if value is None else value.id

    def from_storage(self, raw: Any) -> Ref[D] | None:
        return None if raw is None else Ref(self, raw)

    def sort_key(self, value: Ref[D]) -> bytes:
        return sortable.encode_str(value.id)


class Reverse(Generic[D]):
    """``author.posts``: the documents referring to ``author`` through one reference.

    ``value`` is the list loaded by ``prefetch_related("posts")`` (else
    :class:`~quantumorm.errors.NotLoaded`); ``query`` is the queryset of them, and
    ``await fetch()`` (``fetch_sync()``) runs it."""

    __slots__ = ("_loaded", "field", "owner")

    def __init__(self, owner: Document, field: ReferenceField[Any], loaded: Any) -> None:
        self.owner, self.field, self._loaded = owner, field, loaded

    @property
    def query(self) -> QuerySet[D]:
        model: Any = self.field.model
        qs: QuerySet[D] = model.objects.filter(**{self.field.name: self.owner.id})
        return qs

    @property
    def loaded(self) -> bool:
        return self._loaded is not MISSING

    @property
    def value(self) -> list[D]:
        if self._loaded is MISSING:
            name = self.field.related_name
            raise NotLoaded(f"{type(self.owner).__name__}.{name} is not loaded: query with "
                            f"prefetch_related({name!r}), or await {name}.fetch()")
        loaded: list[D] = self._loaded
        return loaded

    async def fetch(self) -> list[D]:
        docs: list[D] = await self.query.all()
        return docs

    def fetch_sync(self) -> list[D]:
        docs: list[D] = self.query.all_sync()
        return docs


#: where prefetched reverse sides are kept on a document (by related name)
PREFETCHED = "_qorm_prefetched"


class ReverseAccessor:
    """The class attribute a ``related_name`` puts on the referenced model."""

    def __init__(self, field: ReferenceField[Any]) -> None:
        self.field = field

    def __get__(self, instance: Document | None, owner: type[Any]) -> Any:
        if instance is None:
            return self
        name = self.field.related_name
        loaded = instance.__dict__.get(PREFETCHED, {}).get(name, MISSING)
        return Reverse(instance, self.field, loaded)

    def __set__(self, instance: Document, value: Any) -> None:
        raise AttributeError(f"{type(instance).__name__}.{self.field.related_name} is the "
                             f"reverse side of {self.field!r}; set the reference instead")
