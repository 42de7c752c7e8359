"""Compile a QuerySpec into the token program that ``query.lua`` runs on each partition.

Pure: no I/O, no redis import. The planner decides

* which conditions the server can evaluate (those on indexed fields, whose value encodings
  the meta hash keeps, and on the id) and which need the Python evaluator (``residual``);
* the candidate *drivers*: lex ranges on single-field or compound indexes (conditions on one
  field merged into one range), id lists, unions for ORs, a choice (``BEST``) that
  ``query.lua`` settles with ZLEXCOUNT, and ``WALK``s that yield rows already in order
  (over the ordering index, or over an equality range in id order) and stop as soon as the
  page is full. Each driver says which conditions of a top-level AND it already satisfies
  (``covers``), so they are not checked again; an *exact* driver needs no check at all;
* whether the server orders and slices (everything it needs is indexed) or Python does.

What each lookup contributes (its index ranges, membership probes, predicate tokens, and
whether the server can test it at all) is read from one table, :mod:`.lookup_plans`.

Token grammar (see ``lua/query.lua``)::

    DRIVER := ALL exact COVERS | RANGE keypos n (min max)* exact COVERS
            | IDS n idkey* exact COVERS | UNION exact COVERS n DRIVER* | BEST n DRIVER*
            | WALK keypos is_ids desc min max exact COVERS
    COVERS := n position*   (conditions of a top-level AND the candidates already satisfy)
    NEED   := n metafield*
    PRED   := T | F | AND n PRED* | OR n PRED* | NOT PRED | EQ f v | IN f n v*
            | GT|GE|LT|LE f v | PRE f prefix | HAS f v | NULL f | ID n idkey*
            | ZIN keypos n v*   (some ``v .. id`` is a member of that index)
            | ZRNG keypos n (min max)* PRED   (PRED holds exactly for the ids of the entries
              in those lex ranges of that index: query.lua may test either)
    ORDER  := n (metafield desc)*
    AFTER  := n key*
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache, partial
from typing import Any

from ... import jsoncodec, sortable
from ...fields.base import Field
from ...fields.scalar import IntField, StringField
from ...fields.structured import ArrayField, DateTimeField
from ...options import IndexSpec, ModelOptions
from ...query.lookups import RANGE_LOOKUPS, Lookup
from ...query.paths import derived as derived_path
from ...query.nodes import FALSE, ID, TRUE, And, Condition, Node, Not, Or, QuerySpec
from . import plan_shapes, wire
from .commands import RedisPlan
from .derived import derivation
from .keys import meta_field
from .lookup_plans import BOOL_TOKENS, LOOKUPS, NOT, RedisLookup
from .plan_shapes import Template

Token = bytes

#: how a condition is tested, as explain() says it
TEST_ID = "by id"
TEST_MEMBERSHIP = "membership in index {!r} (no meta read)"
TEST_META = "on each candidate's meta hash"
TEST_RANGES = ("the ranges of index {!r} read as a set, or each candidate's document "
               "(format 3: read in batches, kept for the row) or meta hash (chosen at run "
               "time by their sizes)")
PLAN_CACHE_SIZE = 512  # plans kept per model
#: pairs of examples a shape is given to learn its template from before it is planned per
#: value for good (a pair can fail by its values alone: equal values of two conditions)
LEARN_ATTEMPTS = 3
RANGES_CACHE_SIZE = 1024  # condition -> index ranges, kept per model
#: sort keys that are one call of an encoding function: a compiled template calls that
#: (see Planner._encoder; a subclass's own sort_key is called as it is)
PLAIN_SORT_KEYS: dict[Callable[..., bytes], Callable[[Any], bytes]] = {
    StringField.sort_key: sortable.encode_str,
    IntField.sort_key: sortable.encode_number,  # (every number field's: _NumberField's)
    DateTimeField.sort_key: sortable.encode_datetime,
}


@dataclass
class Driver:
    """A source of candidate ids; ``exact`` when its candidates are exactly the matches."""

    kind: str
    body: list[Token]  # the arguments after the kind, without the exactness flag
    label: str
    indexes: tuple[str, ...] = ()
    exact: bool = False
    children: list[Driver] = field(default_factory=list)
    ranges: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: positions of the top-level AND's conditions this driver's candidates satisfy already
    covers: tuple[int, ...] = ()

    @property
    def tokens(self) -> list[Token]:
        kind = self.kind.encode()
        covered = [b"%d" % len(self.covers), *(b"%d" % (i + 1) for i in self.covers)]
        if self.children:
            nested = [token for child in self.children for token in child.tokens]
            if self.kind == "BEST":
                return [kind, b"%d" % len(self.children), *nested]
            return [kind, _flag(self.exact), *covered, b"%d" % len(self.children), *nested]
        return [kind, *self.body, _flag(self.exact), *covered]

    def preorder(self) -> list[Driver]:
        """This driver and every driver inside it, depth first: the order of the program
        (query.lua names the drivers it chose by their position in it, from 1)."""
        out = [self]
        for child in self.children:
            out += child.preorder()
        return out

    def within(self, position: int) -> Driver:
        """This driver, for the condition at ``position`` of a conjunction: a superset of
        the conjunction's matches, which need not be checked against that condition."""
        return self.but(exact=False, covers=(position,) if self.exact else ())

    def but(self, *, exact: bool | None = None, covers: tuple[int, ...] | None = None) -> Driver:
        """A copy with another exactness or cover (cheaper than dataclasses.replace)."""
        return Driver(self.kind, self.body, self.label, self.indexes,
                      self.exact if exact is None else exact, self.children, self.ranges,
                      self.covers if covers is None else covers)


