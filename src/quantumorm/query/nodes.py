"""The query IR: immutable nodes every backend compiles, and the pure description of a query.

``filter(age__gte=3)``, ``Q(age__gte=3)`` and ``User.age >= 3`` all resolve to the same
:class:`Condition`. Values in conditions are already cleaned by the field (a ``datetime`` is
aware, a ``Decimal`` is a ``Decimal``), so backends never see raw user input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from .lookups import Lookup

ID = "id"  # the pseudo-field naming the document id in conditions and orderings


class BoolOp(enum.Enum):
    """The boolean connectives: what an :class:`And`, :class:`Or` or :class:`Not` node is
    (``node.op``), and how a :class:`~quantumorm.query.expressions.Q` combines its parts.
    Backends map them to their own spelling with a table (SQL keywords, Lua tokens)."""

    AND = "and"
    OR = "or"
    NOT = "not"

    __hash__ = object.__hash__  # as Lookup's: members are singletons, and tables key on them


@dataclass(frozen=True)
class Condition:
    """``field <lookup> value``; ``field`` is the attribute name (or ``"id"``)."""

    field: str
    lookup: Lookup
    value: Any

    def __init__(self, field: str, lookup: Lookup, value: Any) -> None:
        # (what the frozen dataclass's own __init__ does, one object.__setattr__ call per
        # field, at half the cost: a condition is built per lookup of every query)
        values = self.__dict__
        values["field"] = field
        values["lookup"] = lookup
        values["value"] = value

    def __repr__(self) -> str:
        return f"{self.field}__{self.lookup.value}={self.value!r}"


@dataclass(frozen=True)
class And:
    op: ClassVar[BoolOp] = BoolOp.AND
    children: tuple[Node, ...]

    def __init__(self, children: tuple[Node, ...]) -> None:
        self.__dict__["children"] = children  # (as Condition's)

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.children)) + ")" if self.children else "TRUE"


@dataclass(frozen=True)
class Or:
    op: ClassVar[BoolOp] = BoolOp.OR
    children: tuple[Node, ...]

    def __init__(self, children: tuple[Node, ...]) -> None:
        self.__dict__["children"] = children  # (as Condition's)

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.children)) + ")" if self.children else "FALSE"


@dataclass(frozen=True)
class Not:
    op: ClassVar[BoolOp] = BoolOp.NOT
    child: Node

    def __init__(self, child: Node) -> None:
        self.__dict__["child"] = child  # (as Condition's)

    def __repr__(self) -> str:
        return f"~{self.child!r}"


Node = Union[Condition, And, Or, Not]
TRUE = And(())
FALSE = Or(())


def conjoin(*nodes: Node) -> Node:
    """AND of nodes, flattening nested ANDs and dropping TRUE."""
    parts: list[Node] = []
    for node in nodes:
        if isinstance(node, And):
            parts.extend(node.children)
        else:
            parts.append(node)
    for part in parts:  # (a FALSE part: an empty Or; tested without a call per part)
        if type(part) is Or and not part.children:
            return FALSE
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def disjoin(*nodes: Node) -> Node:
    parts: list[Node] = []
    for node in nodes:
        if isinstance(node, Or):
            parts.extend(node.children)
        else:
            parts.append(node)
    if any(part == TRUE for part in parts):
        return TRUE
    return parts[0] if len(parts) == 1 else Or(tuple(parts))


def negate(node: Node) -> Node:
    if isinstance(node, Not):
        return node.child
    if node == TRUE:
        return FALSE
    if node == FALSE:
        return TRUE
    return Not(node)


@dataclass(frozen=True)
class Ordering:
    field: str
    descending: bool = False

    def __repr__(self) -> str:
        return ("-" if self.descending else "") + self.field


@dataclass(frozen=True)
class QuerySpec:
    """Everything a backend needs to run a query, and nothing it must not see."""

    where: Node = TRUE
    order: tuple[Ordering, ...] = ()
    offset: int = 0
    limit: int | None = None
    #: keyset position: the sort keys (``order`` fields, then the id key) of the last row seen
    after: tuple[bytes, ...] | None = None

    def __init__(self, where: Node = TRUE, order: tuple[Ordering, ...] = (), offset: int = 0,
                 limit: int | None = None, after: tuple[bytes, ...] | None = None) -> None:
        # (as Condition's: one per operation on a queryset)
        values = self.__dict__
        values["where"] = where
        values["order"] = order
        values["offset"] = offset
        values["limit"] = limit
        values["after"] = after

    @property
    def window(self) -> int | None:
        """How many leading rows of the ordered result are needed (``offset + limit``)."""
        return None if self.limit is None else self.offset + self.limit
