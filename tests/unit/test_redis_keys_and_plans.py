"""The pure parts of the Redis backend: key names and hash slots (keys.py), the query planner
(planner.py) and the write-script arguments (writes.py).

The planner is also checked end to end without a server: the token program it emits is parsed
with the grammar documented in planner.py and run by a small Python model of ``query.lua``'s
drivers and predicates over an in-memory copy of the index layout; the rows it selects must be
exactly those the reference evaluator selects.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quantumorm import (
    ArrayField,
    BooleanField,
    ConfigurationError,
    DateTimeField,
    DecimalField,
    Document,
    DuplicateIdError,
    FloatField,
    IntField,
    Q,
    StringField,
    UniqueViolation,
    VersionConflict,
    WrongTypeError,
    sortable,
)
from quantumorm.backends.redis import wire, writes
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.planner import Planner
from quantumorm.backends.redis.replies import write_reply
from quantumorm.engine.contract import WriteRequest, encode_document
from quantumorm.query import evaluate
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import And, Condition, Or, QuerySpec

UTC = dt.timezone.utc

# -- Redis Cluster hash slots, computed here from the cluster specification -----------------------


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key: str | bytes) -> int:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            raw = raw[start + 1:end]
    return crc16_xmodem(raw) % 16384


def hash_tag(key: str) -> str | None:
    start = key.find("{")
    if start == -1:
        return None
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return None
    return key[start + 1:end]


def test_slot_function_matches_the_cluster_specification() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3
    assert key_slot("foo") == 12182
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == crc16_xmodem(b"foo{}{bar}") % 16384
    assert key_slot("foo{{bar}}zap") == crc16_xmodem(b"{bar") % 16384
    assert key_slot("foo{bar}{zap}") == crc16_xmodem(b"bar") % 16384


# -- models -----------------------------------------------------------------------------------


class Account(Document):
    email = StringField(unique=True, db_field="mail")
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    bio = StringField()

    class Meta:
        collection = "accounts"
        namespace = "app"
        indexes = [{"fields": ["name", "age"], "unique": True}]


class Sharded(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        collection = "sharded"
        partitions = 7


class Tagged(Document):
    name = StringField()

    class Meta:
        collection = "tagged"
        partitions = 7
        partition_by = "tag"


ADVERSARIAL_IDS = ["x}:i:age", "{other}", "*", ":", "%", "%7B", "é", "😀", "\x00", "a\x00b",
                   "{", "}", "}{", "a b", "\n", "1", "0", "007", "x" * 5000, "{app:accounts:p0}",
                   "?[]^", ":d:x", "../../etc"]
ids = st.one_of(st.sampled_from(ADVERSARIAL_IDS), st.text(min_size=1, max_size=40),
                st.text(alphabet=st.sampled_from(list("{}:*%? \x00é")), min_size=1, max_size=10))


def all_keys_of(keys: KeySpace, some_id: str) -> list[str]:
    partition = keys.partition_of(some_id)
    out = [keys.doc(partition, some_id), keys.meta(partition, some_id), keys.ids(partition),
           *keys.indexes(partition), keys.doc_prefix(partition), keys.meta_prefix(partition)]
    if keys.partitions == 1:
        out.append(keys.sequence)
    return out


# -- KeySpace -----------------------------------------------------------------------------------


def test_key_layout() -> None:
    keys = KeySpace(Account._meta)
    assert keys.tag(0) == "{app:accounts:p0}"
    assert keys.doc(0, "42") == "{app:accounts:p0}:d:42"
    assert keys.meta(0, "42") == "{app:accounts:p0}:m:42"
    assert keys.doc(0, "a:b") == "{app:accounts:p0}:d:a%3Ab"
    assert keys.ids(0) == "{app:accounts:p0}:ids"
    assert keys.indexes(0) == ["{app:accounts:p0}:i:mail", "{app:accounts:p0}:i:name",
                               "{app:accounts:p0}:i:age", "{app:accounts:p0}:i:tags",
                               "{app:accounts:p0}:i:name__age"]
    assert keys.sequence == "{app:accounts:p0}:seq"
    assert KeySpace(Sharded._meta).sequence == "{qorm:sharded}:seq"


@pytest.mark.parametrize("model", [Account, Sharded], ids=["p1", "p7"])
@settings(max_examples=300)
@given(some_id=ids)
@example(some_id="x}:i:age")
@example(some_id="{other}")
def test_every_key_of_a_document_is_in_one_slot(model: type[Document], some_id: str) -> None:
    keys = KeySpace(model._meta)
    partition = keys.partition_of(some_id)
    every = all_keys_of(keys, some_id)
    assert {hash_tag(k) for k in every} == {keys.tag(partition)[1:-1]}
    assert {key_slot(k) for k in every} == {key_slot(keys.tag(partition))}
    # the id sits after the tag, escaped: it cannot open or close a tag of its own
    doc_key = keys.doc(partition, some_id)
    assert doc_key == keys.doc_prefix(partition) + sortable.escape_id(some_id)
    tail = doc_key[len(keys.tag(partition)):]
    assert not set(tail) & set("{}*?[]") and tail.count(":") == 2


@given(ids, ids)
def test_ids_cannot_name_another_key(a: str, b: str) -> None:
    keys = KeySpace(Account._meta)
    assert (keys.doc(0, a) == keys.doc(0, b)) == (a == b)
    assert keys.doc(0, a) != keys.meta(0, b)
    fixed = {keys.ids(0), keys.sequence, *keys.indexes(0)}
    assert keys.doc(0, a) not in fixed and keys.meta(0, a) not in fixed


def test_partition_of_is_crc32_of_the_utf8_id() -> None:
    keys = KeySpace(Sharded._meta)
    assert keys.partition_of("123456789") == 0xCBF43926 % 7  # the CRC-32 check value
    assert keys.partition_of("") == 0
    assert KeySpace(Account._meta).partition_of("123456789") == 0


@given(ids, st.integers(1, 4096))
def test_partition_of_is_stable_and_in_range(some_id: str, partitions: int) -> None:
    model = type("P", (Document,), {"x": IntField(),
                                    "Meta": type("Meta", (), {"partitions": partitions})})
    keys, again = KeySpace(model._meta), KeySpace(model._meta)
    partition = keys.partition_of(some_id)
    assert 0 <= partition < partitions
    assert again.partition_of(some_id) == partition
    if partitions == 1:
        assert partition == 0


@pytest.mark.parametrize(("id", "key"), [
    ("{acme}:order:7", "acme"), ("x{acme}y{z}", "acme"), ("{}acme", "{}acme"),
    ("}{a}", "a"), ("{open", "{open"), ("plain", "plain"), ("{{a}}", "{a"),
])
def test_an_id_tag_decides_the_partition_as_redis_cluster_does(id: str, key: str) -> None:
    from quantumorm.backends.redis.keys import partition_key

    assert partition_key(id) == key
    tagged = KeySpace(Tagged._meta)
    assert tagged.partition_of(id) == tagged.partition_of(key)


def test_ids_sharing_a_tag_share_a_partition_only_when_asked() -> None:
    tagged, plain = KeySpace(Tagged._meta), KeySpace(Sharded._meta)
    assert len({tagged.partition_of(f"{{tenant-9}}:doc:{i}") for i in range(100)}) == 1
    assert len({tagged.partition_of(f"{{tenant-{i}}}:doc") for i in range(100)}) == 7
    # by default the whole id decides, braces or not (existing data keeps its place)
    assert len({plain.partition_of(f"{{tenant-9}}:doc:{i}") for i in range(100)}) == 7
    with pytest.raises(ConfigurationError, match="partition_by"):
        type("Bad", (Document,), {"x": IntField(), "Meta": type("Meta", (), {
            "partition_by": "hash"})})


def test_partitions_spread_ids() -> None:
    keys = KeySpace(Sharded._meta)
    used = {keys.partition_of(str(i)) for i in range(200)}
    assert used == set(range(7))
    slots = {key_slot(keys.ids(p)) for p in range(7)}
    assert len(slots) > 1  # partitions are meant to land on different cluster slots


def test_scan_patterns_match_this_collection_only() -> None:
    keys = KeySpace(Sharded._meta)
    mine = [k for i in ["1", "x:y", "{z}"] for k in all_keys_of(keys, i)] + [keys.sequence]
    mine += [keys.ids(p) for p in range(7)]
    patterns = keys.patterns()
    for key in mine:
        assert any(fnmatch.fnmatchcase(key, p) for p in patterns), key
    others = [
        "{qorm:sharded2:p0}:ids", "{qorm:sharded.x:p0}:ids", "{qorm:shard:p0}:ids",
        "{qorm2:sharded:p0}:ids", "{app:sharded:p0}:ids", "{qorm:sharded2}:seq",
        "{qorm:sharded-:p1}:d:1", "qorm:sharded:p0:ids", "{qorm:sharded:pX}:ids",
    ]
    for key in others:
        assert not any(fnmatch.fnmatchcase(key, p) for p in patterns), key


# -- planner: focused cases -----------------------------------------------------------------


class Shop(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    f = FloatField(indexed=True)
    d = DecimalField(indexed=True)
    t = DateTimeField(indexed=True)
    b = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    u = StringField()
    m = IntField()
    c = IntField()  # only in a compound index: evaluable on the server, no index of its own

    class Meta:
        collection = "shop"
        indexes = [("s", "n"), ("c", "b")]


SHOP = Shop._meta
PLANNER = Planner(SHOP)
KEYPOS = {index.name: position + 2 for position, index in enumerate(SHOP.indexes)}


def spec_of(qs: Any) -> QuerySpec:
    return qs.spec


def leaves(driver: Any) -> Iterator[Any]:
    if driver.kind in ("BEST", "UNION"):
        for child in driver.children:
            yield from leaves(child)
    else:
        yield driver


@pytest.mark.parametrize(("kwargs", "server"), [
    ({"s": "x"}, True), ({"s__ne": "x"}, True), ({"s__in": ["x", None]}, True),
    ({"s__gt": "x"}, True), ({"s__startswith": "x"}, True), ({"s__isnull": True}, True),
    ({"s__contains": "x"}, False), ({"s__endswith": "x"}, False),
    ({"n__lte": 3}, True), ({"n__nin": [1]}, True), ({"b": True}, True),
    ({"t__gt": "2024-01-01T00:00:00"}, True), ({"d": "1.5"}, True), ({"f__gte": 0}, True),
    ({"tags__contains": "x"}, True), ({"tags__isnull": True}, True), ({"tags": ["x"]}, False),
    ({"tags__ne": ["x"]}, False),
    ({"u": "x"}, False), ({"m__gt": 1}, False), ({"u__isnull": True}, False),
    ({"id": "1"}, True), ({"id__nin": ["1", "2"]}, True),
])
def test_server_evaluable_conditions(kwargs: dict[str, Any], server: bool) -> None:
    node = Shop.objects.filter(**kwargs).spec.where
    assert PLANNER.evaluable(node) is server
    plan = PLANNER.plan(QuerySpec(node))
    assert (plan.residual is None) is server
    if not server:
        assert plan.residual == node


def test_residual_keeps_the_whole_filter_and_drives_on_the_indexed_part() -> None:
    where = Shop.objects.filter(n=3, u="x").spec.where
    plan = PLANNER.plan(QuerySpec(where), counting=True)
    assert plan.residual == where
    assert plan.driver.kind == "RANGE" and plan.driver.indexes == ("n",)
    assert plan.server_filter == repr(Condition("n", Lookup.EXACT, 3))
    # an OR with an unindexed branch cannot use an index: scan, then filter in Python
    where = Shop.objects.filter(Q(n=3) | Q(u="x")).spec.where
    plan = PLANNER.plan(QuerySpec(where), counting=True)
    assert plan.residual == where and plan.driver.kind == "ALL"
    assert plan.server_filter == "TRUE"
    # a lone unindexed condition: scan
    plan = PLANNER.plan(Shop.objects.filter(m__gt=1).spec, counting=True)
    assert plan.driver.kind == "ALL" and plan.residual is not None
    assert plan.server_order is False


def test_single_indexed_equality_is_an_exact_range() -> None:
    spec = Shop.objects.filter(n=3).spec
    plan = PLANNER.plan(spec, counting=True)
    key = sortable.encode_number(3)
    assert plan.driver.kind == "RANGE" and plan.driver.exact
    assert plan.driver.tokens == [b"RANGE", b"%d" % KEYPOS["n"], b"1", b"[" + key,
                                  b"(" + key + sortable.UPPER, b"1", b"0"]
    assert plan.residual is None
    # without counting, the same range walked in id order (entries of one value are in id
    # order) is exact too and reads only the page: it is the whole plan
    plan = PLANNER.plan(spec)
    assert plan.driver.kind == "WALK" and plan.driver.exact and plan.driver.indexes == ("n",)
    assert plan.pred == [b"T"] and plan.need == []


def test_and_of_indexed_conditions_offers_inexact_choices() -> None:
    plan = PLANNER.plan(Shop.objects.filter(n=3, b=True).spec, counting=True)
    assert plan.driver.kind == "BEST"
    assert {d.indexes for d in plan.driver.children} == {("n",), ("b",)}
    assert not any(d.exact for d in leaves(plan.driver))
    assert plan.pred[0] == b"AND"


def test_compound_index_is_offered_for_its_prefix() -> None:
    plan = PLANNER.plan(Shop.objects.filter(s="a", n__gt=1).spec, counting=True)
    names = {d.indexes for d in leaves(plan.driver)}
    assert ("s__n",) in names
    compound = next(d for d in leaves(plan.driver) if d.indexes == ("s__n",))
    prefix = sortable.encode_str("a")
    (low, high) = compound.body[2:4]
    assert low == b"[" + prefix + sortable.encode_number(1) + sortable.UPPER
    assert high == b"(" + prefix + sortable.UPPER


def test_leading_field_of_a_compound_index_alone_is_an_exact_range_of_it() -> None:
    # c has no index of its own: an equality or a bound on it is a prefix of c__b's entries
    key = sortable.encode_number(3)
    for qs, ranges in [
        (Shop.objects.filter(c=3), [b"[" + key, b"(" + key + sortable.UPPER]),
        (Shop.objects.filter(c__gte=3), [b"[" + key, b"(" + sortable.UPPER]),
        (Shop.objects.filter(c=3, b=True),
         [b"[" + key + sortable.TRUE, b"(" + key + sortable.TRUE + sortable.UPPER]),
    ]:
        plan = PLANNER.plan(qs.spec, counting=True)
        assert plan.driver.kind == "RANGE" and plan.driver.exact, qs
        assert plan.driver.indexes == ("c__b",) and plan.pred == [b"T"]
        assert plan.driver.body == [b"%d" % KEYPOS["c__b"], b"1", *ranges]
    # with another condition: one candidate among others, covering the one it serves
    plan = PLANNER.plan(Shop.objects.filter(c=3, n=1).spec, counting=True)
    compound = next(d for d in leaves(plan.driver) if d.indexes == ("c__b",))
    assert not compound.exact and compound.covers == (0,)
    assert sum(d.indexes == ("c__b",) for d in leaves(plan.driver)) == 1


def test_a_compound_prefix_plan_is_bound_per_value_from_its_shape() -> None:
    planner = Planner(SHOP)
    plans = [planner.plan(Shop.objects.filter(c=i).spec) for i in range(4)]
    assert planner.counts == {"planned": 2, "bound": 2}
    for i, plan in enumerate(plans):
        assert plan.tokens == Planner(SHOP).plan(Shop.objects.filter(c=i).spec).tokens


def test_or_of_indexed_conditions_is_a_union() -> None:
    plan = PLANNER.plan(Shop.objects.filter(Q(n=3) | Q(s="x") | Q(tags__contains="t")).spec,
                        counting=True)
    assert plan.driver.kind == "UNION" and plan.driver.exact
    assert [d.indexes for d in plan.driver.children] == [("n",), ("s",), ("tags",)]
    plan = PLANNER.plan(Shop.objects.filter(Q(n=3) | (Q(s="x") & Q(b=False))).spec,
                        counting=True)
    assert plan.driver.kind == "UNION" and not plan.driver.exact


def test_order_by_an_indexed_field_walks_its_index() -> None:
    for order, desc in [("n", b"0"), ("-n", b"1")]:
        plan = PLANNER.plan(Shop.objects.order_by(order).spec)
        assert plan.driver.kind == "WALK" and plan.driver.exact
        assert plan.driver.tokens == [b"WALK", b"%d" % KEYPOS["n"], b"0", desc, b"-", b"+",
                                      b"1", b"0"]
        assert plan.server_order and plan.order == [b"1", b"f:n", desc]
        assert "f:n" in plan.need
    plan = PLANNER.plan(Shop.objects.filter(n__gte=5).order_by("n").spec)
    walk = next(d for d in leaves(plan.driver) if d.kind == "WALK")
    assert walk.exact and walk.body[3] == b"[" + sortable.encode_number(5)
    plan = PLANNER.plan(Shop.objects.filter(n__gte=5, b=True).order_by("n").spec)
    walk = next(d for d in leaves(plan.driver) if d.kind == "WALK")
    assert not walk.exact


def test_order_by_an_unindexed_field_sorts_in_python() -> None:
    plan = PLANNER.plan(Shop.objects.filter(n=1).order_by("u").spec)
    assert not plan.server_order and plan.order == [b"0"]
    assert not any(d.kind == "WALK" for d in leaves(plan.driver))
    plan = PLANNER.plan(Shop.objects.filter(u="x").order_by("n").spec)
    assert not plan.server_order  # a residual filter means Python orders


def test_keyset_position_narrows_the_walk() -> None:
    qs = Shop.objects.order_by("-n")
    anchor = Shop(id="9", n=4)
    plan = PLANNER.plan(qs.after(qs.cursor_for(anchor)).spec)
    walk = next(d for d in leaves(plan.driver) if d.kind == "WALK")
    member = sortable.encode_number(4) + sortable.id_key("9")
    assert walk.body[2] == b"1" and walk.body[4] == b"(" + member
    assert plan.after == [b"2", sortable.encode_number(4), sortable.id_key("9")]


# -- planner: the token program, run by a model of query.lua ------------------------------------


@dataclass
class Parsed:
    """A DRIVER read back from the token program."""

    kind: str
    exact: bool = False
    keypos: int = 0
    ranges: list[tuple[bytes, bytes]] = field(default_factory=list)
    ids: list[bytes] = field(default_factory=list)
    children: list[Any] = field(default_factory=list)
    is_ids: bool = False
    desc: bool = False
    indexes: tuple[str, ...] = ()
    body: list[bytes] = field(default_factory=list)
    covers: list[int] = field(default_factory=list)  # 1-based positions in a top-level AND


class Tokens:
    def __init__(self, tokens: list[bytes]) -> None:
        self.tokens, self.pos = tokens, 0

    def next(self) -> bytes:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def int(self) -> int:
        return int(self.next())


def parse_driver(t: Tokens) -> Parsed:
    kind = t.next().decode()
    d = Parsed(kind)
    if kind == "RANGE":
        d.keypos = t.int()
        d.ranges = [(t.next(), t.next()) for _ in range(t.int())]
    elif kind == "IDS":
        d.ids = [t.next() for _ in range(t.int())]
    elif kind in ("UNION", "BEST"):
        if kind == "UNION":
            d.exact = t.next() == b"1"
            d.covers = [t.int() for _ in range(t.int())]
        d.children = [parse_driver(t) for _ in range(t.int())]
        return d
    elif kind == "WALK":
        d.keypos = t.int()
        d.is_ids, d.desc = t.next() == b"1", t.next() == b"1"
        d.ranges = [(t.next(), t.next())]
    else:
        assert kind == "ALL", kind
    d.exact = t.next() == b"1"
    d.covers = [t.int() for _ in range(t.int())]
    return d


def parse_pred(t: Tokens) -> tuple[Any, ...]:
    op = t.next().decode()
    if op in ("AND", "OR"):
        return (op, [parse_pred(t) for _ in range(t.int())])
    if op == "NOT":
        return (op, parse_pred(t))
    if op == "IN":
        f = t.next()
        return (op, f, {t.next() for _ in range(t.int())})
    if op == "ID":
        return (op, {t.next() for _ in range(t.int())})
    if op == "ZIN":
        keypos = t.int()
        return (op, keypos, [t.next() for _ in range(t.int())])
    if op == "ZRNG":
        keypos = t.int()
        ranges = [(t.next(), t.next()) for _ in range(t.int())]
        return (op, keypos, ranges, parse_pred(t))
    if op == "NULL":
        return (op, t.next())
    if op in ("T", "F"):
        return (op,)
    assert op in ("EQ", "GT", "GE", "LT", "LE", "PRE", "HAS"), op
    return (op, t.next(), t.next())


@dataclass
class Program:
    driver: Parsed
    need: list[bytes]
    pred: tuple[Any, ...]
    order: list[tuple[bytes, bool]]
    after: list[bytes] | None


def parse_program(tokens: list[bytes]) -> Program:
    t = Tokens(tokens)
    driver = parse_driver(t)
    need = [t.next() for _ in range(t.int())]
    pred = parse_pred(t)
    order = [(t.next(), t.next() == b"1") for _ in range(t.int())]
    n_after = t.int()
    after = [t.next() for _ in range(n_after)] if n_after else None
    assert t.pos == len(tokens), "tokens left over"
    return Program(driver, need, pred, order, after)


def pred_fields(pred: tuple[Any, ...]) -> set[bytes]:
    op = pred[0]
    if op in ("AND", "OR"):
        return set().union(*(pred_fields(p) for p in pred[1])) if pred[1] else set()
    if op == "NOT":
        return pred_fields(pred[1])
    if op == "ZRNG":
        return pred_fields(pred[3])
    if op in ("T", "F", "ID", "ZIN"):
        return set()
    return {pred[1]}


def in_lex_range(member: bytes, low: bytes, high: bytes) -> bool:
    if low == b"+" or high == b"-":
        return False
    if low != b"-":
        if low[:1] == b"[" and not member >= low[1:]:
            return False
        if low[:1] == b"(" and not member > low[1:]:
            return False
    if high != b"+":
        if high[:1] == b"[" and not member <= high[1:]:
            return False
        if high[:1] == b"(" and not member < high[1:]:
            return False
    return True


class Store:
    """What save.lua leaves in Redis for a set of documents (one partition)."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        options = SHOP
        self.values = docs
        self.by_key = {sortable.id_key(i): i for i in docs}
        self.zsets: dict[int, list[bytes]] = {1: sorted(self.by_key)}
        for position, index in enumerate(options.indexes):
            members = []
            for id_, values in docs.items():
                if index.compound:
                    entries = [b"".join(
                        sortable.NULL if values.get(n) is None else
                        options.fields[n].sort_key(values[n]) for n in index.fields)]
                else:
                    name = index.fields[0]
                    entries = options.fields[name].index_keys(values.get(name))
                members += [entry + sortable.id_key(id_) for entry in entries]
            assert len(members) == len(set(members))
            self.zsets[position + 2] = sorted(members)
        self.meta: dict[str, dict[bytes, list[bytes]]] = {
            id_: {f"f:{options.fields[n].db_name}".encode():
                  options.fields[n].index_keys(values.get(n)) for n in options.indexed_fields}
            for id_, values in docs.items()}

    def range(self, keypos: int, low: bytes, high: bytes) -> list[bytes]:
        return [m for m in self.zsets[keypos] if in_lex_range(m, low, high)]

    @staticmethod
    def id_of(member: bytes) -> bytes:
        return sortable.split_member(member)[1]

    def collect(self, d: Parsed, policy: int = 0) -> list[bytes]:
        """The candidate id keys of a gathering driver. A BEST nested in a UNION is settled by
        ``policy`` (query.lua picks by cost; every pick must be correct)."""
        if d.kind == "BEST":
            return self.collect(d.children[policy % len(d.children)], policy)
        if d.kind == "ALL":
            return list(self.zsets[1])
        if d.kind == "RANGE":
            out = []
            for low, high in d.ranges:
                out += [self.id_of(m) for m in self.range(d.keypos, low, high)]
            return list(dict.fromkeys(out))
        if d.kind == "IDS":
            return [k for k in dict.fromkeys(d.ids) if k in self.by_key]
        if d.kind == "UNION":
            return list(dict.fromkeys(k for c in d.children for k in self.collect(c, policy)))
        raise AssertionError(d.kind)

    def walk(self, d: Parsed) -> list[bytes]:
        members = self.range(d.keypos, *d.ranges[0])
        if d.desc:
            members.reverse()
        return members if d.is_ids else [self.id_of(m) for m in members]

    def eval(self, p: tuple[Any, ...], idkey: bytes, need: list[bytes]) -> bool:
        op = p[0]
        if op == "AND":
            return all(self.eval(c, idkey, need) for c in p[1])
        if op == "OR":
            return any(self.eval(c, idkey, need) for c in p[1])
        if op == "NOT":
            return not self.eval(p[1], idkey, need)
        if op == "T":
            return True
        if op == "F":
            return False
        if op == "ID":
            return idkey in p[1]
        if op == "ZIN":  # some value .. id is a member of the index at KEYS[keypos]
            members = set(self.zsets[p[1]])
            return any(v + idkey in members for v in p[2])
        if op == "ZRNG":  # query.lua tests either: membership in the ranges, or the meta test
            in_ranges = any(self.id_of(m) == idkey for low, high in p[2]
                            for m in self.range(p[1], low, high))
            assert in_ranges == self.eval(p[3], idkey, need), p
            return in_ranges
        assert p[1] in need, f"predicate reads {p[1]!r}, which is not in NEED"
        items = self.meta[self.by_key[idkey]][p[1]]
        v = items[0] if items else sortable.NULL
        if op == "NULL":
            return v == sortable.NULL and bool(items)
        if op == "EQ":
            return v == p[2]
        if op == "IN":
            return v in p[2]
        if op == "HAS":
            return p[2] in items
        if v == sortable.NULL:
            return False
        if op == "PRE":
            return v.startswith(p[2])
        return {"GT": v > p[2], "GE": v >= p[2], "LT": v < p[2], "LE": v <= p[2]}[op]

    def row_keys(self, idkey: bytes, order: list[tuple[bytes, bool]]) -> list[bytes]:
        keys = []
        for name, _ in order:
            if name == b"@id":
                keys.append(idkey)
            else:
                items = self.meta[self.by_key[idkey]][name]
                keys.append(items[0] if items else sortable.NULL)
        return keys