#: what explain() says of a plan: the filter the server applies, and how the script tests
#: each condition it checks: (condition, how)
Described = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Plan:
    """The program for one query, identical for every partition."""

    driver: Driver
    need: list[str]
    pred: list[Token]
    server_order: bool
    order: list[Token]
    after: list[Token]
    residual: Node | None
    #: explain()'s text, made when it is asked for (a plan bound from its shape's template
    #: has none until then: see plan())
    describe: Callable[[], Described]
    #: the reader's count of this plan (count.lua calls) for a schema layout, made at its
    #: first count (see reader.Reader._matches): a cached plan is counted without building
    #: them again
    counting: tuple[bytes, RedisPlan] | None = None
    #: query.lua's ARGV[9] when its program reads values (NEED is not empty): each indexed
    #: field's meta field, JSON key text and derivation kind, for a format-3 candidate
    #: without a meta hash (see Planner.derivable); () when the program reads none
    derivable: tuple[bytes, ...] = ()
    #: the same for the "rows" mode: () when the program is an exact walk, whose rows mode
    #: reads no values (query.lua's common query; its NEED is the ordering's, for keyed
    #: rows)
    rows_derivable: tuple[bytes, ...] = ()
    #: the ``query.lua`` calls made of this plan for its first pages
    #: (ModelState.query_plan), by mode, limit and schema layout: a cached plan asked
    #: again is sent without building them
    sent: dict[tuple[str, int | None, bytes], RedisPlan] | None = field(
        default=None, compare=False, repr=False)

    @cached_property
    def described(self) -> Described:
        return self.describe()

    @property
    def server_filter(self) -> str:
        return self.described[0]

    @property
    def tests(self) -> tuple[tuple[str, str], ...]:
        return self.described[1]

    @cached_property
    def program(self) -> bytes:
        """The tokens as one argument (MessagePack strings: :func:`.wire.program`)."""
        return wire.program(self.tokens)

    #: a driver of this plan's kind, exactness and indexes (a bound plan's is its template
    #: plan's: a count asks no more of it, and :attr:`bounds` for its ranges)
    count_driver: Driver = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.count_driver = self.driver

    @property
    def bounds(self) -> tuple[bytes, ...]:
        """The driver's ranges, their bounds in one flat tuple."""
        return tuple([bound for pair in self.driver.ranges for bound in pair])

    @cached_property
    def reach(self) -> int:
        """The last of query.lua's index KEYS (1: the id index, 2..: the model's indexes in
        order) this plan's program names: a call sends those and the partition's state
        hash and TTL schedule (the script finds those two last), not the indexes after
        it, which it never touches (each key sent costs the server about 1,300
        instructions)."""
        return program_reach(self.tokens)

    @cached_property
    def tokens(self) -> list[Token]:
        out = list(self.driver.tokens)
        out.append(b"%d" % len(self.need))
        out.extend(name.encode() for name in self.need)
        out.extend(self.pred)
        out.extend(self.order)
        out.extend(self.after)
        return out


def program_reach(tokens: list[Token]) -> int:
    """The largest keypos a program's DRIVER and PRED name (1 when none: the id index),
    read by the grammar above (ValueError when the tokens do not follow it)."""
    at, reach = 0, 1

    def take() -> Token:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def count() -> int:
        return int(take())

    def key() -> None:
        nonlocal reach
        reach = max(reach, int(take()))

    def skip(items: int) -> None:  # (``at += count()`` would add to ``at`` as it was)
        nonlocal at
        at += items

    def covers() -> None:
        skip(count())

    def driver() -> None:
        nonlocal at
        kind = take()
        if kind == b"RANGE":
            key()
            skip(2 * count())
        elif kind == b"IDS":
            skip(count())
        elif kind in (b"UNION", b"BEST"):
            if kind == b"UNION":
                take()
                covers()
            for _ in range(count()):
                driver()
            return
        elif kind == b"WALK":
            key()
            at += 4
        elif kind != b"ALL":
            raise ValueError(f"not a driver: {kind!r}")
        take()  # (exact)
        covers()

    def pred() -> None:
        nonlocal at
        kind = take()
        if kind in (b"AND", b"OR"):
            for _ in range(count()):
                pred()
        elif kind == b"NOT":
            pred()
        elif kind in (b"EQ", b"GT", b"GE", b"LT", b"LE", b"PRE", b"HAS"):
            at += 2
        elif kind == b"IN":
            take()
            skip(count())
        elif kind == b"NULL":
            at += 1
        elif kind == b"ID":
            skip(count())
        elif kind == b"ZIN":
            key()
            skip(count())
        elif kind == b"ZRNG":
            key()
            skip(2 * count())
            pred()
        elif kind not in (b"T", b"F"):
            raise ValueError(f"not a predicate: {kind!r}")

    driver()
    skip(count())  # (NEED)
    pred()
    skip(2 * count())  # (ORDER)
    skip(count())  # (AFTER)
    if at != len(tokens):
        raise ValueError(f"a program of {len(tokens)} tokens read as {at}")
    return reach


