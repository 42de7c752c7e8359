"""``QuerySet``: an immutable query builder with async terminals and their ``_sync`` twins.

Builder methods return a new QuerySet and never touch the store; names, lookups and values
are checked when the query is built. Terminal methods are operations (see
:mod:`quantumorm.engine.twin`): ``await qs.all()`` and ``qs.all_sync()`` run the same code.

``QuerySet[D]`` is generic in its model: ``User.objects`` is a ``QuerySet[User]``, whose
``all()`` is a ``list[User]``, ``first()`` a ``User | None``, and so on. ``values()`` turns
documents into dicts, so it returns a ``QuerySet[Any]``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .. import gcpause, logs, sortable
from ..cache import queries as cache_queries
from ..cache import routing as cache_routing
from ..cache.stats import CacheStats, counters
from ..engine import delete_rules, ops, updates
from ..engine.drive import Op, OpFactory
from ..engine.stages import Staged, staged
from ..engine.twin import operation
from ..errors import (
    InvalidOperation,
    QueryError,
    UnknownFieldError,
    UnsupportedOperation,
    ValidationError,
)
from ..events import ChangeFeed, ConsumerGroup, check_wait
from ..fields.base import MISSING
from ..maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from . import aggregates, aggregation, evaluate, paths, related, shortcuts
from .aggregates import Aggregate, Value
from .expressions import FieldRef, Q, clean_id, resolve_id, resolve_lookup
from .lookups import Lookup
from .nodes import (
    FALSE,
    ID,
    TRUE,
    Condition,
    Node,
    Not,
    Ordering,
    QuerySpec,
    conjoin,
    disjoin,
    negate,
)

if TYPE_CHECKING:
    from ..connection import Connection
    from ..document import Document
    from ..engine.contract import Backend, Explanation, Row
    from ..events import Subscription

D = TypeVar("D", bound="Document")

#: what filter(), exclude() and get() take besides keywords: ``Q(...)``, a field expression
#: (``User.age > 3``, also a Q), or a dict of lookups
Where = Q | dict[str, Any]

#: documents per round trip when iterating a queryset with ``for`` / ``async for``
ITER_CHUNK = 1000


@dataclass(frozen=True)
class Page(Generic[D]):
    """One page of results. ``total`` and ``pages`` are known for numbered pages only."""

    items: list[D]
    per_page: int
    number: int | None = None
    total: int | None = None
    next_cursor: str | None = None

    @property
    def pages(self) -> int | None:
        if self.total is None:
            return None
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        if self.total is not None and self.number is not None:
            return self.number * self.per_page < self.total
        return self.next_cursor is not None

    def __iter__(self) -> Iterator[D]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class QuerySet(Generic[D]):
    def __init__(self, model: type[D]) -> None:
        self.model = model
        self._where: Node = TRUE
        self._order: tuple[Ordering, ...] = model._meta.ordering  # order_by() replaces it
        self._offset = 0
        self._limit: int | None = None
        self._after: tuple[bytes, ...] | None = None
        self._only: tuple[str, ...] | None = None
        self._values: tuple[str, ...] | None = None
        #: with ``_values``: results as dicts ("dict"), tuples ("tuple") or bare values ("flat")
        self._shape = "dict"
        self._using: str | None = None
        self._cached = True  # read through the model's cache (Meta.cache), if it has one
        self._cache_ttl: float | None = None  # cache this query's results (.cache(ttl=))
        self._related: tuple[str, ...] = ()  # select_related() (see query.related)
        self._prefetch: tuple[str, ...] = ()  # prefetch_related()

    def _clone(self, **changes: Any) -> QuerySet[D]:
        clone = object.__new__(QuerySet)
        values = clone.__dict__
        values.update(self.__dict__)
        for name, value in changes.items():
            values["_" + name] = value
        return clone

    @property
    def spec(self) -> QuerySpec:
        return QuerySpec(self._where, self._order, self._offset, self._limit, self._after)

    def __repr__(self) -> str:
        return f"<QuerySet {self.model.__name__} {self.spec}>"

    # A queryset is a query, not its results: truth and length would have to run it (and
    # ``if qs:`` cannot await), so both refuse rather than answer True / fail obscurely.
    # ``list(qs)`` still works: it treats a TypeError from __len__ as "length unknown".

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth of a QuerySet of {self.model.__name__} is not defined (it would need "
            "to run the query): use `await qs.exists()` / `qs.exists_sync()`, or "
            "`await qs.count()` / `qs.count_sync()`; compare with None (`qs is not None`) "
            "to test that you have a queryset")

    def __len__(self) -> int:
        raise TypeError(
            f"a QuerySet of {self.model.__name__} has no len() (it would need to run the "
            "query): use `await qs.count()` / `qs.count_sync()`, or the length of "
            "`await qs.all()` / `qs.all_sync()`")

    # -- building --------------------------------------------------------------------------

    def _node(self, args: Sequence[Where], kwargs: dict[str, Any]) -> Node | None:
        """The AND of the conditions, or None when there are none (no arguments, or only
        empty ``Q()``s), which filter() and exclude() both ignore."""
        parts: list[Q] = []
        for arg in args:
            if isinstance(arg, dict):
                arg = Q(**arg)
            elif not isinstance(arg, Q):
                raise QueryError(f"filter() takes Q objects, field expressions or keywords "
                                 f"(got {arg!r})")
            if not arg.empty:
                parts.append(arg)
        if kwargs:
            parts.append(Q(**kwargs))
        if not parts:
            return None
        options = self.model._meta
        return conjoin(*(q.resolve(options) for q in parts))

    def filter(self, *conditions: Where, **lookups: Any) -> QuerySet[D]:
        """Keep documents matching every condition: ``filter(User.age > 3, name="x")``.
        No condition (``filter()``, ``filter(Q())``) keeps every document."""
        if not conditions and lookups:
            # keywords only, the common case: the conditions Q(**lookups) resolves to (in
            # its order: sorted by key), without the Q
            options = self.model._meta
            if len(lookups) == 1:  # (one keyword: filter(id=x); no sort nor list to make)
                ((key, value),) = lookups.items()
                one = resolve_lookup(options, key, value)
                # (conjoin's answer for a condition joined to no condition: the condition)
                return self._clone(where=one if self._where is TRUE and type(one) is Condition
                                   else conjoin(self._where, one))
            return self._clone(where=conjoin(self._where, *[
                resolve_lookup(options, key, value) for key, value in sorted(lookups.items())]))
        node = self._node(conditions, lookups)
        return self._clone() if node is None else self._clone(where=conjoin(self._where, node))

    def exclude(self, *conditions: Where, **lookups: Any) -> QuerySet[D]:
        """Drop documents matching all the given conditions (together). No condition
        (``exclude()``, ``exclude(Q())``) drops nothing."""
        node = self._node(conditions, lookups)
        if node is None:
            return self._clone()
        return self._clone(where=conjoin(self._where, negate(node)))

    def order_by(self, *fields: str | FieldRef[Any] | Ordering) -> QuerySet[D]:
        """Order by fields, ``"-field"`` descending; ties are broken by id (in the direction of
        the last field). Replaces any previous ordering (and ``Meta.ordering``: ``order_by()``
        with no field clears it, leaving the order by id); resets a keyset position.

        ``order_by("field", "DESC")`` (upstream QuantumEngine's form): a second argument
        ``"ASC"`` or ``"DESC"`` (any case) that is not a field's name is the direction of the
        first."""
        fields = _direction_word(self.model._meta.fields, fields)
        key = self.model._meta.primary_key()
        orderings = []
        for item in fields:
            if isinstance(item, FieldRef):
                item = item.asc()
            if isinstance(item, str):
                desc = item.startswith("-")
                item = Ordering(item.lstrip("-+"), desc)
            if not isinstance(item, Ordering):
                raise QueryError(f"order_by() takes field names or expressions (got {item!r})")
            if key is not None and item.field == key.name:  # the id under another name
                item = Ordering(ID, item.descending)
            if item.field != ID:
                # (a stored field, or a path: never an indexed path's derived field by its
                # internal name, ``addresses__zip__each``)
                field = self.model._fields.get(item.field)
                if paths.is_path(item.field):  # inside an embedded document
                    path = paths.resolve(self.model._meta, item.field)
                    if path.many:
                        raise QueryError(f"{self.model.__name__}.{item.field}: a path "
                                         "through a list cannot be ordered by")
                    field = path.field
                if field is None:
                    raise QueryError(f"{self.model.__name__} has no field {item.field!r} to "
                                     "order by")
                if not field.sortable:
                    raise QueryError(f"{self.model.__name__}.{item.field}: a "
                                     f"{field.type_name} field cannot be ordered by")
            orderings.append(item)
        return self._clone(order=tuple(orderings), after=None)

    def limit(self, n: int | None) -> QuerySet[D]:
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise QueryError(f"limit must be a non-negative int or None (got {n!r})")
        return self._clone(limit=n)

    def offset(self, n: int) -> QuerySet[D]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise QueryError(f"offset must be a non-negative int (got {n!r})")
        return self._clone(offset=n)

    start = offset

    def __getitem__(self, item: slice) -> QuerySet[D]:
        if not isinstance(item, slice):
            raise TypeError(
                "index a QuerySet with a slice (qs[10:20]); one document is read by an "
                "operation: `await qs.at(0)` / `qs.at_sync(-1)` (or first() / last())")
        if item.step not in (None, 1):
            raise QueryError("QuerySet slices cannot have a step")
        start, stop = item.start or 0, item.stop
        if start < 0 or (stop is not None and stop < 0):
            raise QueryError("QuerySet slices cannot be negative")
        base_offset, base_limit = self._offset, self._limit
        new_offset = base_offset + start
        new_limit = None if stop is None else max(0, stop - start)
        if base_limit is not None:
            remaining = max(0, base_limit - start)
            new_limit = remaining if new_limit is None else min(new_limit, remaining)
        return self._clone(offset=new_offset, limit=new_limit)

    def after(self, cursor: str | None) -> QuerySet[D]:
        """Continue after the row a cursor points to (keyset pagination; stable under
        inserts). ``None`` starts at the beginning."""
        if cursor is None:
            return self._clone(after=None)
        return self._clone(after=self._decode_cursor(cursor))

    def only(self, *fields: str) -> QuerySet[D]:
        """Load only these fields (and the ordering fields, which keyset positions need);
        the documents cannot be saved until reloaded."""
        self._check_names(fields, paths_too=False)
        # (an int primary key is the id, which every document has)
        return self._clone(only=tuple(f for f in fields if not self.model._meta.is_key_name(f)))

    def values(self, *fields: str) -> QuerySet[Any]:
        """Return dicts (of the given fields, or all, plus ``id``) instead of documents."""
        self._check_names(fields)
        return self._clone(values=tuple(fields) or tuple(self.model._fields),
                           shape="dict")

    def values_list(self, *fields: str, flat: bool = False) -> QuerySet[Any]:
        """Return tuples of the given fields' values (all fields, after ``id``, if none
        are named) instead of documents; ``flat=True`` with one field: the bare values."""
        self._check_names(fields)
        if flat and len(fields) != 1:
            raise QueryError(f"values_list(flat=True) takes exactly one field (got "
                             f"{len(fields)})")
        names = tuple(fields) or (ID, *self.model._fields)
        return self._clone(values=names, shape="flat" if flat else "tuple")

    def using(self, connection: str) -> QuerySet[D]:
        """Run on the named connection instead of the model's."""
        return self._clone(using=connection)

    def __call__(self, *conditions: Where, **lookups: Any) -> QuerySet[D]:
        """``Model.objects(age__gt=3)``, ``Model.objects(Q(...))``: the same as filter()."""
        return self.filter(*conditions, **lookups)

    def select_related(self, *fields: str) -> QuerySet[D]:
        """Load the documents these reference fields point at with the results: one
        ``get_many`` per field, on the referenced model's connection (see
        :mod:`quantumorm.query.related`); ``doc.field.value`` is then the document."""
        names = tuple(dict.fromkeys(self._related + fields))
        related.check(self, names, ())
        return self._clone(related=names)

    def prefetch_related(self, *related_names: str) -> QuerySet[D]:
        """Load the documents referring to the results through these reverse names
        (``related_name``) with one query each; ``doc.name.value`` is then their list."""
        names = tuple(dict.fromkeys(self._prefetch + related_names))
        related.check(self, (), names)
        return self._clone(prefetch=names)

    def none(self) -> QuerySet[D]:
        """A queryset that matches nothing: its terminals answer empty (``[]``, 0, None)
        without a round trip, and it stays empty whatever is filtered onto it."""
        return self._clone(where=FALSE)

    def reverse(self) -> QuerySet[D]:
        """The same documents in the opposite order: the reverse of ``order_by()``, or by
        id descending when there is none. Refused on a sliced or keyset-positioned
        queryset (the slice is a window of the forward order)."""
        if self._offset or self._limit is not None or self._after is not None:
            raise QueryError("a sliced or keyset-positioned QuerySet cannot be reversed "
                             "(reverse, last() and at(-n) need the whole ordered result): "
                             "reverse before slicing")
        order = self._order or (Ordering(ID),)
        return self._clone(order=tuple(Ordering(o.field, not o.descending) for o in order),
                           after=None)

    def _combinable(self, other: object, operator: str) -> QuerySet[D]:
        if not isinstance(other, QuerySet):
            raise TypeError(f"a QuerySet combines with a QuerySet with {operator} "
                            f"(got {other!r})")
        if other.model is not self.model:
            raise QueryError(f"a QuerySet of {self.model.__name__} cannot be combined with "
                             f"one of {other.model.__name__}")
        for name in ("_order", "_offset", "_limit", "_after", "_only", "_values", "_using",
                     "_cached", "_cache_ttl"):
            if getattr(self, name) != getattr(other, name):
                raise QueryError(f"querysets combined with {operator} must differ only in "
                                 f"their filters (their {name[1:]} differ); slice or order "
                                 "the combined queryset instead")
        if self._offset or self._limit is not None or self._after is not None:
            raise QueryError(f"sliced or positioned querysets cannot be combined with "
                             f"{operator}: combine first, then slice")
        return other

    def __or__(self, other: QuerySet[D]) -> QuerySet[D]:
        """Documents matching either queryset's filters (same model, same options)."""
        right = self._combinable(other, "|")
        return self._clone(where=disjoin(self._where, right._where))

    def __and__(self, other: QuerySet[D]) -> QuerySet[D]:
        """Documents matching both querysets' filters (same model, same options)."""
        right = self._combinable(other, "&")
        return self._clone(where=conjoin(self._where, right._where))

    # -- the cache (Meta.cache, see quantumorm.cache) --------------------------------------

    def cached(self, enabled: bool = True) -> QuerySet[D]:
        """``cached(False)``: read from the primary store, not the model's cache (writes
        keep the cache true either way)."""
        if not isinstance(enabled, bool):
            raise QueryError(f"cached() takes True or False (got {enabled!r})")
        return self._clone(cached=enabled)

    def cache(self, ttl: float) -> QuerySet[D]:
        """Cache this query's results for ``ttl`` seconds in the model's cache: a result is
        used only while no write through the ORM has finished since it was computed."""
        if self.model._meta.cache is None:
            raise QueryError(f"{self.model.__name__} has no Meta.cache: cache() needs a "
                             "cache connection")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise QueryError(f"ttl must be a positive number of seconds (got {ttl!r})")
        return self._clone(cache_ttl=float(ttl))

    def cache_stats(self) -> CacheStats:
        """What the model's cache did in this process (see :class:`CacheStats`)."""
        return counters(self.model._meta).snapshot()

    # -- change events ---------------------------------------------------------------------

    def _whole_collection(self, what: str) -> None:
        if self._where != TRUE or self._order not in ((), self.model._meta.ordering) or (
                self._offset or self._limit is not None):
            raise QueryError(f"{what}() follows the whole collection; filter the events "
                             "you receive instead")

    def changes(self, since: str | datetime | None = None, *, wait: float | None = None,
                batch: int = 100) -> ChangeFeed[D]:
        """A tail of the model's change events (see :class:`quantumorm.events.ChangeFeed`):
        ``async for event in Model.objects.changes(since="0")`` or a plain ``for``."""
        self._whole_collection("changes")
        return ChangeFeed(self.model, self._using, since, wait, batch)

    def consumer_group(self, name: str, *, start: str = "$") -> ConsumerGroup[D]:
        """A consumer group over the model's change events (created on first use)."""
        self._whole_collection("consumer_group")
        return ConsumerGroup(self.model, self._using, name, start)

    def subscribe(self, *, wait: float | None = None) -> Subscription[D]:
        """Pub/Sub change notifications (``Meta.publish = True``), from the moment the
        subscription is entered: ``with Model.objects.subscribe() as sub: for e in sub``."""
        self._whole_collection("subscribe")
        check_wait(wait)
        options = self.model._meta
        if not options.publish:
            raise QueryError(f"{self.model.__name__} does not publish its changes; "
                             "set Meta.publish = True")
        connection = self._connection()
        if not connection.backend.capabilities.change_events:
            raise UnsupportedOperation(connection.kind, "change events")
        subscription: Subscription[D] = connection.store.subscription(self.model, wait)
        return subscription

    def _check_names(self, fields: Iterable[str], paths_too: bool = True) -> None:
        known = self.model._fields
        options = self.model._meta
        for name in fields:
            if paths_too and paths.is_path(name):  # values("address__city")
                paths.resolve(options, name)
            elif name != ID and name not in known and not options.is_key_name(name):
                raise UnknownFieldError(self.model.__name__, name, list(known))

    def _connection(self) -> Connection:
        connection = cache_routing.connection_for(self.model, self._using, self._cached)
        capabilities = connection.backend.capabilities
        # (a backend that serves every lookup needs no look at the conditions)
        missing = () if capabilities.every_lookup else (
            _lookups(self._where) - capabilities.lookups)
        if missing:
            raise UnsupportedOperation(connection.kind, "lookup " + ", ".join(
                sorted(repr(lookup.value) for lookup in missing)))
        if self._order and not capabilities.ordering:
            raise UnsupportedOperation(connection.kind, "order_by")
        if self._after is not None and not capabilities.keyset_pagination:
            raise UnsupportedOperation(connection.kind, "keyset pagination")
        return connection

    # -- cursors ---------------------------------------------------------------------------

    def _fingerprint(self) -> bytes:
        text = f"{self.model._meta.collection}|{self._order!r}".encode()
        return hashlib.sha1(text).digest()[:6]

    def cursor_for(self, doc: D) -> str:
        """The keyset cursor pointing at ``doc`` in this queryset's ordering."""
        loaded: frozenset[str] | None = getattr(doc, "_partial", None)
        missing = [] if loaded is None else [
            o.field for o in self._order
            if o.field != ID and o.field.partition("__")[0] not in loaded]
        if missing:  # (its position would read them as null: a wrong cursor)
            raise QueryError(f"cursor_for(): the document was loaded by only() without "
                             f"{', '.join(missing)}, which this ordering reads")
        return self._encode_cursor(self._position(doc))

    def _encode_cursor(self, keys: tuple[bytes, ...]) -> str:
        raw = self._fingerprint() + sortable.pack_list(list(keys))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _row_position(self, row: Row) -> tuple[bytes, ...]:
        """A stored row's keyset position (from all its fields, whatever only()/values())."""
        return self._position(self.model.from_storage(row.id, row.version, row.data))

    def _decode_cursor(self, cursor: str) -> tuple[bytes, ...]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            keys = tuple(sortable.unpack_list(raw[6:]))
        except (ValueError, TypeError):
            raise QueryError(f"malformed cursor {cursor!r}") from None
        if raw[:6] != self._fingerprint() or len(keys) != len(self._order) + 1:
            raise QueryError("this cursor belongs to a different ordering or model: set the "
                             "same order_by() before after()")
        return keys

    # -- results ---------------------------------------------------------------------------

    def _convert(self, rows: list[Row]) -> list[Any]:
        model = self.model
        if self._values is not None:
            wanted = self._values
            out = []
            for row in rows:
                doc = model.from_storage(row.id, row.version, row.data)
                out.append({"id": row.id, **{n: _value(doc, n) for n in wanted if n != ID}})
            related.ids_for_refs(model, wanted, out)
            if self._shape != "dict":
                return aggregation.reshape(out, wanted, self._shape == "flat")
            return out
        if self._only is None:
            # (a loader made once per model: the whole document, one call per row)
            if len(rows) < gcpause.PAUSE_FROM:
                load = model._loader()
                return [load(row.id, row.version, row.data) for row in rows]
            with gcpause.paused():  # (many documents at once: see quantumorm.gcpause)
                load = model._loader()
                return [load(row.id, row.version, row.data) for row in rows]
        # (with the top field of each ordering path: a page's last document gives the next
        # page's position, which reads ``address__city`` in ``address``)
        only = frozenset(self._only + tuple(o.field.partition("__")[0] for o in self._order
                                            if o.field != ID))
        docs = []
        for row in rows:
            doc = model.from_storage(row.id, row.version, row.data, only)
            if only is not None:
                for name in model._fields:
                    if name not in only:
                        doc.__dict__[name] = None
            docs.append(doc)
        return docs

    def _fetch(self, backend: Backend, spec: QuerySpec) -> Op[list[Row]]:
        # (returns the operation rather than wrapping it: one generator frame less)
        if self._cache_ttl is None:
            return ops.fetch(backend, self.model, spec)
        return cache_queries.fetch(backend, self.model._meta, spec, self._cache_ttl)

    def _all_op(self, backend: Backend) -> Op[list[Any]]:
        if self._values is None and self._only is None and self._cache_ttl is None:
            # (whole documents, the common query: made by the model's loader straight from
            # the reply where the backend can; the operation itself, no generator around it)
            return ops.fetch_loaded(backend, self.model, self.spec)
        return self._converted(backend)

    def _converted(self, backend: Backend) -> Op[list[Any]]:
        rows = yield from self._fetch(backend, self.spec)
        return self._convert(rows)

    def _page_op(self, backend: Backend, size: int) -> Op[tuple[list[Any], str | None]]:
        """Up to ``size`` results, and the cursor after the last one if more follow."""
        rows = yield from self._fetch(backend, self[:size + 1].spec)
        more = len(rows) > size
        rows = rows[:size]
        cursor = self._encode_cursor(self._row_position(rows[-1])) if more else None
        return self._convert(rows), cursor

    # -- terminals -------------------------------------------------------------------------

    @staged
    def all(self) -> OpFactory[list[D]] | Staged[list[D]]:
        """Every matching document, in order."""
        return related.around(self, self._all_op, "all")

    all_sync = all.sync

    @staged
    def first(self) -> OpFactory[D | None] | Staged[D | None]:
        """The first matching document (by the ordering, else by id), or None."""
        return related.around(self, partial(_first_op, self[:1]), "first")

    first_sync = first.sync

    @operation
    def last(self) -> OpFactory[D | None]:
        """The last matching document, or None: the first of the reversed order (of
        ``order_by()``, else ``Meta.ordering``, else by id descending)."""
        return partial(_first_op, self.reverse()[:1])

    last_sync = last.sync

    @operation
    def at(self, index: int) -> OpFactory[D]:
        """The document at ``index`` of the ordered result, like ``list[index]`` (a negative
        index counts from the end: it reads the reversed order); raises IndexError when the
        result is shorter. ``qs[0]`` cannot do this: an index must be awaited (async) or
        run (``at_sync``), so a QuerySet is indexed only by slices."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"at() takes an int (got {index!r})")
        qs = self[index:index + 1] if index >= 0 else self.reverse()[-index - 1:-index]
        return partial(shortcuts.at_op, qs, index)

    at_sync = at.sync

    @operation
    def in_bulk(self, ids: Iterable[str | int]) -> OpFactory[dict[str, D]]:
        """``{id: document}`` of the given ids that exist (and match the filters): one
        round trip per partition; an empty list sends nothing."""
        clean = list(dict.fromkeys(clean_id(i, QueryError, "in_bulk") for i in ids))
        return partial(shortcuts.in_bulk_op, self, clean)

    in_bulk_sync = in_bulk.sync

    @operation
    def get_or_create(self, /, defaults: dict[str, Any] | None = None, **lookups: Any
                      ) -> OpFactory[tuple[D, bool]]:
        """``(document, created)``: the one document matching ``lookups``, or a new one made
        of the exact lookups and ``defaults`` (``get_or_create(email=e, defaults={...})``,
        as in Django; a field named ``defaults`` is looked up as ``defaults__exact=``).

        Race-safe when the lookups name the id or a unique field: the store refuses a second
        insert (``DuplicateIdError`` / ``UniqueViolation``), and the document another caller
        created is read and returned. On other fields two concurrent callers can both
        create (as in Django: give such lookups a unique index)."""
        self._check_plain("get_or_create")
        values = shortcuts.creation_values(self.model, lookups, defaults)
        return partial(shortcuts.get_or_create_op, self.filter(**lookups)[:2], values)

    get_or_create_sync = get_or_create.sync

    @operation
    def update_or_create(self, /, defaults: dict[str, Any] | None = None, **lookups: Any
                         ) -> OpFactory[tuple[D, bool]]:
        """``(document, created)``: set ``defaults`` on the one document matching
        ``lookups`` (a compare-and-set save, read again and reapplied if another writer
        saved first), or create it from the exact lookups and ``defaults``. Race-safe as
        :meth:`get_or_create` (a lost insert race turns into an update)."""
        self._check_plain("update_or_create")
        values = shortcuts.creation_values(self.model, lookups, defaults)
        changes = self._changes(defaults) if defaults else {}
        return partial(shortcuts.update_or_create_op, self.filter(**lookups)[:2], values, changes)

    update_or_create_sync = update_or_create.sync

    def _check_plain(self, what: str) -> None:
        """get_or_create / update_or_create answer whole documents of the whole filtered
        collection: refused on a sliced, positioned, ``only()`` or ``values()`` queryset."""
        if (self._offset or self._limit is not None or self._after is not None
                or self._only is not None or self._values is not None):
            raise QueryError(f"{what}() needs a queryset of whole documents, not sliced "
                             "nor positioned (no [a:b], after(), only() or values())")

    def iterator(self, chunk_size: int = ITER_CHUNK) -> Chunks[D]:
        """Iterate in keyset chunks of ``chunk_size`` documents, one round trip each:
        ``async for doc in qs.iterator(500)`` or ``for doc in qs.iterator(500)``. A sliced
        queryset (and a backend without keyset pagination) is read at once."""
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise QueryError(f"chunk_size must be a positive int (got {chunk_size!r})")
        return Chunks(self, chunk_size)

    @staged
    def get(self, /, *conditions: Where, **lookups: Any) -> OpFactory[D] | Staged[D]:
        """The one document matching; raises ``Model.DoesNotExist`` or
        ``Model.MultipleObjectsReturned``."""
        if (not conditions and len(lookups) == 1 and ID in lookups and self._offset == 0
                and self._limit is None):
            # get(id=x), the common case: the same queryset as filter(id=x)[:2], built
            # without the general path's Q objects and two intermediate clones
            node = resolve_id(self.model._meta, lookups[ID])
            if (self._where is TRUE and self._after is None and self._cache_ttl is None
                    and isinstance(node, Condition)):
                # on an unfiltered queryset: the document by id, without a query
                return related.around(self, partial(_get_by_id_op, self, node), "get")
            where = conjoin(self._where, node)
            return related.around(self, partial(_get_op, self._clone(where=where, limit=2)),
                                  "get")
        qs = self.filter(*conditions, **lookups) if conditions or lookups else self
        # (two are enough to tell "more than one")
        return related.around(self, partial(_get_op, qs[:2]), "get")

    get_sync = get.sync

    @operation
    def count(self) -> OpFactory[int]:
        """How many documents match (after offset/limit); documents are not fetched."""
        if self._cache_ttl is not None:
            return partial(cache_queries.count, options=self.model._meta, spec=self.spec,
                           ttl=self._cache_ttl)
        return partial(ops.count, model=self.model, spec=self.spec)

    count_sync = count.sync

    @operation
    def exists(self) -> OpFactory[bool]:
        """Whether any document matches; stops at the first one."""
        if self._cache_ttl is not None:
            return partial(cache_queries.exists, options=self.model._meta, spec=self.spec,
                           ttl=self._cache_ttl)
        return partial(ops.exists, model=self.model, spec=self.spec)

    exists_sync = exists.sync

    @operation
    def update(self, /, *, upsert: bool = False, **fields: Any) -> OpFactory[int]:
        """Set fields on every matching document (each a compare-and-set write, retried if
        another writer got there first). Returns how many documents match the new values.

        Keywords may name operators (see :mod:`quantumorm.engine.updates`):
        ``update(inc__views=1, push__tags="x", pull__tags="y", unset__note=True)``; each
        document is updated atomically on its own. ``upsert=True`` (a query of equality
        conditions only) inserts the document they describe when none matches.

        ``filter(id=x).update(...)`` of plain values with no ``pre_save``/``post_save``
        receiver connected for the model is one round trip with no read on Redis: the
        script puts the new values in place of the stored ones (see
        :func:`quantumorm.engine.ops.update_where` for the fields it can)."""
        if upsert is False:  # (the common call: fields set to values, checked as parse() does)
            changes = updates.plain_values(self.model, fields)
            if changes is not None:
                return partial(ops.update_where, model=self.model, spec=self.spec,
                               changes=changes)
        operations = updates.parse(self.model, fields)
        changes = updates.plain_sets(operations)
        if changes is not None and not _flag(upsert, "upsert"):
            return partial(ops.update_where, model=self.model, spec=self.spec, changes=changes)
        return partial(_update_count_op, self.model, self.spec, operations, False,
                       self._upsert(upsert))

    update_sync = update.sync

    @operation
    def update_one(self, /, *, upsert: bool = False, **fields: Any) -> OpFactory[int]:
        """As :meth:`update`, on the first matching document only (by the queryset's order,
        else by id); returns 0 or 1."""
        operations = updates.parse(self.model, fields)
        return partial(_update_count_op, self.model, self[:1].spec, operations, True,
                       self._upsert(upsert))

    update_one_sync = update_one.sync

    @operation
    def modify(self, /, *, new: bool = False, upsert: bool = False,
               **fields: Any) -> OpFactory[D | None]:
        """Update the first matching document as :meth:`update_one` does and return it as
        it was before (``new=False``) or after (``new=True``) this update, or None if none
        matched (and, with ``upsert=True`` and ``new=False``, when it was inserted)."""
        operations = updates.parse(self.model, fields)
        return partial(_modify_op, self.model, self[:1].spec, operations, _flag(new, "new"),
                       self._upsert(upsert))

    modify_sync = modify.sync

    @staged
    def delete(self) -> OpFactory[int] | Staged[int]:
        """Delete every matching document; returns how many were deleted.

        ``filter(id=x)``/``filter(id__in=[...])`` with no ``pre_delete``/``post_delete``
        receiver connected for the model deletes without reading first (one round trip);
        with one connected, the documents are read first, as the receivers get them.
        References to the model apply their ``on_delete`` rules first (see
        :mod:`quantumorm.engine.delete_rules`)."""
        return (delete_rules.guard_queryset(self)
                or partial(ops.delete_where, model=self.model, spec=self.spec))

    delete_sync = delete.sync

    @operation
    def sweep(self, limit: int = 1000) -> OpFactory[int]:
        """Purge what expired documents left behind (index entries, ids), up to ``limit`` per
        partition; returns how many were purged. Writes already sweep a few each time."""
        model = self.model
        return lambda backend: logs.tool("sweep", model.__name__,
                                         ops.sweep(backend, model, limit))

    sweep_sync = sweep.sync

    @operation
    def reindex(self, batch_size: int = 500,
                progress: Progress | None = None) -> OpFactory[ReindexReport]:
        """Build the model's indexes that are building (added to a collection that has
        data, or changed), or rebuild every index when none is; online: writers go on, and
        queries use an index once it is ready. Resumes an interrupted run. ``progress(done,
        total)`` is called after every batch. Makes the model's declaration the stored
        schema, even one older than what is stored. On Redis only; see the README."""
        return _maintenance(self.model, "reindex", batch_size, progress)

    reindex_sync = reindex.sync

    @operation
    def verify(self, batch_size: int = 500,
               progress: Progress | None = None) -> OpFactory[VerifyReport]:
        """Check that documents, their meta data and every ready index agree; returns a
        report with ``ok`` and counts per kind of problem (nothing is changed). Safe while
        writers run: each batch is judged on an atomic snapshot."""
        return _maintenance(self.model, "verify", batch_size, progress)

    verify_sync = verify.sync

    @operation
    def repair(self, batch_size: int = 500,
               progress: Progress | None = None) -> OpFactory[RepairReport]:
        """Fix what :meth:`verify` finds, then verify again (``report.ok``: repaired). Each
        fix is checked again atomically when it is applied, so writers may go on. Corrupt
        documents and unique duplicates are reported, not guessed at."""
        return _maintenance(self.model, "repair", batch_size, progress)

    repair_sync = repair.sync

    @operation
    def explain(self) -> OpFactory[Explanation]:
        """How the backend answers this query: the driving index, and whether it scans."""
        model, spec = self.model, self.spec
        return lambda backend: backend.explain(model._meta, spec)

    explain_sync = explain.sync

    @operation
    def get_many(self, ids: Iterable[str | int]) -> OpFactory[list[D | None]]:
        """Documents by id in one round trip, in the order given (None where missing)."""
        clean = [clean_id(i, QueryError, "get_many") for i in ids]
        return partial(ops.get_many, model=self.model, ids=clean)

    get_many_sync = get_many.sync

    @operation
    def bulk_create(self, docs: Sequence[D], batch_size: int = 500) -> OpFactory[list[D]]:
        """Insert new documents, ``batch_size`` per round trip; returns them with ids."""
        return partial(ops.bulk_create, model=self.model, docs=list(docs), batch_size=batch_size)

    bulk_create_sync = bulk_create.sync

    @operation
    def create(self, /, **values: Any) -> OpFactory[D]:
        """Build and insert one document."""
        doc = self.model(**values)
        return partial(ops.save, doc=doc)

    create_sync = create.sync

    @operation
    def paginate(self, page: int | None = None, per_page: int = 20,
                 after: str | None = MISSING) -> OpFactory[Page[D]]:
        """A page of results.

        ``paginate(page=3, per_page=20)`` numbers pages (with ``total``; costs a count).
        ``paginate(per_page=20, after=cursor)`` continues from a keyset cursor (``None`` for
        the first page); each page has ``next_cursor``, and inserts between requests never
        shift or repeat rows.
        """
        if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
            raise QueryError(f"per_page must be a positive int (got {per_page!r})")
        if after is not MISSING:
            if page is not None:
                raise QueryError("paginate() takes page= or after=, not both")
            return partial(_keyset_page_op, self.after(after), per_page)
        number = 1 if page is None else page
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise QueryError(f"page must be a positive int (got {page!r})")
        return partial(_numbered_page_op, self, number, per_page)

    paginate_sync = paginate.sync

    # -- aggregation -----------------------------------------------------------------------

    @operation
    def aggregate(self, /, **named: Aggregate) -> OpFactory[dict[str, Value]]:
        """Aggregates over the matching documents (after offset/limit), by the names given:
        ``aggregate(n=Count(), total=Sum("price"), lo=Min("age"))`` -> ``{"n": 3, ...}``.
        See :mod:`quantumorm.query.aggregates` for each one's type and null rules."""
        if not named:
            raise QueryError("aggregate() needs at least one aggregate, e.g. n=Count()")
        name, options = self.model.__name__, self.model._meta
        for key, wanted in named.items():
            if not isinstance(wanted, Aggregate):
                raise QueryError(f"aggregate({key}=...) takes Count, Sum, Avg, Min or Max "
                                 f"(got {wanted!r})")
            wanted.check(name, options)
        return partial(aggregation.aggregate, self, dict(named))

    aggregate_sync = aggregate.sync

    @operation
    def distinct(self, field: str) -> OpFactory[list[Value]]:
        """The distinct non-null values of a field over the matching documents, in the
        field's order (an array field: its distinct elements)."""
        aggregates.check_spread(self.model.__name__, self.model._meta, field, "distinct")
        options = self.model._meta
        return partial(aggregation.spread, self, field,
                       lambda docs: aggregates.distinct(options, field, docs))

    distinct_sync = distinct.sync

    @operation
    def item_frequencies(self, field: str, normalize: bool = False
                         ) -> OpFactory[dict[Value, int] | dict[Value, float]]:
        """How often each value of a field occurs over the matching documents (an array
        field: each element; null counts under None), in the field's order with None first;
        ``normalize=True``: as fractions of all occurrences (MongoEngine's semantics)."""
        aggregates.check_spread(self.model.__name__, self.model._meta, field,
                                "item_frequencies")
        if not isinstance(normalize, bool):
            raise QueryError(f"normalize must be True or False (got {normalize!r})")
        options = self.model._meta

        def count(docs: list[dict[str, Any]]) -> dict[Value, int] | dict[Value, float]:
            counts = aggregates.frequencies(options, field, docs)
            if not normalize:
                return counts
            total = sum(counts.values())
            return {value: n / total for value, n in counts.items()}
        return partial(aggregation.spread, self, field, count)

    item_frequencies_sync = item_frequencies.sync

    # -- the collection's storage ----------------------------------------------------------

    @operation
    def create_collection(self) -> OpFactory[None]:
        """Create the collection's storage now rather than at its first use: SQL tables and
        indexes, the Redis schema record (the declaration checked against the stored one).
        Idempotent; never touches stored documents or id sequences."""
        self._whole("create_collection")
        return partial(_create_collection_op, self.model)

    create_collection_sync = create_collection.sync

    @operation
    def drop_collection(self, *, confirm: bool = False) -> OpFactory[int]:
        """Delete every document of the collection with its index entries; returns how many
        there were. ``confirm=True`` is required (nothing else asks). On the whole
        collection only (``delete()`` deletes what a filter matches). Refused
        (:class:`UnsupportedOperation`) on a Redis Cluster: a SCAN reaches one node."""
        if confirm is not True:
            raise InvalidOperation(f"{self.model.__name__}.objects.drop_collection() deletes "
                                   "every document: pass confirm=True")
        self._whole("drop_collection")
        return partial(_drop_collection_op, self.model)

    drop_collection_sync = drop_collection.sync

    def _whole(self, name: str) -> None:
        if (self._where is not TRUE or self._limit is not None or self._offset
                or self._after is not None):
            raise QueryError(f"{name}() acts on the whole collection: call it on "
                             f"{self.model.__name__}.objects, not on a filtered or sliced "
                             "queryset")

    # -- iteration -------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, list[D]]:
        return self.all().__await__()

    def __aiter__(self) -> AsyncIterator[D]:
        """Iterate in chunks of ``ITER_CHUNK`` documents (keyset pages), so a large result
        never sits in memory whole; sliced querysets are read at once."""
        return Chunks(self, ITER_CHUNK).__aiter__()

    def __iter__(self) -> Iterator[D]:
        return iter(Chunks(self, ITER_CHUNK))

    def _position(self, doc: D) -> tuple[bytes, ...]:
        return evaluate.sort_keys(self.model._meta, self._order, doc._values())

    def _upsert(self, upsert: bool) -> dict[str, Any] | None:
        """What an upsert inserts before its operators apply (the equality conditions), or
        None without ``upsert``; QueryError now if the query is not equalities only."""
        return updates.seed(self.model, self._where) if _flag(upsert, "upsert") else None

    def _changes(self, fields: dict[str, Any]) -> dict[str, Any]:
        known = self.model._fields  # (the stored fields: not the indexed paths)
        problems: dict[str, list[str]] = {}
        cleaned = {}
        for name, value in fields.items():
            field = known.get(name)
            if field is None and self.model._meta.is_key_name(name):
                raise QueryError(f"{self.model.__name__}.{name} is the primary key (the id): "
                                 "it cannot be updated; create a document with the new id")
            if field is None:
                raise UnknownFieldError(self.model.__name__, name, list(known))
            value, messages = field.validate(value)
            updates.file_messages(problems, name, messages)  # (nested: under their path)
            cleaned[name] = value
        if problems:
            raise ValidationError(problems, model=self.model.__name__)
        if not cleaned:
            raise QueryError("update() needs at least one field")
        return cleaned


