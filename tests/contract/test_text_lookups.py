"""Case-insensitive and pattern lookups on every backend, sync and async.

``iexact``/``icontains``/``istartswith``/``iendswith`` compare ``str.casefold()`` of both
sides; ``regex``/``iregex`` are ``re.search`` (``re.IGNORECASE`` for ``iregex``). Expected
results are computed here with plain Python over the documents written, never by the
library; the words are chosen where ASCII-only or collation-dependent folding would differ
("ß", "İ", "Σ"/"ς", accents, decomposed accents, NUL).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from contract_models import run

from quantumorm import QueryError

WORDS = [None, "Straße", "STRASSE", "strasse", "İstanbul", "istanbul", "ISTANBUL",
         "ΣΊΣΥΦΟΣ", "σίσυφος", "Éclair", "éclair", "E\u0301clair", "a\x00B", "A\x00b", "",
         "naïve", "NAÏVE", "Ǆemal", "ǆemal"]


async def load(models: Any, mode: str) -> dict[str, Any]:
    docs = [models.Item(id=f"w{i:02d}", s=word, note=word, n=i)
            for i, word in enumerate(WORDS)]
    await run(models.Item.objects, "bulk_create", mode, docs)
    return {d.id: d for d in docs}


def _fold(value: str) -> str:
    return value.casefold()


CASES: list[tuple[str, str, Any]] = [
    ("iexact", "strasse", lambda v, w: _fold(v) == _fold(w)),
    ("iexact", "STRAßE", lambda v, w: _fold(v) == _fold(w)),
    ("iexact", "éCLAIR", lambda v, w: _fold(v) == _fold(w)),
    ("iexact", "", lambda v, w: _fold(v) == _fold(w)),
    ("iexact", "a\x00b", lambda v, w: _fold(v) == _fold(w)),
    ("icontains", "SS", lambda v, w: _fold(w) in _fold(v)),
    ("icontains", "ß", lambda v, w: _fold(w) in _fold(v)),
    ("icontains", "Ï", lambda v, w: _fold(w) in _fold(v)),
    ("icontains", "", lambda v, w: _fold(w) in _fold(v)),
    ("istartswith", "i", lambda v, w: _fold(v).startswith(_fold(w))),
    ("istartswith", "İ", lambda v, w: _fold(v).startswith(_fold(w))),
    ("istartswith", "ǅ", lambda v, w: _fold(v).startswith(_fold(w))),
    ("iendswith", "ς", lambda v, w: _fold(v).endswith(_fold(w))),
    ("iendswith", "Σ", lambda v, w: _fold(v).endswith(_fold(w))),
    ("iendswith", "LAIR", lambda v, w: _fold(v).endswith(_fold(w))),
    ("regex", r"^[A-Z]", lambda v, w: re.search(w, v) is not None),
    ("regex", r"s{2}|ß", lambda v, w: re.search(w, v) is not None),
    ("regex", r"\x00", lambda v, w: re.search(w, v) is not None),
    ("regex", r"^\w+$", lambda v, w: re.search(w, v) is not None),
    # literal patterns: served as startswith / endswith / exact / contains
    ("regex", r"^Str", lambda v, w: re.search(w, v) is not None),
    ("regex", r"SSE\Z", lambda v, w: re.search(w, v) is not None),
    ("regex", r"^strasse\Z", lambda v, w: re.search(w, v) is not None),
    ("regex", "a\x00", lambda v, w: re.search(w, v) is not None),
    ("iregex", r"^é", lambda v, w: re.search(w, v, re.IGNORECASE) is not None),
    ("iregex", r"σ$", lambda v, w: re.search(w, v, re.IGNORECASE) is not None),
    ("iregex", r"STRASSE", lambda v, w: re.search(w, v, re.IGNORECASE) is not None),
]


@pytest.mark.parametrize("field", ["s", "note"])  # indexed, and not
@pytest.mark.parametrize("lookup, value, predicate", CASES,
                         ids=[f"{c[0]}-{c[1]!r}" for c in CASES])
async def test_text_lookup(models: Any, mode: str, field: str, lookup: str, value: str,
                           predicate: Any) -> None:
    docs = await load(models, mode)
    want = sorted(i for i, d in docs.items()
                  if getattr(d, field) is not None and predicate(getattr(d, field), value))
    qs = models.Item.objects.filter(**{f"{field}__{lookup}": value})
    assert sorted(d.id for d in await run(qs, "all", mode)) == want
    assert await run(qs, "count", mode) == len(want)
    assert await run(qs, "exists", mode) == bool(want)
    excluded = models.Item.objects.exclude(**{f"{field}__{lookup}": value})
    assert sorted(d.id for d in await run(excluded, "all", mode)) == sorted(set(docs) - set(want))


async def test_combined_ordered_and_sliced(models: Any, mode: str) -> None:
    """With other conditions, an ordering and a window: the window is taken after the
    case-insensitive test, whichever side (server or client) runs it."""
    docs = await load(models, mode)
    Item = models.Item
    want = sorted((d for d in docs.values() if d.s is not None and d.n >= 2
                   and "s" in d.s.casefold()), key=lambda d: -d.n)
    qs = Item.objects.filter(n__gte=2, s__icontains="S").order_by("-n")
    assert [d.id for d in await run(qs[1:4], "all", mode)] == [d.id for d in want[1:4]]
    assert await run(qs[1:4], "count", mode) == len(want[1:4])
    either = Item.objects.filter(Item.s.iexact("strasse") | Item.note.regex(r"^n"))
    assert sorted(d.id for d in await run(either, "all", mode)) == sorted(
        i for i, d in docs.items() if d.s is not None and (
            d.s.casefold() == "strasse" or re.search(r"^n", d.s) is not None))
    # update-where and delete-where re-check the same condition
    # ("İstanbul" folds to "i" + U+0307 + "stanbul": not a match)
    changed = await run(Item.objects.filter(s__istartswith="ISTAN"), "update", mode, n=100)
    assert changed == 2
    removed = await run(Item.objects.filter(note__iregex="^naïve$"), "delete", mode)
    assert removed == 2
    assert await run(Item.objects.filter(n=100), "count", mode) == 2
    assert not await run(Item.objects.filter(note__iexact="NAÏVE"), "exists", mode)


async def test_explain_says_where_it_is_checked(models: Any, mode: str, store: str) -> None:
    await load(models, mode)
    plan = await run(models.Item.objects.filter(n__gte=3, s__icontains="ss"), "explain", mode)
    if store == "sqlite":  # the evaluator runs inside SQLite, as a registered function
        assert plan.client_filter is None and "qorm_text" in (plan.server_filter or "")
    else:  # Redis and PostgreSQL: in Python, over the rows the other conditions select
        assert plan.client_filter is not None and "icontains" in plan.client_filter
    alone = await run(models.Item.objects.filter(note__regex="x+"), "explain", mode)
    assert alone.scanned
    # a literal prefix pattern is a startswith: the server filters it (Redis: by index)
    prefix = await run(models.Item.objects.filter(s__regex="^Str"), "explain", mode)
    assert prefix.client_filter is None
    if store == "redis":
        assert not prefix.scanned and "s" in prefix.indexes


@pytest.mark.parametrize("lookup, value", [("regex", "("), ("iregex", "[a-"),
                                           ("icontains", 3), ("regex", None)])
def test_bad_values_fail_when_built(models: Any, lookup: str, value: Any) -> None:
    with pytest.raises(QueryError, match=lookup):
        models.Item.objects.filter(**{f"s__{lookup}": value})


def test_iexact_none_is_isnull(models: Any) -> None:
    assert repr(models.Item.objects.filter(s__iexact=None).spec.where) == "s__isnull=True"
