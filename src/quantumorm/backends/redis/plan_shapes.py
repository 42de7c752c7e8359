"""Plans per query *shape*: ``filter(name="x")`` and ``filter(name="y")`` share one plan,
planned once, whose value tokens are bound for each query (a prepared statement's idea).

The planner (:mod:`.planner`) plans with values: its tokens hold the values' index
encodings, and a few of its choices look at values. A shape is what a query is without its
values: the tree of (field, lookup) conditions, the ordering, whether it counts; a bool or
None value stays in the shape (the planner branches on them), and a list value (``in``,
``nin``) or a keyset position makes the query shapeless (its length changes the plan).

A template is learnt from two plans of one shape whose every value differs
(:func:`learn`): the positions where their tokens differ are the value positions, each
traced to the token it is among its condition's *derived tokens* (the index ranges, probes
and tests the lookup makes of the value, :data:`.lookup_plans.LOOKUPS`) for both values.
The template is refused (the shape is then planned per value, as before) when:

* a value position traces to no derived token, or to several conditions' (a compound
  index's prefix mixes values, for example);
* a token at an unchanged position is also a value token (it could not be told apart);
* a field has two conditions that bound it on the same side, or an equality and a bound:
  the planner keeps the tighter of the two, a choice that depends on the values, where a
  template would keep the same condition's bound.

Every other choice of the planner depends on fields, lookups, the ordering and the kinds
of values only (an encoding of a value sorts after the null entries, which is the one
comparison of a value with a constant), so a learnt template gives, for any values of the
shape, the plan the planner would make.

A template is also compiled into a *binder* (:func:`compile_binder`) when each of its value
tokens is its condition's value encoding (the field's ``sort_key``, or what the lookup
encodes: see the planner's ``_encoder``) with a constant lex-bound mark before it (``[``,
``(`` or nothing) and a constant ``\xff`` or nothing after it, the same for both examples,
as every derived token of :data:`.lookup_plans.LOOKUPS` is: a function made once per shape
that encodes each condition's value once and joins the packed program from the template's
pieces, with no derived token lists, maps or loops per query. Otherwise the template binds
as above. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any

from ... import sortable
from ...query.lookups import Lookup
from ...query.nodes import And, Condition, Node, Not, QuerySpec
from . import wire

Token = bytes
#: a condition's derived tokens: what its lookup makes of its value (see the docstring),
#: given how many of the first ones are needed (None: all of them; more may come)
Derive = Callable[[Condition, int | None], list[Token]]
#: the encoding of a condition's value that its derived tokens hold (None: none known)
Encoder = Callable[[Condition], Callable[[Any], bytes] | None]
#: a compiled template (see compile_binder): the conditions of a query of the shape -> its
#: program, and its value tokens in the order of the template's ``cuts``
Binder = Callable[[list[Condition]], tuple[bytes, tuple[Token, ...]]]
#: what may come before and after a value's encoding in a derived token (lex bounds: "[" and
#: "(" open them, "\xff" ends an exclusive upper bound; probes and tests hold it bare)
BEFORE = (b"", b"[", b"(")
AFTER = (b"", sortable.UPPER)

LOWER = frozenset({Lookup.GT, Lookup.GTE})
UPPER = frozenset({Lookup.LT, Lookup.LTE})


class Shapeless(Exception):
    """The query has no shape to share: a list value or a keyset position."""


def shape(spec: QuerySpec, counting: bool) -> tuple[Hashable, ...]:
    """The query without its values (raises :class:`Shapeless`)."""
    return shape_of(spec, counting)[0]


def shape_of(spec: QuerySpec, counting: bool) -> tuple[tuple[Hashable, ...], list[Condition]]:
    """:func:`shape` and :func:`conditions` of a query in one walk (raises
    :class:`Shapeless`). The ordering is in the shape as plain tuples (an
    :class:`~quantumorm.query.nodes.Ordering` hashes with a Python call)."""
    if spec.after is not None:
        raise Shapeless
    order = spec.order
    ordering = tuple([(o.field, o.descending) for o in order]) if order else ()
    where = spec.where
    if type(where) is And:  # (the common tree: a conjunction of conditions, walked inline)
        parts: list[Hashable] = []
        conds: list[Condition] = []
        for child in where.children:
            if type(child) is Condition:
                value = child.value
                if value is None or value.__class__ is bool:
                    parts.append((child.field, child.lookup, value))
                elif isinstance(value, tuple):
                    raise Shapeless
                else:
                    parts.append((child.field, child.lookup, type(value)))
                conds.append(child)
            else:
                parts.append(_shape(child))
                conds += conditions(child)
        return ((where.op, tuple(parts)), ordering, counting), conds
    if type(where) is Condition:  # (one condition, inline too)
        value = where.value
        if value is None or value.__class__ is bool:
            part: Hashable = (where.field, where.lookup, value)
        elif isinstance(value, tuple):
            raise Shapeless
        else:
            part = (where.field, where.lookup, type(value))
        return (part, ordering, counting), [where]
    return (_shape(where), ordering, counting), conditions(where)


def _shape(node: Node) -> Hashable:
    if isinstance(node, Condition):
        value = node.value
        if value is None or isinstance(value, bool):
            return (node.field, node.lookup, value)  # the planner branches on these
        if isinstance(value, tuple):
            raise Shapeless
        return (node.field, node.lookup, type(value))
    if isinstance(node, Not):
        return ("NOT", _shape(node.child))
    return (node.op, tuple(_shape(child) for child in node.children))


def conditions(node: Node) -> list[Condition]:
    """The conditions of a tree, in the order :func:`shape` visits them."""
    if isinstance(node, Condition):
        return [node]
    if isinstance(node, Not):
        return conditions(node.child)
    return [cond for child in node.children for cond in conditions(child)]


def _fixed(cond: Condition) -> bool:
    """Whether the condition's value is part of the shape (its tokens are constants)."""
    return cond.value is None or isinstance(cond.value, bool)