def choices(d: Parsed) -> list[Parsed]:
    """Every driver query.lua may end up using for ``d`` (a BEST may pick any child)."""
    if d.kind == "BEST":
        return [c for child in d.children for c in choices(child)]
    return [d]


S_VALUES = ["", "a", "ab", "abc", "b", "a\x00", "a\x00b", "é", "zz"]
N_VALUES = [-(2**64), -5, 0, 1, 2, 10, 2**53 + 1]
F_VALUES = [-1.5, -0.0, 0.0, 0.1, 1e300]
D_VALUES = [Decimal("-1.5"), Decimal("0"), Decimal("0.10"), Decimal("0.1"), Decimal("2.5")]
T_VALUES = [dt.datetime(2024, 1, 1, tzinfo=UTC),
            dt.datetime(2024, 1, 1, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
            dt.datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
TAGS = ["x", "y", "z", ""]
PICK: dict[str, list[Any]] = {"s": S_VALUES, "n": N_VALUES, "f": F_VALUES, "d": D_VALUES,
                              "t": T_VALUES, "b": [True, False], "u": S_VALUES, "m": N_VALUES,
                              "c": [1, 2, 3]}


def dataset() -> dict[str, dict[str, Any]]:
    rng = random.Random(7)
    docs = {}
    for i in range(60):
        values: dict[str, Any] = {name: None if rng.random() < 0.2 else rng.choice(pool)
                                  for name, pool in PICK.items()}
        values["tags"] = None if rng.random() < 0.15 else rng.sample(TAGS, rng.randint(0, 3))
        doc_id = str(i) if i % 3 else f"k:{i}{{x}}\x00"
        doc = Shop(id=doc_id, **values)
        doc.clean()
        docs[doc_id] = doc._values()
    return docs


DOCS = dataset()
STORE = Store(DOCS)
DOC_IDS = sorted(DOCS)

LOOKUPS: dict[str, list[str]] = {
    "s": ["exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "startswith",
          "endswith", "isnull"],
    "n": ["exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"],
    "f": ["exact", "gt", "lte", "in"],
    "d": ["exact", "ne", "gte", "lt", "in"],
    "t": ["exact", "gt", "lt", "isnull"],
    "b": ["exact", "ne", "in", "isnull"],
    "tags": ["contains", "isnull", "exact"],
    "u": ["exact", "startswith", "isnull"],
    "m": ["gt", "in"],
    "c": ["exact", "lt", "isnull", "in"],
    "id": ["exact", "in", "ne", "nin"],
}


@st.composite
def leaf(draw: st.DrawFn) -> Q:
    name = draw(st.sampled_from(sorted(LOOKUPS)))
    lookup = draw(st.sampled_from(LOOKUPS[name]))
    if lookup == "isnull":
        value: Any = draw(st.booleans())
    elif name == "id":
        value = draw(st.sampled_from(DOC_IDS + ["nope"]))
    elif name == "tags":
        value = draw(st.sampled_from(TAGS)) if lookup == "contains" else draw(
            st.lists(st.sampled_from(TAGS), max_size=2))
    elif lookup in ("contains", "startswith", "endswith"):
        value = draw(st.sampled_from(S_VALUES))
    else:
        value = draw(st.sampled_from(PICK[name]))
    if lookup in ("in", "nin"):
        pool = DOC_IDS[:8] if name == "id" else PICK[name] + [None]
        value = draw(st.lists(st.sampled_from(pool), max_size=3))
    return Q(**{f"{name}__{lookup}": value})


trees = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda ab: ab[0] & ab[1]),
        st.tuples(inner, inner).map(lambda ab: ab[0] | ab[1]),
        inner.map(lambda q: ~q),
    ),
    max_leaves=4,
)
orderings = st.lists(
    st.tuples(st.sampled_from(["s", "n", "f", "d", "t", "b", "u", "c", "id"]), st.booleans()),
    max_size=2, unique_by=lambda x: x[0],
).map(lambda items: [("-" if desc else "") + name for name, desc in items])


