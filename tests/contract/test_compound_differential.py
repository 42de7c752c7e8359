"""Differential test of compound indexes on Redis: queries whose conditions fall on the
fields of compound indexes (alone, on a leading prefix, a prefix and a range on the next
field, or mixed with other conditions) must give the ids of the plain-Python reference, in
order, through the blocking API and through asyncio; and a condition on a compound
index's leading field alone is served by that index, not a scan.

The fields have no single-field index, so the planner's only index for them is the
compound one: a lexicographic range over encodings that must match exactly (a value whose
encoding is a prefix of another's, ``"a"`` and ``"a\\x00"``, is among the values).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import PROFILE, holds, reference

import quantumorm
from quantumorm import (
    BooleanField,
    DateTimeField,
    Document,
    FloatField,
    IntField,
    Q,
    StringField,
)

WORDS = ["", "a", "a\x00", "ab", "b", "é", "zz"]
INTS = [-2, 0, 1, 7, 10**20]
FLOATS = [-1.5, 0.0, 0.25, 3.5]
TIMES = [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
         dt.datetime(2024, 1, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=3))),
         dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)]
POOLS: dict[str, list[Any]] = {"s": WORDS, "n": INTS, "f": FLOATS, "b": [True, False],
                               "t": TIMES, "w": WORDS}


class Pair(Document):
    s = StringField()
    n = IntField()
    f = FloatField()
    b = BooleanField()
    t = DateTimeField()
    w = StringField()  # in no index

    class Meta:
        backend = "redis"
        collection = "pairs"
        namespace = "cmp"
        indexes = [("s", "n", "f"), ("b", "t")]


#: lookups per field: the equalities and bounds a compound prefix can serve, and others
LOOKUPS = {"s": ["exact", "gt", "gte", "lt", "lte", "startswith", "isnull", "ne", "in"],
           "n": ["exact", "gt", "gte", "lt", "lte", "isnull", "ne"],
           "f": ["exact", "gt", "lte", "isnull"],
           "b": ["exact", "isnull", "ne"],
           "t": ["exact", "gt", "lt", "isnull"],
           "w": ["exact", "startswith"]}


@st.composite
def leaf(draw: st.DrawFn, fields: list[str]) -> tuple[Any, Any]:
    field = draw(st.sampled_from(fields))
    lookup = draw(st.sampled_from(LOOKUPS[field]))
    if lookup == "isnull":
        value: Any = draw(st.booleans())
    elif lookup == "in":
        value = draw(st.lists(st.sampled_from(POOLS[field]), min_size=1, max_size=3))
    else:
        value = draw(st.sampled_from(POOLS[field]))
    q = Q(**{f"{field}__{lookup}": value})
    return q, lambda d: holds(d, field, lookup, value)


def _and(parts: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    q = parts[0][0]
    for part, _ in parts[1:]:
        q &= part
    checks = [check for _, check in parts]
    return q, lambda d: all(check(d) for check in checks)


# a condition on a leading field alone; a prefix (s, then n), and a bound on the next
# field; any conjunction of conditions on the indexed fields; and ORs / NOTs of those
leading = leaf(["s", "b"])
prefixes = st.tuples(leaf(["s"]), leaf(["n"]), leaf(["f", "w"])).flatmap(
    lambda parts: st.integers(1, 3).map(lambda k: _and(list(parts[:k]))))
conjunctions = st.lists(leaf(sorted(LOOKUPS)), min_size=1, max_size=4).map(_and)
simple = st.one_of(leading, prefixes, conjunctions)
trees = st.one_of(
    simple,
    st.tuples(simple, simple).map(
        lambda p: (p[0][0] | p[1][0], lambda d, a=p[0][1], b=p[1][1]: a(d) or b(d))),
    simple.map(lambda x: (~x[0], lambda d, a=x[1]: not a(d))),
)
documents = st.lists(st.fixed_dictionaries(
    {name: st.one_of(st.none(), st.sampled_from(pool)) for name, pool in POOLS.items()}),
    min_size=0, max_size=25)
orderings = st.lists(st.tuples(st.sampled_from(["s", "n", "f", "id"]), st.booleans()),
                     max_size=2, unique_by=lambda x: x[0]).map(
    lambda items: [("-" if desc else "") + name for name, desc in items])


@pytest.fixture
def store(redis_url: str, redis_client: Any) -> Any:
    redis_client.flushdb()
    quantumorm.create_connection(backend="redis", url=redis_url)
    yield
    try:
        asyncio.run(quantumorm.aclose_all())
    finally:
        quantumorm.close_all()


async def _answers(qs: Any) -> tuple[list[str], int]:
    return [d.id for d in await qs.all()], await qs.count()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_compound_prefix_queries_agree_with_python(store: Any, mode: str) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(docs=documents, queries=st.lists(st.tuples(trees, orderings, st.integers(0, 3),
                                                      st.one_of(st.none(), st.integers(0, 6))),
                                            min_size=1, max_size=4))
    def check(docs: list[dict[str, Any]], queries: list[Any]) -> None:
        Pair.objects.delete_sync()
        saved = Pair.objects.bulk_create_sync(
            [Pair(id=str(i), **d) for i, d in enumerate(docs)])
        cleaned = [doc.to_dict() for doc in saved]
        for (q, predicate), order, offset, limit in queries:
            want = reference(cleaned, predicate, order)
            want = want[offset:None if limit is None else offset + limit]
            qs = Pair.objects.filter(q).order_by(*order)
            qs = qs[offset:] if limit is None else qs[offset:offset + limit]
            if mode == "sync":
                got, counted = [d.id for d in qs.all_sync()], qs.count_sync()
            else:
                got, counted = asyncio.run(_answers(qs))
            assert got == want, (mode, q, order, offset, limit)
            assert counted == len(want), (mode, q)

    check()


@pytest.mark.parametrize("query", [
    {"s": "a"}, {"s": "a\x00"}, {"s__gte": "zz"}, {"s__lt": "a"}, {"s__startswith": "a\x00"},
    {"s__isnull": True}, {"s": "a", "n": 1}, {"s": "a", "n__gt": 0}, {"b": False, "t": TIMES[1]},
    {"b": True, "t__lt": TIMES[2]}, {"s": "a", "w": "a"},
])
def test_a_leading_prefix_is_an_exact_index_range(store: Any, query: dict[str, Any]) -> None:
    docs = [Pair(id=str(i), s=s, n=n, b=i % 2 == 0, t=TIMES[i % 3], w=WORDS[i % 7])
            for i, (s, n) in enumerate((s, n) for s in [*WORDS, None] for n in [*INTS, None])]
    saved = [d.to_dict() for d in Pair.objects.bulk_create_sync(docs)]
    qs = Pair.objects.filter(**query)
    plan = qs.explain_sync()
    assert not plan.scanned and plan.strategy == "index range", plan
    assert plan.indexes in (("s__n__f",), ("b__t",))
    checks = [lambda d, k=k, v=v: holds(d, *(k.split("__") + ["exact"])[:2], v)
              for k, v in query.items()]
    want = reference(saved, lambda d: all(c(d) for c in checks), [])
    assert [d.id for d in qs.all_sync()] == want and qs.count_sync() == len(want)
    assert want  # (every query matches some of these documents)


@pytest.mark.parametrize("ids", [
    ["3", "10", "2", "999999999999999", "100000000000000"],  # numbers of up to 15 digits
    ["3", "10", "1000000000000000", "99", "10000000000000000000"],  # and longer ones
    ["3", "b", "10", "a", "0"],  # and not numbers
])
def test_rows_gathered_from_an_index_range_come_in_id_order(store: Any, ids: list[str]) -> None:
    Pair.objects.bulk_create_sync([Pair(id=id, s="x", n=len(ids) - i) for i, id in
                                   enumerate(ids)])
    Pair.objects.bulk_create_sync([Pair(id=f"y{i}", s="y") for i in range(40)])  # (others)
    want = sorted(ids, key=lambda i: (0, int(i)) if i.isdigit() else (1, i))
    for order, expected in (((), want), (("-id",), want[::-1])):
        qs = Pair.objects.filter(s="x").order_by(*order)
        assert qs.explain_sync().strategy == "index range"  # (rows sorted by the script)
        assert [d.id for d in qs.all_sync()] == expected
        assert [d.id for d in qs[1:3].all_sync()] == expected[1:3]
