"""What a write sends of one document, and what a written document keeps.

:func:`clean` is a save's ``clean()``: a loaded document's unchanged fields are neither
validated again nor compared, and it says which fields' stored form changed;
:func:`request` is the write that brings the store to the document's state (None when
nothing changed), its bytes encoded once by :func:`encode`; :func:`applied` records a
write's result in the document. The operations of :mod:`quantumorm.engine.ops`,
:mod:`~quantumorm.engine.updates`, :mod:`~quantumorm.engine.atomic` and transactions share
them. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import jsoncodec
from ..errors import InvalidOperation, ValidationError
from ..fields.base import MISSING, OPTION_CHANGES, Field
from ..fields.embedded import NestedMessage
from ..fields.structured import ArrayField
from ..query.expressions import clean_id
from .contract import Expiry, WriteRequest, WriteResult, encode_document

if TYPE_CHECKING:
    from ..document import Document


def request(doc: Document, data: dict[str, Any],
            expire: Expiry | int = Expiry.KEEP,
            changed: frozenset[str] | None = None) -> WriteRequest | None:
    """The write that brings the store to ``doc``'s state, or None if nothing changed (and
    the expiry is left as it is). The document is encoded here, once; the backend stores
    those bytes. ``changed``: the attribute names of the fields whose stored form changed,
    when the caller worked them out (see :func:`clean`); None: every field's stored form
    is compared here."""
    if doc._version == 0:
        return WriteRequest("insert", doc.id, 0, data, doc._values(), None, expire,
                            encode(doc, data))
    if changed is None:
        stored = doc._stored or {}
        changed = frozenset([name for name, field in doc._fields.items()
                             if not same(stored.get(field.db_name), data.get(field.db_name))])
    if changed and doc._meta.derived:  # an indexed path changes with its embedded field
        changed |= {name for name, path in doc._meta.derived if path.steps[0] in changed}
    if not changed and expire is Expiry.KEEP:
        return None
    return WriteRequest("update", doc.id, doc._version, data, doc._values(), changed, expire,
                        encode(doc, data))


#: values that are their own storage form and cannot change in place
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
#: list elements whose ``==`` holds only for the same JSON (a str equals only a str; an int
#: equals a float or a bool): a list of them equal to another is the same JSON
_EXACT_ELEMENTS = frozenset({str, type(None)})
#: per field of a model: (attribute, storage name, field, how :func:`clean` may trust its value:
#: _OWN_FORM, _OWN_FORM_LIST or 0, its quick_clean or None, its storer or None: see
#: Field.quick_clean and Field.storer), or None when a save validates the whole document
Trusted = tuple[tuple[str, str, Field, int, Callable[[Any], Any] | None,
                      Callable[[Any], Any] | None], ...] | None
#: the field's value is its own storage form (a scalar)
_OWN_FORM = 1
#: the field's value is a list of elements that are their own storage form
_OWN_FORM_LIST = 2


def _trust(field: Field) -> int:
    """How :func:`clean` may trust a field's value (see Trusted)."""
    if _own_form(field):
        return _OWN_FORM
    if type(field) is ArrayField and _own_form(field.field):
        return _OWN_FORM_LIST
    return 0


def _own_form(field: Field) -> bool:
    """Whether a field's values are their own storage form (loaded and stored as they are)."""
    return field.loader() is None and type(field).to_storage is Field.to_storage


def _no_plan() -> list[Any]:
    return [-1, None]  # (made again below: no OPTION_CHANGES count is -1)


def _trusted(model: type[Document]) -> Trusted:
    """How :func:`clean` treats the fields of ``model`` (worked out once per model, and
    again when a field option the quick checks are made from changed since: see
    OPTION_CHANGES). A model with its own ``clean()`` or ``validate()`` (a rule over the
    whole document) or a primary-key field is validated whole on every save."""
    options = model._meta
    # ([the OPTION_CHANGES it was made at, the plan]: made again in place when they moved;
    # kept in the options' own dict, as state_for keeps its states, without its weak
    # mapping's lookup: every save of a loaded document asks)
    plan: list[Any] | None = options.__dict__.get("_trust_plan")
    if plan is None:
        plan = options.__dict__["_trust_plan"] = _no_plan()
    if plan[0] != OPTION_CHANGES[0]:
        at = OPTION_CHANGES[0]
        if model._has_own_rules() or options.primary_key() is not None:
            plan[:] = at, None
        else:  # (the stored fields: not the derived ones, indexed paths computed from them)
            plan[:] = at, tuple((name, field.db_name, field, _trust(field), field.quick_clean(),
                                 field.storer()) for name, field in model._fields.items())
    trusted: Trusted = plan[1]
    # (a rule set on the class after its first save: validated whole from then on)
    return None if trusted is not None and model._has_own_rules() else trusted


