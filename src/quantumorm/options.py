"""Model options: the inner ``class Meta``, checked once at class creation.

:class:`ModelOptions` is the frozen view of a model that queries and backends read; nothing
reads the user's ``Meta`` class afterwards. Every mistake (unknown option, bad type, index on
an unknown or unindexable field) raises :class:`ConfigurationError` naming the model.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from .cache.settings import CacheSettings, parse_cache
from .compression import Compression, from_meta
from .errors import ConfigurationError, UnknownFieldError
from .fields.base import MISSING, Field
from .fields.reference import ReferenceField
from .fields.scalar import (
    BooleanField,
    DecimalField,
    FloatField,
    IntField,
    StringField,
    UUIDField,
)
from .fields.special import DateField, EmailField, EnumField, URLField
from .fields.structured import ArrayField, DateTimeField, JSONField
from .query import paths
from .query.lookups import Lookup
from .query.nodes import ID, Node, Ordering

T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
KNOWN_OPTIONS = frozenset(
    {"abstract", "backend", "cache", "changes", "changes_document", "changes_maxlen",
     "collection", "compress", "connection", "indexes", "namespace", "ordering",
     "partition_by", "partitions", "publish", "ttl"}
)
MAX_PARTITIONS = 4096
#: the most indexes a model may have: a Redis write carries every index's key and entries in
#: one script call, whose arguments a script unpacks onto Lua's stack (a few thousand values
#: at most: past about 4,000 indexes a write failed, an insert after its first writes)
MAX_INDEXES = 1000
#: entries a partition's change stream keeps (approximately: Redis trims whole nodes)
DEFAULT_CHANGES_MAXLEN = 10_000


@dataclass(frozen=True)
class IndexSpec:
    """A secondary index over one field or, in order, several (compound)."""

    name: str
    fields: tuple[str, ...]
    unique: bool = False

    @property
    def compound(self) -> bool:
        return len(self.fields) > 1


@dataclass(frozen=True)
class ModelOptions:
    model_name: str
    collection: str
    backend: str
    connection: str | None
    namespace: str
    partitions: int
    ttl: int | None
    fields: dict[str, Field]
    indexes: tuple[IndexSpec, ...]
    #: change stream: None = on where the backend has one, True = required, False = off
    changes: bool | None = None
    changes_maxlen: int = DEFAULT_CHANGES_MAXLEN
    #: events carry the document's JSON (creates and updates; deletes carry the last one)
    changes_document: bool = False
    #: every change is also PUBLISHed (Pub/Sub: fire-and-forget, no history)
    publish: bool = False
    #: what picks a document's partition: "id" (the whole id) or "tag" (its ``{...}`` part,
    #: as Redis Cluster hash tags: ids sharing a tag share a partition)
    partition_by: str = "id"
    #: ``Meta.compress``: documents whose JSON reaches ``min_size`` bytes are stored
    #: compressed (:mod:`quantumorm.compression`); None: off. Redis only: compression is
    #: for Redis memory, and SQLite ignores the option (it stores the JSON as it is).
    #: Reads never depend on it: a compressed document is known by its first byte.
    compress: Compression | None = None
    #: Redis in front of the primary store (``Meta.cache``; see :mod:`quantumorm.cache`)
    cache: CacheSettings | None = None
    #: ``Meta.ordering``: the order of every query that has no ``order_by()`` (ties
    #: broken by id, as in ``order_by``); empty: by id
    ordering: tuple[Ordering, ...] = ()

    #: the field declared ``primary_key=True``, if any (another name and type of the id;
    #: it is not in ``fields`` and is not stored): see :meth:`primary_key`
    key_fields: tuple[Field, ...] = ()

    def primary_key(self) -> Field | None:
        # (a tuple in the dataclass: a Field attribute would be taken for a descriptor)
        return self.key_fields[0] if self.key_fields else None

    def key_value(self, id: str) -> Any:
        """The primary-key field's value of a stored id (``IntField(primary_key=True)``:
        the id as a number), as ``doc.<key field>`` gives it."""
        return int(id) if id.isascii() and id.isdigit() else id

    def is_key_name(self, name: str) -> bool:
        """Whether ``name`` is the field declared ``primary_key=True`` (the id's other name)."""
        return bool(self.key_fields) and self.key_fields[0].name == name

    def state_for(self, owner: object, make: Callable[[], T]) -> T:
        """What ``owner`` (a connection's backend) keeps about this model: its keys,
        layout, planner, stored schema. Kept here, weakly keyed by the owner, rather than by
        the owner: a model class made at runtime is freed with everything about it once it
        is gone, and a closed connection's state goes with the connection."""
        states = self.__dict__.get("_states")
        if states is None:
            # (a frozen dataclass: its __dict__ is written directly, as cached_property does)
            states = self.__dict__["_states"] = weakref.WeakKeyDictionary()
        state = states.get(owner)
        if state is None:
            state = states[owner] = make()
        return state

    @cached_property
    def loaders(self) -> tuple[tuple[str, str, Callable[[Any], Any] | None], ...]:
        """What loading a stored document does per field, computed once: (attribute,
        storage name, converter of a value that is not None, or None when the storage form
        is the value, see :meth:`Field.loader`)."""
        return tuple((name, field.db_name, field.loader()) for name, field in self.fields.items()
                     if paths.derived(field) is None)

    def _fill_lines(self, scope: dict[str, Any]) -> list[str]:
        """The statements of :attr:`fill` (and of :meth:`loader`), which read ``data`` and
        write ``values``; what they call goes into ``scope``."""
        lines = []
        scope["MISSING"] = MISSING
        for position, (name, db_name, convert) in enumerate(self.loaders):
            # (initial() asked at load time, not its answer read once here: a field's
            # default may be set after its class is made, see Field.QUICK_OPTIONS)
            scope[f"initial{position}"] = self.fields[name].initial
            lines.append(f"    raw = data.get({db_name!r}, MISSING)")
            lines.append("    if raw is MISSING:")
            lines.append(f"        values[{name!r}] = initial{position}()")
            if convert is None:
                lines.append("    else:")
                lines.append(f"        values[{name!r}] = raw")
            else:
                scope[f"convert{position}"] = convert
                lines.append("    else:")
                lines.append(f"        values[{name!r}] = None if raw is None else "
                             f"convert{position}(raw)")
        return lines

    @cached_property
    def fill(self) -> Callable[[dict[str, Any], dict[str, Any]], None]:
        """What :attr:`loaders` do, as one function made once (no loop, no lookup of a
        converter per field): ``fill(values, data)`` puts each loaded field of the stored
        ``data`` in ``values`` (an instance's dict); a field missing from ``data`` (a
        document written before the field was added) gets its default. Each converter runs
        once per value, and an error of one (a KeyError too) is raised as it is."""
        scope: dict[str, Any] = {}
        lines = ["def fill(values, data):", *self._fill_lines(scope), "    return None"]
        # (generated as dataclasses generates its methods: the names are quoted by repr)
        exec("\n".join(lines), scope)
        fill: Callable[[dict[str, Any], dict[str, Any]], None] = scope["fill"]
        return fill

    def loader(self, model: type[Any]) -> Callable[[str, int, dict[str, Any]], Any]:
        """``Document.from_storage(id, version, data)`` of ``model`` (whose options these
        are) as one function made once: the instance made and :attr:`fill`'s statements
        inline, one call per document where there were two and their lookups (a query
        loads each of its rows with it). Made again if asked for another class."""
        made = self.__dict__.get("_loader")
        if made is not None and made[0] is model:
            load: Callable[[str, int, dict[str, Any]], Any] = made[1]
            return load
        scope: dict[str, Any] = {"model": model, "new": model.__new__}
        lines = ["def load(id, version, data):",
                 "    doc = new(model)",
                 "    values = doc.__dict__",
                 "    values['id'] = id",
                 "    values['_version'] = version",
                 "    values['_partial'] = None",
                 "    values['_stored'] = dict(data)",
                 *self._fill_lines(scope),
                 "    return doc"]
        exec("\n".join(lines), scope)
        load = scope["load"]
        self.__dict__["_loader"] = (model, load)
        return load

    @cached_property
    def derived(self) -> tuple[tuple[str, paths.Path], ...]:
        """The derived fields (indexed paths into embedded documents) and their paths: the
        documents' values of these are computed, never stored."""
        return tuple((name, path) for name, field in self.fields.items()
                     if (path := paths.derived(field)) is not None)

    @cached_property
    def plain_storage(self) -> bool:
        """Whether the validated storage form of every field is plain JSON (str, int,
        finite float, bool, None, lists, str-keyed dicts): true when each field is one of
        the built-in field classes themselves (a subclass may store anything), which lets
        the encoder take its fast path (:func:`quantumorm.jsoncodec.encode_plain`)."""
        return all(_plain(field) for field in self.fields.values()
                   if paths.derived(field) is None)

    def canonical_text(self, name: str) -> bool:
        """Whether field ``name`` stores one JSON text per value (a built-in scalar field, or
        an array of one), so that a store can tell a changed value by its text."""
        field = self.fields[name]
        if isinstance(field, ArrayField):
            field = field.field
        return type(field) in _CANONICAL_FIELDS

    def nested(self, key: str) -> tuple[paths.Path, Lookup] | None:
        """A query key that goes inside an embedded field (``address__city__in``) as its
        path and lookup, or None (see :mod:`quantumorm.query.paths`)."""
        return paths.nested(self, key)

    def served(self, node: Node) -> Node:
        """A condition on a path through a list, as its index's membership test when the
        model declares one (see :func:`quantumorm.query.paths.served`)."""
        return paths.served(self, node)

    def read_value(self, name: str, data: dict[str, Any]) -> Any:
        """The Python value of field ``name`` in stored ``data``. A field the stored
        document lacks (it was added to the model since the document was written) reads as
        its default, so reads, Python-side filters and index builds all see one value."""
        field = self.fields[name]
        path = paths.derived(field)
        if path is not None:  # a derived field: the value at its path
            return path.indexed_value({path.steps[0]: self.read_value(path.steps[0], data)})
        raw = data.get(field.db_name, MISSING)
        if raw is MISSING:
            return field.initial()
        return None if raw is None else field.from_storage(raw)

    def with_defaults(self, data: dict[str, Any],
                      values: dict[str, Any]) -> dict[str, Any] | None:
        """Stored ``data`` with the defaults (as ``values``, read by :meth:`read_value`) of
        the fields it lacks stored into it, or None if it lacks none: what index builds
        write back, so that a later change of a default cannot change what a document says."""
        missing = [name for name, field in self.fields.items()
                   if field.db_name not in data and field.default is not MISSING]
        if not missing:
            return None
        filled = dict(data)
        for name in missing:
            field, value = self.fields[name], values[name]
            filled[field.db_name] = None if value is None else field.to_storage(value)
        return filled

    @property
    def indexed_fields(self) -> tuple[str, ...]:
        """Fields whose values an index keeps (in declaration order)."""
        seen = {name for index in self.indexes for name in index.fields}
        return tuple(name for name in self.fields if name in seen)

    def indexes_by_name(self) -> dict[str, IndexSpec]:
        return {index.name: index for index in self.indexes}

    def single_index(self, field: str) -> IndexSpec | None:
        for index in self.indexes:
            if index.fields == (field,):
                return index
        return None


#: the field classes whose stored JSON is one text per value, so that a changed value shows
#: in its text (see canonical_text; not JSON values: a dict's keys may come in any order)
_CANONICAL_FIELDS: frozenset[type[Field]] = frozenset({
    StringField, IntField, FloatField, BooleanField, DecimalField, UUIDField, DateTimeField,
    DateField, EnumField, EmailField, URLField})
#: the field classes whose validated storage values are plain JSON (see plain_storage)
_PLAIN_FIELDS = _CANONICAL_FIELDS | {JSONField}
# (a reference stores the id text, one per value; it is read back as a Ref, so it is not
# among the plain fields, which are read as stored)
_CANONICAL_FIELDS |= {ReferenceField}


def _plain(field: Field) -> bool:
    if type(field) is ArrayField:
        return _plain(field.field)
    return type(field) in _PLAIN_FIELDS


def build_options(
    model_name: str, meta: type | None, fields: dict[str, Field], inherited: dict[str, Any],
    primary_key: Field | None = None,
) -> tuple[ModelOptions, bool]:
    """Check ``Meta`` and the fields; return the options and whether the model is abstract."""
    raw = dict(inherited)
    declared = {k: v for k, v in vars(meta).items() if not k.startswith("__")} if meta else {}
    unknown = set(declared) - KNOWN_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"{model_name}.Meta: unknown option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(KNOWN_OPTIONS))})"
        )
    abstract = bool(declared.pop("abstract", False))
    raw.update(declared)
    where = f"{model_name}.Meta"

    collection = raw.get("collection", model_name.lower())
    _check_name(where, "collection", collection)
    namespace = raw.get("namespace", "qorm")
    _check_name(where, "namespace", namespace)
    backend = raw.get("backend", "redis")
    if not isinstance(backend, str) or not backend:
        raise ConfigurationError(f"{where}: backend must be a backend name (got {backend!r})")
    connection = raw.get("connection")
    if connection is not None and not isinstance(connection, str):
        raise ConfigurationError(f"{where}: connection must be a name (got {connection!r})")
    partitions = raw.get("partitions", 1)
    if isinstance(partitions, bool) or not isinstance(partitions, int) or not (
        1 <= partitions <= MAX_PARTITIONS
    ):
        raise ConfigurationError(
            f"{where}: partitions must be an int in 1..{MAX_PARTITIONS} (got {partitions!r})"
        )
    ttl = raw.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise ConfigurationError(f"{where}: ttl must be a positive number of seconds (got {ttl!r})")

    changes = raw.get("changes")
    if changes is not None and not isinstance(changes, bool):
        raise ConfigurationError(f"{where}: changes must be True, False or None (got {changes!r})")
    changes_maxlen = raw.get("changes_maxlen", DEFAULT_CHANGES_MAXLEN)
    if isinstance(changes_maxlen, bool) or not isinstance(changes_maxlen, int) or (
            changes_maxlen < 1):
        raise ConfigurationError(
            f"{where}: changes_maxlen must be a positive int (got {changes_maxlen!r})")
    flags = {}
    for flag in ("changes_document", "publish"):
        flags[flag] = raw.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise ConfigurationError(f"{where}: {flag} must be True or False "
                                     f"(got {flags[flag]!r})")

    partition_by = raw.get("partition_by", "id")
    if partition_by not in ("id", "tag"):
        raise ConfigurationError(f"{where}: partition_by must be 'id' or 'tag' "
                                 f"(got {partition_by!r})")

    compress = from_meta(where, raw.get("compress"))
    cache = parse_cache(where, raw.get("cache"))
    if cache is not None and ttl is not None:
        raise ConfigurationError(f"{where}: cache and ttl cannot be combined (a cached copy "
                                 "would outlive the document's expiry)")

    _check_db_names(model_name, fields)
    stored_fields = fields
    fields = {**fields, **_path_fields(model_name, where, fields, raw.get("indexes", ()))}
    fields = {**fields, **_folded_fields(model_name, where, fields, raw.get("indexes", ()))}
    indexes = _build_indexes(where, fields, _each(fields, _folded(raw.get("indexes", ()))))
    if len(indexes) > MAX_INDEXES:
        raise ConfigurationError(
            f"{where}: {len(indexes)} indexes; a model may have at most {MAX_INDEXES} (every "
            "write carries each index's key and entries in one script call)")
    for index in indexes:
        if index.unique and partitions > 1:
            raise ConfigurationError(
                f"{where}: unique index {index.name!r} needs partitions = 1; with several "
                "partitions uniqueness cannot be checked in one atomic write"
            )
    ordering = _build_ordering(where, stored_fields, raw.get("ordering", ()),
                               None if primary_key is None else primary_key.name)
    options = ModelOptions(
        model_name=model_name,
        collection=collection,
        backend=backend,
        connection=connection,
        namespace=namespace,
        partitions=partitions,
        ttl=ttl,
        fields=fields,
        indexes=indexes,
        changes=changes,
        changes_maxlen=changes_maxlen,
        changes_document=flags["changes_document"],
        publish=flags["publish"],
        partition_by=partition_by,
        compress=compress,
        cache=cache,
        ordering=ordering,
        key_fields=() if primary_key is None else (primary_key,),
    )
    return options, abstract


