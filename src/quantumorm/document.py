"""``Document``: declaring models, the instance state they carry, and the instance API.

A document instance knows its id, the version it was loaded or saved at (0 = never saved),
and the storage form of its values at that version, so :meth:`Document.save` writes only when
something changed and compare-and-sets on the version. All I/O goes through the operations in
:mod:`quantumorm.engine.ops`; each public method is a one-line call into one of them, run by
the async or the sync driver.

Typing: ``DocumentMeta`` is a ``dataclass_transform``, so type checkers build each model's
constructor from its annotated fields (``age: IntField = IntField(min_value=0)``), all
keyword-only and optional (a field's default is the field itself, as at run time, where a
missing value gets the field's default): ``User(nme="x")`` or ``User(age="x")`` is an error.
A field declared without an annotation (``age = IntField()``) is typed on instances and in
expressions, but is not a constructor keyword to a type checker.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import errors, relations
from .cache import routing as cache_routing
from .engine import atomic, delete_rules, ops
from .engine.drive import OpFactory
from .engine.stages import Staged, staged
from .engine.twin import operation, self_operation
from .errors import ConfigurationError, InvalidOperation, UnknownFieldError, ValidationError
from .fields.base import MISSING, OPTION_CHANGES, Field
from .fields.embedded import NestedMessage, json_form, plain
from .fields.reference import ReferenceField
from .interop import pydantic_support
from .options import ModelOptions, build_options
from .query.expressions import FieldRef, clean_id
from .query.queryset import QuerySet, Where

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .connection import Connection

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
elif TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:  # Python 3.10: only type checkers read the marker, so none is needed at run time
    def dataclass_transform(**_: Any) -> Callable[[type], type]:
        return lambda cls: cls

D = TypeVar("D", bound="Document")


def _id_field(*, default: None = None, kw_only: bool = False) -> Any:
    """The field specifier of ``id`` (type checkers only): the one constructor argument that
    may also be given by position, ``User("u1", name=...)``."""
    return default


if TYPE_CHECKING:
    class _Id:
        """How a type checker sees ``doc.id``: read as ``str | None``, set (and given to the
        constructor) as a string or an int (which becomes its decimal string)."""

        # (no overload for the class: ``User.id`` is an AttributeError; filter on ``id=``)
        def __get__(self, instance: Document, owner: Any) -> str | None: ...

        def __set__(self, instance: Document, value: str | int | None) -> None: ...


class Manager:
    """``Model.objects``: a fresh, unfiltered QuerySet of the model on every access."""

    # (typed for the class only: on an instance it raises, and a type checker says so)
    def __get__(self, instance: None, owner: type[D]) -> QuerySet[D]:
        if instance is not None:
            raise AttributeError("objects is reached through the class, not an instance")
        return QuerySet(owner)


@dataclass_transform(kw_only_default=True, field_specifiers=(_id_field,))
class DocumentMeta(type):
    """Collects fields, checks ``Meta`` and builds the model's :class:`ModelOptions`."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
        meta = namespace.pop("Meta", None)
        if isinstance(namespace.get("meta"), dict):
            raise ConfigurationError(_meta_dict_message(name, namespace["meta"]))
        cls = super().__new__(mcs, name, bases, namespace)
        if not any(isinstance(base, DocumentMeta) for base in bases):
            return cls  # Document itself
        fields: dict[str, Field] = {}
        inherited: dict[str, Any] = {}
        for base in reversed(cls.__mro__[1:]):
            if isinstance(base, DocumentMeta) and hasattr(base, "_fields"):
                fields.update(base._fields)
                inherited.update(getattr(base, "_inheritable", {}))
        reserved = set(dir(Document)) | {"DoesNotExist", "MultipleObjectsReturned", "id"}
        for attr, value in namespace.items():
            if isinstance(value, Field):
                if attr in reserved and attr != "id":
                    raise ConfigurationError(
                        f"{name}.{attr}: a field cannot be named like the Document API "
                        f"attribute {attr!r}; use another name and db_field={attr!r}"
                    )
                if value.model is not None:
                    raise ConfigurationError(
                        f"{name}.{attr}: field instance already belongs to "
                        f"{value.model.__name__}.{value.name}"
                    )
                fields[attr] = value
        primary_key = _primary_key(name, cls, fields)
        options, abstract = build_options(name, meta, fields, inherited, primary_key)
        for field in fields.values():
            if field.model is None or field.name in namespace:
                field.model = cls  # type: ignore[assignment]
        cls._fields = fields  # type: ignore[attr-defined]
        _plan_cleaning(cls)  # type: ignore[arg-type]
        cls._key_name = primary_key.name if primary_key else None  # type: ignore[attr-defined]
        if abstract:
            declared = {k: v for k, v in vars(meta).items()
                        if not k.startswith("__") and k not in ("abstract", "collection")}
            cls._inheritable = {**inherited, **declared}  # type: ignore[attr-defined]
            return cls
        cls._meta = options  # type: ignore[attr-defined]
        cls.DoesNotExist = type(  # type: ignore[attr-defined]
            "DoesNotExist", (errors.DoesNotExist,),
            {"__module__": cls.__module__, "__qualname__": f"{name}.DoesNotExist"})
        cls.MultipleObjectsReturned = type(  # type: ignore[attr-defined]
            "MultipleObjectsReturned", (errors.MultipleObjectsReturned,),
            {"__module__": cls.__module__, "__qualname__": f"{name}.MultipleObjectsReturned"})
        relations.register(cls)  # type: ignore[arg-type]  # (named references, delete rules)
        return cls


