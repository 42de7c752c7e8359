"""bulk_create: one insert_many.lua call per partition and batch, documents checked one by one."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import (
    BulkWriteError,
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
)


class Member(Document):
    email = StringField(unique=True)
    team = StringField(indexed=True)
    rank = IntField(indexed=True)

    class Meta:
        collection = "b_members"
        indexes = [{"fields": ["team", "rank"], "unique": True, "name": "team_rank"}]


class Spread(Document):
    team = StringField(indexed=True)
    rank = IntField(indexed=True)

    class Meta:
        collection = "b_spread"
        partitions = 4


@pytest.mark.parametrize("mode", MODES)
async def test_refused_documents_are_reported_and_the_others_written(
        conn: Any, redis_client: Any, mode: str) -> None:
    taken = await call(Member(id="taken", email="first@x", team="a", rank=1), "save", mode)
    batch = [
        Member(id="m1", email="one@x", team="a", rank=2),
        Member(id="taken", email="dup-id@x", team="b", rank=1),   # id exists
        Member(id="m2", email="one@x", team="b", rank=2),         # email of m1 (same batch)
        Member(id="m3", email="three@x", team="a", rank=2),       # (team, rank) of m1
        Member(id="m1", email="again@x", team="c", rank=9),       # id of m1 (same batch)
        Member(id="m4", email="four@x", team=None, rank=2),       # null part: not unique
        Member(id="m5", email="five@x", team=None, rank=2),
        Member(email="auto@x", team="z", rank=0),                 # auto id
    ]
    with pytest.raises(BulkWriteError) as caught:
        await call(Member.objects, "bulk_create", mode, batch)
    failed = {position: type(error) for position, error in caught.value.errors}
    assert failed == {1: DuplicateIdError, 2: UniqueViolation, 3: UniqueViolation,
                      4: DuplicateIdError}
    assert {d.id for d in caught.value.written} == {"m1", "m4", "m5", "1"}
    stored = {d.id: d for d in await call(Member.objects, "all", mode)}
    assert set(stored) == {"taken", "m1", "m4", "m5", "1"}
    assert stored["taken"].email == "first@x" and stored["m1"].email == "one@x"
    # each document written once: "taken" keeps its version, the others the batch's
    assert {id: d.version for id, d in stored.items()} == {
        "taken": taken.version, **{d.id: d.version for d in caught.value.written}}
    assert all(d.version > taken.version > 0 for d in caught.value.written)
    assert_indexes_consistent(redis_client, Member)


@pytest.mark.parametrize("mode", MODES)
async def test_bulk_over_several_partitions(conn: Any, redis_client: Any, mode: str) -> None:
    docs = [Spread(team=f"t{i % 3}", rank=i) for i in range(300)]
    written = await call(Spread.objects, "bulk_create", mode, docs, batch_size=64)
    assert len({d.id for d in written}) == 300 and all(d.version > 0 for d in written)
    stored = await call(Spread.objects, "all", mode)
    assert {d.id: d.version for d in stored} == {d.id: d.version for d in written}
    assert await call(Spread.objects.filter(team="t1"), "count", mode) == 100
    ranks = [d.rank for d in await call(Spread.objects.order_by("-rank").limit(5), "all", mode)]
    assert ranks == [299, 298, 297, 296, 295]
    assert_indexes_consistent(redis_client, Spread)
