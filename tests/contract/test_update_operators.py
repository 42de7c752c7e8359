"""Update operators on a QuerySet (``update(inc__n=1, push__tags="x", ...)``, ``update_one``,
``upsert=True``, ``modify``) on every backend and in both modes: computed from the stored
documents, indexes kept in step, versions bumped, refusals before any write."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    DuplicateIdError,
    InvalidOperation,
    QueryError,
    UniqueViolation,
    UnknownFieldError,
    ValidationError,
)


async def _ids(qs: Any, mode: str) -> list[str]:
    return sorted(doc.id for doc in await run(qs, "all", mode))


async def test_operators_update_every_match_and_its_indexes(models: Any, mode: str) -> None:
    Item = models.Item
    for i in range(4):
        await run(Item(id=f"i{i}", n=i, f=0.5, d=Decimal("1.10"), tags=["a", "b", "a"],
                       s="old", note="x"), "save", mode)
    before = {doc.id: doc.version for doc in await run(Item.objects, "all", mode)}
    count = await run(Item.objects.filter(n__gte=2), "update", mode,
                      inc__n=10, dec__f=1, inc__d=Decimal("0.05"), pull__tags="a",
                      unset__note=True, set__s="new")
    assert count == 2
    assert await run(Item.objects.filter(s="new"), "update", mode, push__tags="c") == 2
    for doc in await run(Item.objects.filter(id__in=["i2", "i3"]), "all", mode):
        assert (doc.f, doc.d, doc.tags, doc.s, doc.note) == (
            -0.5, Decimal("1.15"), ["b", "c"], "new", None)
        assert doc.version > before[doc.id]
    assert sorted(doc.n for doc in await run(Item.objects, "all", mode)) == [0, 1, 12, 13]
    # the indexes follow: old values are gone from them, new ones are found
    assert await _ids(Item.objects.filter(n__gte=12), mode) == ["i2", "i3"]
    assert await _ids(Item.objects.filter(tags__contains="c"), mode) == ["i2", "i3"]
    assert await _ids(Item.objects.filter(tags__contains="a"), mode) == ["i0", "i1"]
    assert await _ids(Item.objects.filter(s="new"), mode) == ["i2", "i3"]
    assert await _ids(Item.objects.filter(note=None), mode) == ["i2", "i3"]
    untouched = await run(Item.objects, "get", mode, id="i0")
    assert (untouched.n, untouched.version) == (0, before["i0"])


async def test_push_all_pull_all_and_add_to_set(models: Any, mode: str) -> None:
    Item = models.Item
    await run(Item(id="i", tags=["a"]), "save", mode)
    qs = Item.objects.filter(id="i")
    assert await run(qs, "update", mode, push_all__tags=["b", "a", "c"]) == 1
    assert (await run(qs, "get", mode)).tags == ["a", "b", "a", "c"]
    assert await run(qs, "update", mode, pull_all__tags=["a", "zz"]) == 1
    assert (await run(qs, "get", mode)).tags == ["b", "c"]
    version = (await run(qs, "get", mode)).version
    assert await run(qs, "update", mode, add_to_set__tags="b") == 1  # matched, nothing new
    assert (await run(qs, "get", mode)).version == version  # nothing changed: nothing written
    assert await run(qs, "update", mode, add_to_set__tags="d") == 1
    assert (await run(qs, "get", mode)).tags == ["b", "c", "d"]


async def test_a_stored_null_counts_as_zero_or_empty(models: Any, mode: str) -> None:
    await run(models.Item(id="e"), "save", mode)
    qs = models.Item.objects.filter(id="e")
    assert await run(qs, "update", mode, inc__n=3, push__tags="x") == 1
    stored = await run(qs, "get", mode)
    assert (stored.n, stored.tags) == (3, ["x"])


async def test_update_one_changes_the_first_match_by_the_order(models: Any, mode: str) -> None:
    Item = models.Item
    for i in range(3):
        await run(Item(id=f"i{i}", n=i, s="x"), "save", mode)
    assert await run(Item.objects.filter(s="x").order_by("-n"), "update_one", mode,
                     inc__n=100) == 1
    assert sorted(doc.n for doc in await run(Item.objects, "all", mode)) == [0, 1, 102]
    assert await run(Item.objects.filter(s="x"), "update_one", mode, set__s="y") == 1
    assert await _ids(Item.objects.filter(s="y"), mode) == ["i0"]  # by id without an order
    assert await run(Item.objects.filter(s="none"), "update_one", mode, inc__n=1) == 0


async def test_upsert_inserts_the_equality_conditions_and_values(models: Any, mode: str) -> None:
    Item = models.Item
    qs = Item.objects.filter(s="k", b=True)
    assert await run(qs, "update", mode, upsert=True, inc__n=2, push__tags="t") == 1
    (doc,) = await run(Item.objects, "all", mode)
    assert (doc.s, doc.b, doc.n, doc.tags) == ("k", True, 2, ["t"])
    # now it matches: updated, not inserted again
    assert await run(qs, "update_one", mode, upsert=True, inc__n=2) == 1
    assert [d.n for d in await run(Item.objects, "all", mode)] == [4]
    # by id: the id is the one named
    assert await run(Item.objects.filter(id="new"), "update", mode, upsert=True, s="v") == 1
    assert (await run(Item.objects, "get", mode, id="new")).s == "v"
    # plain values with upsert=True take the same path
    assert await run(Item.objects.filter(s="z"), "update", mode, upsert=True, n=9) == 1
    assert await _ids(Item.objects.filter(n=9, s="z"), mode) != []
    with pytest.raises(QueryError, match="equality"):
        await run(Item.objects.filter(n__gt=3), "update", mode, upsert=True, inc__n=1)


async def test_concurrent_upserts_by_id_insert_once(models: Any, mode: str) -> None:
    qs = models.Item.objects.filter(id="one")
    results = await asyncio.gather(*(run(qs, "update", mode, upsert=True, inc__n=1)
                                     for _ in range(4)))
    assert results == [1, 1, 1, 1]
    assert (await run(models.Item.objects, "get", mode, id="one")).n == 4
    assert await run(models.Item.objects, "count", mode) == 1


async def test_modify_returns_the_document_before_or_after(models: Any, mode: str) -> None:
    Item = models.Item
    await run(Item(id="i", n=1, tags=["a"]), "save", mode)
    old = await run(Item.objects.filter(id="i"), "modify", mode, inc__n=1)
    assert (old.id, old.n) == ("i", 1)
    new = await run(Item.objects.filter(n=2), "modify", mode, new=True, push__tags="b")
    assert (new.n, new.tags) == (2, ["a", "b"])
    assert new.version == (await run(Item.objects, "get", mode, id="i")).version
    assert await run(Item.objects.filter(n=99), "modify", mode, inc__n=1) is None
    made = await run(Item.objects.filter(id="u"), "modify", mode, new=True, upsert=True,
                     inc__n=5)
    assert (made.id, made.n, made.version > 0) == ("u", 5, True)
    assert await run(Item.objects.filter(id="w"), "modify", mode, upsert=True, n=1) is None
    assert (await run(Item.objects, "get", mode, id="w")).n == 1


async def test_concurrent_increments_are_not_lost(models: Any, mode: str) -> None:
    await run(models.Item(id="c", n=0, s="c"), "save", mode)
    qs = models.Item.objects.filter(s="c")
    if mode == "sync":
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(5):
                    qs.update_sync(inc__n=1)
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
        threads = [threading.Thread(target=work) for _ in range(3)]
        await asyncio.to_thread(lambda: ([t.start() for t in threads],
                                         [t.join() for t in threads]))
        assert errors == []
    else:
        await asyncio.gather(*(qs.update(inc__n=1) for _ in range(15)))
    assert (await run(models.Item.objects, "get", mode, id="c")).n == 15


async def test_bad_operators_are_refused_before_any_write(models: Any, mode: str) -> None:
    Account = models.Account
    account = await run(Account(id="a", email="a@x", age=1), "save", mode)
    qs = Account.objects.filter(id="a")
    for fields, error in (({"inc__email": 1}, InvalidOperation),
                          ({"push__age": 1}, InvalidOperation),
                          ({"inc__age": True}, InvalidOperation),
                          ({"inc__age": 1.5}, InvalidOperation),
                          ({"unset__email": True}, InvalidOperation),
                          ({"unset__age": False}, QueryError),
                          ({"bump__age": 1}, QueryError),
                          ({"inc__nope": 1}, UnknownFieldError),
                          ({"inc__age": 1, "set__age": 2}, QueryError),
                          ({}, QueryError)):
        with pytest.raises(error):
            await run(qs, "update", mode, **fields)
    with pytest.raises(ValidationError):
        await run(qs, "update", mode, dec__age=2)  # min_value=0: the result is checked
    with pytest.raises(ValidationError):
        await run(models.Item.objects, "update", mode, push__tags=3)  # not a string
    with pytest.raises(QueryError):
        await run(models.Item.objects, "update", mode, push_all__tags="abc")
    stored = await run(Account.objects, "get", mode, id="a")
    assert (stored.age, stored.version) == (1, account.version)


async def test_concurrent_modifies_each_see_their_own_result(models: Any, mode: str) -> None:
    await run(models.Item(id="m", n=0, s="m"), "save", mode)
    qs = models.Item.objects.filter(s="m")
    found = await asyncio.gather(*(run(qs, "modify", mode, new=True, inc__n=1)
                                   for _ in range(6)))
    assert sorted(doc.n for doc in found) == [1, 2, 3, 4, 5, 6]  # no two saw the same state
    assert len({doc.version for doc in found}) == 6


async def test_an_upsert_refused_by_another_documents_unique_value(models: Any,
                                                                   mode: str) -> None:
    Account = models.Account
    await run(Account(id="a", email="a@x", age=1), "save", mode)
    with pytest.raises(UniqueViolation):
        await run(Account.objects.filter(id="b"), "update", mode, upsert=True,
                  email="a@x", inc__age=1)
    assert await run(Account.objects, "count", mode) == 1


async def test_an_upsert_whose_id_is_a_document_that_does_not_match(models: Any,
                                                                     mode: str) -> None:
    Item = models.Item
    await run(Item(id="a", s="y", n=1), "save", mode)
    with pytest.raises(DuplicateIdError):  # (not a VersionConflict after 100 tries)
        await run(Item.objects.filter(id="a", s="x"), "update", mode, upsert=True,
                  inc__n=1)
    assert (await run(Item.objects, "get", mode, id="a")).n == 1
