"""The operations of the familiar QuerySet shortcuts: ``at()``, ``in_bulk()``,
``get_or_create()`` and ``update_or_create()`` (the builders are QuerySet methods; these are
the generators they run, see :mod:`quantumorm.engine.twin`).

Race safety of the create paths comes from the store: an insert of an id or a unique value
that already exists is refused (``DuplicateIdError`` / ``UniqueViolation``) by the same
atomic write that would have created it, and the caller then reads the winner's document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ..engine import ops
from ..engine.drive import Op
from ..errors import (
    DuplicateIdError,
    QueryError,
    UniqueViolation,
    UnknownFieldError,
    VersionConflict,
)
from . import paths
from .lookups import split_key
from .nodes import FALSE, ID, TRUE

if TYPE_CHECKING:
    from ..document import Document
    from ..engine.contract import Backend
    from .queryset import QuerySet

D = TypeVar("D", bound="Document")

#: how often update_or_create reads again when other writers keep winning the race
UPSERT_ATTEMPTS = 10


def at_op(qs: QuerySet[D], index: int, backend: Backend) -> Op[D]:
    items = yield from qs._all_op(backend)
    if not items:
        raise IndexError(f"QuerySet of {qs.model.__name__}: index {index} is out of range")
    return items[0]  # type: ignore[no-any-return]


def in_bulk_op(qs: QuerySet[D], ids: list[str], backend: Backend) -> Op[dict[str, D]]:
    if not ids or qs._where == FALSE:
        return {}
    if qs._where is TRUE and qs._values is None and qs._only is None and (
            qs._cache_ttl is None):
        # the documents by id (one read per partition), without a query
        docs = yield from ops.get_many(backend, qs.model, ids)
        return {i: doc for i, doc in zip(ids, docs, strict=True) if doc is not None}
    items = yield from qs.filter(id__in=ids)._all_op(backend)
    return {item["id"] if isinstance(item, dict) else item.id: item for item in items}


def creation_values(model: type[Any], lookups: dict[str, Any],
                     defaults: dict[str, Any] | None) -> dict[str, Any]:
    """The values a document created by get_or_create / update_or_create gets: the exact
    lookups (``name=`` or ``name__exact=``), then ``defaults``; other lookups only find."""
    if defaults is not None and not isinstance(defaults, dict):
        raise QueryError(f"defaults must be a dict of field values (got {defaults!r})")
    values = {}
    known = model._fields  # (the stored fields: an indexed path's derived field is not one)
    for key, value in lookups.items():
        name = key.removesuffix("__exact")
        if "__" not in name:
            values[name] = value
        elif (split_key(name)[1] is None and (top := name.partition("__")[0]) in known
              and top not in (defaults or {})):
            # an exact lookup on a path (``address__city=``): the document created would
            # not have it (the embedded value is not built from its parts), so each call
            # would create another
            raise QueryError(f"{model.__name__}: get_or_create()/update_or_create() cannot "
                             f"create from the path {key!r}: give the whole embedded value "
                             f"({top}=... or defaults={{{top!r}: ...}}) and find by the path "
                             "with filter()")
    for name in defaults or {}:
        if name != ID and name not in known:
            raise UnknownFieldError(model.__name__, name, list(known))
    return {**values, **(defaults or {})}


def one(qs: QuerySet[D], items: list[D]) -> D | None:
    if len(items) > 1:
        raise qs.model.MultipleObjectsReturned(
            f"more than one {qs.model.__name__} matches {paths.shown(qs._where)!r}")
    return items[0] if items else None


def get_or_create_op(qs: QuerySet[D], values: dict[str, Any],
                      backend: Backend) -> Op[tuple[D, bool]]:
    found = one(qs, (yield from qs._all_op(backend)))
    if found is not None:
        return found, False
    doc = qs.model(**values)
    try:
        yield from ops.save(backend, doc)
    except (DuplicateIdError, UniqueViolation):
        # another caller created it first: theirs is the one (if it matches)
        found = one(qs, (yield from qs._all_op(backend)))
        if found is None:
            raise
        return found, False
    return doc, True


def update_or_create_op(qs: QuerySet[D], values: dict[str, Any], changes: dict[str, Any],
                         backend: Backend) -> Op[tuple[D, bool]]:
    for attempt in range(UPSERT_ATTEMPTS):
        last = attempt + 1 == UPSERT_ATTEMPTS
        found = one(qs, (yield from qs._all_op(backend)))
        if found is not None:
            found.__dict__.update(changes)
            try:
                yield from ops.save(backend, found)
            except VersionConflict as conflict:
                if last:
                    raise
                # another writer saved first (or holds it: waited for): read again, apply again
                yield from ops.wait_for(backend, qs.model, conflict)
                continue
            return found, False
        doc = qs.model(**values)
        try:
            yield from ops.save(backend, doc)
        except (DuplicateIdError, UniqueViolation):
            if last:
                raise
            continue  # another caller created it first: update theirs
        return doc, True
    raise AssertionError("unreachable")
