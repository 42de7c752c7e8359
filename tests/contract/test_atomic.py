"""Atomic field operations on every backend and in both modes: computed from the stored
document, never lost under concurrency, indexes kept in step, validation before writing."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest
from contract_models import run

from quantumorm import InvalidOperation, ValidationError


async def test_inc_and_dec_update_the_value_and_its_index(models: Any, mode: str) -> None:
    item = await run(models.Item(id="i", n=1, f=0.5, d=Decimal("1.10")), "save", mode)
    versions = [item.version]
    for name, args, result in (("inc", ("n",), 2), ("inc", ("n", 40), 42),
                               ("dec", ("n", 2), 40), ("inc", ("f", 2), 2.5),
                               ("inc", ("d", Decimal("0.05")), Decimal("1.15"))):
        assert await run(item, name, mode, *args) == result
        versions.append(item.version)
    assert 0 < versions[0] and versions == sorted(set(versions))  # each operation wrote once
    assert item.n == 40
    stored = await run(models.Item.objects, "get", mode, id="i")
    assert (stored.n, stored.f, stored.d, stored.version) == (
        40, 2.5, Decimal("1.15"), item.version)
    assert [d.id for d in await run(models.Item.objects.filter(n=40), "all", mode)] == ["i"]
    assert await run(models.Item.objects.filter(n=1), "count", mode) == 0
    empty = await run(models.Item(id="e"), "save", mode)
    assert await run(empty, "inc", mode, "n", 3) == 3  # a missing counter starts at zero


async def test_a_stale_instance_operates_on_the_stored_value(models: Any, mode: str) -> None:
    mine = await run(models.Item(id="i", n=10, s="a", note="x"), "save", mode)
    other = await run(models.Item.objects, "get", mode, id="i")
    other.n, other.s = 100, "b"
    await run(other, "save", mode)
    assert other.version > mine.version
    mine.note = "unsaved local change"
    assert await run(mine, "inc", mode, "n") == 101  # not 11: no update is lost
    # the instance shows the stored state, but keeps its own unsaved change
    assert (mine.n, mine.s, mine.note) == (101, "b", "unsaved local change")
    assert mine.version == (await run(models.Item.objects, "get", mode, id="i")).version
    assert mine.version > other.version
    assert mine.changed_fields() == ["note"]
    await run(mine, "save", mode)
    stored = await run(models.Item.objects, "get", mode, id="i")
    assert (stored.n, stored.s, stored.note) == (101, "b", "unsaved local change")


async def test_push_pull_and_set_if_absent(models: Any, mode: str) -> None:
    item = await run(models.Item(id="i", tags=["a"]), "save", mode)
    assert await run(item, "push", mode, "tags", "b", "a") == ["a", "b", "a"]
    assert await run(item, "push", mode, "tags", "a", "c", unique=True) == ["a", "b", "a", "c"]
    assert await run(item, "pull", mode, "tags", "a", "zz") == ["b", "c"]
    version = item.version
    assert await run(item, "pull", mode, "tags", "nothing") == ["b", "c"]
    assert item.version == version  # nothing changed: nothing written
    found = await run(models.Item.objects.filter(tags__contains="c"), "all", mode)
    assert [d.id for d in found] == ["i"]
    assert await run(models.Item.objects.filter(tags__contains="a"), "count", mode) == 0
    assert await run(item, "set_if_absent", mode, "s", "first") is True
    assert await run(item, "set_if_absent", mode, "s", "second") is False
    assert item.s == "first"
    stored = await run(models.Item.objects, "get", mode, id="i")
    assert (stored.s, stored.tags) == ("first", ["b", "c"])


async def test_bad_operations_are_refused_and_write_nothing(models: Any, mode: str) -> None:
    account = await run(models.Account(id="a", email="a@x", age=1), "save", mode)
    with pytest.raises(ValidationError):
        await run(account, "dec", mode, "age", 2)  # min_value=0
    for name, args in (("inc", ("email",)), ("push", ("age", 1)), ("inc", ("age", True)),
                       ("inc", ("age", 1.5)), ("inc", ("nope",)), ("push", ("age",))):
        with pytest.raises(InvalidOperation):
            await run(account, name, mode, *args)
    with pytest.raises(InvalidOperation, match="never saved"):
        await run(models.Account(id="n", email="n@x"), "inc", mode, "age")
    stored = await run(models.Account.objects, "get", mode, id="a")
    assert (stored.age, stored.version) == (1, account.version)
    await run(stored, "delete", mode)
    with pytest.raises(models.Account.DoesNotExist):
        await run(account, "inc", mode, "age")


async def test_concurrent_tasks_and_threads_lose_no_operation(models: Any) -> None:
    item = await models.Item(id="c", n=0, tags=[]).save()
    created = item.version

    async def task(k: int) -> None:
        mine = await models.Item.objects.get(id="c")
        for r in range(10):
            await mine.inc("n")
            await mine.push("tags", f"t{k}-{r}")

    failures: list[BaseException] = []

    def thread(k: int) -> None:
        try:
            mine = models.Item.objects.get_sync(id="c")
            for r in range(10):
                mine.inc_sync("n")
                mine.push_sync("tags", f"t{k}-{r}")
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=thread, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    await asyncio.gather(*(task(8 + k) for k in range(8)))
    for t in threads:
        t.join()
    assert failures == []
    await item.reload()
    # every inc added 1 and every push its own tag: no operation lost or applied twice
    assert item.n == 160 and item.version > created
    assert sorted(item.tags) == sorted(f"t{k}-{r}" for k in range(16) for r in range(10))
    assert await models.Item.objects.filter(tags__contains="t3-7").count() == 1
