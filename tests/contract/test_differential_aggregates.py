"""Differential test of aggregation: Redis, SQLite, PostgreSQL and a plain-Python evaluation
of ``aggregate()``, ``distinct()``, ``item_frequencies()`` and ``values_list()`` over the
same random queries and documents must agree, through the blocking API and asyncio.

Documents and conditions are :mod:`test_differential`'s strategies (every lookup on every
field type); each query is asked whole (Count/Min/Max are then answered by the store) and
sliced (everything is computed over the documents read). The Python side is written here:
exact sums with ``Fraction``, order by the documented value order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import MODELS, PROFILE, _key, documents, reference, stores, trees

from quantumorm import Avg, Count, Max, Min, Sum

__all__ = ["stores"]  # (the fixture, imported for the test below)


def asked(extremes_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"n": Count(), "cs": Count("s"), "ctags": Count("tags")}
    for name in ("s", "n", "f", "d", "t", "b"):
        out[f"lo_{name}"], out[f"hi_{name}"] = Min(name), Max(name)
    if not extremes_only:
        for name in ("n", "f", "d"):
            out[f"sum_{name}"], out[f"avg_{name}"] = Sum(name), Avg(name)
    return out


def expected(hits: list[dict[str, Any]], extremes_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(hits),
                           "cs": sum(d["s"] is not None for d in hits),
                           "ctags": sum(d["tags"] is not None for d in hits)}
    for name in ("s", "n", "f", "d", "t", "b"):
        values = [d[name] for d in hits if d[name] is not None]
        out[f"lo_{name}"] = min(values, key=_key) if values else None
        out[f"hi_{name}"] = max(values, key=_key) if values else None
    if not extremes_only:
        for name in ("n", "f", "d"):
            values = [d[name] for d in hits if d[name] is not None]
            exact = sum((Fraction(v) for v in values), Fraction(0))
            if not values:
                out[f"sum_{name}"] = out[f"avg_{name}"] = None
            elif name == "d":
                # the data's Decimals have 2 places: the exact sum is a whole number of cents
                total = Decimal(exact.numerator * 100 // exact.denominator) / 100
                assert Fraction(total) == exact
                out["sum_d"], out["avg_d"] = total, total / len(values)
            else:
                out[f"sum_{name}"] = int(exact) if name == "n" else float(exact)
                out[f"avg_{name}"] = float(exact / len(values))
    return out


def spread(hits: list[dict[str, Any]]) -> tuple[list[Any], dict[Any, int]]:
    tags = sorted({t for d in hits for t in d["tags"] or ()})
    words = Counter(d["s"] for d in hits)
    return tags, dict(words)


def _sync(qs: Any, extremes_only: bool) -> Any:
    return (qs.aggregate_sync(**asked(extremes_only)), qs.distinct_sync("tags"),
            qs.item_frequencies_sync("s"), qs.values_list("n", flat=True).all_sync())


async def _async(qs: Any, extremes_only: bool) -> Any:
    return (await qs.aggregate(**asked(extremes_only)), await qs.distinct("tags"),
            await qs.item_frequencies("s"), await qs.values_list("n", flat=True).all())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_aggregates_agree_with_python(stores: Any, mode: str) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(docs=documents, queries=st.lists(st.tuples(
        trees, st.one_of(st.none(), st.tuples(st.integers(0, 4), st.integers(0, 8)))),
        min_size=1, max_size=3))
    def check(docs: list[dict[str, Any]], queries: list[Any]) -> None:
        stored = [{"id": ("k:0" if i == 0 else str(i)), **d} for i, d in enumerate(docs)]
        cleaned = None
        for model in MODELS.values():
            model.objects.delete_sync()
            saved = model.objects.bulk_create_sync([model(**d) for d in stored])
            cleaned = [doc.to_dict() for doc in saved]
        assert cleaned is not None
        by_id = {d["id"]: d for d in cleaned}
        for (q, predicate), window in queries:
            ids = reference(cleaned, predicate, ["id"])
            if window is not None:
                ids = ids[window[0]:window[0] + window[1]]
            hits = [by_id[i] for i in ids]
            for extremes_only in (True, False):
                want = (expected(hits, extremes_only), *spread(hits),
                        [d["n"] for d in hits])
                for backend, model in MODELS.items():
                    qs = model.objects.filter(q).order_by("id")
                    if window is not None:
                        qs = qs[window[0]:window[0] + window[1]]
                    got = (_sync(qs, extremes_only) if mode == "sync"
                           else asyncio.run(_async(qs, extremes_only)))
                    assert got == want, (backend, mode, q, window, extremes_only)
                    assert list(got[2]) == sorted(want[2], key=lambda k: (
                        k is not None, _key(k) if k is not None else b"")), backend

    check()