class Chunks(Generic[D]):
    """What ``qs.iterator(chunk_size)`` is: iterable with ``for`` and ``async for``, each
    chunk one keyset page (see :func:`_pages`)."""

    def __init__(self, qs: QuerySet[D], chunk_size: int) -> None:
        self.qs, self.chunk_size = qs, chunk_size

    async def __aiter__(self) -> AsyncIterator[D]:
        pages = _pages(self.qs, self.chunk_size)
        page = next(pages)
        while True:
            docs = await page.all()
            for doc in docs:
                yield doc
            try:
                page = pages.send(docs)
            except StopIteration:
                return

    def __iter__(self) -> Iterator[D]:
        pages = _pages(self.qs, self.chunk_size)
        page = next(pages)
        while True:
            docs = page.all_sync()
            yield from docs
            try:
                page = pages.send(docs)
            except StopIteration:
                return


def _pages(qs: QuerySet[D], chunk: int = ITER_CHUNK) -> Generator[QuerySet[D], list[D], None]:
    """The chunked iteration of ``qs``, for ``for`` and ``async for`` alike: yields the
    queryset of the next page to read and receives its documents. Pages are keyset pages of
    ``chunk`` documents, so a large result never sits in memory whole; a sliced
    queryset, and any queryset on a backend without keyset pagination, is read at once."""
    if qs._limit is not None or qs._offset or qs._values is not None or (
            not qs._connection().backend.capabilities.keyset_pagination):
        yield qs
        return
    page = qs._clone(limit=chunk)
    while True:
        docs = yield page
        if len(docs) < chunk:
            return
        page = page._clone(after=qs._position(docs[-1]))


