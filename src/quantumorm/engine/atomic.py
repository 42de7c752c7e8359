"""Atomic field operations: ``inc``/``dec``, ``push``/``pull`` on arrays, ``set_if_absent``,
and ``set`` (``doc.update(**fields)``).

Each applies to the *stored* document, never to a stale copy: the new value is computed from
the stored one and written by the ordinary write (one atomic script on Redis) as a
compare-and-set on the version it was computed from. If another writer got there first, the
document is read again and the operation recomputed, so concurrent operations never lose
one another (they serialise, like ``INCR``). The first attempt starts from the instance's
own copy, so an operation on a fresh instance is one round trip.

Why not edit the JSON inside the script: documents are stored byte-exact and the scripts
never decode them (Lua's JSON would round big integers through doubles and reorder keys),
and the index encodings are computed in Python; recomputing from the stored version keeps
both exact.

The instance is brought up to date afterwards: the operated fields take the stored result,
other fields take the stored values too unless the instance has unsaved changes to them.
Signals: ``post_save`` is sent after the write; ``pre_save`` is not (its receivers change
the instance, and an atomic operation writes the stored document, not the instance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import signals
from ..errors import InvalidOperation, VersionConflict
from ..fields.base import MISSING
from ..fields.scalar import DecimalField, FloatField, IntField
from ..fields.structured import ArrayField
from ..jsoncodec import among, same
from . import ops, prepared
from .drive import Op

if TYPE_CHECKING:
    from ..document import Document
    from .contract import Backend

#: how often an operation is recomputed when other writers keep winning the race
ATTEMPTS = 100

Change = tuple[str, str, Any]  # (kind, field name, argument)


def check(model: type[Document], changes: Sequence[Change]) -> None:
    """Refuse, before any I/O, operations that do not fit the fields they name."""
    for kind, name, arg in changes:
        field = model._fields.get(name)
        if field is None:
            raise InvalidOperation(f"{model.__name__} has no field {name!r}")
        if kind == "inc":
            if not isinstance(field, (IntField, FloatField, DecimalField)):
                raise InvalidOperation(f"inc/dec need a numeric field; {model.__name__}.{name} "
                                       f"is a {type(field).__name__}")
            allowed: tuple[type, ...] = {IntField: (int,), FloatField: (int, float),
                                         DecimalField: (int, Decimal)}[type(field)]
            if isinstance(arg, bool) or not isinstance(arg, allowed):
                raise InvalidOperation(f"{model.__name__}.{name} cannot be changed by {arg!r}")
        elif kind in ("push", "pull"):
            if not isinstance(field, ArrayField):
                raise InvalidOperation(f"{kind} needs an array field; {model.__name__}.{name} "
                                       f"is a {type(field).__name__}")
            if not arg:
                raise InvalidOperation(f"{kind}({name!r}) needs at least one value")
        elif kind not in ("set_if_absent", "set"):
            raise AssertionError(kind)


def _apply(doc: Document, changes: Sequence[Change], unique: bool) -> bool:
    """Apply the changes to ``doc``'s values; whether any value changed."""
    changed = False
    for kind, name, arg in changes:
        current = doc.__dict__.get(name)
        if kind == "inc":
            new: Any = (current or 0) + arg  # a missing counter counts from zero
        elif kind == "push":
            new = list(current or [])
            for value in arg:
                if not (unique and among(value, new)):
                    new.append(value)
        elif kind == "pull":  # (membership as JSON: 1, 1.0 and True are three values)
            new = [value for value in (current or []) if not among(value, arg)]
        elif kind == "set":
            new = arg
        else:  # set_if_absent
            new = arg if current is None else current
        if not same(new, current):
            doc.__dict__[name] = new
            changed = True
    return changed


def _adopt(doc: Document, fresh: Document, names: set[str]) -> None:
    """Bring ``doc`` to ``fresh``'s stored state, keeping its unsaved changes to other fields."""
    old = doc._stored or {}
    for name, field in doc._fields.items():
        if doc._partial is None and name not in names:
            mine = doc.__dict__.get(name)
            try:
                unchanged = field.to_storage(mine) == old.get(field.db_name)
            except Exception:  # an invalid local value is an unsaved change
                unchanged = False
            if not unchanged:
                continue
        doc.__dict__[name] = fresh.__dict__[name]
    doc._version, doc._stored, doc._partial = fresh._version, fresh._stored, None


def modify(backend: Backend, doc: Document, changes: Sequence[Change],
           answer: Callable[[Document, bool], Any], unique: bool = False) -> Op[Any]:
    """Apply ``changes`` to the stored document (see the module docstring); return
    ``answer(document after, whether it was written)``."""
    model = type(doc)
    if doc.id is None or doc._version == 0:
        raise InvalidOperation(f"{model.__name__} was never saved; save it first")
    check(model, changes)
    options = model._meta
    expire = ops.expiry(backend, options, MISSING)
    names = {name for _, name, _ in changes}
    stored = doc._stored if doc._partial is None else None
    version = doc._version
    for _attempt in range(ATTEMPTS):
        if stored is None:
            (row,) = yield from backend.get_many(options, [doc.id])
            if row is None:
                raise model.DoesNotExist(f"{model.__name__} {doc.id!r} does not exist")
            stored, version = row.data, row.version
        fresh = model.from_storage(doc.id, version, stored)
        request = None
        if _apply(fresh, changes, unique):
            data = fresh.clean()  # the result must be valid (e.g. min_value): else nothing
            request = prepared.request(fresh, data, expire)
        if request is None:
            _adopt(doc, fresh, names)
            return answer(fresh, False)
        (result,) = yield from backend.write(options, [request])
        if isinstance(result.error, VersionConflict):
            stored = None  # another writer won (or holds it: waited for): read again
            yield from ops.wait_for(backend, model, result.error)
            continue
        prepared.applied(fresh, data, result)
        _adopt(doc, fresh, names)
        signals.post_save.send(model, document=doc, created=False)
        return answer(fresh, True)
    raise VersionConflict(model.__name__, doc.id, version, None)
