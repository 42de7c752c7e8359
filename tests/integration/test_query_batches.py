"""query.lua's batched paths against real Redis: membership tests in batches (ZMSCORE), range
conditions read as sets of ids (set algebra) or tested on the meta hash, walks of several
chunks, documents read with MGET, on one partition and on several (rows merged by sort keys).

The data set is larger than query.lua's batches (512) and a walk's first chunks (256, 512..),
so that each path crosses a batch boundary; every answer is compared with one computed in
Python from the inserted values. The server-command counts are deterministic (INFO
commandstats deltas): they check that rejected candidates cost no meta hash read.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from quantumorm import ArrayField, BooleanField, Document, IntField, Q, StringField

N = 1500
TAGS = [f"t{i}" for i in range(8)]


class Member(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "qb_members"


class Spread(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "qb_spread"
        partitions = 3


Values = dict[str, Any]


def _values() -> dict[str, Values]:
    rng = random.Random(12)
    return {str(i): {"name": f"n{rng.randrange(30)}", "age": rng.randrange(100),
                     "active": rng.random() < 0.5, "tags": rng.sample(TAGS, 3)}
            for i in range(1, N + 1)}


VALUES = _values()

# (query, the Python test of a row); each is run plain, ordered, limited and counted
CASES: list[tuple[Callable[[Any], Any], Callable[[Values], bool]]] = [
    (lambda m: m.objects.filter(active=True, age__gt=60, tags__contains="t3"),
     lambda v: v["active"] and v["age"] > 60 and "t3" in v["tags"]),
    # a small range among many candidates: read as a set
    (lambda m: m.objects.filter(tags__contains="t1", age__gte=97),
     lambda v: "t1" in v["tags"] and v["age"] >= 97),
    # a large range among few candidates: tested on the meta hash
    (lambda m: m.objects.filter(name="n4", age__gt=3),
     lambda v: v["name"] == "n4" and v["age"] > 3),
    # negated and multi-value membership tests
    (lambda m: m.objects.filter(~Q(active=True), tags__contains="t2", age__lt=50),
     lambda v: not v["active"] and "t2" in v["tags"] and v["age"] < 50),
    (lambda m: m.objects.filter(name__in=["n1", "n2", "n3"], active=False, age__lte=80),
     lambda v: v["name"] in ("n1", "n2", "n3") and not v["active"] and v["age"] <= 80),
    (lambda m: m.objects.filter(name__nin=["n1", "n2"], tags__contains="t5", age__gt=30),
     lambda v: v["name"] not in ("n1", "n2") and "t5" in v["tags"] and v["age"] > 30),
    (lambda m: m.objects.filter(Q(age__gt=90) | Q(active=True, tags__contains="t0"),
                                tags__contains="t6"),
     lambda v: (v["age"] > 90 or (v["active"] and "t0" in v["tags"])) and "t6" in v["tags"]),
]


def natural(id: str) -> int:
    return int(id)


async def _load(model: Any) -> None:
    docs = [model(id=id, **values) for id, values in VALUES.items()]
    await model.objects.bulk_create(docs)


@pytest.mark.parametrize("model", [Member, Spread])
async def test_batched_paths_give_the_reference_answers(conn: Any, model: Any) -> None:
    await _load(model)
    for make, test in CASES:
        matching = sorted((id for id, v in VALUES.items() if test(v)), key=natural)
        assert matching, "each case selects some rows"
        rows = await make(model).all()
        assert [d.id for d in rows] == matching
        assert [(d.age, d.active, d.name, d.tags) for d in rows] == [
            (VALUES[id]["age"], VALUES[id]["active"], VALUES[id]["name"], VALUES[id]["tags"])
            for id in matching]
        assert await make(model).count() == len(matching)
        by_age = sorted(matching, key=lambda id: (-VALUES[id]["age"], -natural(id)))
        assert [d.id for d in await make(model).order_by("-age").all()] == by_age
        assert [d.id for d in await make(model).order_by("-age").limit(7).all()] == by_age[:7]
        assert [d.id for d in await make(model).limit(5).offset(3).all()] == matching[3:8]


@pytest.mark.parametrize("model", [Member, Spread])
async def test_walks_of_many_chunks(conn: Any, model: Any) -> None:
    await _load(model)
    # a walk over the whole age index (several chunks), both directions, filtered
    for desc in (False, True):
        order = "-age" if desc else "age"
        got = await model.objects.filter(active=True).order_by(order).all()
        want = sorted((id for id, v in VALUES.items() if v["active"]),
                      key=lambda id: (VALUES[id]["age"], natural(id)), reverse=desc)
        assert [d.id for d in got] == want
        window = await model.objects.filter(active=True).order_by(order).offset(600).limit(
            400).all()
        assert [d.id for d in window] == want[600:1000]
    # a walk of the id index
    got = await model.objects.filter(tags__contains="t4").exclude(age=5).all()
    assert [d.id for d in got] == sorted(
        (id for id, v in VALUES.items() if "t4" in v["tags"] and v["age"] != 5), key=natural)


def _calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in client.info("commandstats").items()}


async def test_rejected_candidates_cost_no_meta_read(conn: Any, redis_client: Any) -> None:
    await _load(Member)
    query = Member.objects.filter(active=True, age__gt=60, tags__contains="t3")
    await query.all()  # the script loaded, the schema read
    before = _calls(redis_client)
    rows = await query.all()
    after = _calls(redis_client)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    candidates = sum("t3" in v["tags"] for v in VALUES.values())
    assert len(rows) < candidates / 4
    # one meta read (the version) per row returned, none per rejected candidate (and the
    # schema layout check's one read of the state hash); the documents come in batches,
    # never one GET each
    assert delta.get("hget", 0) + delta.get("hmget", 0) <= len(rows) + 1
    assert delta.get("get", 0) == 0
    assert 1 <= delta.get("mget", 0) <= len(rows) // 512 + 1
    assert delta.get("zscore", 0) == 0 and delta.get("zmscore", 0) >= 1


async def test_explain_says_how_each_condition_is_tested(conn: Any) -> None:
    await _load(Member)
    query = Member.objects.filter(active=True, age__gt=60, name__startswith="n1")
    tests = (await query.explain()).details["condition tests"]
    assert isinstance(tests, str)
    assert "active__exact=True: membership in index 'active' (no meta read)" in tests
    assert ("age__gt=60: the ranges of index 'age' read as a set, or each candidate's "
            "document (format 3: read in batches, kept for the row) or meta hash") in tests
    # an exact driver checks nothing
    assert "condition tests" not in (await Member.objects.filter(age__gt=60).explain()).details