@dataclass(frozen=True, slots=True)
class Template:
    """How to make a plan's tokens for other values of its shape: ``slots`` maps each
    value token of the learnt plan to (condition position, derived token position).

    ``pieces`` and ``cuts``: the learnt plan's program (:func:`.wire.program` of its tokens)
    cut at its value tokens: the packed runs of constant tokens around them, and the
    value token at each cut, in order. A bound plan's program is then those runs with
    its own values packed in between (see :meth:`program`), rather than every token
    packed again for each new value.

    ``needs``: per condition position the slots read, how many of its derived tokens
    they reach (the rest, often a probe and a test encoding the value again, are not
    made when a query is bound)."""

    slots: dict[Token, tuple[int, int]]
    pieces: tuple[bytes, ...]
    cuts: tuple[Token, ...]
    needs: tuple[tuple[int, int], ...]
    #: the template compiled (see compile_binder), or None: bind() and program() then
    binder: Binder | None = None

    def bind(self, conds: list[Condition], derive: Derive) -> dict[Token, Token]:
        """The learnt plan's value tokens -> this query's (``conds``: its conditions)."""
        derived = {position: derive(conds[position], upto) for position, upto in self.needs}
        return {token: derived[position][index]
                for token, (position, index) in self.slots.items()}

    def program(self, bound: dict[Token, Token]) -> bytes:
        """``wire.program`` of the learnt plan's tokens with ``bound`` (:meth:`bind`'s) in
        place of its value tokens."""
        pieces, item = self.pieces, wire.item
        out = [pieces[0]]
        for i, cut in enumerate(self.cuts, 1):
            out.append(item(bound[cut]))
            out.append(pieces[i])
        return b"".join(out)


def apart(first_conds: list[Condition], second_conds: list[Condition],
          derive: Derive) -> bool:
    """Whether two queries of one shape differ in every value the shape does not fix and
    the plan holds (a condition checked in Python has no tokens), so that :func:`learn`
    can tell every value token from the constants."""
    for a, b in zip(first_conds, second_conds, strict=True):
        if not _fixed(a):
            tokens = derive(a, None)
            if tokens and tokens == derive(b, None):
                return False
    return True


def learn(first: list[Token], first_conds: list[Condition], second: list[Token],
          second_conds: list[Condition], derive: Derive,
          encoder: Encoder | None = None) -> Template | None:
    """The template of a shape from two of its plans' tokens (and their conditions, in
    :func:`conditions` order), or None when the shape has none (see the module
    docstring). The two must be :func:`apart`. With ``encoder``, the template is also
    compiled when it can be (:func:`compile_binder`)."""
    if len(first) != len(second) or not _separable(first_conds):
        return None
    before = [derive(cond, None) for cond in first_conds]
    after = [derive(cond, None) for cond in second_conds]
    if any(len(old) != len(new) for old, new in zip(before, after, strict=True)):
        return None
    slots: dict[Token, tuple[int, int]] = {}
    constants = set()
    for old, new in zip(first, second, strict=True):
        if old == new:
            constants.add(old)
            continue
        found = None
        for position, (olds, news) in enumerate(zip(before, after, strict=True)):
            if _fixed(first_conds[position]):
                continue
            for index, (a, b) in enumerate(zip(olds, news, strict=True)):
                if a == old and b == new:
                    if found is not None and found[0] != position:
                        return None  # two conditions' values could have made it
                    found = found or (position, index)
        if found is None or slots.setdefault(old, found) != found:
            return None
    if constants & slots.keys():
        return None
    needs: dict[int, int] = {}
    for position, index in slots.values():
        needs[position] = max(needs.get(position, 0), index + 1)
    pieces, cuts = _cut(first, slots.keys())
    binder = None
    if encoder is not None:
        binder = compile_binder(pieces, cuts, slots, before, after, first_conds, second_conds,
                                encoder)
    return Template(slots, pieces, cuts, tuple(sorted(needs.items())), binder)


