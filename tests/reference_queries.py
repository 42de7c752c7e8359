"""What a backend must answer for a query, computed in Python with the reference evaluator
(:mod:`quantumorm.query.evaluate`), and the check every backend differential test runs."""

from __future__ import annotations

from typing import Any

from quantumorm import Document, Q
from quantumorm.query import evaluate


def expected_ids(model: type[Document], docs: list[Document], query: Any) -> list[str]:
    """The ids ``query`` must return over ``docs``, in order, keyset position and slice
    applied."""
    spec = query.spec
    options = model._meta
    hits = [d for d in docs if evaluate.matches(options, spec.where, d._values())]
    keyed = [(evaluate.sort_keys(options, spec.order, d._values()), d) for d in hits]
    descending = evaluate.directions(spec.order)
    if spec.after is not None:
        keyed = [(k, d) for k, d in keyed if evaluate.compare_keys(k, spec.after, descending) > 0]
    ordered = evaluate.sort_rows(keyed, lambda item: item[0], descending)
    end = None if spec.limit is None else spec.offset + spec.limit
    return [str(d.id) for _, d in ordered][spec.offset:end]


def assert_query_agrees(model: type[Document], reference: list[Document], where: Q,
                        order: list[str], offset: int, limit: int | None,
                        cursor_at: int | None) -> None:
    """Build the query (with a keyset position at ``reference[cursor_at]`` if given), then
    compare the backend's rows, count() and exists() with the reference."""
    qs = model.objects.filter(where).order_by(*order)
    if cursor_at is not None:
        anchor = reference[cursor_at % len(reference)]
        qs = qs.after(qs.cursor_for(anchor))
    qs = qs[offset:] if limit is None else qs[offset:offset + limit]
    want = expected_ids(model, reference, qs)
    got = [d.id for d in qs.all_sync()]
    assert got == want, (qs.spec, qs.explain_sync())
    assert qs.count_sync() == len(want)
    assert qs.exists_sync() == bool(want)
