"""The Redis read paths that skip work for a repeated query (issue 12): a count's calls
made once per plan, query.lua's exact walks answered before its planner is built. Each is
checked against what the long path answers, and against a schema that moves under it."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import quantumorm
from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.keys import KeySpace


class Walked(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    note = StringField()

    class Meta:
        collection = "read_paths_walked"


def test_a_repeated_count_follows_a_layout_another_process_moved(
        conn: Any, redis_client: Any) -> None:
    """The count's calls are kept with its cached plan; when another process moves the
    schema layout on (a reindex), the next count of the same query is refused by count.lua,
    reads the schema again and is sent with the new layout (not the kept calls)."""
    Walked.objects.bulk_create_sync([Walked(name=f"n{i % 3}", age=i) for i in range(30)])
    query = Walked.objects.filter(age__gte=10, age__lt=20)
    assert query.count_sync() == 10
    assert query.count_sync() == 10  # (the kept calls)
    key = KeySpace(Walked._meta).schema
    before = int(redis_client.hget(key, "layout"))
    quantumorm.create_connection(url=conn.url, name="read_paths_other")
    assert Walked.objects.using("read_paths_other").reindex_sync().ready
    assert int(redis_client.hget(key, "layout")) > before
    assert query.count_sync() == 10
    Walked(name="n9", age=15).save_sync()
    assert query.count_sync() == 11
    assert Walked.objects.filter(name="n1").count_sync() == 10


@pytest.mark.parametrize("desc", [False, True])
def test_exact_walks_return_the_windows_of_the_long_path(conn: Any, desc: bool) -> None:
    """Equality and range walks with offsets and limits, ascending and descending, over
    numeric and other ids: the rows, in order, that sorting every match in Python gives."""
    docs = [Walked(id=str(i) if i % 4 else f"k{i}", name=f"n{i % 3}", age=i % 7)
            for i in range(1, 60)]
    Walked.objects.bulk_create_sync(docs)
    def natural(id: str) -> tuple[int, Any]:
        return (0, int(id)) if id.isdigit() else (1, id)

    for offset, limit in [(0, None), (0, 5), (3, 4), (50, 10), (0, 0)]:
        by_name = sorted((d for d in docs if d.name == "n1"), key=lambda d: natural(d.id),
                         reverse=desc)
        query = Walked.objects.filter(name="n1").order_by("-id" if desc else "id")
        got = query[offset:None if limit is None else offset + limit].all_sync()
        want = by_name[offset:None if limit is None else offset + limit]
        assert [d.id for d in got] == [d.id for d in want]
        by_age = sorted((d for d in docs if 2 <= d.age < 5),
                        key=lambda d: (d.age, natural(d.id)), reverse=desc)
        query = Walked.objects.filter(age__gte=2, age__lt=5).order_by("-age" if desc else "age")
        got = query[offset:None if limit is None else offset + limit].all_sync()
        want = by_age[offset:None if limit is None else offset + limit]
        assert [(d.id, d.age, d.version) for d in got] == [
            (d.id, d.age, d.version) for d in want]


def test_bounds_past_what_a_lua_number_holds_exactly(conn: Any) -> None:
    """Offsets and limits beyond 2**53 (``[:sys.maxsize]``) reach query.lua as numbers it
    can pass on: a limit that large means all rows, an offset that large none."""
    Walked.objects.bulk_create_sync([Walked(name=f"n{i % 3}", age=i) for i in range(30)])
    huge = sys.maxsize
    assert len(Walked.objects.filter(name="n1")[:huge].all_sync()) == 10
    assert [w.age for w in Walked.objects.order_by("age")[2:huge].all_sync()] == list(
        range(2, 30))
    assert len(Walked.objects.filter(name="n1", age__gt=3)[:huge].all_sync()) == 9
    assert Walked.objects.order_by("age")[huge:].all_sync() == []
    assert Walked.objects.filter(name="n1")[2**60:2**61].all_sync() == []
    assert len(Walked.objects.filter(name="n1")[5:2**60].all_sync()) == 5