class _BoundPlan(Plan):
    """A plan bound from its shape's template (:meth:`Planner._bound`): its ``driver`` and
    ``pred`` are the template plan's with the value tokens replaced, made at first read
    (explain(), a count's calls, :attr:`Plan.tokens`), and so is ``describe``."""

    def __getattr__(self, name: str) -> Any:
        # (only for what the instance dict lacks: the fields made lazily)
        fields = self.__dict__
        if name == "describe":
            planner: Planner = fields["_planner"]
            spec, counting = fields["_spec"], fields["_counting"]
            fields["describe"] = lambda: planner._plan(spec, counting, counted=False).described
            return fields["describe"]
        if name not in ("driver", "pred"):
            raise AttributeError(name)
        base: Plan = fields["_base"]
        tokens = self.value_tokens
        fields["driver"] = _rebind(base.driver, tokens)
        fields["pred"] = [tokens.get(token, token) for token in base.pred]
        return fields[name]

    @property
    def reach(self) -> int:
        # (its template plan's: the keys are no value tokens)
        base: Plan = self.__dict__["_base"]
        return base.reach

    @property
    def value_tokens(self) -> dict[Token, Token]:
        """The template plan's value tokens -> this plan's."""
        fields = self.__dict__
        tokens: dict[Token, Token] | None = fields["_tokens"]
        if tokens is None:
            cuts, values = fields["_cuts"]
            tokens = fields["_tokens"] = dict(zip(cuts, values, strict=True))
        return tokens

    @property
    def bounds(self) -> tuple[bytes, ...]:
        if "driver" in self.__dict__:
            return super().bounds
        base: Plan = self.__dict__["_base"]
        sub = self.value_tokens.get
        return tuple([sub(bound, bound) for pair in base.driver.ranges for bound in pair])