def expected(spec: QuerySpec) -> list[str]:
    keyed = [(evaluate.sort_keys(SHOP, spec.order, v), i) for i, v in DOCS.items()
             if evaluate.matches(SHOP, spec.where, v)]
    descending = evaluate.directions(spec.order)
    if spec.after is not None:
        keyed = [(k, i) for k, i in keyed if evaluate.compare_keys(k, spec.after, descending) > 0]
    return [i for _, i in evaluate.sort_rows(keyed, lambda item: item[0], descending)]


def run_program(plan: Any, spec: QuerySpec, counting: bool) -> None:
    program = parse_program(plan.tokens)
    want = expected(spec)
    referenced = pred_fields(program.pred) | {n for n, _ in program.order if n != b"@id"}
    assert referenced <= set(program.need)
    descending = evaluate.directions(spec.order)
    tie_desc = bool(program.order) and program.order[-1][1]

    def check(d: Parsed, k: bytes) -> bool:
        """As query.lua: an exact driver needs no check; the conditions of a top-level AND
        that a driver covers are not checked again (so a wrong cover shows up here)."""
        if d.exact:
            return True
        pred = program.pred
        if d.covers and pred[0] == "AND":
            return all(STORE.eval(c, k, program.need) for position, c in enumerate(pred[1], 1)
                       if position not in d.covers)
        return STORE.eval(pred, k, program.need)

    def server_rows(d: Parsed, policy: int) -> list[str]:
        if d.kind == "WALK":
            hits = [k for k in STORE.walk(d) if check(d, k)]
        else:
            hits = [k for k in STORE.collect(d, policy) if check(d, k)]
            if program.after is not None:
                position = program.after
                hits = [k for k in hits
                        if _compare(STORE.row_keys(k, program.order) + [k], position,
                                    program.order, tie_desc) > 0]
            hits.sort(key=_sort_key(program.order, tie_desc))  # query.lua sorts what it gathers
        return [STORE.by_key[k] for k in hits]

    for chosen, policy in [(c, p) for c in choices(program.driver) for p in range(3)]:
        rows = server_rows(chosen, policy)
        if plan.residual is not None:
            rows = [i for i in rows if evaluate.matches(SHOP, plan.residual, DOCS[i])]
        if not plan.server_order:
            keyed = [(evaluate.sort_keys(SHOP, spec.order, DOCS[i]), i) for i in rows]
            if spec.after is not None:
                keyed = [(k, i) for k, i in keyed
                         if evaluate.compare_keys(k, spec.after, descending) > 0]
            rows = [i for _, i in evaluate.sort_rows(keyed, lambda item: item[0], descending)]
        assert rows == want, (chosen, plan.tokens)
        if (counting and chosen.kind in ("RANGE", "ALL") and chosen.exact and spec.after is None
                and plan.residual is None):
            # query.lua counts an exact RANGE with ZLEXCOUNT: one entry per matching document
            if chosen.kind == "ALL":
                count = len(STORE.zsets[1])
            else:
                count = sum(len(STORE.range(chosen.keypos, lo, hi)) for lo, hi in chosen.ranges)
            assert count == len(want), (chosen, plan.tokens)