def _build_ordering(where: str, fields: dict[str, Field], declared: Any,
                    key_name: str | None = None) -> tuple[Ordering, ...]:
    """``ordering = ("-created", "name")``: field names, ``-`` for descending (the name of
    an int primary key orders by the id, as ``order_by`` does)."""
    if isinstance(declared, str) or not isinstance(declared, (tuple, list)):
        raise ConfigurationError(f"{where}: ordering must be a tuple of field names, "
                                 f"'-name' for descending (got {declared!r})")
    orderings = []
    for item in declared:
        if not isinstance(item, str) or not item.lstrip("-"):
            raise ConfigurationError(f"{where}: ordering takes field names (got {item!r})")
        name = item.removeprefix("-")
        if name == key_name:
            name = ID
        if name != ID:
            field = fields.get(name)
            if field is None:
                raise ConfigurationError(f"{where}: ordering names an unknown field {name!r} "
                                         f"(fields: id, {', '.join(fields)})")
            if not field.sortable:
                raise ConfigurationError(f"{where}: ordering by {name!r}: a "
                                         f"{field.type_name} field cannot be ordered by")
        orderings.append(Ordering(name, item.startswith("-")))
    if len({o.field for o in orderings}) < len(orderings):
        raise ConfigurationError(f"{where}: ordering names a field twice ({declared!r})")
    return tuple(orderings)


