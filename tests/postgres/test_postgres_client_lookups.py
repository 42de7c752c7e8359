"""Limited queries with a condition PostgreSQL cannot answer exactly (case-folded and
pattern lookups, checked in Python): the candidates are read in growing keyset batches until
the window is full, so a page reads a bounded number of rows, not the rest of the table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from postgres_helpers import MODES, call

from quantumorm import Document, IntField, StringField, metrics
from quantumorm.backends.postgres import backend as pg_backend


class Word(Document):
    text = StringField()
    rank = IntField(indexed=True)

    class Meta:
        backend = "postgres"
        collection = "words"


#: 700 words; every 97th holds "ẞ" (case-folds to "ss"): 7 matches, far apart
MATCHES = [n for n in range(700) if n % 97 == 50]


async def _load(mode: str) -> None:
    await call(Word.objects, "bulk_create", mode,
               [Word(id=f"w{n:03}", text=("Straẞe" if n in MATCHES else "road") + str(n),
                     rank=n % 7) for n in range(700)])


def _round_trips() -> int:
    return sum(s.round_trips for s in metrics.snapshot().operations
               if s.model == "Word" and s.operation == "all")


@pytest.mark.parametrize("mode", MODES)
async def test_windows_over_a_python_condition_are_exact(pg: Any, mode: str) -> None:
    await _load(mode)
    matching = Word.objects.filter(text__icontains="STRASS")
    everything = [w.id for w in await call(matching, "all", mode)]
    assert everything == [f"w{n:03}" for n in MATCHES]
    for order in (("rank",), ("-rank",), ("-text",)):
        ordered = [w.id for w in await call(matching.order_by(*order), "all", mode)]
        assert sorted(ordered) == everything
        for start, stop in ((0, 1), (0, 3), (2, 5), (5, 7), (6, 20), (7, 9)):
            page = await call(matching.order_by(*order)[start:stop], "all", mode)
            assert [w.id for w in page] == ordered[start:stop]
        # keyset pages walk the same order with nothing skipped or repeated
        chunks = matching.order_by(*order).iterator(chunk_size=3)
        walked = ([w.id async for w in chunks] if mode == "async"
                  else await asyncio.to_thread(lambda it=chunks: [w.id for w in it]))
        assert walked == ordered


async def test_a_first_page_reads_one_batch_when_it_fills_it(pg: Any) -> None:
    await _load("async")
    metrics.enable()
    try:
        metrics.reset()
        assert (await Word.objects.filter(text__iregex=r"^road").order_by("id")[:5].all()
                )[0].id == "w000"
        assert _round_trips() == 1  # five matches in the first batch of RESIDUE_BATCH rows
        metrics.reset()
        first = await Word.objects.filter(text__icontains="strasse").order_by("id")[:1].all()
        assert [w.id for w in first] == [f"w{MATCHES[0]:03}"]
        assert _round_trips() == 1  # the first match is inside the first batch
        metrics.reset()
        last = await Word.objects.filter(text__icontains="strasse").order_by("id")[6:7].all()
        assert [w.id for w in last] == [f"w{MATCHES[6]:03}"]
        # 100, then 200, then 400 rows: three reads, not one of the whole table per page
        assert pg_backend.RESIDUE_BATCH == 100 and _round_trips() == 3
    finally:
        metrics.disable()