def clean(doc: Document) -> tuple[dict[str, Any], frozenset[str] | None]:
    """``doc.clean()`` for a save, and the fields whose stored form changed since ``doc``
    was loaded or last saved (None: not worked out, see :func:`request`). A field that
    still holds the very object it was loaded with (an immutable value that is its own
    storage form) is unchanged, and was valid when it was stored: it is neither validated
    again nor compared; so is a list of such values that is the same JSON as the stored
    one (compared here, as it may have been changed in place). Every other field is
    validated as ``clean()`` does, with the same errors, and its stored form compared with
    the stored one."""
    stored = doc._stored
    if stored is None or doc._version == 0 or type(doc.id) is not str:
        return doc.clean(), None
    fields = _trusted(type(doc))
    if fields is None:
        return doc.clean(), None
    try:
        clean_id(doc.id, ValueError)
    except ValueError:
        return doc.clean(), None  # (which says what is wrong with it)
    values = doc.__dict__
    data: dict[str, Any] = {}
    changed: list[str] = []
    problems: dict[str, list[str]] = {}
    missing = MISSING
    for name, db_name, field, trust, quick, store in fields:
        value = values.get(name)
        before = stored.get(db_name, missing)
        if trust == _OWN_FORM:
            if before is value and type(value) in _IMMUTABLE:
                data[db_name] = value
                continue
        elif trust and type(value) is list and type(before) is list and value == before and (
                _EXACT_ELEMENTS.issuperset(map(type, value)) or jsoncodec.same(value, before)):
            data[db_name] = before  # (the stored list: never the one the document holds)
            continue
        if before is missing:
            before = None
        if quick is not None:  # (the common values, as clean() takes them)
            cleaned = quick(value)
            if cleaned is not missing:
                values[name] = cleaned
                now = data[db_name] = cleaned if store is None else store(cleaned)
                if not same(before, now):
                    changed.append(name)
                continue
        cleaned, messages = field.validate(value)
        if messages:
            for m in messages:  # (as clean() files them: inside an embedded document, by path)
                if isinstance(m, NestedMessage):
                    problems.setdefault(m.path, []).append(str(m))
                else:
                    problems.setdefault(name, []).append(f"'{name}' {m}")
            continue
        values[name] = cleaned
        now = data[db_name] = field.to_storage(cleaned)
        if not same(before, now):
            changed.append(name)
    if problems:
        raise ValidationError(problems, model=type(doc).__name__)
    return data, frozenset(changed)


def same(a: Any, b: Any) -> bool:
    """Whether a field's stored form is unchanged: ``==`` for the common values, and for
    containers and floats :func:`~quantumorm.jsoncodec.same` (``[1]`` and ``[True]`` are
    equal to Python, not as stored JSON)."""
    if a != b:
        return False
    kind = type(a)
    return kind is type(b) and (kind not in _STRICT or jsoncodec.same(a, b))


#: storage forms whose ``==`` is looser than their JSON (see same)
_STRICT = (list, dict, float)


def encode(doc: Document, data: dict[str, Any]) -> bytes:
    """``data`` as the stored bytes. Validated field values always encode; a value that does
    not (a custom field's storage form) is a ValidationError naming its field, raised
    before anything is written."""
    try:
        return encode_document(data, doc._meta.plain_storage)
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        pass
    problems: dict[str, list[str]] = {}
    for name, field in doc._fields.items():
        try:
            encode_document({field.db_name: data.get(field.db_name)})
        except (TypeError, ValueError) as exc:
            problems[name] = [f"'{name}' cannot be stored as JSON ({exc})"]
    raise ValidationError(problems or {"id": ["cannot be stored as JSON"]},
                          model=type(doc).__name__)


def applied(doc: Document, data: dict[str, Any], result: WriteResult) -> None:
    """Record a write's result in ``doc`` (its id, version and stored data), or raise the
    error the store answered with."""
    if result.error is not None:
        raise result.error
    assert result.version is not None
    doc.id, doc._version, doc._stored = result.id, result.version, data


def check_whole(doc: Document) -> None:
    """Refuse a save of a document loaded with ``only()``: its other fields were not read."""
    if doc._partial is not None:
        raise InvalidOperation(
            f"{type(doc).__name__} {doc.id!r} was loaded with "
            f"only({', '.join(sorted(doc._partial))}); reload() it before saving"
        )