def _affixes(token: Token, key: bytes) -> tuple[bytes, bytes] | None:
    """The constants around ``key`` in ``token``: (before, after) of :data:`BEFORE` and
    :data:`AFTER` (at most one pair fits: each is a single byte or nothing, and "[", "("
    and "\xff" differ), or None."""
    for before in BEFORE:
        for after in AFTER:
            if token == before + key + after:
                return before, after
    return None


def compile_binder(pieces: tuple[bytes, ...], cuts: tuple[Token, ...],
                   slots: dict[Token, tuple[int, int]], before: list[list[Token]],
                   after: list[list[Token]], first_conds: list[Condition],
                   second_conds: list[Condition], encoder: Encoder) -> Binder | None:
    """A template's binder: a function made once per shape that, given a query's
    conditions, encodes each value its slots read once and returns the packed program
    (the template's pieces with the value tokens packed between them) and the value tokens
    in ``cuts`` order. Made only when every slot's token is, for both examples the
    template was learnt from (``before``, ``after``: their derived tokens), their value's
    encoding with the same constants around it (:func:`_affixes`), the encoding being the
    one the planner's lookup makes (``encoder``): then it is that for any value of the
    shape, as the lookup makes its tokens so. None otherwise (the template binds by
    deriving each condition's tokens)."""
    keys: dict[int, int] = {}  # condition position -> its key's number in the binder
    encoders: list[Callable[[Any], bytes]] = []
    made: dict[Token, tuple[int, bytes, bytes]] = {}  # slot token -> key number, affixes
    for token, (position, index) in slots.items():
        encode = encoder(first_conds[position])
        if encode is None or encode != encoder(second_conds[position]):
            return None
        try:
            first_key = encode(first_conds[position].value)
            second_key = encode(second_conds[position].value)
        except Exception:  # (not an encoding this field makes of such values)
            return None
        affixes = _affixes(before[position][index], first_key)
        if affixes is None or after[position][index] != affixes[0] + second_key + affixes[1]:
            return None
        if position not in keys:
            keys[position] = len(encoders)
            encoders.append(encode)
        made[token] = (keys[position], *affixes)
    # the function, as text: one statement per key and per distinct value token, and the
    # program joined from the pieces and the packed tokens
    # (wire.str_header inline: the fixed-size header of a short string, else the call)
    namespace: dict[str, Any] = {"fixed": wire.str_header_table(), "header": wire.str_header}
    lines = ["def bind(conds):"]
    for position, number in keys.items():
        namespace[f"e{number}"] = encoders[number]
        lines.append(f"    k{number} = e{number}(conds[{position}].value)")
    names: dict[Token, str] = {}
    for token in dict.fromkeys(cuts):
        number, prefix, suffix = made[token]
        name = names[token] = f"t{len(names)}"
        lines.append(f"    {name} = {prefix!r} + k{number} + {suffix!r}")
        lines.append(f"    n = len({name})")
        lines.append(f"    h{name} = fixed[n] if n < 32 else header(n)")
    program = ["p0"]
    namespace["p0"] = pieces[0]
    for i, token in enumerate(cuts, 1):
        namespace[f"p{i}"] = pieces[i]
        program += [f"h{names[token]}", names[token], f"p{i}"]
    values = "".join(names[token] + ", " for token in cuts)
    lines.append(f"    return b''.join(({', '.join(program)},)), ({values})")
    exec(compile("\n".join(lines), "<plan binder>", "exec"), namespace)  # noqa: S102
    bind: Binder = namespace["bind"]
    # (a check, once per shape: the binder gives back both examples' value tokens)
    for conds, derived in ((first_conds, before), (second_conds, after)):
        if bind(conds)[1] != tuple(derived[slots[token][0]][slots[token][1]]
                                   for token in cuts):
            return None
    return bind


def _cut(tokens: list[Token], values: Collection[Token]) -> tuple[tuple[bytes, ...],
                                                                  tuple[Token, ...]]:
    """:attr:`Template.pieces` and :attr:`Template.cuts` of a plan's tokens."""
    packed = wire.program(tokens)
    # (an array's header starts the first piece: what precedes the items; none when flat)
    header = len(packed) - sum(len(wire.item(token)) for token in tokens)
    pieces, cuts, run = [], [], [packed[:header]]
    for token in tokens:
        if token in values:
            pieces.append(b"".join(run))
            cuts.append(token)
            run = []
        else:
            run.append(wire.item(token))
    pieces.append(b"".join(run))
    return tuple(pieces), tuple(cuts)


def _separable(conds: list[Condition]) -> bool:
    """No field whose conditions the planner would merge by comparing their values: at
    most one condition per field, or a lower and an upper bound."""
    by_field: dict[str, list[Lookup]] = {}
    for cond in conds:
        by_field.setdefault(cond.field, []).append(cond.lookup)
    for lookups in by_field.values():
        if len(lookups) == 1:
            continue
        if len(lookups) != 2 or {lookups[0] in LOWER, lookups[1] in LOWER} != {True, False}:
            return False
        if not all(lookup in LOWER or lookup in UPPER for lookup in lookups):
            return False
    return True