class Document(metaclass=DocumentMeta):
    """Base class of models.

    >>> class User(Document):
    ...     name: StringField = StringField(required=True, indexed=True)
    ...     age: IntField = IntField(min_value=0, indexed=True)
    ...     class Meta:
    ...         collection = "users"

    The annotations are for type checkers (they make ``name`` and ``age`` constructor
    keywords of ``User``); at run time a field works the same with or without one.
    """

    _meta: ClassVar[ModelOptions]
    _fields: ClassVar[dict[str, Field]]
    #: per field, what clean() needs (see _cleaners), and the fields whose value in a new
    #: document is None unless given (no default); made when OPTION_CHANGES was _cleaners_at
    _cleaners: ClassVar[tuple[Cleaner, ...]]
    _blank: ClassVar[dict[str, None]]
    _cleaners_at: ClassVar[int]
    #: the name of the field declared ``primary_key=True``, if any
    _key_name: ClassVar[str | None]
    DoesNotExist: ClassVar[type[errors.DoesNotExist]]
    MultipleObjectsReturned: ClassVar[type[errors.MultipleObjectsReturned]]
    objects: ClassVar[Manager] = Manager()
    if TYPE_CHECKING:  # (at run time ``id`` is an instance attribute, set by __init__)
        id: _Id = _id_field(default=None, kw_only=False)

    def __init__(self, id: str | int | None = None, **values: Any) -> None:
        cls = type(self)
        if not hasattr(cls, "_meta"):
            raise ConfigurationError(f"{cls.__name__} is abstract and has no collection")
        key = cls._key_name
        if key is not None and key in values:
            if id is not None:
                raise ValidationError({"id": [f"give id or {key}, not both"]})
            id = values.pop(key)
        fields = cls._fields
        if not values.keys() <= fields.keys():
            unknown = [k for k in values if k not in fields]
            raise UnknownFieldError(cls.__name__, unknown[0], list(fields))
        self.id = None if id is None else clean_id(id, _id_error)
        self._version = 0
        self._stored: dict[str, Any] | None = None  # storage values at self._version
        self._partial: frozenset[str] | None = None  # fields loaded by only()
        state = self.__dict__
        if len(values) == len(fields):  # (every field given: in the fields' order)
            for name in fields:
                state[name] = values[name]
            return
        if cls._cleaners_at != OPTION_CHANGES[0]:  # (a field option changed since)
            _plan_cleaning(cls)
        blank = cls._blank
        for name, field in fields.items():
            if name in values:
                state[name] = values[name]
            else:
                state[name] = None if name in blank else field.initial()

    # -- state ------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The stored version this instance is based on (0 before the first save)."""
        return self._version

    @property
    def is_saved(self) -> bool:
        return self._version > 0

    def clean(self) -> dict[str, Any]:
        """Validate every field; return the storage form, or raise one ValidationError that
        names every invalid field and value."""
        problems: dict[str, list[str]] = {}
        storage: dict[str, Any] = {}
        if self.id is not None:  # it may have been assigned after construction
            try:
                self.id = clean_id(self.id, ValueError)
            except ValueError as exc:
                problems["id"] = [str(exc)]
            else:
                key = self._meta.primary_key()
                if key is not None:
                    message = _primary_key_error(key, self.id)
                    if message:
                        problems[key.name] = [f"'{key.name}' {message}"]
        state = self.__dict__
        cleaners = self._cleaners
        if self._cleaners_at != OPTION_CHANGES[0]:  # (a field option changed since)
            cleaners = _plan_cleaning(type(self))
        for name, db_name, field, quick, store in cleaners:
            value = state.get(name)
            if quick is not None:  # (the common values, without validate's work)
                cleaned = quick(value)
                if cleaned is not MISSING:
                    state[name] = cleaned
                    storage[db_name] = cleaned if store is None else store(cleaned)
                    continue
            cleaned, messages = field.validate(value)
            if messages:
                for m in messages:  # (inside an embedded document: under its path)
                    if isinstance(m, NestedMessage):
                        problems.setdefault(m.path, []).append(str(m))
                    else:
                        problems.setdefault(name, []).append(f"'{name}' {m}")
                continue
            state[name] = cleaned
            storage[db_name] = field.to_storage(cleaned)
        if problems:
            raise ValidationError(problems, model=type(self).__name__)
        return storage

    def validate(self) -> None:
        """Raise :class:`ValidationError` if any field is invalid."""
        self.clean()

    def to_dict(self, *, storage: bool = False, json: bool = False) -> dict[str, Any]:
        """The document as a dict: Python values by attribute name (``storage=False``) or the
        JSON-compatible stored form by storage name (``storage=True``). Includes ``id``.

        ``json=True``: JSON-safe values by attribute name, for ``json.dumps`` or an API
        response: each field's stored form of its validated value (a Decimal as its string,
        a datetime in ISO 8601 with its offset, a date in ISO, a UUID as its string, an
        enum member as its value, nested in lists and JSON values alike; an int of any size
        stays an int, which ``json`` writes exactly). Raises :class:`ValidationError` if a
        value is invalid (it has no such form); the document is not changed."""
        if json:
            if storage:
                raise InvalidOperation("to_dict() takes storage=True or json=True, not both")
            return self._json_dict()
        out: dict[str, Any] = {"id": self.id}
        for name, field in self._fields.items():
            value = self.__dict__.get(name)
            if storage:
                out[field.db_name] = field.to_storage(value)
            elif isinstance(field, ReferenceField):  # the id (the Ref made on first read)
                ref = getattr(self, name)
                out[name] = None if ref is None else ref.id
            else:
                out[name] = plain(value)  # (embedded documents as dicts)
        return out

    def _json_dict(self) -> dict[str, Any]:
        problems: dict[str, list[str]] = {}
        out: dict[str, Any] = {"id": None if self.id is None else clean_id(self.id, _id_error)}
        for name, field in self._fields.items():
            cleaned, messages = field.validate(self.__dict__.get(name))
            if messages:
                problems[name] = [f"'{name}' {m}" for m in messages]
            else:
                out[name] = json_form(field, cleaned)
        if problems:
            raise ValidationError(problems, model=type(self).__name__)
        return out

    # -- pydantic (quantumorm.interop.pydantic, loaded on first use) --------------------------

    @classmethod
    def pydantic_model(cls, include: Iterable[str] | None = None,
                       exclude: Iterable[str] | None = None,
                       name: str | None = None) -> type[BaseModel]:
        """A pydantic v2 model of this model's fields (and ``id``), made once per arguments:
        each field's type and constraints carried over, and the field's own checks run on
        input. ``include``/``exclude``: field names (``"id"`` too); ``name``: the class name
        (default: the model's). Needs the ``pydantic`` extra. See
        :mod:`quantumorm.interop.pydantic`."""
        generated: type[BaseModel] = pydantic_support().pydantic_model(
            cls, include, exclude, name)
        return generated

    @classmethod
    def from_pydantic(cls: type[D], obj: BaseModel | Mapping[str, Any]) -> D:
        """A new, unsaved document from a pydantic model instance or a mapping of field
        values (Python or JSON forms); with an ``id``, ``save()`` inserts it under that id.
        Raises :class:`ValidationError` for every invalid or unknown field at once."""
        doc: D = pydantic_support().from_pydantic(cls, obj)
        return doc

    def changed_fields(self) -> list[str]:
        """Attribute names whose value differs from the stored version (all, if unsaved)."""
        if self._stored is None:
            return list(self._fields)
        changed = []
        for name, field in self._fields.items():
            try:
                now = field.to_storage(field.validate(self.__dict__.get(name))[0])
            except Exception:
                now = object()
            if self._stored.get(field.db_name) != now:
                changed.append(name)
        return changed

    @classmethod
    def from_storage(cls: type[D], id: str, version: int, data: dict[str, Any],
                     only: frozenset[str] | None = None) -> D:
        """Build an instance from a stored row (used by backends' results)."""
        doc = cls.__new__(cls)
        values = doc.__dict__
        values["id"], values["_version"], values["_partial"] = id, version, only
        values["_stored"] = dict(data)
        cls._meta.fill(values, data)  # (a field added since it was written: its default)
        return doc

    @classmethod
    def _loader(cls: type[D]) -> Callable[[str, int, dict[str, Any]], D]:
        """``from_storage(id, version, data)`` (a whole document) as the cheapest function:
        made once per model (:meth:`~quantumorm.options.ModelOptions.loader`), or the
        model's own ``from_storage`` when it overrides it."""
        own: Any = cls.from_storage
        if own.__func__ is not _FROM_STORAGE:
            return own  # type: ignore[no-any-return]
        load: Callable[[str, int, dict[str, Any]], D] = cls._meta.loader(cls)
        return load

    def _values(self) -> dict[str, Any]:
        get = self.__dict__.get  # (once, not the instance dict looked up per field)
        values = {name: get(name) for name in self._fields}
        values["id"] = self.id
        for name, path in self._meta.derived:  # indexed paths into embedded documents
            values[name] = path.indexed_value(values)
        return values

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id!r} v{self._version}>"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Document)
        if self.id is None or other.id is None:
            return self is other
        return self.id == other.id

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id)) if self.id is not None else id(self)

    @classmethod
    def _has_own_rules(cls) -> bool:
        """Whether the model (or a base between it and Document) overrides ``clean`` or
        ``validate``: a rule over the whole document, which an update that does not read
        the document cannot apply (see :func:`quantumorm.engine.ops.patchable`)."""
        for base in cls.__mro__:
            if base is Document:
                return False
            own = base.__dict__  # (asked on every update by query: one lookup per base)
            if "clean" in own or "validate" in own:
                return True
        return False

    @classmethod
    def _connection(cls) -> Connection:
        return cache_routing.connection_for(cls)

    # -- I/O: one operation each, async and sync ---------------------------------------------

    @self_operation
    def save(self, *, ttl: float | None = MISSING) -> OpFactory[Document]:
        """Insert the document, or compare-and-set its changed fields on its version.

        ``ttl``: seconds until the document expires (None: never). Without it, ``Meta.ttl``
        applies (every write refreshes it), or else the expiry stays as it is.

        Raises :class:`ValidationError`, :class:`VersionConflict` (someone saved a newer
        version), :class:`DuplicateIdError`, :class:`UniqueViolation`.
        """
        return partial(ops.save, doc=self, ttl=ttl)

    save_sync = save.sync

    @staged
    def delete(self, *, soft: bool = False, ttl: float | None = None
               ) -> OpFactory[bool] | Staged[bool]:
        """Delete the document if it is still at the version this instance holds.

        ``soft=True, ttl=seconds`` (backends with TTL): the document leaves every index and
        read at once, and its data is physically removed ``ttl`` seconds later.
        Returns False if it was already gone; raises :class:`VersionConflict` if it changed.
        References to the model apply their ``on_delete`` rules first (see
        :mod:`quantumorm.engine.delete_rules`).
        """
        factory = partial(ops.delete, doc=self, soft=soft, ttl=ttl)
        return delete_rules.guard_document(self, factory, soft) or factory

    delete_sync = delete.sync

    @operation
    def touch(self, ttl: float) -> OpFactory[bool]:
        """Expire the document ``ttl`` seconds from now (no new version); False if gone."""
        return partial(ops.expire, doc=self, ttl=ttl)

    touch_sync = touch.sync

    @operation
    def persist(self) -> OpFactory[bool]:
        """Remove the document's expiry (no new version); False if it is gone."""
        return partial(ops.expire, doc=self, ttl=None)

    persist_sync = persist.sync

    @operation
    def ttl(self) -> OpFactory[float | None]:
        """Seconds until the document expires (0.0 once gone), or None if it never does."""
        return partial(ops.time_to_live, doc=self)

    ttl_sync = ttl.sync

    @self_operation
    def update_with_retry(self, change: Callable[[Any], object], attempts: int = 5
                          ) -> OpFactory[Document]:
        """Apply ``change(doc)`` and save; if another writer saved first, reload the document
        and apply ``change`` again (at most ``attempts`` times, then VersionConflict).

        ``change`` must be safe to run again on fresher values (``doc.n += 1``, not
        ``doc.n = old + 1``).
        """
        return partial(ops.update_with_retry, doc=self, change=change, attempts=attempts)

    update_with_retry_sync = update_with_retry.sync

    # -- atomic field operations (see quantumorm.engine.atomic) -------------------------------

    @operation
    def inc(self, field: str, by: int | float | Decimal = 1
            ) -> OpFactory[int | float | Decimal]:
        """Add ``by`` to a numeric field of the *stored* document, atomically (no concurrent
        operation is lost; a missing value counts as 0); returns the new value."""
        return partial(atomic.modify, doc=self, changes=[("inc", field, by)],
                       answer=lambda d, _: d.__dict__[field])

    inc_sync = inc.sync

    @operation
    def dec(self, field: str, by: int | float | Decimal = 1
            ) -> OpFactory[int | float | Decimal]:
        """Subtract ``by`` from a numeric field, atomically; returns the new value."""
        if isinstance(by, bool) or not isinstance(by, (int, float, Decimal)):
            raise InvalidOperation(f"dec() takes a number (got {by!r})")
        return partial(atomic.modify, doc=self, changes=[("inc", field, -by)],
                       answer=lambda d, _: d.__dict__[field])

    dec_sync = dec.sync

    @operation
    def push(self, field: str, *values: Any, unique: bool = False) -> OpFactory[list[Any]]:
        """Append values to an array field of the stored document, atomically (``unique``:
        only those it does not hold yet); returns the new list."""
        return partial(atomic.modify, doc=self, changes=[("push", field, values)],
                       answer=lambda d, _: d.__dict__[field], unique=unique)

    push_sync = push.sync

    @operation
    def pull(self, field: str, *values: Any) -> OpFactory[list[Any]]:
        """Remove every occurrence of the values from an array field, atomically; returns
        the new list."""
        return partial(atomic.modify, doc=self, changes=[("pull", field, values)],
                       answer=lambda d, _: d.__dict__[field])

    pull_sync = pull.sync

    @operation
    def set_if_absent(self, field: str, value: Any) -> OpFactory[bool]:
        """Set a field of the stored document only if it holds no value (None); True if
        this call set it. The instance shows the stored value either way."""
        return partial(atomic.modify, doc=self, changes=[("set_if_absent", field, value)],
                       answer=lambda _, written: written)

    set_if_absent_sync = set_if_absent.sync

    @self_operation
    def update(self, /, **fields: Any) -> OpFactory[Document]:
        """Set these fields on the *stored* document and write only them, atomically (a
        compare-and-set on the stored version, recomputed if another writer got there
        first, so their changes to other fields are kept); returns the document, which
        shows the stored state and keeps its own unsaved changes to other fields."""
        if not fields:
            raise InvalidOperation(f"{type(self).__name__}.update() needs at least one field")
        # the values are checked and converted as filter().update() does them, before I/O
        values = QuerySet(type(self))._changes(fields)
        return partial(atomic.modify, doc=self,
                       changes=[("set", name, value) for name, value in values.items()],
                       answer=lambda _, __: self)

    update_sync = update.sync

    @self_operation
    def reload(self) -> OpFactory[Document]:
        """Replace the values with the stored ones; raises ``Model.DoesNotExist``."""
        return partial(ops.reload, doc=self)

    reload_sync = reload.sync

    #: upstream QuantumEngine's name of :meth:`reload`
    refresh = reload
    refresh_sync = reload_sync

    # -- class shortcuts (upstream QuantumEngine's names) ------------------------------------

    @classmethod
    async def get(cls: type[D], *conditions: Where, **lookups: Any) -> D:
        """``Model.objects.get(...)``: the one matching document (``User.get(id="u1")``)."""
        return await cls.objects.get(*conditions, **lookups)

    @classmethod
    def get_sync(cls: type[D], *conditions: Where, **lookups: Any) -> D:
        """The blocking twin of :meth:`get`."""
        return cls.objects.get_sync(*conditions, **lookups)

    @classmethod
    async def create_table(cls) -> None:
        """``Model.objects.create_collection()``: create the storage now (idempotent)."""
        await cls.objects.create_collection()

    @classmethod
    def create_table_sync(cls) -> None:
        """The blocking twin of :meth:`create_table`."""
        cls.objects.create_collection_sync()

    @classmethod
    async def drop_table(cls, *, confirm: bool = False) -> int:
        """``Model.objects.drop_collection(confirm=...)``: delete every document."""
        return await cls.objects.drop_collection(confirm=confirm)

    @classmethod
    def drop_table_sync(cls, *, confirm: bool = False) -> int:
        """The blocking twin of :meth:`drop_table`."""
        return cls.objects.drop_collection_sync(confirm=confirm)