class Planner:
    """Plans for one model. ``ready``: the indexes queries may use (None: all of them); an
    index still being built is left out, and so are the value encodings of fields that no
    ready index holds (the meta hashes of older documents lack them): conditions on them
    are checked in Python, on documents read by a scan or another index."""

    def __init__(self, options: ModelOptions, ready: frozenset[str] | None = None) -> None:
        # KEYS[1] is the id index; KEYS[2..] the model's indexes in order (all of them)
        self.keypos = {index.name: position + 2 for position, index in enumerate(options.indexes)}
        if ready is not None:
            options = replace(options, indexes=tuple(i for i in options.indexes
                                                     if i.name in ready))
        self.options = options
        #: plans by query values (see plan()), oldest first (an OrderedDict: dropping the
        #: oldest of a plain dict scans the deleted slots before it, every time)
        self._by_values: OrderedDict[Hashable, Plan] = OrderedDict()
        #: per query shape: its first plan (and the spec it planned), its template and
        #: the plan the template binds, or None when the shape has no template
        self._shapes: dict[Hashable, tuple[QuerySpec, Plan] | tuple[Template, Plan] | None] \
            = {}
        #: per query shape: the pairs of examples it failed to learn a template from
        self._failed: dict[Hashable, int] = {}
        #: plans made by the planner, and plans bound from a shape's template
        self.counts = {"planned": 0, "bound": 0}
        # (per planner, not per module: a module-level cache would keep every model whose
        # fields it met alive, and models made at runtime could never be freed)
        self._ranges = lru_cache(maxsize=RANGES_CACHE_SIZE)(_compute_ranges)
        self.indexed = set(options.indexed_fields)
        #: fields whose conditions may be index ranges of their own: those with a
        #: single-field index, and the leading fields of compound indexes
        self._ranged = {index.fields[0] for index in options.indexes}
        #: per (field, lookup) of a condition: its field, how it is served and whether it
        #: may be a range of its own, or () when query.lua cannot test it (see _derived)
        self._leaves: dict[tuple[str, Lookup], tuple[Field, RedisLookup, bool] | tuple[()]] \
            = {}

    @cached_property
    def derivable(self) -> tuple[bytes, ...]:
        """query.lua's ARGV[9] (a program that reads values): per indexed field, its meta
        field, the JSON text of its key as documents store it, and the kind code
        ``_derive.lua`` derives its entries with (``derived.derivation``), or "" where Lua
        must not: a field no top-level member holds (a path into an embedded document, a
        case-folded index's value). A format-3 candidate without a meta hash is tested on
        its document with them (bench/format3.md, section 4)."""
        items: list[bytes] = []
        for name in self.options.indexed_fields:
            field = self.options.fields[name]
            kind = derivation(field)
            if derived_path(field) is not None:
                kind = None
            items += [meta_field(field).encode(), jsoncodec.encode(field.db_name),
                      (kind or "").encode()]
        return (wire.program(items),)

    def _leaf_ranges(self, field: Field, cond: Condition) -> list[tuple[bytes, bytes]] | None:
        """The lex ranges of a single-field index holding exactly the matching documents."""
        try:
            return self._ranges(field, cond)
        except TypeError:  # unhashable value
            return _compute_ranges(field, cond)

    # -- what the server can evaluate ------------------------------------------------------

    def evaluable(self, node: Node) -> bool:
        if isinstance(node, (And, Or)):
            return all(self.evaluable(child) for child in node.children)
        if isinstance(node, Not):
            return self.evaluable(node.child)
        if node.field == ID:  # ranges on the id: checked in Python (the scripts have none)
            return node.lookup not in RANGE_LOOKUPS
        if node.field not in self.indexed:
            return False
        field = self.options.fields[node.field]
        served = LOOKUPS[node.lookup]
        if isinstance(field, ArrayField):
            return served.on_array
        return served.on_string if isinstance(field, StringField) else served.on_other

    def plan(self, spec: QuerySpec, counting: bool = False) -> Plan:
        """The program for ``spec``. Plans are immutable and cached per query shape (like
        prepared statements: :mod:`.plan_shapes`), so a query whose shape was seen is not
        planned again, its values are bound; and per values, so a repeated query does
        not even bind them."""
        order = spec.order
        # (plain tuples, hashed and compared in C, rather than the spec's dataclasses)
        key = (_values_key(spec.where), counting, spec.after,
               tuple([(o.field, o.descending) for o in order]) if order else ())
        by_values = self._by_values
        try:
            plan = by_values.get(key)
        except TypeError:  # a value that cannot be hashed: plan without the cache
            return self._plan(spec, counting)
        if plan is None:
            plan = self._shared(spec, counting)
            if len(by_values) >= PLAN_CACHE_SIZE:
                try:
                    by_values.popitem(last=False)  # the oldest
                except KeyError:
                    pass  # (another thread emptied the cache meanwhile)
            by_values[key] = plan
        return plan

    def _shared(self, spec: QuerySpec, counting: bool) -> Plan:
        """A plan not cached with its values: bound from its shape's template, else
        planned (and, the second time a shape is planned, its template learnt)."""
        try:
            key, conds = plan_shapes.shape_of(spec, counting)
        except plan_shapes.Shapeless:
            return self._plan(spec, counting)
        known = self._shapes.get(key, ())
        if known is None:  # a shape without a template
            return self._plan(spec, counting)
        if known and type(known[0]) is Template:
            self.counts["bound"] += 1
            shared = known[0]
            binder = shared.binder
            if binder is not None:  # (compiled: the program, and the value tokens)
                program, values = binder(conds)
                return self._bound(known[1], None, (shared.cuts, values), program, spec,
                                   counting)
            bound = shared.bind(conds, self._derived)
            return self._bound(known[1], bound, None, shared.program(bound), spec, counting)
        plan = self._plan(spec, counting)
        if not known:
            if len(self._shapes) >= PLAN_CACHE_SIZE:
                self._shapes.clear()  # (a workload of that many shapes: start again)
                self._failed.clear()
            self._shapes[key] = (spec, plan)
            return plan
        first_spec, first = known
        assert isinstance(first_spec, QuerySpec)
        first_conds = plan_shapes.conditions(first_spec.where)
        if plan_shapes.apart(first_conds, conds, self._derived):
            template = plan_shapes.learn(first.tokens, first_conds, plan.tokens, conds,
                                         self._derived, self._encoder)
            if template is not None:
                self._shapes[key] = (template, first)
            elif self._failed.get(key, 0) + 1 < LEARN_ATTEMPTS:
                # (values of one example can clash, a >= 0 and b >= 0: learn from this
                # query and the next instead)
                self._failed[key] = self._failed.get(key, 0) + 1
                self._shapes[key] = (spec, plan)
            else:
                self._shapes[key] = None
        return plan

    def _bound(self, base: Plan, tokens: dict[Token, Token] | None,
               cut: tuple[tuple[Token, ...], tuple[Token, ...]] | None, program: bytes,
               spec: QuerySpec, counting: bool) -> Plan:
        """``base`` (a plan of the shape) with its value tokens replaced: by ``tokens``, or
        those of ``cut`` (the template's value tokens, and this query's in their order: a
        map made when it is read); ``program``: its tokens packed, from the template's
        pieces."""
        # (made without Plan's __init__, its driver, predicate and explain() text made
        # only when read: a query sends the program alone, and most queries bound from a
        # template are asked once, as a workload of many values overflows the cache per
        # values; the fields they share with the template plan are copied from one dict)
        plan = _BoundPlan.__new__(_BoundPlan)
        fields = plan.__dict__
        shared = base.__dict__.get("_shared")
        if shared is None:
            shared = base.__dict__["_shared"] = {
                "need": base.need, "derivable": base.derivable,
                "rows_derivable": base.rows_derivable,
                "server_order": base.server_order, "order": base.order,
                "after": base.after, "counting": None, "sent": None, "_base": base,
                "_planner": self, "count_driver": base.driver}
        fields.update(shared)
        fields["residual"] = None if base.residual is None else spec.where
        fields["program"] = program
        fields["_tokens"] = tokens
        fields["_cuts"] = cut
        fields["_spec"] = spec
        fields["_counting"] = counting
        return plan

    def _encoder(self, cond: Condition) -> Callable[[Any], bytes] | None:
        """The encoding of a condition's value that its derived tokens hold (see
        :func:`.plan_shapes.compile_binder`): the id's key, an element's or a prefix's
        encoding, or the field's sort key; None when the server does not test it."""
        if cond.field == ID:
            return sortable.id_key
        leaf = self._leaf_of(cond)
        if not leaf:
            return None
        field = leaf[0]
        if cond.lookup is Lookup.CONTAINS:
            return field.field.sort_key if isinstance(field, ArrayField) else None
        if cond.lookup is Lookup.STARTSWITH:
            return sortable.encode_str_prefix
        encode: Callable[[Any], bytes] = PLAIN_SORT_KEYS.get(type(field).sort_key,
                                                             field.sort_key)
        return encode

    def _leaf_of(self, cond: Condition) -> tuple[Field, RedisLookup, bool] | tuple[()]:
        """What the field and lookup of a condition (not on the id) say: the field, how the
        lookup is served and whether it may be a range of its own; () when query.lua cannot
        test it. Once per pair (:meth:`_derived` runs per condition of the queries a
        template is learnt from, and of those bound by a template with no compiled binder)."""
        leaf = self._leaves.get((cond.field, cond.lookup))
        if leaf is None:
            leaf = self._leaves[(cond.field, cond.lookup)] = (
                (self.options.fields[cond.field], LOOKUPS[cond.lookup],
                 cond.field in self._ranged) if self.evaluable(cond) else ())
        return leaf

    def _derived(self, cond: Condition, upto: int | None = None) -> list[Token]:
        """The tokens the planner may make of a condition's value (see
        :mod:`.plan_shapes`): its id key; or its index ranges, probes and test; ``upto``:
        how many of the first ones are needed (None: all), so that binding a template
        makes no encoding its slots do not read."""
        if cond.field == ID:
            return [sortable.id_key(cond.value)]
        leaf = self._leaf_of(cond)
        if not leaf:
            return []  # (checked in Python: its value is in no token)
        field, served, ranged = leaf
        out = []
        if ranged:
            # (made again rather than looked up in _leaf_ranges' cache: a query planned or
            # bound here is one the cache per values missed, most often a new value, which
            # that cache would only hash and store)
            for low, high in served.ranges(field, cond.value) or ():
                out += [low, high]
            if upto is not None and len(out) >= upto:
                return out
        out += served.probes(field, cond.value, b"") or ()
        if upto is not None and len(out) >= upto:
            return out
        out += served.test(field, b"", cond.value)
        return out

    def _plan(self, spec: QuerySpec, counting: bool, counted: bool = True) -> Plan:
        if counted:
            self.counts["planned"] += 1
        where = spec.where
        if self.evaluable(where):
            server_where, residual = where, None
        else:
            parts = where.children if isinstance(where, And) else (where,)
            kept = tuple(p for p in parts if self.evaluable(p))
            server_where = And(kept) if len(kept) != 1 else kept[0]
            residual = where
        server_order = residual is None and all(
            o.field == ID or self._sortable_on_server(o.field) for o in spec.order
        )
        driver = self._driver(server_where)
        walks = [] if counting or not server_order else self._walks(spec, server_where)
        exact_walk = next((w for w in walks if w.exact), None)
        if exact_walk is not None:  # reads exactly the rows of the page, in order
            walks, driver = [], exact_walk
        if walks:
            others = [] if driver is None else (
                driver.children if driver.kind == "BEST" else [driver])
            # a range of one index that a walk covers the same way yields the same rows, but
            # unordered: the walk dominates it
            walked = {(w.indexes, w.covers) for w in walks if w.covers}
            others = [d for d in others
                      if not (d.kind == "RANGE" and (d.indexes, d.covers) in walked)]
            choices = walks + others
            driver = choices[0] if len(choices) == 1 else _best(choices)
        elif driver is None:
            exact = server_where == TRUE
            driver = Driver("ALL", [], "all ids (scan)", exact=exact)

        need: list[str] = []
        tests: list[tuple[str, str]] = []
        pred = [b"T"] if driver.exact else self._pred(server_where, need, tests)
        order_tokens = [b"0"]
        after = [b"0"]
        if server_order:
            order_tokens = [b"%d" % len(spec.order)]
            for o in spec.order:
                if o.field == ID:
                    name = "@id"
                else:
                    name = meta_field(self.options.fields[o.field])
                    if name not in need:
                        need.append(name)
                order_tokens += [name.encode(), b"1" if o.descending else b"0"]
            if spec.after is not None:
                after = [b"%d" % len(spec.after), *spec.after]
        return Plan(
            driver=driver,
            need=need,
            derivable=self.derivable if need else (),
            rows_derivable=self.derivable if need and not (
                driver.exact and driver.kind == "WALK") else (),
            pred=pred,
            server_order=server_order,
            order=order_tokens,
            after=after,
            residual=residual,
            describe=partial(_describe, server_where, tuple(tests)),
        )

    def _sortable_on_server(self, name: str) -> bool:
        return name in self.indexed and self.options.fields[name].sortable

    # -- predicate tokens ------------------------------------------------------------------

    def _pred(self, node: Node, need: list[str], tests: list[tuple[str, str]]) -> list[Token]:
        if node == TRUE:
            return [b"T"]
        if node == FALSE:
            return [b"F"]
        if isinstance(node, Condition):
            return self._leaf(node, need, tests)
        if isinstance(node, Not):
            return [BOOL_TOKENS[node.op], *self._pred(node.child, need, tests)]
        out = [BOOL_TOKENS[node.op], b"%d" % len(node.children)]
        for child in node.children:
            out += self._pred(child, need, tests)
        return out

    def _leaf(self, cond: Condition, need: list[str],
              tests: list[tuple[str, str]]) -> list[Token]:
        lookup = cond.lookup
        if cond.field == ID:
            ids = [cond.value] if lookup in (Lookup.EXACT, Lookup.NE) else list(cond.value)
            tokens = [b"ID", b"%d" % len(ids), *(sortable.id_key(i) for i in ids)]
            tests.append((repr(cond), TEST_ID))
            return [NOT, *tokens] if lookup in (Lookup.NE, Lookup.NIN) else tokens
        field = self.options.fields[cond.field]
        served = LOOKUPS[lookup]
        # equality-type lookups on a single-field index are ZSCORE probes of value + id in
        # that index: exact, O(1), and no meta hash read
        index = self.options.single_index(cond.field)
        ranges = None
        if index is not None:
            keypos = b"%d" % self.keypos[index.name]
            member = served.probes(field, cond.value, keypos)
            if member is not None:
                tests.append((repr(cond), TEST_MEMBERSHIP.format(index.name)))
                return member
            ranges = self._leaf_ranges(field, cond)
        name = meta_field(field)
        if name not in need:
            need.append(name)
        test = served.test(field, name.encode(), cond.value)
        if ranges is None:
            tests.append((repr(cond), TEST_META))
            return test
        assert index is not None  # (ranges come from an index)
        tests.append((repr(cond), TEST_RANGES.format(index.name)))
        # the index ranges hold exactly the matches: query.lua may read them as a set of ids
        # instead of each candidate's document or meta hash (it chooses by their size)
        return [b"ZRNG", keypos, b"%d" % len(ranges), *(b for pair in ranges for b in pair),
                *test]

    # -- drivers ---------------------------------------------------------------------------

    def _driver(self, node: Node) -> Driver | None:
        if isinstance(node, Condition):
            return self._leaf_driver(node)
        if isinstance(node, Or):
            if not node.children:
                return None
            children = [self._driver(child) for child in node.children]
            if any(child is None for child in children):
                return None
            drivers = [c for c in children if c is not None]
            return Driver("UNION", [], "union(" + ", ".join(d.label for d in drivers) + ")",
                          tuple(i for d in drivers for i in d.indexes),
                          exact=all(d.exact for d in drivers), children=drivers)
        if isinstance(node, And):
            # each child's driver is exact for that child only: a superset for the AND
            candidates = [d.within(i) for i, d in enumerate(map(self._driver, node.children))
                          if d is not None]
            candidates += self._merged_drivers(node)
            candidates += self._compound_drivers(node)
            if not candidates:
                return None
            # (a child's compound prefix range can be the AND's own: one ZLEXCOUNT for both)
            seen: set[tuple[Token, ...]] = set()
            unique = []
            for d in candidates:
                body = (d.kind.encode(), *d.body, *(b"%d" % i for i in d.covers))
                if d.kind != "RANGE" or body not in seen:
                    seen.add(body)
                    unique.append(d)
            candidates = unique
            # an exact driver yields only matches; any other yields at least as many
            exact = next((d for d in candidates if d.exact), None)
            if exact is not None:
                return exact
            return candidates[0] if len(candidates) == 1 else _best(candidates)
        return None

    def _leaf_driver(self, cond: Condition) -> Driver | None:
        if cond.field == ID:
            if cond.lookup not in (Lookup.EXACT, Lookup.IN):
                return None
            ids = [cond.value] if cond.lookup is Lookup.EXACT else list(cond.value)
            return Driver("IDS", [b"%d" % len(ids), *map(sortable.id_key, ids)],
                          "id lookup", exact=True)
        index = self.options.single_index(cond.field)
        if index is None:
            # a condition on the leading field of a compound index: a range of that index
            # (exact: an encoding is never a prefix of another but before b"\xff")
            compound = self._compound_drivers(And((cond,)))
            return compound[0] if compound else None
        ranges = self._leaf_ranges(self.options.fields[cond.field], cond)
        if ranges is None:
            return None
        return self._range(index, ranges, exact=True)

    def _range(self, index: IndexSpec, ranges: list[tuple[bytes, bytes]],
               exact: bool = False) -> Driver:
        body = [b"%d" % self.keypos[index.name], b"%d" % len(ranges)]
        for low, high in ranges:
            body += [low, high]
        return Driver("RANGE", body, f"index {index.name!r}", (index.name,), exact,
                      ranges=ranges)

    def field_range(self, name: str, parts: tuple[Node, ...]
                    ) -> tuple[bytes, bytes, tuple[int, ...]] | None:
        """The one lex range of ``name``'s single-field index that the conditions on that
        field in a conjunction allow, and their positions (None: no such condition)."""
        field = self.options.fields[name]
        if isinstance(field, ArrayField):
            return None  # each condition may hold for another element: no intersection
        low, high, used = b"-", b"+", []
        for position, part in enumerate(parts):
            if not (isinstance(part, Condition) and part.field == name):
                continue
            ranges = self._leaf_ranges(field, part)
            if ranges is None or len(ranges) != 1:
                continue
            (part_low, part_high), = ranges
            low = _tighter(low, part_low, upper=False)
            high = _tighter(high, part_high, upper=True)
            used.append(position)
        return None if not used else (low, high, tuple(used))

    def _merged_drivers(self, node: And) -> list[Driver]:
        """``a >= 3 AND a < 9``: one range over a's index instead of two."""
        out = []
        names = [c.field for c in node.children if isinstance(c, Condition) and c.field != ID]
        for name in dict.fromkeys(n for n in names if names.count(n) > 1):
            index = self.options.single_index(name)
            merged = self.field_range(name, node.children) if index is not None else None
            if index is not None and merged is not None and len(merged[2]) > 1:
                low, high, used = merged
                driver = self._range(index, [(low, high)], exact=len(used) == len(node.children))
                out.append(driver if driver.exact else driver.but(covers=used))
        return out

    def _compound_drivers(self, node: And) -> list[Driver]:
        conds = [(i, c) for i, c in enumerate(node.children)
                 if isinstance(c, Condition) and c.field != ID]
        out = []
        for index in self.options.indexes:
            if not index.compound:
                continue
            prefix = b""
            used: list[int] = []
            for name in index.fields:
                # the first condition on the field that selects one value extends the prefix
                field = self.options.fields[name]
                for i, c in conds:
                    if c.field != name:
                        continue
                    one = LOOKUPS[c.lookup].one_value
                    if not (one or (one is None and c.value is True)):
                        continue
                    point = self._leaf_ranges(field, c)
                    if point is not None:  # [(b"[" + value, b"(" + value + UPPER)]
                        prefix += point[0][0][1:]
                        used.append(i)
                        break
                else:
                    break
            ranges: list[tuple[bytes, bytes]] | None = None
            if len(used) < len(index.fields):
                name = index.fields[len(used)]
                rng = next(((i, c) for i, c in conds
                            if c.field == name and LOOKUPS[c.lookup].bounds), None)
                if rng is not None:
                    inner = self._leaf_ranges(self.options.fields[name], rng[1])
                    if inner is not None:
                        ranges = [(_prefixed(low, prefix), _prefixed(high, prefix))
                                  for low, high in inner]
                        used.append(rng[0])
            if not used:
                continue
            if ranges is None:
                ranges = [(b"[" + prefix, b"(" + prefix + sortable.UPPER)]
            # the conditions it serves are exact prefixes and ranges of the index's entries
            # (each field's encoding ends before the next field's starts): exact when
            # they are the whole conjunction
            exact = len(used) == len(node.children)
            driver = self._range(index, ranges, exact=exact)
            out.append(driver if exact else driver.but(covers=tuple(used)))
        return out

    def _walks(self, spec: QuerySpec, where: Node) -> list[Driver]:
        """Index walks that yield rows already in the requested order.

        Ordered by one indexed field: walk that field's index (narrowed by a condition on
        it). Ordered by id (the default): walk the id index, or the range of an equality
        condition on a single-field index, whose entries for one value are in id order.
        """
        if len(spec.order) > 1:
            return []
        order_field = spec.order[0].field if spec.order else ID
        desc = spec.order[0].descending if spec.order else False
        parts = where.children if isinstance(where, And) else (where,)
        walks = []
        conjunction = isinstance(where, And)
        if order_field == ID:
            walks.append(self._walk(1, True, desc, b"-", b"+", where == TRUE, "id order",
                                    spec.after))
            for position, part in enumerate(parts):
                # one value of a single-field index: its entries are in id order
                if not isinstance(part, Condition) or part.field == ID:
                    continue
                one = LOOKUPS[part.lookup].one_value
                if not (one or (one is None and part.value is True)):
                    continue
                index = self.options.single_index(part.field)
                ranges = self._leaf_ranges(self.options.fields[part.field], part)
                if index is None or ranges is None:
                    continue
                (low, high), = ranges
                walk = self._walk(self.keypos[index.name], False, desc, low, high,
                                  part == where, f"index {index.name!r} in id order",
                                  spec.after, low[1:], index=index.name)
                walks.append(walk.but(covers=(position,)) if conjunction else walk)
            return walks
        index = self.options.single_index(order_field)
        if index is None or not self.options.fields[order_field].sortable:
            return []
        low, high, exact = b"-", b"+", where == TRUE
        used: tuple[int, ...] = ()
        merged = self.field_range(order_field, parts)
        if merged is not None:
            low, high, used = merged
            exact = len(used) == len(parts)
        after = spec.after
        walk = self._walk(self.keypos[index.name], False, desc, low, high, exact,
                          f"index {index.name!r} order", after, after[0] if after else b"",
                          index=index.name)
        return [walk.but(covers=used) if conjunction and not exact else walk]

    def _walk(self, keypos: int, is_ids: bool, desc: bool, low: bytes, high: bytes,
              exact: bool, label: str, after: tuple[bytes, ...] | None,
              value: bytes = b"", index: str = "") -> Driver:
        """A WALK driver (over ``index``, or the id index when ``is_ids``); a keyset
        position moves its starting bound past that row."""
        if after is not None:
            member = b"(" + value + after[-1]
            if desc:
                high = _tighter(high, member, upper=True)
            else:
                low = _tighter(low, member, upper=False)
        body = [b"%d" % keypos, _flag(is_ids), _flag(desc), low, high]
        indexes = () if is_ids else (index,)
        return Driver("WALK", body, label, indexes, exact)


