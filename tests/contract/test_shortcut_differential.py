"""Differential test of the shortcuts that change a query: querysets combined with | and &,
last() and at(-k) (the reversed order), none(). Redis, SQLite, PostgreSQL, the reference
evaluator (:mod:`quantumorm.query.evaluate`) and this suite's own Python rules
(``test_differential.reference``) must agree, through the blocking API and asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import MODELS, PROFILE, documents, orderings, reference, trees
from test_differential import stores as stores  # noqa: PLC0414 - the fixture, re-exported

from reference_queries import expected_ids

WANT_AT = (0, 1, -1, -2)


def _answers_sync(qs: Any, combined: Any) -> dict[str, Any]:
    """The answers of one backend: ids of ``combined``, and ``qs``'s last() and at(k)."""
    out: dict[str, Any] = {"combined": [d.id for d in combined.all_sync()],
                           "none": qs.none().all_sync(), "last": qs.last_sync()}
    for k in WANT_AT:
        try:
            out[k] = qs.at_sync(k).id
        except IndexError:
            out[k] = None
    return out


async def _answers(qs: Any, combined: Any) -> dict[str, Any]:
    out = {"combined": [d.id for d in await combined.all()], "none": await qs.none().all(),
           "last": await qs.last()}
    for k in WANT_AT:
        try:
            out[k] = (await qs.at(k)).id
        except IndexError:
            out[k] = None
    return out


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_combined_reversed_and_empty_querysets_agree(stores: Any, mode: str) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(docs=documents, queries=st.lists(
        st.tuples(trees, trees, orderings, st.booleans()), min_size=1, max_size=2))
    def check(docs: list[dict[str, Any]], queries: list[Any]) -> None:
        stored = [{"id": ("k:0" if i == 0 else str(i)), **d} for i, d in enumerate(docs)]
        saved: dict[str, list[Any]] = {}
        for backend, model in MODELS.items():
            model.objects.delete_sync()
            saved[backend] = model.objects.bulk_create_sync([model(**d) for d in stored])
        cleaned = [doc.to_dict() for doc in saved["sqlite"]]
        for (q1, p1), (q2, p2), order, use_or in queries:
            if use_or:
                rule = (lambda d, a=p1, b=p2: a(d) or b(d))
            else:
                rule = (lambda d, a=p1, b=p2: a(d) and b(d))
            want_combined = reference(cleaned, rule, order)
            want_one = reference(cleaned, p1, order)
            for backend, model in MODELS.items():
                qs = model.objects.filter(q1).order_by(*order)
                other = model.objects.filter(q2).order_by(*order)
                combined = (qs | other) if use_or else (qs & other)
                assert expected_ids(model, saved[backend], combined) == want_combined
                assert expected_ids(model, saved[backend], qs.reverse()) == want_one[::-1]
                # (async: a loop per example, as in test_differential)
                got = (asyncio.run(_answers(qs, combined)) if mode == "async"
                       else _answers_sync(qs, combined))
                where = (backend, mode, q1, q2, order, use_or)
                assert got["combined"] == want_combined, where
                assert got["none"] == [], where
                assert (got["last"] and got["last"].id) == (want_one[-1] if want_one
                                                             else None), where
                for k in WANT_AT:
                    inside = -len(want_one) <= k < len(want_one)
                    assert got[k] == (want_one[k] if inside else None), (where, k)

    check()