def _lookups(node: Node) -> set[Lookup]:
    if isinstance(node, Condition):
        return {node.lookup}
    if isinstance(node, Not):
        return _lookups(node.child)
    return set().union(*(_lookups(child) for child in node.children))


def _flag(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise QueryError(f"{name} must be True or False (got {value!r})")
    return value


def _update_count_op(model: type[D], spec: QuerySpec, operations: tuple[updates.Operation, ...],
                     one: bool, start: dict[str, Any] | None, backend: Backend) -> Op[int]:
    outcome = yield from updates.update(backend, model, spec, operations, one, start)
    return outcome.matched


def _modify_op(model: type[D], spec: QuerySpec, operations: tuple[updates.Operation, ...],
               new: bool, start: dict[str, Any] | None, backend: Backend) -> Op[D | None]:
    outcome = yield from updates.update(backend, model, spec, operations, True, start)
    if not outcome.matched:
        return None
    found: D | None = (outcome.after if new else outcome.before)[0]
    return found


def _first_op(qs: QuerySet[D], backend: Backend) -> Op[D | None]:
    items = yield from qs._all_op(backend)
    return items[0] if items else None


def _get_op(qs: QuerySet[D], backend: Backend) -> Op[D]:
    items = yield from qs._all_op(backend)
    name = qs.model.__name__
    if not items:
        raise qs.model.DoesNotExist(f"{name} matching {paths.shown(qs._where)!r} does not "
                                    "exist")
    if len(items) > 1:
        raise qs.model.MultipleObjectsReturned(
            f"more than one {name} matches {paths.shown(qs._where)!r}")
    return items[0]  # type: ignore[no-any-return]


def _get_by_id_op(qs: QuerySet[D], condition: Condition, backend: Backend) -> Op[D]:
    """``get(id=x)`` on an unfiltered queryset: ``_get_op`` of ``filter(id=x)[:2]`` without
    the layers between it and the backend. One id is one row or none, in any order: the
    backend's read by id (every backend's query of ``id=x`` answers what its ``get_many``
    does, which on Redis and behind the cache it is; more than one cannot happen)."""
    (row,) = yield from backend.get_many(qs.model._meta, (condition.value,))
    if row is None:
        name = qs.model.__name__
        raise qs.model.DoesNotExist(f"{name} matching {condition!r} does not exist")
    if qs._values is None and qs._only is None:
        return qs.model.from_storage(row.id, row.version, row.data)
    return qs._convert([row])[0]  # type: ignore[no-any-return]


def _numbered_page_op(qs: QuerySet[D], number: int, per_page: int,
                      backend: Backend) -> Op[Page[D]]:
    total = yield from ops.count(backend, qs.model, qs.spec)  # a sliced queryset pages its slice
    window = qs[(number - 1) * per_page:]
    items, cursor = yield from window._page_op(backend, per_page)
    return Page(items, per_page, number=number, total=total, next_cursor=cursor)


def _keyset_page_op(qs: QuerySet[D], per_page: int, backend: Backend) -> Op[Page[D]]:
    items, cursor = yield from qs._page_op(backend, per_page)
    return Page(items, per_page, next_cursor=cursor)


def _direction_word(known: dict[str, Any], fields: tuple[Any, ...]) -> tuple[Any, ...]:
    """``("age", "DESC")`` as ``("-age",)``; anything else as it is."""
    if (len(fields) == 2 and isinstance(fields[0], str) and isinstance(fields[1], str)
            and fields[1].upper() in ("ASC", "DESC") and fields[1] not in known):
        name = fields[0].lstrip("-+")
        if name != fields[0]:
            raise QueryError(f"order_by({fields[0]!r}, {fields[1]!r}): give the direction "
                             "once, as a sign or as a word")
        return (("-" if fields[1].upper() == "DESC" else "") + name,)
    return fields


def _create_collection_op(model: type[Any], backend: Backend) -> Op[None]:
    # every backend prepares a collection's storage at its first operation: an unfiltered
    # count is that first operation at its cheapest (the storage is created, nothing read)
    yield from backend.count(model._meta, QuerySpec(TRUE, (), 0, None))


def _drop_collection_op(model: type[Any], backend: Backend) -> Op[int]:
    return (yield from backend.drop_collection(model._meta))


def _maintenance(model: type[Any], name: str, batch_size: int,
                 progress: Progress | None) -> Callable[[Backend], Op[Any]]:
    """The operation factory of a maintenance method (reindex, verify, repair)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (got {batch_size!r})")

    def build(backend: Backend) -> Op[Any]:
        method = getattr(backend, name, None)
        if method is None:
            raise UnsupportedOperation(backend.name, name)
        op: Op[Any] = method(model, batch_size, progress)
        return logs.tool(name, model.__name__, op)
    return build


def _value(doc: Any, name: str) -> Any:
    """A field's value, or a path's into embedded documents (``address__city``)."""
    if paths.is_path(name):
        return paths.resolve(doc._meta, name).read(doc.__dict__)
    try:
        return doc.__dict__[name]
    except KeyError:  # an int primary key: the id as a number
        return getattr(doc, name)