def _describe(server_where: Node, tests: tuple[tuple[str, str], ...]) -> Described:
    return repr(server_where), tests


def _rebind(driver: Driver, tokens: dict[Token, Token]) -> Driver:
    """``driver`` (and the drivers in it) with its value tokens replaced by ``tokens``."""
    sub = tokens.get
    return Driver(driver.kind, [sub(token, token) for token in driver.body], driver.label,
                  driver.indexes, driver.exact, [_rebind(d, tokens) for d in driver.children],
                  [(sub(low, low), sub(high, high)) for low, high in driver.ranges],
                  driver.covers)


#: types whose equal values always print alike: for these the type tells equal values apart
_TEXT_BY_TYPE = frozenset({str, int, bool, bytes, type(None)})


def _value_tag(value: object) -> object:
    """What tells ``value`` from an equal value of another text: its type where equal values
    of that type print alike, else its repr (0.0 and -0.0, a time with ``fold=1``, the same
    instant in two time zones, ``Decimal("1.0")`` and ``Decimal("1.00")`` are equal and hash
    alike: the plan is the same, not its text)."""
    kind = type(value)
    return kind if kind in _TEXT_BY_TYPE else (kind, repr(value))


def _values_key(node: Node) -> tuple[object, ...]:
    """A condition tree as plain tuples, with each value's tag (:func:`_value_tag`, its common
    case in line: this runs per query): 0, 0.0 and False are equal (and hash alike) but are
    different JSON values, so different plans."""
    if isinstance(node, (And, Or)):
        return (node.op, tuple([
            (child.field, child.lookup, child.value, type(child.value)
             if type(child.value) in _TEXT_BY_TYPE else _value_tag(child.value))
            if type(child) is Condition and type(child.value) is not tuple
            else _values_key(child) for child in node.children]))
    if isinstance(node, Not):
        return (node.op, _values_key(node.child))
    value = node.value
    if isinstance(value, tuple):
        return (node.field, node.lookup, value, tuple(_value_tag(v) for v in value))
    return (node.field, node.lookup, value,
            type(value) if type(value) in _TEXT_BY_TYPE else _value_tag(value))