def _compare(a: list[bytes], b: list[bytes], order: list[tuple[bytes, bool]], tie_desc: bool
             ) -> int:
    for x, y, (_, desc) in zip(a, b, order):  # noqa: B905 (a, b carry the id too)
        if x != y:
            return (1 if x > y else -1) * (-1 if desc else 1)
    x, y = a[-1], b[-1]
    if x == y:
        return 0
    return (1 if x > y else -1) * (-1 if tie_desc else 1)


def _sort_key(order: list[tuple[bytes, bool]], tie_desc: bool) -> Any:
    from functools import cmp_to_key

    def cmp(a: bytes, b: bytes) -> int:
        return _compare(STORE.row_keys(a, order) + [a], STORE.row_keys(b, order) + [b], order,
                        tie_desc)

    return cmp_to_key(cmp)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=trees, order=orderings, cursor_at=st.one_of(st.none(), st.sampled_from(DOC_IDS)))
def test_plans_select_exactly_the_reference_rows(where: Q, order: list[str],
                                                 cursor_at: str | None) -> None:
    qs = Shop.objects.filter(where).order_by(*order)
    if cursor_at is not None:
        anchor = Shop.from_storage(cursor_at, 1, {})
        anchor.__dict__.update({k: v for k, v in DOCS[cursor_at].items() if k != "id"})
        qs = qs.after(qs.cursor_for(anchor))
    spec = qs.spec
    run_program(PLANNER.plan(spec), spec, counting=False)
    count_spec = QuerySpec(spec.where) if spec.after is None else spec
    run_program(PLANNER.plan(count_spec, counting=True), count_spec, counting=True)


