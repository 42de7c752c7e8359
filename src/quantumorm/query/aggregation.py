"""The operations behind ``QuerySet.aggregate()``, ``distinct()``, ``item_frequencies()``
and the shape of ``values_list()`` results: what is read from the store for each, and how.

The meaning of each aggregate is :mod:`quantumorm.query.aggregates` (pure); this module
decides what to ask the backend: counts, and one-document ordered queries for ``Min`` and
``Max``, for an unsliced queryset; else the matching documents, cut down to the fields used
where the backend can (``project``: the SQL backends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..engine import ops
from ..engine.drive import Op
from ..fields.base import MISSING
from .aggregates import Aggregate, Count, Max, Min, Value
from .lookups import Lookup
from .nodes import ID, Condition, Ordering, QuerySpec, conjoin

if TYPE_CHECKING:
    from ..engine.contract import Backend
    from .queryset import QuerySet

R = TypeVar("R")


def reshape(dicts: list[dict[str, Any]], names: tuple[str, ...], flat: bool) -> list[Any]:
    """``values()`` dicts as ``values_list()`` tuples, or bare values with ``flat``."""
    if flat:
        (name,) = names
        return [values[name] for values in dicts]
    return [tuple(values[name] for name in names) for values in dicts]


def _documents(qs: QuerySet[Any], backend: Backend,
               names: Iterable[str | None]) -> Op[list[dict[str, Any]]]:
    """The cleaned values of the named fields (and the id) of every matching document, for
    the aggregates: only those fields are read where the backend can cut them out of the
    stored documents (``project``: the SQL backends), else whole documents."""
    names = list(names)
    project = getattr(backend, "project", None)
    load = qs.model.from_storage
    options = qs.model._meta
    key = options.primary_key()
    # (an int primary key's values are the ids as numbers: added under its name)
    key_name = key.name if key is not None and key.name in set(names) else None
    if project is None or qs._cache_ttl is not None:
        rows = yield from qs._fetch(backend, qs.spec)
        docs = [load(row.id, row.version, row.data)._values() for row in rows]
        if key_name is not None:
            for doc in docs:
                doc[key_name] = options.key_value(doc[ID])
        return docs
    wanted = {name for name in names if name is not None and name != ID}
    # (each value converted as Document.from_storage does, without building documents)
    loaders = [(name, db_name, convert, options.fields[name])
               for name, db_name, convert in options.loaders if name in wanted]
    rows = yield from project(options, qs.spec, [db_name for _, db_name, _, _ in loaders])
    out = []
    for row in rows:
        values: dict[str, Any] = {ID: row.id}
        data = row.data
        for name, db_name, convert, field in loaders:
            raw = data.get(db_name, MISSING)
            if raw is MISSING:  # a field added since the document was written: its default
                values[name] = field.initial()
            else:
                values[name] = raw if raw is None or convert is None else convert(raw)
        if key_name is not None:
            values[key_name] = options.key_value(row.id)
        out.append(values)
    return out


def aggregate(qs: QuerySet[Any], wanted: dict[str, Aggregate],
              backend: Backend) -> Op[dict[str, Value]]:
    """Counts, minima and maxima of a whole (unsliced) queryset are asked of the store
    one by one (a count, or the first document in the field's order: served by an index
    where there is one), never shipping every document; anything else (Sum, Avg, a slice,
    a cached query) is computed over the matching documents, read in one query."""
    options = qs.model._meta
    if (qs._cache_ttl is None and qs._offset == 0 and qs._limit is None
            and qs._after is None
            and all(isinstance(a, (Count, Min, Max)) for a in wanted.values())):
        out: dict[str, Value] = {}
        for key, one in wanted.items():
            out[key] = yield from _one_aggregate(qs, one, backend)
        return out
    docs = yield from _documents(qs, backend, (one.field for one in wanted.values()))
    return {key: one.compute(options, docs) for key, one in wanted.items()}


def _one_aggregate(qs: QuerySet[Any], aggregate: Aggregate, backend: Backend) -> Op[Value]:
    """A ``Count``, ``Min`` or ``Max`` of an unsliced queryset, by the store: a count of
    the documents with a value, or the value of the first of them in the field's order."""
    name = aggregate.field
    where = qs._where
    options = qs.model._meta
    key = name is not None and options.is_key_name(name)  # (the id under another name)
    if name is not None and name != ID and not key:
        where = conjoin(where, Condition(name, Lookup.ISNULL, False))
    if isinstance(aggregate, Count):
        return (yield from ops.count(backend, qs.model, QuerySpec(where)))
    assert name is not None
    order = (Ordering(ID if key else name, isinstance(aggregate, Max)),)
    rows = yield from backend.query(options, QuerySpec(where, order, 0, 1))
    if not rows:
        return None
    row = rows[0]
    if key:
        id_value: Value = options.key_value(row.id)
        return id_value
    value: Value = qs.model.from_storage(row.id, row.version, row.data)._values()[name]
    return value


def spread(qs: QuerySet[Any], field: str, reduce: Callable[[list[dict[str, Any]]], R],
           backend: Backend) -> Op[R]:
    """``distinct()`` and ``item_frequencies()``: ``reduce`` over the field's values."""
    docs = yield from _documents(qs, backend, (field,))
    return reduce(docs)
