"""The model registry by name and the table of references between models.

Every concrete model is :func:`register`\\ ed here when its class is made
(:class:`~quantumorm.document.DocumentMeta`). This module is the one place that knows

* which model a named reference (``ReferenceField("Author")``) points at: the model being
  declared if it has that name, else the one model of that name declared so far, else the
  first declared later (two models of one name already declared: the name is ambiguous,
  and the reference must give the class, or the dotted path ``"app.models.Author"``,
  module and qualified name);
* which references point at a model (:func:`inbound`), for delete rules;
* which reference a reverse name (``related_name``) stands for (:func:`reverse`), for
  ``prefetch_related``; it also puts the reverse accessor on the referenced model.

Models are held weakly: a model made at run time and dropped leaves no entry behind.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, QueryError
from .fields.reference import OnDelete, ReferenceField, ReverseAccessor

if TYPE_CHECKING:
    from .document import Document

_lock = threading.RLock()
#: every concrete model, by class name (several models may share a name)
_by_name: dict[str, weakref.WeakSet[type[Document]]] = {}
#: each model's reference fields, by attribute name
_references: weakref.WeakKeyDictionary[type[Document], dict[str, ReferenceField[Any]]] = (
    weakref.WeakKeyDictionary())
#: references whose named model was not declared yet
_pending: list[ReferenceField[Any]] = []


def register(model: type[Document]) -> None:
    """Record a concrete model: resolve its named references and those waiting for it.

    Everything is checked before anything is recorded, so a model refused here (an
    ambiguous name, a ``related_name`` taken) leaves nothing behind."""
    fields = {name: field for name, field in model._fields.items()
              if isinstance(field, ReferenceField)}
    with _lock:
        targets = [(field, field._target or _find(field, model)) for field in fields.values()]
        claimed: set[tuple[type[Document], str]] = set()
        for field, target in targets:
            if target is not None and field.related_name is not None:
                _check_free(field, target, claimed)
        for field, target in targets:
            if target is None:
                if field not in _pending:
                    _pending.append(field)
            else:
                _bind(field, target)
        _by_name.setdefault(model.__name__, weakref.WeakSet()).add(model)
        if fields:
            _references[model] = fields
        for field in [f for f in _pending if _named(f, model)]:
            _check_free(field, model, set())
            _pending.remove(field)
            _bind(field, model)


def _path(model: type[Document]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _named(field: ReferenceField[Any], model: type[Document]) -> bool:
    """Whether ``model`` is the one ``field`` names (by class name, or by dotted path)."""
    return model.__name__ == field.target_name and (
        field.target_path is None or _path(model) == field.target_path)


def _find(field: ReferenceField[Any], owner: type[Document]) -> type[Document] | None:
    """The model a named reference of ``owner`` points at (None: not declared yet)."""
    if _named(field, owner):
        return owner
    found = [model for model in _by_name.get(field.target_name, ()) if _named(field, model)]
    if len(found) > 1:
        raise ConfigurationError(
            f"{owner.__name__}.{field.name}: several models are named {field.target_name!r} "
            f"({', '.join(sorted(_path(m) for m in found))}); give the class itself, "
            "ReferenceField(Model), or its dotted path")
    return found[0] if found else None


def _check_free(field: ReferenceField[Any], target: type[Document],
                claimed: set[tuple[type[Document], str]]) -> None:
    """Refuse a ``related_name`` that ``target`` already has (a field, an attribute, the
    reverse side of another reference)."""
    name = field.related_name
    if name is None:
        return
    existing = target.__dict__.get(name)
    if isinstance(existing, ReverseAccessor) and existing.field is field:
        return
    if (existing is not None or name in target._fields or hasattr(target, name)
            or (target, name) in claimed):
        raise ConfigurationError(f"{field.name}: related_name {name!r} is taken on "
                                 f"{target.__name__}; choose another")
    claimed.add((target, name))


def _bind(field: ReferenceField[Any], target: type[Document]) -> None:
    if field.related_name is not None and field.related_name not in target.__dict__:
        setattr(target, field.related_name, ReverseAccessor(field))
    field._target = target
    if field.on_delete is not OnDelete.DO_NOTHING:
        # (read by has_delete_rules on every delete: a flag in the class's own namespace
        # costs nothing there, where scanning the references would)
        setattr(target, RULED, True)


#: the class attribute marking a model that some reference's delete rule points at
RULED = "_qorm_delete_rules"


def references(model: type[Document]) -> dict[str, ReferenceField[Any]]:
    """The reference fields of ``model``, by attribute name."""
    with _lock:
        return dict(_references.get(model, {}))


def reference(model: type[Document], name: str) -> ReferenceField[Any]:
    """``model``'s reference field ``name``, or a QueryError naming its references."""
    field = model._fields.get(name)
    if not isinstance(field, ReferenceField):
        known = ", ".join(references(model)) or "none"
        raise QueryError(f"{model.__name__}.{name} is not a reference field "
                         f"(its references: {known})")
    return field


def inbound(model: type[Document]) -> list[tuple[type[Document], str, ReferenceField[Any]]]:
    """Every (referencing model, field name, field) whose reference points at ``model``."""
    with _lock:
        return [(owner, name, field)
                for owner, fields in list(_references.items())
                for name, field in fields.items() if field._target is model]


def has_delete_rules(model: type[Document]) -> bool:
    """Whether deleting a ``model`` document must look at referencing documents first (a
    referencing model dropped since leaves the mark: its delete then looks, finds no
    reference, and deletes as before)."""
    return RULED in model.__dict__


def reverse(model: type[Document], related_name: str
            ) -> tuple[type[Document], str, ReferenceField[Any]]:
    """The reference that ``related_name`` reverses on ``model``."""
    found = [entry for entry in inbound(model) if entry[2].related_name == related_name]
    if not found:
        names = sorted(f.related_name for _, _, f in inbound(model) if f.related_name)
        raise QueryError(f"{model.__name__} has no reverse reference {related_name!r} "
                         f"(declared: {', '.join(names) or 'none'}; a ReferenceField's "
                         "related_name declares one)")
    return found[0]