@st.composite
def walks(draw: st.DrawFn) -> Any:
    """A query ordered by one indexed field with a condition on that field (which narrows the
    index walk), maybe another condition, and maybe a keyset position."""
    name = draw(st.sampled_from(["s", "n", "f", "d", "t", "b"]))
    lookups = ["exact", "in", "isnull"] + ([] if name == "b" else ["gt", "gte", "lt", "lte"])
    lookups += ["startswith"] if name == "s" else []
    lookup = draw(st.sampled_from(lookups))
    if lookup == "isnull":
        value: Any = draw(st.booleans())
    elif lookup == "in":
        value = draw(st.lists(st.sampled_from(PICK[name] + [None]), min_size=1, max_size=1))
    elif lookup == "startswith":
        value = draw(st.sampled_from(S_VALUES))
    else:
        value = draw(st.sampled_from(PICK[name]))
    where = Q(**{f"{name}__{lookup}": value})
    if draw(st.booleans()):
        where = where & draw(leaf())
    qs = Shop.objects.filter(where).order_by(("-" if draw(st.booleans()) else "") + name)
    cursor_at = draw(st.one_of(st.none(), st.sampled_from(DOC_IDS)))
    if cursor_at is not None:
        anchor = Shop.from_storage(cursor_at, 1, {})
        anchor.__dict__.update({k: v for k, v in DOCS[cursor_at].items() if k != "id"})
        qs = qs.after(qs.cursor_for(anchor))
    return qs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qs=walks())
