"""Aggregation on every backend, sync and async: ``aggregate()`` (Count, Sum, Avg, Min,
Max), ``values_list()``, ``distinct()`` and ``item_frequencies()``.

Expected results are computed here in plain Python over the documents the test wrote
(exact: ``Fraction`` for sums, Python's own order for Min/Max), never by the code under test.
"""

from __future__ import annotations

import decimal
import math
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from contract_models import run
from test_contract import load

from quantumorm import (
    Avg,
    Count,
    Max,
    Min,
    QueryError,
    Sum,
    UnknownFieldError,
)
from quantumorm.query.nodes import Ordering, QuerySpec

# conditions whose document sets differ: all, some, one, none
WHERES: list[dict[str, Any]] = [{}, {"b": True}, {"s": "ab"}, {"note": "nothing"}]


def expected(docs: list[Any]) -> dict[str, Any]:
    """Every aggregate the tests ask for, computed independently of the library."""
    out: dict[str, Any] = {"n": len(docs)}
    for name in ("s", "n", "f", "d", "t", "u", "tags", "j"):
        values = [getattr(d, name) for d in docs if getattr(d, name) is not None]
        out[f"count_{name}"] = len(values)
        if name in ("n", "f", "d"):
            exact = sum((Fraction(v) for v in values), Fraction(0))
            if not values:
                out[f"sum_{name}"] = out[f"avg_{name}"] = None
            elif name == "n":
                out[f"sum_{name}"] = int(exact)
                out[f"avg_{name}"] = float(exact / len(values))
            elif name == "f":
                out[f"sum_{name}"] = float(exact)
                out[f"avg_{name}"] = float(exact / len(values))  # (rounded once)
            else:
                with decimal.localcontext() as wide:
                    wide.prec = 200  # (enough for every sum the data makes: exact)
                    total = sum(values, Decimal(0))
                assert Fraction(total) == exact
                out[f"sum_{name}"] = total
                out[f"avg_{name}"] = total / len(values)  # (in the default context)
        if name in ("s", "n", "f", "d", "t"):
            out[f"min_{name}"] = min(values) if values else None
            out[f"max_{name}"] = max(values) if values else None
        if name == "u":
            # UUIDs order by their canonical text (the field's sort key)
            out["min_u"] = min(values, key=str) if values else None
            out["max_u"] = max(values, key=str) if values else None
    return out


def asked() -> dict[str, Any]:
    out: dict[str, Any] = {"n": Count()}
    for name in ("s", "n", "f", "d", "t", "u", "tags", "j"):
        out[f"count_{name}"] = Count(name)
    for name in ("n", "f", "d"):
        out[f"sum_{name}"] = Sum(name)
        out[f"avg_{name}"] = Avg(name)
    for name in ("s", "n", "f", "d", "t", "u"):
        out[f"min_{name}"] = Min(name)
        out[f"max_{name}"] = Max(name)
    return out


@pytest.mark.parametrize("where", WHERES, ids=[str(w) for w in WHERES])
async def test_aggregate_matches_python(models: Any, mode: str, where: dict[str, Any]) -> None:
    docs = await load(models, mode)
    matching = [d for d in docs.values()
                if all(getattr(d, k) == v for k, v in where.items())]
    got = await run(models.Item.objects.filter(**where), "aggregate", mode, **asked())
    want = expected(matching)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == value, key
        assert type(got[key]) is type(value), key
    if matching:
        # Sum of ints is exact beyond 2**63 (the data holds 10**20 and -(2**60))
        assert isinstance(got["sum_n"], int)
        # Sum of Decimals is exact at 31 significant digits (1e30 + 0.10 ...)
        assert got["sum_d"] is None or got["sum_d"] == sum(
            (Fraction(d.d) for d in matching if d.d is not None), Fraction(0))