def _path_fields(model_name: str, where: str, fields: dict[str, Field], declared: Any
                 ) -> dict[str, Field]:
    """The derived fields (:func:`quantumorm.query.paths.derived_field`) of the paths into
    embedded documents that ``Meta.indexes`` names, in the order named."""
    out: dict[str, Field] = {}
    for entry in declared if isinstance(declared, (list, tuple)) else ():
        if isinstance(entry, str):
            names: Any = (entry,)
        elif isinstance(entry, dict):
            if entry.get("casefold"):  # (its own derived field: see _folded_fields)
                continue
            names = entry.get("fields", ())
        else:
            names = entry
        for name in names if isinstance(names, (list, tuple)) else ():
            if not isinstance(name, str) or not paths.is_path(name) or name in out or (
                    name + paths.EACH in out):
                continue
            try:
                path = paths.resolve_in(model_name, fields, name)
            except UnknownFieldError as exc:
                raise ConfigurationError(f"{where}: index {entry!r} names an unknown path "
                                         f"({exc})") from None
            field = paths.derived_field(path)
            out[field.name] = field
            taken = [n for n, f in fields.items() if f.db_name == field.db_name]
            if taken:
                raise ConfigurationError(f"{where}: the index on {name!r} needs the storage "
                                         f"name {field.db_name!r}, which field {taken[0]!r} "
                                         "has")
    return out