def test_narrowed_walks_with_cursors_select_exactly_the_reference_rows(qs: Any) -> None:
    spec = qs.spec
    plan = PLANNER.plan(spec)
    run_program(plan, spec, counting=False)


def test_walk_bound_is_the_tighter_of_condition_and_cursor() -> None:
    qs = Shop.objects.filter(n__gte=0).order_by("n")
    spec = qs.after(qs.cursor_for(Shop(id="5", n=2))).spec
    walk = next(d for d in leaves(PLANNER.plan(spec).driver) if d.kind == "WALK")
    assert walk.body[3] == b"(" + sortable.encode_number(2) + sortable.id_key("5")
    assert walk.body[4] == b"+"
    spec = qs.after(qs.cursor_for(Shop(id="5", n=-5))).spec  # the cursor is before the range
    walk = next(d for d in leaves(PLANNER.plan(spec).driver) if d.kind == "WALK")
    assert walk.body[3] == b"[" + sortable.encode_number(0)
    run_program(PLANNER.plan(spec), spec, counting=False)


@pytest.mark.parametrize("kwargs", [
    {"n": 2}, {"n__in": [2, None, 10]}, {"n__isnull": False}, {"n__lt": 2}, {"n__gte": 2},
    {"s__startswith": "a"}, {"s__startswith": "a\x00"}, {"s__startswith": ""}, {"s__lte": "a"},
    {"s__gt": "a"}, {"tags__contains": ""}, {"tags__isnull": True}, {"f": -0.0},
    {"d": Decimal("0.100")}, {"t": T_VALUES[1]}, {"b__in": [True, None]},
])
def test_exact_single_field_ranges(kwargs: dict[str, Any]) -> None:
    spec = Shop.objects.filter(**kwargs).spec
    plan = PLANNER.plan(spec, counting=True)
    assert plan.driver.kind == "RANGE" and plan.driver.exact
    run_program(plan, spec, counting=True)
    for order in ([], [next(iter(kwargs)).split("__")[0]]):
        if order == ["tags"]:
            continue
        ordered_spec = Shop.objects.filter(**kwargs).order_by(*order).spec
        run_program(PLANNER.plan(ordered_spec), ordered_spec, counting=False)


# -- the save.lua call ---------------------------------------------------------------------------


def save_call(options: Any, keys: KeySpace, request: WriteRequest) -> Any:
    return writes.WriteLayout(options, keys).save(request).call()


def delete_call(options: Any, keys: KeySpace, request: WriteRequest) -> Any:
    return writes.WriteLayout(options, keys).delete(request).call()



def account_request(kind: str = "insert", id: str | None = "a1", changed: frozenset[str] | None
                    = None, expected_version: int = 0, **overrides: Any) -> WriteRequest:
    values = dict(email="a@x", name="Ann", age=30, tags=["b", "a", "b"], bio="hi")
    values.update(overrides)
    doc = Account(id=id, **values)
    data = doc.clean()
    return WriteRequest(kind, id, expected_version, data, doc._values(), changed)  # type: ignore[arg-type]


@dataclass
class SaveArgs:
    kind: str
    version: str
    id_key: bytes
    document: bytes
    write_id: str
    pairs: dict[str, bytes]
    indexes: list[tuple[int, str, str, str]]


def parse_save(call: Any) -> SaveArgs:
    args = list(call.args)
    # ..., all manifests, expiry, document and meta key prefixes, events spec, changed names,
    # schema layout (b"" until the backend has read the stored schema), and the entries of
    # every index as one array (an insert; an update leaves it out: the script reads them
    # from the pairs)
    if call.script == "insert":
        # (insert.lua's own arguments: save.lua's less the op, the expected version and the
        # changed names, which an insert never reads: laid out here as save.lua's, None for
        # those not sent)
        # (format 2 asked for, writes.NEW_FORMAT: "2" last, insert.lua's ARGV[13])
        if len(args) == 13:
            assert args.pop() == b"2"
        assert len(args) == 12 and args[10] == b"" and args[11] != b""
        args = ["insert", None, *args[:10], None, *args[10:]]
    else:
        assert len(args) == 14 and args[13] == b""
    kind, version, id_key, document, write_id = args[:5]
    # name, value, name, value... one after another, not an array (a script gathers them by
    # one table constructor; insert.lua passes them on to the meta hash's HSET)
    flat = wire.unpack_items(args[5])
    pairs = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    described = [item.decode() for item in wire.unpack_items(args[6])]
    assert len(described) % 4 == 0
    quads = [described[i:i + 4] for i in range(0, len(described), 4)]
    return SaveArgs(kind, version, id_key, document, write_id, pairs,
                    [(int(q[0]), q[1], q[2], q[3]) for q in quads])