async def test_aggregate_of_a_slice_and_an_empty_set(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    qs = models.Item.objects.order_by("id")[3:9]
    window = [docs[i] for i in sorted(docs)[3:9]]
    got = await run(qs, "aggregate", mode, total=Sum("n"), k=Count("n"), hi=Max("t"))
    values = [d.n for d in window if d.n is not None]
    assert got == {"total": sum(values), "k": len(values),
                   "hi": max(d.t for d in window if d.t is not None)}
    none = models.Item.objects.filter(note="nothing")
    assert await run(none, "aggregate", mode, n=Count(), s=Sum("d"), a=Avg("f"), lo=Min("s"),
                     hi=Max("n"), c=Count("s")) == {
        "n": 0, "s": None, "a": None, "lo": None, "hi": None, "c": 0}


async def test_aggregate_refuses_what_has_no_meaning(models: Any, mode: str) -> None:
    qs = models.Item.objects
    for bad in (Sum("s"), Avg("t"), Sum("tags"), Min("j"), Max("tags"), Sum(), Min(),
                Sum("id")):
        with pytest.raises(QueryError):
            await run(qs, "aggregate", mode, x=bad)
    with pytest.raises(UnknownFieldError):
        await run(qs, "aggregate", mode, x=Sum("nope"))
    with pytest.raises(QueryError):
        await run(qs, "aggregate", mode)
    with pytest.raises(QueryError):
        await run(qs, "aggregate", mode, x="n")


async def test_values_list(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    qs = models.Item.objects.filter(b=True).order_by("id")
    ids = [i for i in sorted(docs) if docs[i].b is True]
    assert await run(qs.values_list("n", "s"), "all", mode) == [
        (docs[i].n, docs[i].s) for i in ids]
    assert await run(qs.values_list("id", "d", flat=False), "all", mode) == [
        (i, docs[i].d) for i in ids]
    assert await run(qs.values_list("t", flat=True), "all", mode) == [docs[i].t for i in ids]
    assert await run(qs.values_list("id", flat=True)[:3], "all", mode) == ids[:3]
    whole = await run(qs.values_list(), "all", mode)
    assert whole[0][0] == ids[0] and len(whole[0]) == 1 + len(models.Item._meta.fields)
    assert await run(qs.values_list("n", flat=True), "first", mode) == docs[ids[0]].n
    # values() after values_list() gives dicts again
    assert await run(qs.values_list("n").values("n"), "first", mode) == {
        "id": ids[0], "n": docs[ids[0]].n}
    with pytest.raises(QueryError):
        qs.values_list("n", "s", flat=True)
    with pytest.raises(QueryError):
        qs.values_list(flat=True)
    with pytest.raises(UnknownFieldError):
        qs.values_list("nope")


async def test_distinct(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    Item = models.Item
    assert await run(Item.objects, "distinct", mode, "n") == sorted(
        {d.n for d in docs.values() if d.n is not None})
    assert await run(Item.objects, "distinct", mode, "s") == sorted(
        {d.s for d in docs.values() if d.s is not None})
    # arrays: the distinct elements
    assert await run(Item.objects, "distinct", mode, "tags") == sorted(
        {t for d in docs.values() for t in d.tags or ()})
    decimals = await run(Item.objects, "distinct", mode, "d")
    assert decimals == sorted({d.d for d in docs.values() if d.d is not None})
    filtered = Item.objects.filter(b=False)
    assert await run(filtered, "distinct", mode, "t") == sorted(
        {d.t for d in docs.values() if d.b is False and d.t is not None})
    assert await run(Item.objects.filter(note="nothing"), "distinct", mode, "s") == []
    assert await run(Item.objects.filter(s="a"), "distinct", mode, "id") == sorted(
        i for i, d in docs.items() if d.s == "a")
    with pytest.raises(QueryError):
        await run(Item.objects, "distinct", mode, "j")
    with pytest.raises(UnknownFieldError):
        await run(Item.objects, "distinct", mode, "nope")


async def test_item_frequencies(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    Item = models.Item
    tags = Counter(t if d.tags is not None else None
                   for d in docs.values() for t in (d.tags if d.tags is not None else [None]))
    got = await run(Item.objects, "item_frequencies", mode, "tags")
    assert got == dict(tags)
    assert list(got) == [None, *sorted(k for k in tags if k is not None)]
    strings = Counter(d.s for d in docs.values())
    assert await run(Item.objects, "item_frequencies", mode, "s") == dict(strings)
    shares = await run(Item.objects.filter(b=True), "item_frequencies", mode, "n",
                       normalize=True)
    ns = Counter(d.n for d in docs.values() if d.b is True)
    total = sum(ns.values())
    assert shares.keys() == ns.keys()
    assert all(math.isclose(shares[k], ns[k] / total) for k in ns)
    assert await run(Item.objects.filter(note="nothing"), "item_frequencies", mode, "s") == {}
    with pytest.raises(QueryError):
        await run(Item.objects, "item_frequencies", mode, "j")


@pytest.mark.parametrize("where", WHERES, ids=[str(w) for w in WHERES])
async def test_counts_and_extremes_asked_of_the_store(models: Any, mode: str,
                                                      where: dict[str, Any]) -> None:
    """Only Count/Min/Max on an unsliced queryset: answered by counts and one-document
    ordered queries (the store's indexes), with the same results as Python's."""
    docs = await load(models, mode)
    matching = [d for d in docs.values() if all(getattr(d, k) == v for k, v in where.items())]
    want = {key: value for key, value in expected(matching).items()
            if key == "n" or key.startswith(("count_", "min_", "max_"))}
    wanted = {key: value for key, value in asked().items() if key in want}
    wanted["count_id"], want["count_id"] = Count("id"), len(matching)
    wanted["min_id"], want["min_id"] = Min("id"), min((d.id for d in matching), default=None)
    wanted["max_id"], want["max_id"] = Max("id"), max((d.id for d in matching), default=None)
    got = await run(models.Item.objects.filter(**where), "aggregate", mode, **wanted)
    assert got == want
    for key, value in want.items():
        assert type(got[key]) is type(value), key


async def test_sql_backends_read_only_the_fields_aggregated(models: Any, mode: str,
                                                            store: str) -> None:
    """On SQLite and PostgreSQL the documents' other fields never leave the server: the
    rows an aggregate reads hold the aggregated fields only, exact (10**20, 1e30, NULs)."""
    docs = await load(models, mode)
    connection = models.Item.objects._connection()
    backend = connection.backend
    project = getattr(backend, "project", None)
    if store == "redis":
        assert project is None  # (Redis reads whole documents: see the README)
        return
    assert project is not None
    options = models.Item._meta
    spec = QuerySpec(order=(Ordering("id"),))
    rows = await connection.arun(lambda b: project(options, spec, ["n", "s"]))
    assert [row.id for row in rows] == sorted(docs)
    for row in rows:
        doc = docs[row.id]
        assert set(row.data) == {"n", "s"}
        assert row.data == {"n": doc.n, "s": doc.s}
    whole = await connection.arun(lambda b: project(options, spec, []))
    assert all(row.data == {} for row in whole) and len(whole) == len(docs)