def _folded_fields(model_name: str, where: str, fields: dict[str, Field], declared: Any
                   ) -> dict[str, Field]:
    """The derived fields of the case-folded indexes ``Meta.indexes`` declares
    (``{"fields": ["email"], "casefold": True}``: see
    :func:`quantumorm.query.paths.folded_field`), in the order declared. Each folds one
    string field, or one path to a string field inside embedded documents (not through a
    list)."""
    out: dict[str, Field] = {}
    for entry in declared if isinstance(declared, (list, tuple)) else ():
        if not isinstance(entry, dict) or "casefold" not in entry:
            continue
        flag, names = entry["casefold"], entry.get("fields", ())
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{where}: casefold must be True or False "
                                     f"(got {flag!r})")
        if not flag:
            continue
        if not isinstance(names, (list, tuple)) or len(names) != 1 or not isinstance(
                names[0], str):
            raise ConfigurationError(f"{where}: a case-folded index names one string field "
                                     f"(got {entry!r})")
        try:
            path = paths.resolve_in(model_name, fields, names[0])
        except UnknownFieldError as exc:
            raise ConfigurationError(f"{where}: index {entry!r} names an unknown field "
                                     f"({exc})") from None
        if path.many or Lookup.IEXACT not in path.field.lookups or isinstance(
                path.field, ArrayField):
            raise ConfigurationError(
                f"{where}: a case-folded index needs a string field, not through a list "
                f"({names[0]!r} is {'in a list' if path.many else path.field.type_name})")
        field = paths.folded_field(path)
        if field.name in out or field.name in fields:
            raise ConfigurationError(f"{where}: two case-folded indexes on {names[0]!r}")
        taken = [n for n, f in fields.items() if f.db_name == field.db_name]
        if taken:
            raise ConfigurationError(f"{where}: the case-folded index on {names[0]!r} needs "
                                     f"the storage name {field.db_name!r}, which field "
                                     f"{taken[0]!r} has")
        out[field.name] = field
    return out