class PrimaryKey:
    """What a field declared ``primary_key=True`` is on its model: the id under the field's
    name, as the field's type (``order.number`` is ``int(order.id)``). The field itself is
    not stored, queried or indexed apart from the id: ``filter(number__gte=10)`` is
    ``filter(id__gte=10)``, ``order_by("number")`` is ``order_by("id")``. (At run time only:
    type checkers see the field's own types.)"""

    def __init__(self, field: Field) -> None:
        self.field = field

    def __get__(self, instance: Document | None, owner: type[Any]) -> Any:
        if instance is None:
            return FieldRef(owner, self.field)
        id: Any = instance.id
        if isinstance(id, str) and id.isascii() and id.isdigit():
            return int(id)
        return id  # (as assigned, like any field's value until save checks it)

    def __set__(self, instance: Document, value: Any) -> None:
        instance.id = value  # (checked at save, as the id)


#: what Document.clean needs of a field: attribute name, stored name, the field, its
#: quick_clean (or None) and storer (None: a cleaned value is its own storage form)
Cleaner = tuple[str, str, Field, Callable[[Any], Any] | None, Callable[[Any], Any] | None]


#: the function of Document.from_storage: a model whose own differs is loaded by its own
_FROM_STORAGE: Any = Document.__dict__["from_storage"].__func__


