"""Update operators over a query: ``qs.update(inc__views=1, push__tags="x", unset__note=True)``,
``update_one``, ``upsert=True`` and ``modify``.

Each matching document is updated on its own, atomically: its new state is computed from
the stored one and written by the ordinary write (one atomic script on Redis, one statement
set on SQLite and PostgreSQL) as a compare-and-set on the version it was computed from, so
indexes stay exact, the version is bumped and the change event is the one a save writes. A
document another writer changed meanwhile is read again and recomputed if it still matches
(at most ``atomic.ATTEMPTS`` times, as the instance operators), so concurrent operators
never lose one another.

Operators (``<operator>__<field>``; a bare field name is ``set``):

- ``set`` a value; ``unset`` (``unset__note=True``) stores null (refused on a required field);
- ``inc``/``dec`` a number; a stored null counts as 0, as MongoDB's ``$inc`` does;
- ``push`` one value / ``push_all`` a list (appended); ``add_to_set`` one value unless present;
  ``pull`` one value / ``pull_all`` a list (every occurrence removed); a stored null is ``[]``.

Why not edit the stored JSON in a script: documents are stored byte-exact and the scripts
never decode them (see :mod:`quantumorm.engine.atomic`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from .. import signals
from ..errors import (
    BulkWriteError,
    DocumentLocked,
    DuplicateIdError,
    InvalidOperation,
    QueryError,
    UniqueViolation,
    UnknownFieldError,
    ValidationError,
    VersionConflict,
    WriteError,
)
from ..fields.base import Field
from ..fields.embedded import EmbeddedDocumentField, NestedMessage
from ..fields.scalar import DecimalField, FloatField, IntField
from ..fields.structured import ArrayField
from ..jsoncodec import among, same
from ..query import evaluate, paths
from ..query.lookups import Lookup
from ..query.nodes import And, Condition, Node, QuerySpec
from . import ops, prepared
from .atomic import ATTEMPTS
from .drive import Op

if TYPE_CHECKING:
    from ..document import Document
    from .contract import Backend, Row

D = TypeVar("D", bound="Document")

#: the operator prefixes ``update()`` takes (``set__name`` is the same as ``name``)
OPERATORS = frozenset({"set", "unset", "inc", "dec", "push", "push_all", "pull", "pull_all",
                       "add_to_set"})
_NUMERIC: dict[type, tuple[type, ...]] = {IntField: (int,), FloatField: (int, float),
                                          DecimalField: (int, Decimal)}


@dataclass(frozen=True)
class Operation:
    """One checked operator: ``kind`` is ``set``, ``inc``, ``push``, ``add_to_set`` or
    ``pull`` (``dec``, ``unset``, ``push_all``, ``pull_all`` are normalised to these)."""

    kind: str
    name: str
    value: Any


def parse(model: type[Any], fields: dict[str, Any]) -> tuple[Operation, ...]:
    """Check ``update()``'s keywords against the model, before any I/O."""
    known = model._fields  # (the stored fields: an indexed path's derived field is not one)
    label = model.__name__
    result: list[Operation] = []
    problems: dict[str, list[str]] = {}
    seen: set[str] = set()
    for key, value in fields.items():
        kind, _, name = key.partition("__")
        if not name:
            kind, name = "set", key
        elif kind not in OPERATORS:
            if _embeds(known.get(kind)):  # a path without an operator: ``address__city=``
                raise _path_error(label, key, kind)
            raise QueryError(f"{label}.update(): unknown operator {kind!r} in {key!r} "
                             f"(known: {', '.join(sorted(OPERATORS))})")
        field = known.get(name)
        if field is not None and paths.derived(field) is not None:
            field = None  # an index's value computed from the document: not a field to set
        if field is None and model._meta.is_key_name(name):
            raise QueryError(f"{label}.{name} is the primary key (the id): it cannot be "
                             "updated; create a document with the new id")
        if field is None and _embeds(known.get(name.partition("__")[0])):
            raise _path_error(label, key, name.partition("__")[0])
        if field is None:
            raise UnknownFieldError(label, name, list(known))
        if name in seen:
            raise QueryError(f"{label}.update(): field {name!r} is named by more than one "
                             "operator")
        seen.add(name)
        if kind == "unset":
            if value is not True:
                raise QueryError(f"{label}.update(): unset__{name} takes True (got {value!r})")
            if field.required:
                raise InvalidOperation(f"{label}.{name} is required and cannot be unset")
            kind, value = "set", None
        if kind == "set":
            value, messages = field.validate(value)
            file_messages(problems, name, messages)
        elif kind in ("inc", "dec"):
            allowed = _NUMERIC.get(type(field))
            if allowed is None:
                raise InvalidOperation(f"{kind} needs a numeric field; {label}.{name} is a "
                                       f"{type(field).__name__}")
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise InvalidOperation(f"{label}.{name} cannot be changed by {value!r}")
            number: Any = value
            kind, value = "inc", (-number if kind == "dec" else number)
        else:
            if not isinstance(field, ArrayField):
                raise InvalidOperation(f"{kind} needs an array field; {label}.{name} is a "
                                       f"{type(field).__name__}")
            if kind in ("push_all", "pull_all"):
                if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
                    raise QueryError(f"{label}.update(): {key} takes a list (got {value!r})")
                values = tuple(value)
                kind = kind[:-4]
            else:
                values = (value,)
            if kind != "pull":
                # the elements pushed must be valid elements: checked here, not per document
                _, messages = field.validate(list(values))
                file_messages(problems, name, messages)
            value = values
        result.append(Operation(kind, name, value))
    if problems:
        raise ValidationError(problems, model=label)
    if not result:
        raise QueryError("update() needs at least one field or operator")
    return tuple(result)


