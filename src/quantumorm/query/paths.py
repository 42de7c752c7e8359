"""Paths into embedded documents: ``address__city`` resolved to its leaf field.

A path names a field of a model's embedded document (``address__city``), at any depth
(``a__b__c``), or through a list of embedded documents (``addresses__city``: "any
element's city", as MongoDB does). Conditions and orderings keep the path as written (with
``__``) in their ``field``; the backends resolve it here and read the leaf value:

* in Python (:mod:`quantumorm.query.evaluate`) by walking the document's values;
* from stored JSON by walking the storage names (a ``db_field`` inside the embedded
  document applies).

Null semantics: a path under a null (or absent) embedded document reads as null, so
``address__city__isnull=True`` matches a document without an address. Through a list, a
positive lookup (``exact``, ``in``, ranges, string lookups) matches when any element's
value matches; ``ne``/``nin`` when no element's value is excluded by them, that is when
the positive lookup matches no element; ``isnull=True`` (``exact None``) when no element
has a value (an empty or null list included). None in an ``in`` list asks the same as
``exact None``: ``addresses__city__in=["a", None]`` is ``addresses__city="a"`` or "no
element has a city"; ``nin`` is its negation (see :func:`served`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import UnknownFieldError
from ..fields.base import MISSING, Field
from ..fields.embedded import EmbeddedDocument, embedded_class
from ..fields.scalar import StringField
from ..fields.structured import ArrayField
from .lookups import FOLDED_LOOKUPS, Lookup, split_key
from .nodes import Condition, Node, Not, Or, disjoin, negate

if TYPE_CHECKING:
    from ..options import ModelOptions

SEP = "__"


@dataclass(frozen=True)
class Path:
    """A resolved path: its name as written, the attribute and storage names of each step,
    the leaf field, and whether it passes through a list of embedded documents (``many``:
    then at most one list, the first step)."""

    name: str
    steps: tuple[str, ...]
    db_steps: tuple[str, ...]
    field: Field
    many: bool
    #: an index's path whose value is the leaf's case-folded form (see :func:`folded_field`)
    folded: bool = False

    def read(self, values: dict[str, Any]) -> Any:
        """The leaf's Python value in a document's values by attribute name (a list of the
        elements' values when ``many``)."""
        top = values.get(self.steps[0])
        if self.many:
            return [_walk(item, self.steps[1:]) for item in top or ()]
        return _walk(top, self.steps[1:])

    def indexed_value(self, values: dict[str, Any]) -> Any:
        """The value an index on the path keeps: the leaf's value; through a list, the
        elements' values that are not null (None when there are none). A folded path:
        the leaf's ``str.casefold()`` (what :func:`quantumorm.query.evaluate.fold` does)."""
        if self.folded:
            value = self.read(values)
            return value.casefold() if isinstance(value, str) else None
        if not self.many:
            return self.read(values)
        return [item for item in self.read(values) if item is not None] or None

    def read_stored(self, data: dict[str, Any]) -> Any:
        """The leaf's storage value in a stored document (a list when ``many``)."""
        top = data.get(self.db_steps[0])
        if self.many:
            return [_walk_stored(item, self.db_steps[1:]) for item in top or ()]
        return _walk_stored(top, self.db_steps[1:])


def _walk(value: Any, steps: tuple[str, ...]) -> Any:
    for step in steps:
        if value is None:
            return None
        if isinstance(value, EmbeddedDocument):
            value = value.__dict__.get(step)
        elif isinstance(value, dict):  # (assigned as a dict and not cleaned yet)
            value = value.get(step)
        else:
            return None
    return value


def _walk_stored(value: Any, steps: tuple[str, ...]) -> Any:
    for step in steps:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def is_path(name: str) -> bool:
    """Whether a condition's or ordering's field is a path (field names have no ``__``)."""
    return SEP in name


def resolve(options: ModelOptions, name: str) -> Path:
    """The path ``name`` of a model; UnknownFieldError naming the path if a step is not a
    field, or goes into a field that is not an embedded document."""
    return _resolve(options.model_name, options.fields, name)


def resolve_in(model: str, fields: dict[str, Field], name: str) -> Path:
    """:func:`resolve` on a model's fields before its options exist."""
    return _resolve_uncached(model, fields, name)


#: the attribute that marks a derived field (see :func:`derived_field`)
_DERIVED = "derived_path"


#: how the derived field of a path through a list is named among the model's fields (not
#: a path a query can name: its last step is a field that is not an embedded document)
EACH = "__each"


def derived_field(path: Path) -> Field:
    """The field an index on ``path`` keeps (``Meta.indexes = ["address__city"]``): a copy
    of the leaf field named by the path, whose storage name is the storage names joined by
    ``__``. The model's options list it with the fields (backends index and query it as
    a field, its values computed from the document: :meth:`Path.indexed_value`); the
    document never stores it (no default, not required).

    Through a list (``addresses__city``), an array of the elements' values, named
    ``addresses__city__each``: conditions on the path that membership answers are
    rewritten to it (:func:`served`), the others stay conditions on the path."""
    leaf = copy.copy(path.field)
    leaf.default, leaf.required, leaf.choices = MISSING, False, None
    leaf.unique, leaf.indexed = False, False
    field = ArrayField(leaf) if path.many else leaf
    field.name = path.name + EACH if path.many else path.name
    field.db_field = SEP.join(path.db_steps)
    field.default, field.required, field.choices = MISSING, False, None
    field.unique, field.indexed = False, True
    setattr(field, _DERIVED, path)
    return field


#: how the derived field of a case-folded index is named among the model's fields: the
#: field's (or path's) name + ``__casefold``, which no query key can name (``casefold`` is
#: not a lookup, and a string field has no fields inside)
FOLDED = "__casefold"


def folded_field(path: Path) -> Field:
    """The field a case-folded index on ``path`` (``Meta.indexes = [{"fields": ["email"],
    "casefold": True}]``) keeps: a plain string field whose value is the leaf's
    ``casefold()`` (None for null), computed at every write, reindex and row rewrite, never
    stored. Named ``<path>__casefold``, storage name ``<storage names>__casefold``. The
    case-insensitive lookups on the path are rewritten to it (:func:`served`)."""
    field = StringField(indexed=True)
    field.name = path.name + FOLDED
    field.db_field = SEP.join(path.db_steps) + FOLDED
    setattr(field, _DERIVED, Path(path.name, path.steps, path.db_steps, path.field,
                                  path.many, folded=True))
    return field


#: a case-insensitive lookup as the lookup on the folded value that means the same
_UNFOLDED = {Lookup.IEXACT: Lookup.EXACT, Lookup.ICONTAINS: Lookup.CONTAINS,
             Lookup.ISTARTSWITH: Lookup.STARTSWITH, Lookup.IENDSWITH: Lookup.ENDSWITH}


#: the longest ``in`` list served as membership tests (one test per value: a longer list
#: would make an SQL expression deeper than SQLite parses), longer ones stay on the path
SERVED_IN = 64


def served(options: ModelOptions, node: Node) -> Node:
    """A condition as the condition on an index's derived field that means the same, when
    the model declares that index; else unchanged.

    A case-insensitive lookup on a field (or path) with a case-folded index: the plain
    lookup on the folded value, with the value folded (``email__iexact="A@x"`` is
    ``email__casefold == "a@x"``). The same meaning (see
    :mod:`quantumorm.query.evaluate`): a null never matches either, and ``fold(v) ==
    fold(w)``, ``fold(w) in fold(v)``, ``startswith``, ``endswith`` are the folded value's
    plain tests. A condition on a path through a list: see :func:`_served_each`."""
    if isinstance(node, Condition) and node.lookup in FOLDED_LOOKUPS:
        folded = node.field + FOLDED
        if folded in options.fields and isinstance(node.value, str):
            return Condition(folded, _UNFOLDED[node.lookup], node.value.casefold())
        return node
    return _served_each(options, node)


def _served_each(options: ModelOptions, node: Node) -> Node:
    """A condition on a path through a list, as the membership test of its index when the
    model has one (``addresses__city="x"``: the list of cities contains "x"); else
    unchanged. Same meaning (see the module docstring): ``ne`` is "contains not",
    ``isnull`` "holds no value"; ``in`` is one test per value, and keeps to the path
    when it has more than :data:`SERVED_IN` values. Through a list, every backend and the
    evaluator alike, ``in``/``nin`` with None are rewritten (with or without an index): None
    in ``in`` asks "no element has a value", as ``exact None`` (``isnull``) does."""
    if not isinstance(node, Condition):
        return node
    if node.lookup in (Lookup.IN, Lookup.NIN) and None in node.value:
        # ``in`` asks for null as ``exact`` does: "no element has a value" (not "an element
        # is null"), so ``in [a, None]`` is ``exact a | exact None``; ``nin`` its negation
        rest = tuple(v for v in node.value if v is not None)
        nulls = served(options, Condition(node.field, Lookup.ISNULL, True))
        found = disjoin(served(options, Condition(node.field, Lookup.IN, rest)),
                        nulls) if rest else nulls
        return found if node.lookup is Lookup.IN else negate(found)
    if node.field + EACH not in options.fields:
        return node
    each, lookup, value = node.field + EACH, node.lookup, node.value
    if lookup is Lookup.ISNULL:
        return Condition(each, Lookup.ISNULL, value)
    if lookup in (Lookup.EXACT, Lookup.NE):
        member = Condition(each, Lookup.CONTAINS, value)
        return member if lookup is Lookup.EXACT else negate(member)
    if lookup in (Lookup.IN, Lookup.NIN) and len(value) <= SERVED_IN:
        members = disjoin(*(Condition(each, Lookup.CONTAINS, one) for one in value))
        return members if lookup is Lookup.IN else negate(members)
    return node


def shown(node: Node) -> Node:
    """``node`` as the user wrote it, for a message: the conditions :func:`served` rewrote
    to an indexed path's derived field (``addresses__city__each__contains``) back on the
    path (``addresses__city``; ``ne``, ``in``, ``nin`` from their rewritten forms)."""
    if isinstance(node, Condition):
        if not node.field.endswith(EACH):
            return node
        lookup = Lookup.EXACT if node.lookup is Lookup.CONTAINS else node.lookup
        return Condition(node.field.removesuffix(EACH), lookup, node.value)
    if isinstance(node, Not):
        inner = shown(node.child)
        if isinstance(inner, Condition) and inner is not node.child and (
                inner.lookup in (Lookup.EXACT, Lookup.IN)):
            return Condition(inner.field, Lookup.NE if inner.lookup is Lookup.EXACT
                             else Lookup.NIN, inner.value)
        return Not(inner)
    children = tuple(shown(child) for child in node.children)
    members = [c for c in node.children
               if isinstance(c, Condition) and c.field.endswith(EACH)
               and c.lookup is Lookup.CONTAINS]
    if isinstance(node, Or) and members and len(members) == len(children) and (
            len({c.field for c in members}) == 1):
        return Condition(members[0].field.removesuffix(EACH), Lookup.IN,
                         [c.value for c in members])
    return type(node)(children)


def stored_names(options: ModelOptions) -> list[str]:
    """The names of the fields a document stores (not the derived fields of indexed paths):
    what an error listing a model's fields names."""
    return [name for name, field in options.fields.items() if derived(field) is None]


def derived(field: Field) -> Path | None:
    """The path of a derived field, or None for a field the document stores."""
    path: Path | None = getattr(field, _DERIVED, None)
    return path


@lru_cache(maxsize=1024)
def _cached(model: str, fields: _Fields, name: str) -> Path:
    return _resolve_uncached(model, fields.fields, name)


def _resolve(model: str, fields: dict[str, Field], name: str) -> Path:
    return _cached(model, _Fields(fields), name)


class _Fields:
    """A model's fields dict, hashed by identity (the key of the resolution cache)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Field]) -> None:
        self.fields = fields

    def __hash__(self) -> int:
        return id(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Fields) and other.fields is self.fields


def _resolve_uncached(model: str, fields: dict[str, Field], name: str) -> Path:
    steps = tuple(name.split(SEP))
    known: dict[str, Field] = fields
    db_steps: list[str] = []
    many = False
    field: Field | None = None
    for depth, step in enumerate(steps):
        field = known.get(step) if step else None
        if field is None:
            where = SEP.join(steps[:depth + 1])
            raise UnknownFieldError(model, where, [SEP.join((*steps[:depth], k))
                                                   for k in known])
        db_steps.append(field.db_name)
        if depth == len(steps) - 1:
            break
        inner = embedded_class(field)
        if inner is None:
            raise UnknownFieldError(model, SEP.join(steps[:depth + 2]),
                                    [f"{SEP.join(steps[:depth + 1])} is a {field.type_name} "
                                     "field, not an embedded document"])
        if isinstance(field, ArrayField):
            if depth:
                raise UnknownFieldError(model, name, ["(one list of embedded documents per "
                                                      "path, as its first step)"])
            many = True
        known = inner._fields
    assert field is not None
    if many and isinstance(field, ArrayField):
        raise UnknownFieldError(model, name, ["(a path through a list of embedded documents "
                                              "ends at a field that is not a list)"])
    return Path(name, steps, tuple(db_steps), field, many)


def nested(options: ModelOptions, key: str) -> tuple[Path, Lookup] | None:
    """``key`` (``address__city__startswith``) as a path and a lookup, or None when ``key``
    does not go inside an embedded field (the plain parser then reads it). A last step
    that is a lookup's name is the lookup (``address__city__in``)."""
    head = key.partition(SEP)[0]
    field = options.fields.get(head)
    if field is None or embedded_class(field) is None or SEP not in key:
        return None
    name, lookup, _ = split_key(key)
    if lookup is None:
        name, lookup = key, Lookup.EXACT
    if not is_path(name):
        return None  # a lookup on the embedded field itself: ``address__isnull``
    return resolve(options, name), lookup

