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
    """Record a concrete model: resolve its named references and those waiting for it."""
    fields = {name: field for name, field in model._fields.items()
              if isinstance(field, ReferenceField)}
    with _lock:
        for field in fields.values():  # (a refused model leaves nothing behind)
            if field._target is None:
                _resolve(field, model)
            else:
                _bind(field, field._target)
        _by_name.setdefault(model.__name__, weakref.WeakSet()).add(model)
        if fields:
            _references[model] = fields
        for field in [f for f in _pending if _named(f, model)]:
            _pending.remove(field)
            _bind(field, model)


def _path(model: type[Document]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _named(field: ReferenceField[Any], model: type[Document]) -> bool:
    """Whether ``model`` is the one ``field`` names (by class name, or by dotted path)."""
    return model.__name__ == field.target_name and (
        field.target_path is None or _path(model) == field.target_path)


def _resolve(field: ReferenceField[Any], owner: type[Document]) -> None:
    name = field.target_name
    if _named(field, owner):
        _bind(field, owner)
        return
    found = [model for model in _by_name.get(name, ()) if _named(field, model)]
    if len(found) > 1:
        raise ConfigurationError(
            f"{owner.__name__}.{field.name}: several models are named {name!r} "
            f"({', '.join(sorted(_path(m) for m in found))}); give the class itself, "
            "ReferenceField(Model), or its dotted path")
    if found:
        _bind(field, found[0])
    elif field not in _pending:
        _pending.append(field)


def _bind(field: ReferenceField[Any], target: type[Document]) -> None:
    name = field.related_name
    if name is not None:
        existing = target.__dict__.get(name)
        if not (isinstance(existing, ReverseAccessor) and existing.field is field):
            if existing is not None or name in target._fields or hasattr(target, name):
                raise ConfigurationError(
                    f"{field.name}: related_name {name!r} is taken on {target.__name__}; "
                    "choose another")
            setattr(target, name, ReverseAccessor(field))
    field._target = target


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
    """Whether deleting a ``model`` document must look at referencing documents first."""
    return any(field.on_delete is not OnDelete.DO_NOTHING for _, _, field in inbound(model))


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