def _folded(declared: Any) -> Any:
    """``Meta.indexes`` with each case-folded index naming its derived field
    (``{"fields": ["email"], "casefold": True}`` -> ``{"fields": ("email__casefold",)}``)."""
    if not isinstance(declared, (list, tuple)):
        return declared
    out: list[Any] = []
    for entry in declared:
        if isinstance(entry, dict) and "casefold" in entry:
            folded = entry["casefold"] is True
            entry = {k: v for k, v in entry.items() if k != "casefold"}
            if folded:  # (checked by _folded_fields: one field name)
                entry["fields"] = (entry["fields"][0] + paths.FOLDED,)
        out.append(entry)
    return out


def _each(fields: dict[str, Field], declared: Any) -> Any:
    """``Meta.indexes`` with each path through a list named by its derived field
    (``addresses__city`` -> ``addresses__city__each``, see :mod:`quantumorm.query.paths`)."""
    if not isinstance(declared, (list, tuple)):
        return declared

    def rename(names: Any) -> Any:
        if not isinstance(names, (list, tuple)):
            return names
        return tuple(n + paths.EACH if isinstance(n, str) and n + paths.EACH in fields
                     else n for n in names)
    out: list[Any] = []
    for entry in declared:
        if isinstance(entry, str):
            out.append(rename((entry,))[0])
        elif isinstance(entry, dict):
            out.append({**entry, "fields": rename(entry.get("fields", ()))})
        else:
            out.append(rename(entry))
    return out


