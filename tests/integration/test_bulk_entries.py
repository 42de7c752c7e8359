"""bulk_create's index entries (built from remembered encodings, sent to insert_many.lua as
one MessagePack array per index) are those a save writes: arrays of more than 15 elements
(a longer array header), repeated and case-folded elements, values that repeat across the
batch, nulls, values longer than the listpack limit; every index consistent after."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import ArrayField, Document, EnumField, FloatField, IntField, StringField


class Size(enum.IntEnum):
    S = 1
    L = 2


class Entry(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    x = FloatField(indexed=True)
    size = EnumField(Size, indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "b_entries"
        indexes = [("name", "n"), {"fields": ["name"], "casefold": True}]


def _docs(prefix: str) -> list[Entry]:
    many = [f"tag number {i} of a long list" for i in range(40)]  # (> 15; > 64 bytes)
    return [Entry(id=f"{prefix}{i}",
                  name=None if i % 7 == 0 else ("Ann" if i % 2 else "ann") * (1 + 30 * (i == 3)),
                  n=None if i % 5 == 0 else i % 4, x=[-0.0, 0.0, 1.5][i % 3],
                  size=Size.S if i % 2 else None,
                  tags=many[:i % 41] + ["dup", "dup", "DUP"] if i % 6 else None)
            for i in range(60)]


@pytest.mark.parametrize("mode", MODES)
async def test_bulk_entries_equal_those_of_saves(conn: Any, redis_client: Any,
                                                 mode: str) -> None:
    await call(Entry.objects, "bulk_create", mode, _docs("b"), batch_size=25)
    for doc in _docs("s"):  # the same documents, one save each
        await call(doc, "save", mode)
    stored = assert_indexes_consistent(redis_client, Entry)
    assert len(stored) == 120
    for lookup in ({"tags__contains": "tag number 39 of a long list"}, {"tags__contains": "dup"},
                   {"name": "ann"}, {"name__iexact": "ANN"}, {"n": 3}, {"n__isnull": True},
                   {"x": 0.0}, {"size": Size.S}, {"name": "Ann" * 31}, {"name": "ann", "n": 2}):
        ids = {d.id for d in await call(Entry.objects.filter(**lookup), "all", mode)}
        # every bulk document is found where its saved twin is, and only there
        assert ids and {id[1:] for id in ids if id[0] == "b"} == {
            id[1:] for id in ids if id[0] == "s"}, lookup
    assert (await call(Entry.objects, "verify", mode)).ok