@settings(max_examples=150)
@given(some_id=ids)
@example(some_id="x}:i:age")
def test_save_call_keys_share_one_slot(some_id: str) -> None:
    keys = KeySpace(Account._meta)
    call = save_call(Account._meta, keys, account_request(id=some_id))
    assert call.script == "insert"  # (an insert's script, with save.lua's arguments)
    assert len({key_slot(k) for k in call.keys}) == 1
    assert call.keys[:3] == (keys.doc(0, some_id), keys.meta(0, some_id), keys.ids(0))
    args = parse_save(call)
    assert args.id_key == sortable.id_key(some_id)
    assert sortable.id_from_key(args.id_key) == some_id


def test_save_call_keys_share_one_slot_with_partitions() -> None:
    """Every KEYS entry of one script call must hash to one slot (Redis Cluster refuses the
    call otherwise). With partitions > 1 the document lives in ``{ns:coll:pN}`` while the
    auto-id counter is ``{ns:coll}:seq``, which save_call still declares as KEYS[4]."""
    keys = KeySpace(Sharded._meta)
    doc = Sharded(id="u1", name="x", age=1)
    request = WriteRequest("insert", "u1", 0, doc.clean(), doc._values(), None)
    call = save_call(Sharded._meta, keys, request)
    slots = {k: key_slot(k) for k in call.keys}
    assert len(set(slots.values())) == 1, slots


def insert_entries(packed: bytes) -> list[list[bytes]]:
    """insert.lua's ARGV[12] (flat form): per index, its count of value encodings (a
    positive fixint) then the encodings (MessagePack strings)."""
    out: list[list[bytes]] = []
    pos = 0
    while pos < len(packed):
        count, pos = packed[pos], pos + 1
        assert count <= 0x7F
        entries = []
        for _ in range(count):
            head = packed[pos]
            if head & 0xE0 == 0xA0:
                size, pos = head & 0x1F, pos + 1
            else:
                assert head == 0xD9
                size, pos = packed[pos + 1], pos + 2
            entries.append(packed[pos:pos + size])
            pos += size
        out.append(entries)
    return out


@pytest.mark.parametrize("format", [3, 2])
def test_save_call_insert_arguments(format: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "NEW_FORMAT", format)
    keys = KeySpace(Account._meta)
    call = save_call(Account._meta, keys, account_request())
    args = parse_save(call)
    assert args.kind == "insert" and args.version is None  # (not sent: insert.lua's own)
    assert json.loads(args.document) == {"mail": "a@x", "name": "Ann", "age": 30,
                                         "tags": ["b", "a", "b"], "bio": "hi"}
    assert len(args.write_id) == 16 and int(args.write_id, 16) >= 0
    every = {
        "f:mail": sortable.pack_list([sortable.encode_str("a@x")]),
        "f:name": sortable.pack_list([sortable.encode_str("Ann")]),
        "f:age": sortable.pack_list([sortable.encode_number(30)]),
        "f:tags": sortable.pack_list([sortable.encode_str("a"), sortable.encode_str("b")]),
        "x:name__age": sortable.pack_list([sortable.encode_str("Ann")
                                           + sortable.encode_number(30)]),
    }
    # format 2: the meta hash lists every index's entries; format 3 keeps none without an
    # expiry (every index of Account is derived: no listed index)
    assert args.pairs == (every if format == 2 else {})
    # every index's entries, in index order, in ARGV[12] either way
    assert insert_entries(call.args[11]) == [sortable.unpack_list(every[f"f:{name}"])
                                             if f"f:{name}" in every else
                                             sortable.unpack_list(every[f"x:{name}"])
                                             for name in ("mail", "name", "age", "tags",
                                                          "name__age")]
    by_name = {name: (pos, manifest, unique) for pos, manifest, unique, name in args.indexes}
    # KEYS: doc, meta, ids, sequence, TTL schedule, version clock, then every index key
    assert by_name == {
        "mail": (7, "f:mail", "1"), "name": (8, "f:name", "0"), "age": (9, "f:age", "0"),
        "tags": (10, "f:tags", "0"), "name__age": (11, "x:name__age", "1"),
    }
    for pos, _, _, name in args.indexes:
        assert call.keys[pos - 1] == keys.index(0, name)
    # with change events on (the default) the partition's stream comes last
    assert call.keys[4:6] == (keys.ttl(0), keys.state(0)) and len(call.keys) == 12
    assert call.keys[-1] == keys.changes(0)
    # (the usual events, a stream entry alone: its MAXLEN, which save.lua reads unpacked)
    assert call.args[9] == b"10000"
    # (an insert changes every field: no changed names, no expected version, no op sent;
    # format 2 asked for: "2" after them)
    assert len(call.args) == (12 if format == 3 else 13)
    assert b"insert" not in call.args and "insert" not in call.args


def test_save_call_sends_the_event_spec_when_events_carry_more_than_an_entry() -> None:
    cases = [({"changes_document": True}, [b"5", b"1", b""]),
             ({"publish": True}, None), ({"changes": False, "publish": True}, None),
             ({"changes": False}, b""), ({"changes_maxlen": 7}, b"7")]
    for i, (meta, expected) in enumerate(cases):
        model = type(f"Evented{i}", (Document,), {
            "name": StringField(indexed=True),
            "Meta": type("Meta", (), {"collection": f"evented{i}", "changes_maxlen": 5,
                                      **meta})})
        keys = KeySpace(model._meta)
        doc = model(id="e1", name="n")
        request = WriteRequest("insert", "e1", 0, doc.clean(), doc._values(), None)
        sent = save_call(model._meta, keys, request).args[9]  # (insert.lua's events)
        spec = writes.events_spec(model._meta, keys)
        if expected is None:  # (Pub/Sub: the whole spec, with its channel)
            assert sent == spec and wire.unpack(sent)[2] == keys.channel.encode()
        elif isinstance(expected, list):
            assert sent == spec and wire.unpack(sent) == expected
        else:
            assert sent == expected


def test_save_call_names_the_changed_fields_for_the_event() -> None:
    call = save_call(Account._meta, KeySpace(Account._meta), account_request(
        "update", changed=frozenset({"bio", "age"}), expected_version=3))
    assert wire.unpack(call.args[12]) == [b"age", b"bio"]  # in declaration order