def _cleaners(fields: dict[str, Field]) -> tuple[Cleaner, ...]:
    """Per field of a model, in order, what :meth:`Document.clean` needs."""
    return tuple((name, field.db_name, field, field.quick_clean(), field.storer())
                 for name, field in fields.items())


def _plan_cleaning(cls: type[Document]) -> tuple[Cleaner, ...]:
    """Make (again) ``cls``'s plan for :meth:`Document.clean`: when the class is made, and
    whenever a field's option that the plan is made from changed since (rare: a declared
    field's options are normally left alone, but a changed one must be checked as set)."""
    at = OPTION_CHANGES[0]
    cls._cleaners = cleaners = _cleaners(cls._fields)
    cls._blank = {name: None for name, field in cls._fields.items()
                  if type(field).initial is Field.initial
                  and (field.default is MISSING or field.default is None)}
    cls._cleaners_at = at
    return cleaners


def _primary_key(model: str, cls: type, fields: dict[str, Field]) -> Field | None:
    """The field declared ``primary_key=True``, taken out of ``fields`` (it is the id)."""
    keys = [name for name, field in fields.items() if field.primary_key]
    if not keys:
        return None
    if len(keys) > 1:
        raise ConfigurationError(f"{model}: one primary key at most (got {', '.join(keys)})")
    if keys[0] == "id":
        raise ConfigurationError(f"{model}.id: the id is the primary key already; give the "
                                 "int key another name (number = IntField(primary_key=True))")
    field = fields.pop(keys[0])
    if field.model is None:
        field.model = cls
    setattr(cls, keys[0], PrimaryKey(field))
    return field


def _primary_key_error(field: Field, id: str) -> str | None:
    """Why ``id`` is not a value of the primary key ``field`` (an int's decimal form)."""
    if not (id.isascii() and id.isdigit() and (id == "0" or not id.startswith("0"))):
        return f"must be an integer id (got {id!r})"
    errors = field.validate(int(id))[1]
    return errors[0] if errors else None


def _meta_dict_message(model: str, options: dict[Any, Any]) -> str:
    """Why a MongoEngine/QuantumEngine style ``meta = {...}`` dict is refused, with the
    ``class Meta:`` that says the same (its options are then checked as any Meta's)."""
    lines = "".join(
        f"\n            {key} = {value!r}" if isinstance(key, str) and key.isidentifier()
        else f"\n            # {key!r}: {value!r}" for key, value in options.items())
    return (f"{model}: options are declared in an inner 'class Meta:', not in a 'meta' dict "
            f"(which would be ignored). Write:\n    class {model}(Document):\n        ...\n"
            f"        class Meta:{lines or chr(10) + '            pass'}")


def _id_error(message: str) -> ValidationError:
    return ValidationError({"id": [message]})
