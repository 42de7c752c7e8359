"""Delete rules: what deleting a referenced document does to the documents referring to it.

Each :class:`~quantumorm.fields.reference.ReferenceField` declares ``on_delete``; they are
enforced when the referenced document is deleted through the ORM (``doc.delete()``,
``qs.delete()`` and its ``filter(id=...)`` path), as a staged run
(:mod:`quantumorm.engine.stages`), since the referencing models may live on other
connections and backends. In two phases:

1. **Look, write nothing.** ``doc.delete()`` first reads the stored version of the
   document and raises :class:`~quantumorm.errors.VersionConflict` if the instance is
   stale. Then, from the documents to delete, follow every reference to their model:
   ``CASCADE`` reads the ids of the referencing documents and follows the references to
   *their* model in turn (each document is visited once: cycles end); ``NULLIFY`` notes the
   query; ``DENY`` is counted once the traversal is complete, over the referencing
   documents that are not themselves being deleted, and refuses with
   :class:`~quantumorm.errors.DeleteDenied` if there is any.
2. **Write, children first.** Set the ``NULLIFY`` fields to None (but not on documents
   being deleted: one that refers to itself or to another doomed document is deleted, not
   rewritten), delete the ``CASCADE`` documents (the deepest first), and delete the
   documents asked for last (``doc.delete()``: at the version read in phase 1).

``doc.delete(soft=True, ttl=...)`` is refused (:class:`~quantumorm.errors.InvalidOperation`)
when a reference to the model would ``CASCADE`` or ``NULLIFY``: those writes would happen at
once, while the soft-deleted document is kept until its TTL.

Each step is an operation of its own, named in metrics and logs ``delete_check`` (a DENY
count), ``delete_read`` (ids read), ``delete_nullify`` and ``delete_cascade``; the last
delete keeps the name ``delete``. ``doc.delete()`` adds one ``delete_read`` of
the document itself (its version). A model that nothing refers to with a rule (every
reference to it ``DO_NOTHING``, or none) deletes exactly as before, in one operation.

This is not one transaction: there is none across models and backends. The order is
chosen so that an interruption (a crash, a lost connection, a version conflict on the
last delete) leaves at worst referencing documents nullified or deleted while their parent
still exists, never a deleted parent with ``DENY`` children nor (for the documents the
look phase found) a dangling reference. What is not covered: a referencing document
written by someone else between the two phases (it may be left dangling; and the version
check of phase 1 does not hold a lock: a concurrent write to the document itself after it
makes the last delete raise VersionConflict with the children already gone), a document
removed by its TTL (expiry runs in the store, which knows no rules), transactions
(``tx.delete``) and ``drop_collection``, which apply no rules.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import relations
from ..errors import DeleteDenied, InvalidOperation, VersionConflict
from ..fields.reference import OnDelete
from ..query.lookups import Lookup
from ..query.nodes import ID, Condition, QuerySpec, conjoin
from . import ops
from .drive import OpFactory
from .stages import Call, Staged, Stages

if TYPE_CHECKING:
    from ..document import Document
    from ..query.queryset import QuerySet

#: one NULLIFY to apply: the referencing model, its field, the ids it must no longer hold
Nullify = tuple["type[Document]", str, tuple[str, ...]]


def guard_document(doc: Document, factory: OpFactory[bool],
                   soft: bool = False) -> Staged[bool] | None:
    """``doc.delete()`` with its model's delete rules applied, or None when there are none
    to apply (the document is deleted as it always was)."""
    model = type(doc)
    if doc.id is None or doc._version == 0 or not relations.has_delete_rules(model):
        return None  # (an unsaved document: the delete itself says so)
    return Staged(_delete_document(doc, factory, soft))


def _delete_document(doc: Document, factory: OpFactory[bool], soft: bool) -> Stages[bool]:
    assert doc.id is not None
    model = type(doc)
    if soft:
        _refuse_soft(model)
    # the version this instance holds must be the stored one before anything is written: a
    # stale instance is refused with every referencing document intact
    qs = model.objects.filter(id=doc.id)
    rows = yield Call(qs._connection(), partial(ops.fetch, model=model, spec=qs.spec), qs,
                      "delete_read")
    if rows:
        (row,) = rows
        if row.version != doc._version:
            raise VersionConflict(model.__name__, doc.id, doc._version, row.version)
        yield from _apply(model, (doc.id,))
    # (gone already: the delete below says so, and there is nothing left to apply rules for)
    deleted: bool = yield Call(doc._connection(), factory, doc, "delete")
    return deleted


def _refuse_soft(model: type[Document]) -> None:
    """A soft delete keeps the document until its TTL; the rules that write (deleting or
    nullifying the referencing documents) cannot be kept pending with it, nor undone."""
    writing = sorted(f"{child.__name__}.{name} ({field.on_delete.name})"
                     for child, name, field in relations.inbound(model)
                     if field.on_delete in (OnDelete.CASCADE, OnDelete.NULLIFY))
    if writing:
        raise InvalidOperation(
            f"{model.__name__}.delete(soft=True) is refused: references to {model.__name__} "
            f"would delete or nullify their documents at once ({', '.join(writing)}); "
            f"delete without soft=, or expire the document with touch(ttl)")


def guard_queryset(qs: QuerySet[Any]) -> Staged[int] | None:
    """``qs.delete()`` with the delete rules of its model applied, or None if it has none."""
    if not relations.has_delete_rules(qs.model):
        return None
    return Staged(_delete_matching(qs))


def _delete_matching(qs: QuerySet[Any]) -> Stages[int]:
    model, spec = qs.model, qs.spec
    connection = qs._connection()
    ids = ops.named_ids(spec)
    if ids is None:
        rows = yield Call(connection, partial(ops.fetch, model=model, spec=spec), qs,
                          "delete_read")
        ids = [row.id for row in rows]
        # the documents looked at, if they still match: one written since is not deleted
        # without its rules checked
        spec = QuerySpec(conjoin(spec.where, Condition(ID, Lookup.IN, tuple(ids))))
    if not ids:
        return 0
    yield from _apply(model, tuple(ids))
    deleted: int = yield Call(connection, partial(ops.delete_where, model=model, spec=spec),
                              qs, "delete")
    return deleted


def _apply(model: type[Document], ids: tuple[str, ...]) -> Stages[None]:
    """Both phases of the rules for deleting ``ids`` of ``model`` (but not those)."""
    doomed: dict[type[Document], set[str]] = {model: set(ids)}
    cascades: list[tuple[type[Document], tuple[str, ...]]] = []
    nullify: list[Nullify] = []
    deny: list[tuple[type[Document], type[Document], str, tuple[str, ...]]] = []
    todo = [(model, ids)]
    while todo:  # (breadth first; ``doomed`` keeps each document to one visit)
        parent, parent_ids = todo.pop(0)
        for child, name, field in relations.inbound(parent):
            rule = field.on_delete
            if rule is OnDelete.DO_NOTHING:
                continue
            if rule is OnDelete.NULLIFY:
                nullify.append((child, name, parent_ids))
                continue
            if rule is OnDelete.DENY:
                deny.append((parent, child, name, parent_ids))
                continue
            qs = _referring(child, name, parent_ids, doomed)
            rows = yield Call(qs._connection(), partial(ops.fetch, model=child, spec=qs.spec),
                              qs, "delete_read")
            found = tuple(row.id for row in rows)
            if found:
                doomed.setdefault(child, set()).update(found)
                cascades.append((child, found))
                todo.append((child, found))
    # DENY once everything doomed is known: a referencing document that a cascade deletes
    # anyway (found after the DENY rule was met) does not refuse the delete
    for parent, child, name, parent_ids in deny:
        qs = _referring(child, name, parent_ids, doomed)
        count: int = yield Call(qs._connection(), partial(ops.count, model=child,
                                                          spec=qs.spec), qs, "delete_check")
        if count:
            raise DeleteDenied(parent.__name__, child.__name__, name, count)
    # a document being deleted is not nullified first (that would be a write for nothing,
    # and a new version under the compare-and-set delete of the document asked for)
    for child, name, parent_ids in nullify:
        qs = _referring(child, name, parent_ids, doomed)
        yield Call(qs._connection(), partial(ops.update_where, model=child, spec=qs.spec,
                                             changes={name: None}), qs, "delete_nullify")
    for child, found in reversed(cascades):
        qs = child.objects.filter(id__in=found)
        yield Call(qs._connection(), _delete_where(child, qs.spec), qs, "delete_cascade")


def _referring(child: type[Document], name: str, parent_ids: tuple[str, ...],
               doomed: dict[type[Document], set[str]]) -> QuerySet[Any]:
    """The ``child`` documents whose ``name`` holds one of ``parent_ids``, but for those
    being deleted."""
    qs = child.objects.filter(**{f"{name}__in": parent_ids})
    known = doomed.get(child)
    return qs.exclude(id__in=sorted(known)) if known else qs


def _delete_where(model: type[Document], spec: QuerySpec) -> Callable[[Any], Any]:
    return partial(ops.delete_where, model=model, spec=spec)