def _flag(value: bool) -> bytes:
    return b"1" if value else b"0"


def _compute_ranges(field: Field, cond: Condition) -> list[tuple[bytes, bytes]] | None:
    return LOOKUPS[cond.lookup].ranges(field, cond.value)


def _prefixed(bound: bytes, prefix: bytes) -> bytes:
    """Move a single-field bound inside the compound prefix ``prefix``."""
    if bound == b"-":
        return b"[" + prefix
    if bound == b"+":
        return b"(" + prefix + sortable.UPPER
    return bound[:1] + prefix + bound[1:]


def _tighter(current: bytes, candidate: bytes, upper: bool) -> bytes:
    """The tighter of two ZRANGEBYLEX bounds (for an upper bound, the smaller one)."""
    if current in (b"-", b"+"):
        return candidate
    if candidate in (b"-", b"+"):
        return current
    a, b = current[1:], candidate[1:]
    if a == b:
        return b"(" + a  # exclusive is tighter
    if upper:
        return current if a < b else candidate
    return current if a > b else candidate


def _best(choices: list[Driver]) -> Driver:
    drivers: list[Driver] = []
    for d in choices:  # flatten: a choice among choices is one choice
        drivers += d.children if d.kind == "BEST" else [d]
    return Driver("BEST", [], "cheapest of (" + ", ".join(d.label for d in drivers) + ")",
                  tuple(i for d in drivers for i in d.indexes), children=drivers)