@pytest.mark.parametrize("format", [3, 2])
def test_save_call_unique_flags_with_nulls(format: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "NEW_FORMAT", format)
    # a compound unique index does not hold a value with a null part unique
    call = save_call(Account._meta, KeySpace(Account._meta),
                     account_request(age=None, email=None))
    args = parse_save(call)
    flags = {name: unique for _, _, unique, name in args.indexes}
    assert flags["name__age"] == "0"
    assert flags["mail"] == "1"  # single-field: the script skips the NULL entry itself
    # the entries (ARGV[12], in index order) either way; format 2 lists them in the meta
    # hash too
    entries = dict(zip([name for _, _, _, name in args.indexes],
                       insert_entries(call.args[11]), strict=True))
    assert entries["mail"] == [sortable.NULL]
    assert entries["name__age"] == [sortable.encode_str("Ann") + sortable.NULL]
    if format == 2:
        assert args.pairs["f:mail"] == sortable.pack_list([sortable.NULL])
        assert args.pairs["x:name__age"] == sortable.pack_list([sortable.encode_str("Ann")
                                                                + sortable.NULL])
    else:
        assert args.pairs == {}


def test_save_call_update_touches_only_changed_indexes() -> None:
    keys = KeySpace(Account._meta)
    call = save_call(Account._meta, keys, account_request(
        "update", changed=frozenset({"bio"}), expected_version=3))
    args = parse_save(call)
    assert args.kind == "update" and args.version == "3"
    assert args.pairs == {} and args.indexes == []  # (every index key is still declared)

    call = save_call(Account._meta, keys, account_request(
        "update", changed=frozenset({"age", "bio"}), expected_version=3))
    args = parse_save(call)
    assert set(args.pairs) == {"f:age", "x:name__age"}
    assert [name for _, _, _, name in args.indexes] == ["age", "name__age"]
    assert [call.keys[pos - 1] for pos, _, _, _ in args.indexes] == [
        keys.index(0, "age"), keys.index(0, "name__age")]

    call = save_call(Account._meta, keys, account_request(
        "update", changed=frozenset({"tags"}), expected_version=1))
    args = parse_save(call)
    assert set(args.pairs) == {"f:tags"}
    assert [(m, u, n) for _, m, u, n in args.indexes] == [("f:tags", "0", "tags")]


def test_save_call_with_an_id_to_allocate() -> None:
    keys = KeySpace(Account._meta)
    call = save_call(Account._meta, keys, account_request(id=None))
    args = parse_save(call)
    assert args.id_key == b""
    assert call.keys[:4] == (keys.doc_prefix(0), keys.meta_prefix(0), keys.ids(0),
                             keys.sequence)
    assert len({key_slot(k) for k in call.keys}) == 1


def test_delete_call() -> None:
    keys = KeySpace(Account._meta)
    call = delete_call(Account._meta, keys, WriteRequest("delete", "x}{", 5))
    assert call.script == "delete"
    assert len({key_slot(k) for k in call.keys}) == 1
    assert call.keys[:6] == (keys.doc(0, "x}{"), keys.meta(0, "x}{"), keys.ids(0),
                             keys.ttl(0), keys.trash(0, "x}{"), keys.state(0))
    assert list(call.keys[6:-1]) == keys.indexes(0) and call.keys[-1] == keys.changes(0)
    assert call.args[:2] == ("5", sortable.id_key("x}{")) and call.args[3] == ""
    assert wire.unpack_items(call.args[2]) == [b"f:mail", b"f:name", b"f:age", b"f:tags",
                                         b"x:name__age"]  # aligned with KEYS[7..]
    sharded = KeySpace(Sharded._meta)
    call = delete_call(Sharded._meta, sharded, WriteRequest("delete", "abc", 0))
    assert len({key_slot(k) for k in call.keys}) == 1
    assert call.args[0] == ""


def test_encode_document() -> None:
    assert encode_document({"a": "é", "b": [1, 2.5]}) == '{"a":"é","b":[1,2.5]}'.encode()
    with pytest.raises(ValueError):
        encode_document({"a": float("nan")})


@pytest.mark.parametrize(("request_", "reply", "check"), [
    (WriteRequest("insert", "a", 0), [b"OK", 1, sortable.id_key("a")],
     lambda r: r.id == "a" and r.version == 1 and r.error is None),
    (WriteRequest("insert", None, 0), [b"OK", 1, sortable.id_key("17")],
     lambda r: r.id == "17" and r.version == 1),
    (WriteRequest("update", "a", 2), [b"OK", 3, sortable.id_key("a")],
     lambda r: r.version == 3),
    (WriteRequest("update", "a", 2), [b"VERSION", b"5"],
     lambda r: isinstance(r.error, VersionConflict) and r.error.actual == 5
     and r.error.expected == 2 and r.version is None),
    (WriteRequest("update", "a", 2), [b"MISSING"],
     lambda r: isinstance(r.error, VersionConflict) and r.error.actual is None),
    (WriteRequest("delete", "a", 2), [b"MISSING"], lambda r: r.error is None and r.version is None),
    (WriteRequest("delete", "a", 2), [b"OK"], lambda r: r.error is None and r.version == 0),
    (WriteRequest("insert", "a", 0), [b"EXISTS"], lambda r: isinstance(r.error, DuplicateIdError)),
    (WriteRequest("insert", "a", 0), [b"UNIQUE", b"mail", sortable.id_key("b:{c}")],
     lambda r: isinstance(r.error, UniqueViolation) and r.error.index == "mail"
     and r.error.other_id == "b:{c}"),
    (WriteRequest("insert", "a", 0), [b"WRONGTYPE", b"{k}:d:a"],
     lambda r: isinstance(r.error, WrongTypeError) and r.error.key == "{k}:d:a"),
])
def test_script_replies_become_results(request_: WriteRequest, reply: list[Any],
                                       check: Any) -> None:
    assert check(writes.result(Account._meta, request_, write_reply(reply)))


def test_unexpected_script_reply() -> None:
    with pytest.raises(AssertionError):
        writes.result(Account._meta, WriteRequest("insert", "a", 0), write_reply([b"WHAT"]))


def test_index_members() -> None:
    options = Account._meta
    compound = options.indexes_by_name()["name__age"]
    assert writes.index_members(options, compound, {"name": "a", "age": None}) == [
        sortable.encode_str("a") + sortable.NULL]
    tags = options.indexes_by_name()["tags"]
    assert writes.index_members(options, tags, {"tags": ["b", "a", "b"]}) == [
        sortable.encode_str("a"), sortable.encode_str("b")]
    assert writes.index_members(options, tags, {"tags": []}) == []
    assert writes.index_members(options, tags, {}) == [sortable.NULL]


def test_and_or_nodes_are_plain_data() -> None:
    # the planner receives resolved nodes; building one by hand gives the same plan
    node = And((Condition("n", Lookup.EXACT, 1), Or((Condition("b", Lookup.EXACT, True),
                                                     Condition("id", Lookup.IN, ("1", "2"))))))
    assert PLANNER.plan(QuerySpec(node)).tokens == PLANNER.plan(
        Shop.objects.filter(Q(n=1) & (Q(b=True) | Q(id__in=["1", "2"]))).spec).tokens
