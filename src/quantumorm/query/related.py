"""Application-level joins: ``select_related`` and ``prefetch_related`` on a QuerySet.

No backend joins collections (Redis cannot, and a referenced model may live on another
connection or backend), so both load after the query, as a staged run
(:mod:`quantumorm.engine.stages`):

* ``select_related("author", "editor")``: the ids the results' references hold, distinct,
  are read with **one** ``get_many`` per referenced field, whatever the number of results,
  and each :class:`~quantumorm.fields.reference.Ref` gets its document (the same instance
  for results that refer to the same document). A path follows references further:
  ``select_related("post__author")`` loads the posts, then their authors (one ``get_many``
  per step). An id whose document is gone loads as
  None: ``post.author.value is None`` (``post.author.id`` still says which it was); a page
  never fails half-way over a dangling reference.
* ``prefetch_related("posts")`` (a ``related_name``): the documents referring to any result
  are read with **one** query (``author__in=[ids]``), grouped by the result they refer to
  (in the referencing model's default order), and kept as ``author.posts.value``; each one's
  reference is loaded with its parent.

``all()``, ``first()``, ``get()``, awaiting the queryset and iterating it (``for``,
``async for``, ``iterator()``: each chunk loads its own) load them; other terminals
(``paginate()``, ``last()``, ``at()``, ``in_bulk()``, ``values()``) do not, and reading an
unloaded reference raises :class:`~quantumorm.errors.NotLoaded`, never a query.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .. import relations
from ..engine import ops
from ..engine.drive import OpFactory
from ..engine.stages import Call, Staged, Stages
from ..errors import QueryError
from ..fields.reference import PREFETCHED, Ref

if TYPE_CHECKING:
    from ..document import Document
    from .queryset import QuerySet

T = TypeVar("T")


def check(qs: QuerySet[Any], related: tuple[str, ...], prefetch: tuple[str, ...]) -> None:
    """Check the names when the query is built (unknown names fail there)."""
    for name in related:
        model = qs.model
        for step in name.split("__"):
            model = relations.reference(model, step).target
    for name in prefetch:
        relations.reverse(qs.model, name)


def ids_for_refs(model: type[Document], names: tuple[str, ...],
                 rows: list[dict[str, Any]]) -> None:
    """``values()`` rows give a reference as its id (as ``to_dict()`` does), not a Ref."""
    wanted = [name for name in relations.references(model) if name in names]
    for row in rows if wanted else ():
        for name in wanted:
            ref = row[name]
            if ref is not None:
                row[name] = ref.id


def around(qs: QuerySet[Any], factory: OpFactory[T], name: str) -> OpFactory[T] | Staged[T]:
    """``factory`` (a terminal's operation) followed by the loads ``qs`` asks for; the
    factory itself when it asks for none."""
    if not qs._related and not qs._prefetch:
        return factory
    return Staged(_load(qs, factory, name))


def _load(qs: QuerySet[Any], factory: OpFactory[T], name: str) -> Stages[T]:
    result: T = yield Call(qs._connection(), factory, qs, name)
    docs: list[Any] = [] if result is None else (
        result if isinstance(result, list) else [result])
    if docs and not hasattr(docs[0], "_fields"):
        raise QueryError("select_related()/prefetch_related() load documents, not values()")
    for field_name in qs._related if docs else ():
        yield from _select(qs.model, docs, field_name)
    for related_name in qs._prefetch if docs else ():
        yield from _prefetch(qs.model, docs, related_name)
    return result


def _select(model: type[Document], docs: list[Any], path: str) -> Stages[None]:
    name, _, rest = path.partition("__")
    field = relations.reference(model, name)
    refs: list[Ref[Any]] = [ref for ref in (getattr(doc, name) for doc in docs)
                            if ref is not None]
    # (a reference loaded already, by an earlier path such as "post" before "post__author",
    # or by assignment, is not read again)
    ids = list(dict.fromkeys(ref.id for ref in refs if not ref.loaded))
    target = field.target
    if ids:
        objects = target.objects
        found = yield Call(objects._connection(), partial(ops.get_many, model=target,
                                                          ids=ids), objects, "get_many")
        by_id = dict(zip(ids, found, strict=True))
        for ref in refs:
            if not ref.loaded:
                ref._load(by_id[ref.id])
    if rest:
        loaded = {ref.id: ref.value for ref in refs if ref.value is not None}
        yield from _select(target, list(loaded.values()), rest)


def _prefetch(model: type[Document], docs: list[Any], related_name: str) -> Stages[None]:
    child, name, _ = relations.reverse(model, related_name)
    groups: dict[str, list[Any]] = {doc.id: [] for doc in docs}
    if groups:
        qs = child.objects.filter(**{f"{name}__in": list(groups)})
        children = yield Call(qs._connection(), qs._all_op, qs, "all")
        parents = {doc.id: doc for doc in docs}
        for item in children:
            ref = getattr(item, name)
            groups[ref.id].append(item)
            ref._load(parents[ref.id])
    for doc in docs:
        doc.__dict__.setdefault(PREFETCHED, {})[related_name] = groups[doc.id]
