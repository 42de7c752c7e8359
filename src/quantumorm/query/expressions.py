"""Q objects and field expressions (``User.age > 30``), and their resolution into IR nodes.

A :class:`Q` is model-agnostic until a QuerySet resolves it against its model: then every
field name and lookup is checked and every value is cleaned by its field, so mistakes raise
:class:`QueryError` when the query is built, naming the model, the field and the lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, NamedTuple

from ..errors import FieldValueError, QueryError
from .lookups import FOLDED_LOOKUPS, KIND_LOOKUPS, RANGE_LOOKUPS, FieldKind, Lookup, split_key
from .nodes import (
    FALSE,
    ID,
    TRUE,
    BoolOp,
    Condition,
    Node,
    Ordering,
    conjoin,
    disjoin,
    negate,
)

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from ..fields.base import Field
    from ..options import ModelOptions

    #: the values a field's expressions take (its Python type); Any for a bare ``FieldRef``
    V = TypeVar("V", contravariant=True, default=Any)
else:
    from typing import TypeVar

    V = TypeVar("V", contravariant=True)


class Q:
    """A composable filter: ``Q(age__gte=18) & ~Q(status="banned") | Q(role="admin")``.

    An empty ``Q()`` is no condition at all, and is neutral in ``&`` and ``|`` (as in
    Django): ``Q() | q`` and ``Q() & q`` are ``q``, and ``~Q()`` is ``Q()``. So a filter
    can be built up in a loop, ``q = Q(); for x in xs: q |= Q(name=x)``, and is the OR of
    its parts. On its own it adds nothing: ``filter(Q())`` (the loop ran zero times) keeps
    every document and ``exclude(Q())`` drops none. To match nothing, ``Q(id__in=[])``.
    """

    __slots__ = ("_op", "_children", "_model")

    def __init__(self, *conditions: Q, **lookups: Any) -> None:
        # ``Q(Q(a=1), Q(b=2), c=3)``: the AND of its parts (empty ``Q()``s left out)
        for condition in conditions:
            if not isinstance(condition, Q):
                raise QueryError(f"Q() takes Q objects and keyword lookups "
                                 f"(got {condition!r})")
        parts = [c for c in conditions if not c.empty]
        self._op = BoolOp.AND
        self._children: tuple[Any, ...] = (*parts, *sorted(lookups.items()))
        self._model: type | None = None
        if len(parts) == 1 and not lookups:  # Q(q) is q
            self._op, self._children, self._model = parts[0]._op, parts[0]._children, (
                parts[0]._model)

    @classmethod
    def _make(cls, op: BoolOp, children: Iterable[Any], model: type | None = None) -> Q:
        q = cls.__new__(cls)
        q._op, q._children, q._model = op, tuple(children), model
        return q

    @property
    def empty(self) -> bool:
        """True for ``Q()`` (no condition), which ``&``, ``|`` and ``~`` leave out."""
        return not self._children

    def __and__(self, other: Any) -> Q:
        return self._combine(BoolOp.AND, _as_q(other))

    def __or__(self, other: Any) -> Q:
        return self._combine(BoolOp.OR, _as_q(other))

    def _combine(self, op: BoolOp, other: Q) -> Q:
        if other.empty:
            return self
        if self.empty:
            return other
        return Q._make(op, (self, other))

    def __invert__(self) -> Q:
        return self if self.empty else Q._make(BoolOp.NOT, (self,))

    def __bool__(self) -> bool:
        raise TypeError("a Q is not a bool: combine with & | ~ instead of and/or/not")

    def __eq__(self, other: object) -> bool:
        """Same connective, same parts in the same order, same model: ``Q(a=1) == Q(a=1)``
        (keywords are sorted, so ``Q(a=1, b=2) == Q(b=2, a=1)``). Values are compared with
        their types: ``Q(a=1) != Q(a=True)`` and ``Q(a=1) != Q(a=1.0)``, which select
        different documents."""
        if not isinstance(other, Q):
            return NotImplemented
        return (self._op, self._model) == (other._op, other._model) and _typed(
            self._children) == _typed(other._children)

    def __hash__(self) -> int:
        # (values may be unhashable, e.g. lists of ``__in``: hash the shape only)
        return hash((self._op, len(self._children), self._model))

    def __repr__(self) -> str:
        if self._op is BoolOp.NOT:
            return f"~{self._children[0]!r}"
        parts = [f"{k}={v!r}" if isinstance(k, str) else repr(k)
                 for k, v in (c if isinstance(c, tuple) else (c, None) for c in self._children)]
        return f"Q[{self._op.value}]({', '.join(parts)})"

    def resolve(self, options: ModelOptions) -> Node:
        """Check names, lookups and values against a model and build the IR node."""
        if self._model is not None and self._model.__name__ != options.model_name:
            raise QueryError(
                f"an expression on {self._model.__name__} cannot filter {options.model_name}"
            )
        nodes = [
            child.resolve(options) if isinstance(child, Q) else resolve_lookup(options, *child)
            for child in self._children
        ]
        if self._op is BoolOp.NOT:
            return negate(nodes[0])
        return conjoin(*nodes) if self._op is BoolOp.AND else disjoin(*nodes)


def _as_q(value: Any) -> Q:
    if isinstance(value, Q):
        return value
    raise TypeError(f"cannot combine a Q with {value!r}")


class FieldRef(Generic[V]):
    """What ``Model.field`` is on the class: a builder of conditions and orderings.

    ``V`` is the type of the values it compares with (``User.age > 30`` is a ``Q``;
    ``User.age > "x"`` is a type error)."""

    __slots__ = ("model", "field")

    def __init__(self, model: type[Any], field: Field[Any]) -> None:
        self.model, self.field = model, field

    def _q(self, lookup: Lookup, value: Any) -> Q:
        return Q._make(BoolOp.AND, ((f"{self.field.name}__{lookup.value}", value),), self.model)

    def __eq__(self, value: V | None) -> Q:  # type: ignore[override]
        return self._q(Lookup.EXACT, value)

    def __ne__(self, value: V | None) -> Q:  # type: ignore[override]
        return self._q(Lookup.NE, value)

    def __gt__(self, value: V) -> Q:
        return self._q(Lookup.GT, value)

    def __ge__(self, value: V) -> Q:
        return self._q(Lookup.GTE, value)

    def __lt__(self, value: V) -> Q:
        return self._q(Lookup.LT, value)

    def __le__(self, value: V) -> Q:
        return self._q(Lookup.LTE, value)

    __hash__ = None  # type: ignore[assignment]

    def in_(self, values: Iterable[V | None]) -> Q:
        return self._q(Lookup.IN, values)

    def not_in(self, values: Iterable[V | None]) -> Q:
        return self._q(Lookup.NIN, values)

    def contains(self, value: Any) -> Q:
        return self._q(Lookup.CONTAINS, value)

    def startswith(self, value: str) -> Q:
        return self._q(Lookup.STARTSWITH, value)

    def endswith(self, value: str) -> Q:
        return self._q(Lookup.ENDSWITH, value)

    def iexact(self, value: str) -> Q:
        return self._q(Lookup.IEXACT, value)

    def icontains(self, value: str) -> Q:
        return self._q(Lookup.ICONTAINS, value)

    def istartswith(self, value: str) -> Q:
        return self._q(Lookup.ISTARTSWITH, value)

    def iendswith(self, value: str) -> Q:
        return self._q(Lookup.IENDSWITH, value)

    def regex(self, pattern: str) -> Q:
        return self._q(Lookup.REGEX, pattern)

    def iregex(self, pattern: str) -> Q:
        return self._q(Lookup.IREGEX, pattern)

    def isnull(self, value: bool = True) -> Q:
        return self._q(Lookup.ISNULL, value)

    def asc(self) -> Ordering:
        return Ordering(self.field.name)

    def desc(self) -> Ordering:
        return Ordering(self.field.name, descending=True)

    def __neg__(self) -> Ordering:
        return self.desc()

    def __repr__(self) -> str:
        return f"{self.model.__name__}.{self.field.name}"


_ID_LOOKUPS = KIND_LOOKUPS[FieldKind.ID]


def resolve_lookup(options: ModelOptions, key: str, value: Any) -> Node:
    """Resolve one ``field__lookup=value`` against a model."""
    # a key of a plain field (or the id) resolved before: what the key says depends on the
    # model alone, so only the value is checked and cleaned again (see _KeyUse)
    known = options.__dict__.get(_KEYS)
    use = None if known is None else known.get(key)
    if use is not None:
        name, field, lookup, where, folded = use
        node = (_id_condition(where, lookup, value) if field is None
                else _BUILDERS[lookup](where, name, field, lookup, value))
        return options.served(node) if folded else node
    name, lookup, suffix = split_key(key)
    model = options.model_name
    inside = options.nested(key) if "__" in key else None
    if inside is not None:  # a path into an embedded document: its leaf field's lookups
        path, lookup = inside
        node = _checked_condition(model, path.name, path.field, lookup, value)
        return options.served(node) if path.many or lookup in FOLDED_LOOKUPS else node
    key_field = options.primary_key()
    if key_field is not None and name == key_field.name and lookup is not None:
        return _primary_key_condition(model, key_field, lookup, value)
    field = options.fields.get(name)
    if lookup is None:
        if name in options.fields or name == ID:
            raise QueryError(
                f"{model}.{name}: unknown lookup {suffix!r} "
                f"(known: {', '.join(sorted(lk.value for lk in Lookup))})"
            )
        name, lookup, field = key, Lookup.EXACT, options.fields.get(key)
    if field is None and name != ID:
        raise QueryError(
            f"{model} has no field {name!r} (fields: id, "
            f"{', '.join(n for n in options.fields if n not in dict(options.derived))})"
        )
    _check_lookup(model, name, field, lookup)
    # (kept on the options, as registry.connection_for keeps its checks: a model made at
    # run time takes its keys with it; only keys that resolved are kept, so the table
    # holds at most the model's fields times their lookups)
    table = known if known is not None else options.__dict__.setdefault(_KEYS, {})
    table[key] = use = _KeyUse(name, field, lookup, f"{model}.{name}__{lookup._value_}",
                               lookup in FOLDED_LOOKUPS)
    node = (_id_condition(use.where, lookup, value) if field is None
            else _BUILDERS[lookup](use.where, name, field, lookup, value))
    # (a case-folded index serves it: see quantumorm.query.paths.served)
    return options.served(node) if use.folded else node


#: where a model's options keep the keys :func:`resolve_lookup` has resolved
_KEYS = "_lookup_keys"


class _KeyUse(NamedTuple):
    """What a query key of a plain field (or the id) says, checked: the field (None for the
    id), its lookup, the name of the condition in errors, and whether a case-folded index
    may serve it (``options.served``)."""

    name: str
    field: Field | None
    lookup: Lookup
    where: str
    folded: bool


def _check_lookup(model: str, name: str, field: Field | None, lookup: Lookup) -> None:
    allowed = _ID_LOOKUPS if field is None else field.lookups
    if lookup not in allowed:
        kind = "the id" if field is None else (
            f"{'an' if field.type_name[:1] in 'aeiou' else 'a'} {field.type_name} field")
        raise QueryError(
            f"{model}.{name}: lookup {lookup.value!r} is not supported on {kind} "
            f"(supported: {', '.join(sorted(lk.value for lk in allowed))})"
        )


def _checked_condition(model: str, name: str, field: Field | None, lookup: Lookup,
                       value: Any) -> Node:
    _check_lookup(model, name, field, lookup)
    return _condition(model, name, field, lookup, value)


def resolve_id(options: ModelOptions, value: Any) -> Node:
    """``id=value``: what :func:`resolve_lookup` gives for it, without parsing the key."""
    return _id_condition(f"{options.model_name}.id__exact", Lookup.EXACT, value)


def _condition(model: str, name: str, field: Field | None, lookup: Lookup, value: Any) -> Node:
    where = f"{model}.{name}__{lookup._value_}"  # (_value_: no enum descriptor call)
    if field is None:
        return _id_condition(where, lookup, value)
    return _BUILDERS[lookup](where, name, field, lookup, value)


# How each lookup checks and cleans its value on a field (the id has _id_condition). Each
# builder receives (where, name, field, lookup, value); ``where`` names the condition in errors.


def _isnull(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if not isinstance(value, bool):
        raise QueryError(f"{where}: expects True or False (got {value!r})")
    return Condition(name, lookup, value)


def _equal(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if value is None:  # ``field=None`` asks for null, as isnull does
        return Condition(name, Lookup.ISNULL, lookup is Lookup.EXACT)
    return Condition(name, lookup, _clean(where, field, value, nullable=False))


def _listed(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise QueryError(f"{where}: expects a list of values (got {value!r})")
    items = list(value)
    if not items:
        return FALSE if lookup is Lookup.IN else TRUE
    cleaned = tuple(dict.fromkeys(_clean(where, field, v, nullable=True) for v in items))
    return Condition(name, lookup, cleaned)


def _bound(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if value is None:
        raise QueryError(f"{where}: cannot compare with None (use isnull)")
    return Condition(name, lookup, _clean(where, field, value, nullable=False))


def _text(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if not isinstance(value, str):
        raise QueryError(f"{where}: expects a string (got {value!r})")
    return Condition(name, lookup, value)


def _folded(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if value is None and lookup is Lookup.IEXACT:  # as ``exact``: asks for null
        return Condition(name, Lookup.ISNULL, True)
    return _text(where, name, field, lookup, value)


def _pattern(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    if not isinstance(value, str):
        raise QueryError(f"{where}: expects a regular expression as a string (got {value!r})")
    try:  # a bad pattern fails here, not half-way through a query
        re.compile(value, re.IGNORECASE if lookup is Lookup.IREGEX else 0)
    except re.error as exc:
        raise QueryError(f"{where}: invalid regular expression {value!r}: {exc}") from None
    if lookup is Lookup.REGEX:
        literal = _literal_pattern(value)
        if literal is not None:
            return Condition(name, *literal)
    return Condition(name, lookup, value)


#: the characters with a meaning in a Python regular expression outside a class (``#`` and
#: whitespace only under the verbose flag, which takes ``(?x)``, so a "(")
_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # (a lone surrogate: no string lookup value can hold one)
        return False
    return True


def _literal_pattern(pattern: str) -> tuple[Lookup, str] | None:
    """The plain lookup a literal pattern means, exactly (so that backends serve it as they
    serve that lookup: a prefix from an index, a substring in SQL), or None.

    ``re.search`` of a literal is a substring test; ``^literal`` a prefix; ``literal\\Z`` a
    suffix and ``^literal\\Z`` equality. (Not ``literal$``: ``$`` also matches before a
    final newline.)"""
    body, start, end = pattern, False, False
    if body.startswith("^"):
        body, start = body[1:], True
    if body.endswith("\\Z") and not body.endswith("\\\\Z"):
        body, end = body[:-2], True
    if any(char in _REGEX_SPECIAL for char in body) or not _utf8(body):
        return None
    if start and end:
        return Lookup.EXACT, body
    if start:
        return Lookup.STARTSWITH, body
    return (Lookup.ENDSWITH if end else Lookup.CONTAINS), body


def _contains(where: str, name: str, field: Field, lookup: Lookup, value: Any) -> Node:
    clean_element = getattr(field, "clean_element", None)
    if clean_element is None:  # a string: a substring
        return _text(where, name, field, lookup, value)
    try:  # an array: an element
        return Condition(name, lookup, clean_element(value))
    except FieldValueError as exc:
        raise QueryError(f"{where}: {exc}") from None


_BUILDERS: dict[Lookup, Callable[[str, str, Field, Lookup, Any], Node]] = {
    Lookup.EXACT: _equal,
    Lookup.NE: _equal,
    Lookup.IN: _listed,
    Lookup.NIN: _listed,
    Lookup.GT: _bound,
    Lookup.GTE: _bound,
    Lookup.LT: _bound,
    Lookup.LTE: _bound,
    Lookup.CONTAINS: _contains,
    Lookup.STARTSWITH: _text,
    Lookup.ENDSWITH: _text,
    Lookup.ISNULL: _isnull,
    Lookup.IEXACT: _folded,
    Lookup.ICONTAINS: _folded,
    Lookup.ISTARTSWITH: _folded,
    Lookup.IENDSWITH: _folded,
    Lookup.REGEX: _pattern,
    Lookup.IREGEX: _pattern,
}


def _id_condition(where: str, lookup: Lookup, value: Any) -> Node:
    """Conditions on the id, which is never null: ``id=None`` matches nothing. Ranges
    (``id__gte=10``) follow the id order: canonical decimal ids numerically, then the
    others (:func:`quantumorm.sortable.id_key`)."""
    if lookup in RANGE_LOOKUPS:
        if value is None:
            raise QueryError(f"{where}: expects an id (got None)")
        return Condition(ID, lookup, clean_id(value, QueryError, where))
    if lookup in (Lookup.EXACT, Lookup.NE):
        if value is None:
            return FALSE if lookup is Lookup.EXACT else TRUE
        return Condition(ID, lookup, clean_id(value, QueryError, where))
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise QueryError(f"{where}: expects a list of ids (got {value!r})")
    ids = tuple(dict.fromkeys(clean_id(v, QueryError, where) for v in value if v is not None))
    if not ids:
        return FALSE if lookup is Lookup.IN else TRUE
    return Condition(ID, lookup, ids)


def _primary_key_condition(model: str, field: Field, lookup: Lookup, value: Any) -> Node:
    """``number__gte=10`` on ``number = IntField(primary_key=True)``: the id condition,
    each value checked by the field (so ``number="10"`` or ``number=-1`` is refused)."""
    where = f"{model}.{field.name}__{lookup.value}"
    if lookup not in _ID_LOOKUPS:
        raise QueryError(f"{where}: lookup {lookup.value!r} is not supported on the primary "
                         f"key (supported: {', '.join(sorted(lk.value for lk in _ID_LOOKUPS))})")

    def check(one: Any) -> Any:
        if one is None:
            return None
        try:
            return field._check(field.clean(one))
        except FieldValueError as exc:
            raise QueryError(f"{where}: value {exc}") from None
    if lookup in (Lookup.IN, Lookup.NIN):
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
            raise QueryError(f"{where}: expects a list of values (got {value!r})")
        return _id_condition(where, lookup, [check(v) for v in value])
    return _id_condition(where, lookup, check(value))


def _clean(where: str, field: Field | None, value: Any, nullable: bool) -> Any:
    if value is None and nullable:
        return None
    if field is None:  # the id
        return clean_id(value, QueryError, where)
    try:
        return field.clean(value)
    except FieldValueError as exc:
        raise QueryError(f"{where}: value {exc}") from None


def clean_id(value: Any, error: Callable[[str], Exception], where: str = "id") -> str:
    """Ids are non-empty strings; ints are accepted and turned into their decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise error(f"{where}: an id is a non-empty string (got {value!r})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{where}: an id must be valid Unicode (got {value!r})") from None
    return value


def _typed(value: Any) -> Any:
    """``value`` with the type of every scalar in it next to it, for :meth:`Q.__eq__`:
    Python has ``1 == True == 1.0``, which would make conditions that match different
    documents equal (a field stores ``true`` or ``1``, never both)."""
    if isinstance(value, Q):
        return value  # (compared by its own __eq__, which recurses)
    if isinstance(value, (list, tuple)):
        return type(value), tuple(_typed(item) for item in value)
    if isinstance(value, dict):
        return dict, {key: _typed(item) for key, item in value.items()}
    return type(value), value