def _check_name(where: str, what: str, value: Any) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigurationError(f"{where}: {what} must match [A-Za-z0-9_.-]+ (got {value!r})")


def _check_db_names(model_name: str, fields: dict[str, Field]) -> None:
    seen: dict[str, str] = {}
    for name, field in fields.items():
        if name == "id" or field.db_name == "id":
            raise ConfigurationError(f"{model_name}: 'id' is reserved for the document id")
        if name.startswith("_"):
            raise ConfigurationError(f"{model_name}.{name}: field names may not start with '_'")
        if "__" in name:
            raise ConfigurationError(
                f"{model_name}.{name}: field names may not contain '__' (it separates a field "
                "from its lookup in filters)"
            )
        if field.db_name in seen:
            raise ConfigurationError(
                f"{model_name}: fields {seen[field.db_name]!r} and {name!r} share the "
                f"storage name {field.db_name!r}"
            )
        seen[field.db_name] = name


def _build_indexes(where: str, fields: dict[str, Field], declared: Any) -> tuple[IndexSpec, ...]:
    specs: list[IndexSpec] = [
        IndexSpec(name=field.db_name, fields=(name,), unique=field.unique)
        for name, field in fields.items()
        if field.indexed
    ]
    if not isinstance(declared, (list, tuple)):
        raise ConfigurationError(f"{where}: indexes must be a list (got {declared!r})")
    for entry in declared:
        if isinstance(entry, str):
            names, name, unique = (entry,), None, False
        elif isinstance(entry, (list, tuple)):
            names, name, unique = tuple(entry), None, False
        elif isinstance(entry, dict):
            extra = set(entry) - {"fields", "name", "unique"}
            if extra:
                raise ConfigurationError(f"{where}: unknown index option(s) {sorted(extra)}")
            names = tuple(entry.get("fields", ()))
            name, unique = entry.get("name"), entry.get("unique", False)
        else:
            raise ConfigurationError(f"{where}: an index is a field name, a tuple of field "
                                     f"names or a dict (got {entry!r})")
        if not names or not all(isinstance(n, str) for n in names):
            raise ConfigurationError(f"{where}: index {entry!r} needs field names")
        for field_name in names:
            field = fields.get(field_name)
            if field is None:
                raise ConfigurationError(f"{where}: index {entry!r} names unknown field "
                                         f"{field_name!r}")
            if not field.indexable:
                raise ConfigurationError(f"{where}: {field_name!r} ({type(field).__name__}) "
                                         "cannot be indexed")
            if len(names) > 1 and isinstance(field, ArrayField):
                raise ConfigurationError(f"{where}: array field {field_name!r} cannot be part "
                                         "of a compound index")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{where}: index {entry!r} repeats a field")
        if name is None:
            name = fields[names[0]].db_name if len(names) == 1 else "__".join(
                fields[n].db_name for n in names)
        if not isinstance(name, str) or not _IDENT.match(name):
            raise ConfigurationError(f"{where}: index name must be an identifier (got {name!r})")
        if not isinstance(unique, bool):
            raise ConfigurationError(f"{where}: unique must be True or False (got {unique!r})")
        spec = IndexSpec(name=name, fields=names, unique=unique)
        existing = [s for s in specs if s.fields == names]
        if existing and len(names) == 1:
            # indexes=["email"] on an indexed field is the same index; unique wins.
            specs[specs.index(existing[0])] = IndexSpec(
                existing[0].name, names, existing[0].unique or unique)
            continue
        if any(s.name == name for s in specs):
            raise ConfigurationError(f"{where}: two indexes are named {name!r}")
        specs.append(spec)
    return tuple(specs)