def _embeds(field: Field | None) -> bool:
    """Whether ``field`` holds embedded documents (one, or a list of them)."""
    if isinstance(field, ArrayField):
        field = field.field
    return isinstance(field, EmbeddedDocumentField)


def _path_error(label: str, key: str, top: str) -> QueryError:
    return QueryError(f"{label}.update(): {key!r} names a path inside the embedded field "
                      f"{top!r}: update() sets whole fields; set the whole embedded value "
                      f"({top}=...)")


def file_messages(problems: dict[str, list[str]], name: str, messages: list[str]) -> None:
    """File a field's messages as ``Document.clean()`` does: those from inside an embedded
    document under their own path (they already name it), the others under the field."""
    for m in messages:
        if isinstance(m, NestedMessage):
            problems.setdefault(m.path, []).append(str(m))
        else:
            problems.setdefault(name, []).append(f"'{name}' {m}")


#: the key under which a model's options keep, by keyword, the field a bare keyword sets
_PLAIN = type("_Plain", (), {})()  # (weakly referable: see ModelOptions.state_for)


def plain_values(model: type[Any], fields: dict[str, Any]) -> dict[str, Any] | None:
    """``plain_sets(parse(model, fields))`` where every keyword is a stored field's own name
    (no operator, no path, no derived index value) and every value is valid: the cleaned
    values by field, without the operations made and looked at; else None, and the caller
    parses them (which raises what is wrong). The fields such keywords name are remembered
    per model (the model's fields do not change after its class is made)."""
    if not fields:
        return None
    # (state_for's dict for _PLAIN, a module constant never freed: kept in the options'
    # own __dict__ after the first call, read with no call of state_for and its weak map)
    kept = model._meta.__dict__
    settable: dict[str, Field | None] | None = kept.get("_qorm_plain")
    if settable is None:
        settable = kept["_qorm_plain"] = model._meta.state_for(_PLAIN, dict)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in settable:
            field = settable[key]
        else:
            if len(settable) > 1024:
                settable.clear()
            field = settable[key] = _settable(model, key)
        if field is None:
            return None
        value, messages = field.validate(value)
        if messages:
            return None
        out[key] = value
    return out


def _settable(model: type[Any], key: str) -> Field | None:
    """The stored field a bare keyword ``key`` sets, as :func:`parse` finds it, or None
    (an operator, a path, an index's derived value, an unknown name: parse() says)."""
    if "__" in key:
        return None
    field = model._fields.get(key)
    if field is None or paths.derived(field) is not None:
        return None
    return field  # type: ignore[no-any-return]


def plain_sets(operations: Sequence[Operation]) -> dict[str, Any] | None:
    """The values by field when every operation is a ``set``, else None."""
    if all(op.kind == "set" for op in operations):
        return {op.name: op.value for op in operations}
    return None


def apply(doc: Document, operations: Sequence[Operation]) -> bool:
    """Apply the operations to ``doc``'s values; whether any value changed."""
    changed = False
    for op in operations:
        current = doc.__dict__.get(op.name)
        new: Any
        if op.kind == "set":
            new = op.value
        elif op.kind == "inc":
            new = (current or 0) + op.value  # a stored null counts as 0 (MongoDB's $inc)
        elif op.kind == "pull":  # (membership as JSON: 1, 1.0 and True are three values)
            new = [item for item in (current or []) if not among(item, op.value)]
        else:  # push, add_to_set
            new = list(current or [])
            for item in op.value:
                if op.kind == "push" or not among(item, new):
                    new.append(item)
        if not same(new, current):
            doc.__dict__[op.name] = new
            changed = True
    return changed


def seed(model: type[D], where: Node) -> dict[str, Any]:
    """The values an upsert starts from: the query's equality conditions. A query with any
    other condition cannot say what the inserted document would be: QueryError."""
    parts = where.children if isinstance(where, And) else (where,)
    values: dict[str, Any] = {}
    for part in parts:
        if (not isinstance(part, Condition) or part.lookup is not Lookup.EXACT
                or part.field in values):
            raise QueryError(f"upsert on {model.__name__} needs a query of equality "
                             f"conditions only (got {where!r})")
        values[part.field] = part.value
    return values


