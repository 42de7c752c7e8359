"""The familiar QuerySet shortcuts on every backend and in both modes: the callable manager,
last() and at(), none(), in_bulk(), get_or_create() / update_or_create(), iterator(),
querysets combined with | and &."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    Document,
    DuplicateIdError,
    IntField,
    InvalidOperation,
    Q,
    QueryError,
    StringField,
    UniqueViolation,
    UnknownFieldError,
    ValidationError,
    metrics,
)


async def _items(models: Any, mode: str, count: int = 5) -> None:
    for i in range(count):
        await run(models.Item(id=f"i{i}", n=i % 3, s=f"s{i}"), "save", mode)


def _ids(docs: Any) -> list[str]:
    return [doc.id for doc in docs]


async def test_the_manager_called_is_filter(models: Any, mode: str) -> None:
    await _items(models, mode)
    Item = models.Item
    called = await run(Item.objects(n=1).order_by("id"), "all", mode)
    assert _ids(called) == _ids(await run(Item.objects.filter(n=1).order_by("id"), "all", mode))
    assert _ids(called) == ["i1", "i4"]
    assert await run(Item.objects(Q(n=0) | Q(s="s1")), "count", mode) == 3
    assert await run(Item.objects(n=0)(s="s3"), "count", mode) == 1
    assert await run(Item.objects(), "count", mode) == 5


async def test_last_is_the_first_of_the_reversed_order(models: Any, mode: str) -> None:
    Item = models.Item
    assert await run(Item.objects, "last", mode) is None
    await _items(models, mode)
    assert (await run(Item.objects, "last", mode)).id == "i4"  # by id descending
    assert (await run(Item.objects.order_by("n", "-s"), "last", mode)).id == "i2"
    assert (await run(Item.objects.order_by("-n", "s"), "last", mode)).id == "i3"
    assert (await run(Item.objects.filter(n=1).order_by("s"), "last", mode)).id == "i4"
    with pytest.raises(QueryError, match="sliced"):
        await run(Item.objects[1:3], "last", mode)


async def test_at_reads_one_document_by_position(models: Any, mode: str) -> None:
    await _items(models, mode)
    qs = models.Item.objects.order_by("-s")
    assert [(await run(qs, "at", mode, i)).id for i in (0, 1, 4, -1, -2, -5)] == [
        "i4", "i3", "i0", "i0", "i1", "i4"]
    for index in (5, -6):
        with pytest.raises(IndexError, match=f"index {index} is out of range"):
            await run(qs, "at", mode, index)
    assert (await run(qs[1:], "at", mode, 1)).id == "i2"  # within the slice
    with pytest.raises(QueryError, match="sliced"):
        await run(qs[1:], "at", mode, -1)
    with pytest.raises(TypeError, match=r"at\(0\)"):
        qs[0]


async def test_none_matches_nothing_and_sends_nothing(models: Any, mode: str) -> None:
    await _items(models, mode)
    Item = models.Item
    empty = Item.objects.none()
    assert await run(empty, "all", mode) == []
    assert await run(empty, "count", mode) == 0
    assert await run(empty, "exists", mode) is False
    assert await run(empty, "first", mode) is None
    assert await run(empty.filter(n=1), "count", mode) == 0
    assert await run(empty, "in_bulk", mode, ["i1"]) == {}
    assert await run(empty, "delete", mode) == 0
    assert await run(Item.objects, "count", mode) == 5  # delete of none() deleted nothing
    assert await run(empty | Item.objects.filter(n=1), "count", mode) == 2



async def test_none_sends_no_round_trip(models: Any, mode: str) -> None:
    await _items(models, mode, 2)
    empty = models.Item.objects.none()
    metrics.enable()
    try:
        metrics.reset()
        for name, args in (("all", ()), ("count", ()), ("exists", ()), ("first", ()),
                           ("last", ()), ("in_bulk", (["i1"],)), ("delete", ()),
                           ("update", ())):
            kwargs = {"n": 3} if name == "update" else {}
            await run(empty, name, mode, *args, **kwargs)
        stats = metrics.snapshot().operations
    finally:
        metrics.disable()
        metrics.reset()
    assert sorted(s.operation for s in stats) == sorted(
        ["all", "count", "exists", "first", "last", "in_bulk", "delete", "update"])
    assert [s.round_trips for s in stats] == [0] * len(stats)


async def test_in_bulk_maps_ids_to_documents(models: Any, mode: str) -> None:
    await _items(models, mode)
    Item = models.Item
    found = await run(Item.objects, "in_bulk", mode, ["i3", "nope", "i1", "i3"])
    assert sorted(found) == ["i1", "i3"] and found["i3"].s == "s3"
    assert await run(Item.objects, "in_bulk", mode, []) == {}
    filtered = await run(Item.objects.filter(n=1), "in_bulk", mode, ["i1", "i2", "i4"])
    assert sorted(filtered) == ["i1", "i4"]
    values = await run(Item.objects.values("s"), "in_bulk", mode, ["i2"])
    assert values == {"i2": {"id": "i2", "s": "s2"}}


async def test_get_or_create(models: Any, mode: str) -> None:
    Account = models.Account
    doc, created = await run(Account.objects, "get_or_create", mode, {"age": 3}, email="a@x")
    assert created and (doc.email, doc.age) == ("a@x", 3) and doc.version > 0
    again, created = await run(Account.objects, "get_or_create", mode, {"age": 9},
                               email="a@x")
    assert not created and (again.id, again.age) == (doc.id, 3)
    by_id, created = await run(Account.objects, "get_or_create", mode, {"email": "b@x"},
                               id="b")
    assert created and by_id.id == "b"
    # a lookup that is not exact finds but does not create; defaults give the value
    other, created = await run(Account.objects, "get_or_create", mode,
                               {"email": "c@x", "age": 50}, age__gte=40)
    assert created and other.age == 50
    # Django's form: defaults= by keyword (not a lookup on a field named "defaults")
    keyword, created = await run(Account.objects, "get_or_create", mode,
                                 email="k@x", defaults={"age": 7})
    assert created and (keyword.email, keyword.age) == ("k@x", 7)
    again, created = await run(Account.objects, "update_or_create", mode,
                               email="k@x", defaults={"age": 8})
    assert not created and again.id == keyword.id and again.age == 8
    await run(again, "delete", mode)
    assert await run(Account.objects, "count", mode) == 3
    await run(Account(email="d@x", age=3), "save", mode)
    with pytest.raises(Account.MultipleObjectsReturned):
        await run(Account.objects, "get_or_create", mode, age=3)
    for refused in (Account.objects[:1], Account.objects.only("age"),
                    Account.objects.values("age")):
        for name in ("get_or_create", "update_or_create"):
            with pytest.raises(QueryError, match="whole documents"):
                await run(refused, name, mode, email="a@x")


async def test_get_or_create_under_a_race_returns_one_document(models: Any, mode: str) -> None:
    Account = models.Account

    async def one() -> tuple[Any, bool]:
        return tuple(await run(Account.objects, "get_or_create", mode, {"age": 1},
                               email="race@x"))

    results = await asyncio.gather(*(one() for _ in range(8)))
    assert sum(created for _, created in results) == 1
    assert len({doc.id for doc, _ in results}) == 1
    assert await run(Account.objects, "count", mode) == 1


async def test_a_lost_insert_race_reads_the_winner(models: Any, mode: str) -> None:
    # the winner is not visible to the lookup (another email): the store's refusal is raised
    Account = models.Account
    await run(Account(id="x", email="x@x"), "save", mode)
    with pytest.raises(DuplicateIdError):
        await run(Account.objects, "get_or_create", mode, {"email": "y@x"}, id="x", age=5)
    with pytest.raises(UniqueViolation):
        await run(Account.objects, "get_or_create", mode, {"email": "x@x"}, age=7)


async def test_update_or_create(models: Any, mode: str) -> None:
    Account = models.Account
    doc, created = await run(Account.objects, "update_or_create", mode, {"age": 1},
                             email="u@x")
    assert created and doc.age == 1
    doc2, created = await run(Account.objects, "update_or_create", mode, {"age": 2},
                              email="u@x")
    assert not created and doc2.id == doc.id and doc2.age == 2 and doc2.version > doc.version
    stored = await run(Account.objects, "get", mode, id=doc.id)
    assert stored.age == 2
    # no defaults: found as is, or created from the lookups
    same, created = await run(Account.objects, "update_or_create", mode, email="u@x")
    assert not created and same.age == 2
    with pytest.raises(QueryError, match="defaults"):
        await run(Account.objects, "update_or_create", mode, [("age", 1)], email="u@x")


async def test_update_or_create_under_a_race(models: Any, mode: str) -> None:
    Account = models.Account

    async def one(age: int) -> tuple[Any, bool]:
        return tuple(await run(Account.objects, "update_or_create", mode, {"age": age},
                               email="race@x"))

    results = await asyncio.gather(*(one(age) for age in range(6)))
    assert sum(created for _, created in results) == 1
    stored = await run(Account.objects, "get", mode, email="race@x")
    assert stored.age in range(6)
    assert await run(Account.objects, "count", mode) == 1


async def test_iterator_reads_in_chunks(models: Any, mode: str) -> None:
    await _items(models, mode, 7)
    qs = models.Item.objects.order_by("-n", "s")
    expected = _ids(await run(qs, "all", mode))
    if mode == "sync":
        got = await asyncio.to_thread(lambda: [d.id for d in qs.iterator(chunk_size=2)])
    else:
        got = [d.id async for d in qs.iterator(chunk_size=2)]
    assert got == expected
    with pytest.raises(QueryError, match="chunk_size"):
        qs.iterator(chunk_size=0)


async def test_querysets_combine_with_or_and_and(models: Any, mode: str) -> None:
    await _items(models, mode)
    Item = models.Item
    either = Item.objects.filter(n=0) | Item.objects.filter(s="s1")
    assert _ids(await run(either.order_by("id"), "all", mode)) == ["i0", "i1", "i3"]
    both = Item.objects.filter(n=0) & Item.objects.filter(s="s3")
    assert _ids(await run(both, "all", mode)) == ["i3"]
    assert await run(Item.objects | Item.objects.filter(n=1), "count", mode) == 5
    with pytest.raises(QueryError, match="order"):
        Item.objects.order_by("s") | Item.objects
    with pytest.raises(QueryError):
        Item.objects[:2] | Item.objects[:2]
    with pytest.raises(QueryError, match="cannot be combined"):
        Item.objects | models.Account.objects


ORDERED = {
    backend: type(Document)("Post", (Document,), {
        "__module__": __name__,
        "title": StringField(indexed=True),
        "rank": IntField(indexed=True),
        "Meta": type("Meta", (), {"backend": backend, "namespace": "contract",
                                  "collection": "posts", "ordering": ("-rank", "title")}),
    })
    for backend in ("redis", "sqlite", "postgres")
}


async def test_meta_ordering_is_the_default_order(store: str, mode: str) -> None:
    Post = ORDERED[store]
    for i, (title, rank) in enumerate([("b", 1), ("a", 2), ("c", 1), ("d", None)]):
        await run(Post(id=f"p{i}", title=title, rank=rank), "save", mode)
    default = ["p1", "p0", "p2", "p3"]  # -rank (nulls as descending puts them), then title
    assert _ids(await run(Post.objects, "all", mode)) == _ids(
        await run(Post.objects.order_by("-rank", "title"), "all", mode))
    got = _ids(await run(Post.objects, "all", mode))
    assert got[:3] == default[:3] and set(got) == set(default)
    assert _ids(await run(Post.objects.filter(rank=1), "all", mode)) == ["p0", "p2"]
    assert _ids(await run(Post.objects.order_by("title"), "all", mode)) == [
        "p1", "p0", "p2", "p3"]
    assert _ids(await run(Post.objects.order_by(), "all", mode)) == ["p0", "p1", "p2", "p3"]
    assert (await run(Post.objects, "first", mode)).id == "p1"
    assert (await run(Post.objects, "last", mode)).id == got[-1]
    assert (await run(Post.objects, "at", mode, 1)).id == "p0"
    page = await run(Post.objects, "paginate", mode, per_page=2, after=None)
    assert _ids(page.items) == got[:2]


async def test_doc_update_writes_only_the_given_fields(models: Any, mode: str) -> None:
    Item = models.Item
    mine = await run(Item(id="i", n=1, s="a", note="x"), "save", mode)
    other = await run(Item.objects, "get", mode, id="i")
    other.note = "theirs"
    await run(other, "save", mode)
    mine.s = "unsaved"
    assert await run(mine, "update", mode, n=5, tags=["t"]) is mine
    stored = await run(Item.objects, "get", mode, id="i")
    # their note is kept (not overwritten by the stale copy), mine stays unsaved
    assert (stored.n, stored.tags, stored.note, stored.s) == (5, ["t"], "theirs", "a")
    assert (mine.n, mine.note, mine.s, mine.version) == (5, "theirs", "unsaved", stored.version)
    assert _ids(await run(Item.objects.filter(n=5), "all", mode)) == ["i"]  # index moved
    assert await run(Item.objects.filter(tags__contains="t"), "count", mode) == 1


async def test_doc_update_refuses_bad_values_before_writing(models: Any, mode: str) -> None:
    account = await run(models.Account(id="a", email="a@x", age=1), "save", mode)
    version = account.version
    with pytest.raises(ValidationError):
        await run(account, "update", mode, age=-1)
    with pytest.raises(UnknownFieldError):
        await run(account, "update", mode, nope=1)
    with pytest.raises(InvalidOperation):
        await run(account, "update", mode)
    with pytest.raises(InvalidOperation, match="never saved"):
        await run(models.Account(email="b@x"), "update", mode, age=2)
    stored = await run(models.Account.objects, "get", mode, id="a")
    assert (stored.age, stored.version) == (1, version)
