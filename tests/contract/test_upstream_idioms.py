"""Upstream QuantumEngine idioms QuantumORM takes natively, on every backend in both modes:
``Model.get(...)``, ``doc.refresh()``, ``Model.create_table()`` / ``drop_table()`` and
``objects.create_collection()`` / ``drop_collection()``, ``order_by("field", "DESC")``."""

from __future__ import annotations

from typing import Any

import pytest
from contract_models import run

import quantumorm
from quantumorm import InvalidOperation, Q, QueryError


async def saved(models: Any, mode: str) -> list[Any]:
    docs = [models.Account(id=f"a{i}", email=f"u{i}@x", age=age)
            for i, age in enumerate([30, 10, 20])]
    for doc in docs:
        await run(doc, "save", mode)
    return docs


async def test_model_get_is_objects_get(models: Any, mode: str) -> None:
    Account = models.Account
    await saved(models, mode)
    found = await run(Account, "get", mode, id="a1")
    assert isinstance(found, Account) and found.age == 10
    assert (await run(Account, "get", mode, email="u2@x")).id == "a2"
    with pytest.raises(Account.DoesNotExist):
        await run(Account, "get", mode, id="nope")
    with pytest.raises(Account.MultipleObjectsReturned):
        await run(Account, "get", mode, age__gte=10)


async def test_refresh_is_reload(models: Any, mode: str) -> None:
    first, *_ = await saved(models, mode)
    other = await run(models.Account.objects, "get", mode, id=first.id)
    other.age = 99
    await run(other, "save", mode)
    assert await run(first, "refresh", mode) is first
    assert first.age == 99 and first.version == other.version


async def test_order_by_with_a_direction_word(models: Any, mode: str) -> None:
    await saved(models, mode)
    Account = models.Account

    async def ids(qs: Any) -> list[str]:
        return [d.id for d in await run(qs, "all", mode)]

    assert await ids(Account.objects.order_by("age", "DESC")) == ["a0", "a2", "a1"]
    assert await ids(Account.objects.order_by("age", "desc")) == ["a0", "a2", "a1"]
    assert await ids(Account.objects.order_by("age", "ASC")) == ["a1", "a2", "a0"]
    with pytest.raises(QueryError):
        Account.objects.order_by("-age", "DESC")
    with pytest.raises(QueryError):
        Account.objects.order_by("age", "DOWN")


async def test_create_and_drop_the_collection(models: Any, mode: str) -> None:
    Account = models.Account
    await run(Account, "create_table", mode)
    await run(Account, "create_table", mode)  # idempotent
    assert await run(Account.objects, "count", mode) == 0
    await saved(models, mode)
    await run(Account.objects, "create_collection", mode)
    assert await run(Account.objects, "count", mode) == 3  # creating never drops
    with pytest.raises(InvalidOperation, match="confirm=True"):
        await run(Account, "drop_table", mode)
    with pytest.raises(QueryError, match="whole collection"):
        await run(Account.objects.filter(age=10), "drop_collection", mode, confirm=True)
    assert await run(Account.objects, "count", mode) == 3
    assert await run(Account, "drop_table", mode, confirm=True) == 3
    assert await run(Account.objects, "count", mode) == 0
    assert await run(Account.objects.filter(age=10), "count", mode) == 0
    # the collection works again at once: same ids, unique index free again
    await saved(models, mode)
    assert await run(Account.objects.filter(age__gte=20), "count", mode) == 2
    assert await run(Account.objects, "drop_collection", mode, confirm=True) == 3
    assert await run(models.Item.objects, "drop_collection", mode, confirm=True) == 0


def clients(redis_client: Any) -> int:
    return int(redis_client.info("clients")["connected_clients"])


def test_with_connection_closes_it(redis_url: str, redis_client: Any) -> None:
    before = clients(redis_client)
    try:
        with quantumorm.create_connection(url=redis_url, name="upstream-with") as conn:
            assert conn.ping_sync() >= 0
            assert clients(redis_client) == before + 1
        assert clients(redis_client) == before
    finally:
        quantumorm.close_all()


async def test_async_with_connection_closes_it(redis_url: str, redis_client: Any) -> None:
    before = clients(redis_client)
    try:
        async with quantumorm.create_connection(url=redis_url, name="upstream-awith") as conn:
            assert await conn.ping() >= 0
            assert clients(redis_client) == before + 1
        assert clients(redis_client) == before
    finally:
        quantumorm.close_all()


def test_with_sqlite_connection_closes_it() -> None:
    try:
        with quantumorm.create_connection(backend="sqlite", url="sqlite://",
                                          name="upstream-sqlite") as conn:
            assert conn.ping_sync() >= 0
            executor = conn.store.sync_executor()
            assert executor._db is not None
        assert executor._db is None
    finally:
        quantumorm.close_all()


@pytest.mark.parametrize(("lookup", "want"), [
    ({"id__gte": 10}, ["10", "11", "100", "a", "b9"]),
    ({"id__gt": "10"}, ["11", "100", "a", "b9"]),
    ({"id__lt": 11}, ["2", "9", "10"]),
    ({"id__lte": "a"}, ["2", "9", "10", "11", "100", "a"]),
    ({"id__gt": "a"}, ["b9"]),
    ({"id__gte": 9, "id__lt": 100}, ["9", "10", "11"]),
])
async def test_range_lookups_on_the_id(models: Any, mode: str, lookup: dict[str, Any],
                                       want: list[str]) -> None:
    # the id order: canonical decimal ids numerically, then the others (as order_by("id"))
    Account = models.Account
    for i, id in enumerate(["100", "9", "a", "10", "2", "b9", "11"]):
        await run(Account(id=id, email=f"r{i}@x", age=i), "save", mode)
    qs = Account.objects.filter(**lookup).order_by("id")
    assert [d.id for d in await run(qs, "all", mode)] == want
    assert await run(Account.objects.filter(**lookup), "count", mode) == len(want)
    rest = Account.objects.exclude(**lookup).order_by("id")
    everything = [d.id for d in await run(Account.objects.order_by("id"), "all", mode)]
    assert [d.id for d in await run(rest, "all", mode)] == [i for i in everything
                                                              if i not in want]
    both = Account.objects.filter(**lookup).filter(age__gte=3).order_by("-id")
    assert [d.id for d in await run(both, "all", mode)] == [
        d.id for d in reversed(await run(qs, "all", mode)) if d.age >= 3]
    with pytest.raises(QueryError):
        Account.objects.filter(id__gt=None)


async def test_id_ranges_on_one_id_combined(models: Any, mode: str) -> None:
    # two bounds on one value: inclusive only if both are (the Redis id walk's bounds)
    Account = models.Account
    for i, id in enumerate(["4", "5", "6", "x"]):
        await run(Account(id=id, email=f"c{i}@x", age=i), "save", mode)
    cases = [(Q(id__lte=5) & Q(id__lte=5), ["4", "5"]), (Q(id__lte=5) & Q(id__lt=5), ["4"]),
             (Q(id__gte=5) & Q(id__gte=5) & Q(id__lte=5), ["5"]),
             (Q(id__gt=5) & Q(id__gte=5), ["6", "x"]), (Q(id__gt=4) & Q(id__lt=6), ["5"]),
             (Q(id__gt=6) | Q(id__lt=5), ["4", "x"])]
    for where, want in cases:
        for qs in (Account.objects.filter(where), Account.objects.filter(where).order_by("-id")):
            got = [d.id for d in await run(qs, "all", mode)]
            assert sorted(got) == want, where
            assert await run(qs, "count", mode) == len(want)