@dataclass
class Outcome:
    """What an update did: how many documents matched, and each one before and after."""

    matched: int
    before: list[Any]
    after: list[Any]


def update(backend: Backend, model: type[D], spec: QuerySpec,
           operations: Sequence[Operation], one: bool = False,
           start: dict[str, Any] | None = None) -> Op[Outcome]:
    """Apply ``operations`` to every document ``spec`` matches (the first one only if
    ``one``), or, when none matches and ``start`` (an upsert's :func:`seed`) is given,
    insert the document ``start`` with the operations applied; see the module docstring."""
    options = model._meta
    expire = ops.expiry(backend, options)
    outcome = Outcome(0, [], [])
    rows: list[Row] = yield from backend.query(options, spec)
    for _attempt in range(ATTEMPTS):
        if not rows and start is not None and not outcome.matched:
            inserted = yield from _insert(backend, model, start, operations, expire)
            if not isinstance(inserted, Exception):
                outcome.matched, outcome.after = 1, [inserted]
                outcome.before = [None]
                return outcome
            # another writer inserted it first (its id or a unique value): update that one
            rows = yield from backend.query(options, spec)
            if not rows and not isinstance(inserted, DuplicateIdError):
                raise inserted  # the unique value is another document's, which does not match
            if not rows and isinstance(inserted, DuplicateIdError) and (
                    yield from backend.get_many(options, [inserted.id]))[0] is not None:
                raise inserted  # the id is another document's, which does not match
            continue  # (the one that took the id was deleted meanwhile: insert again)
        requests, states = [], []
        for row in rows:
            before = model.from_storage(row.id, row.version, row.data)
            doc = model.from_storage(row.id, row.version, row.data)
            apply(doc, operations)
            signals.pre_save.send(model, document=doc)
            data = doc.clean()  # the result must be valid (e.g. min_value): else nothing
            request = prepared.request(doc, data, expire)
            if request is None:  # it matched and already has the values: no write
                outcome.matched += 1
                outcome.before.append(before)
                outcome.after.append(doc)
                continue
            requests.append(request)
            states.append((doc, data, before))
        if not requests:
            return outcome
        results = yield from backend.write(options, requests)
        stuck = yield from ops.wait_locked(backend, model, results)
        retry: list[str] = []
        failures: list[tuple[int, Exception]] = []
        for position, (result, (doc, data, before)) in enumerate(
                zip(results, states, strict=True)):
            if isinstance(result.error, DocumentLocked) and result.error.id not in stuck:
                retry.append(before.id or "")  # (its holder settled: computed again)
                continue
            if isinstance(result.error, VersionConflict) and not isinstance(
                    result.error, DocumentLocked):
                # changed meanwhile: computed again; deleted meanwhile: no longer a match,
                # but update_one/modify then look for the (new) first match
                if result.error.actual is not None or one:
                    retry.append(before.id or "")
                continue
            if result.error is not None:  # a store refusal, e.g. a unique value taken
                failures.append((position, result.error))
                continue
            prepared.applied(doc, data, result)
            outcome.matched += 1
            outcome.before.append(before)
            outcome.after.append(doc)
            signals.post_save.send(model, document=doc, created=False)
        if failures:
            if one:
                raise failures[0][1]
            raise BulkWriteError(failures, [doc for doc in outcome.after if doc is not None])
        if not retry:
            return outcome
        if one:
            # the first match changed meanwhile: the first match is asked for again
            rows = yield from backend.query(options, spec)
        else:
            rows = yield from _still_matching(backend, model, spec, retry)
    raise VersionConflict(model.__name__, ", ".join(row.id for row in rows), 0, None)


def _insert(backend: Backend, model: type[D], start: dict[str, Any],
            operations: Sequence[Operation], expire: Any) -> Op[D | WriteError]:
    """Insert the upserted document; the refusal if its id or a unique value is taken
    (by another upsert that won the race, or by a document that does not match)."""
    values = dict(start)
    doc = model(**values)
    apply(doc, operations)
    signals.pre_save.send(model, document=doc)
    data = doc.clean()
    request = prepared.request(doc, data, expire)
    assert request is not None
    (result,) = yield from backend.write(model._meta, [request])
    if isinstance(result.error, (DuplicateIdError, UniqueViolation)):
        return result.error
    prepared.applied(doc, data, result)
    signals.post_save.send(model, document=doc, created=True)
    return doc


def _still_matching(backend: Backend, model: type[D], spec: QuerySpec,
                    ids: list[str]) -> Op[list[Row]]:
    rows = yield from backend.get_many(model._meta, ids)
    out = []
    for row in rows:
        if row is not None and evaluate.matches(
                model._meta, spec.where,
                model.from_storage(row.id, row.version, row.data)._values()):
            out.append(row)
    return out


__all__ = ["OPERATORS", "Operation", "Outcome", "apply", "parse", "plain_sets", "seed",
           "update"]
