"""Transactions, on every backend and in both modes: reads re-checked at commit, writes all
or nothing, unique values judged as if the writes ran in order, retries per policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from contract_models import run

import quantumorm
from quantumorm import DuplicateIdError, TransactionError, UniqueViolation, VersionConflict


def begin(store: str, mode: str) -> Any:
    connection = quantumorm.get_connection(backend=store)
    return connection.transaction_sync() if mode == "sync" else connection.transaction()


# the blocking API runs in a worker thread: it is refused on the thread running the loop


async def get(tx: Any, mode: str, model: Any, id: str) -> Any:
    if mode == "sync":
        return await asyncio.to_thread(tx.get, model, id)
    return await tx.get(model, id)


async def commit(tx: Any, mode: str) -> None:
    if mode == "sync":
        await asyncio.to_thread(tx.commit)
    else:
        await tx.commit()


async def stored(models: Any, mode: str) -> dict[str, tuple[str, int | None, int]]:
    docs = await run(models.Account.objects.order_by("id"), "all", mode)
    return {d.id: (d.email, d.age, d.version) for d in docs}


async def seed(models: Any, mode: str) -> None:
    await run(models.Account.objects, "bulk_create", mode,
              [models.Account(id="a", email="a@x", age=10),
               models.Account(id="b", email="b@x", age=20),
               models.Account(id="c", email="c@x", age=30)])


async def test_a_transfer_commits_both_writes(store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    before = await stored(models, mode)
    tx = begin(store, mode)
    a, b = await get(tx, mode, models.Account, "a"), await get(tx, mode, models.Account, "b")
    a.age -= 5
    b.age += 5
    tx.save(a)
    tx.save(b)
    tx.save(models.Account(id="d", email="d@x", age=1))
    c = await get(tx, mode, models.Account, "c")
    tx.delete(c)
    await commit(tx, mode)
    after = await stored(models, mode)
    assert {id: (email, age) for id, (email, age, _) in after.items()} == {
        "a": ("a@x", 5), "b": ("b@x", 25), "d": ("d@x", 1)}
    # the instances hold the versions stored; every write of the commit came after the seed
    assert (after["a"][2], after["b"][2], c.version) == (a.version, b.version, 0)
    assert min(v for _, _, v in after.values()) > max(v for _, _, v in before.values())
    assert await run(models.Account.objects.filter(age__gt=4), "count", mode) == 2


async def test_a_document_read_and_changed_since_fails_the_commit(
        store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    before = await stored(models, mode)
    tx = begin(store, mode)
    a = await get(tx, mode, models.Account, "a")
    b = await get(tx, mode, models.Account, "b")  # read only: its version is checked
    elsewhere = await run(models.Account.objects, "get", mode, id="b")
    elsewhere.age = 99
    await run(elsewhere, "save", mode)
    a.age = b.age + 1
    tx.save(a)
    with pytest.raises(VersionConflict) as conflict:
        await commit(tx, mode)
    assert elsewhere.version > b.version == before["b"][2]
    assert (conflict.value.id, conflict.value.expected, conflict.value.actual) == (
        "b", b.version, elsewhere.version)
    assert (await stored(models, mode))["a"] == before["a"]  # nothing written


async def test_an_absence_read_is_checked_too(store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    tx = begin(store, mode)
    assert await get(tx, mode, models.Account, "x") is None
    x = await run(models.Account(id="x", email="x@x", age=1), "save", mode)  # appears meanwhile
    tx.save(models.Account(id="y", email="y@x", age=1))
    with pytest.raises(VersionConflict) as conflict:
        await commit(tx, mode)
    assert x.version > 0
    assert (conflict.value.id, conflict.value.actual) == ("x", x.version)
    assert "y" not in await stored(models, mode)


async def test_one_refused_write_leaves_everything_untouched(
        store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    before = await stored(models, mode)
    for bad, error in ((models.Account(id="n", email="b@x", age=1), UniqueViolation),
                       (models.Account(id="b", email="n@x", age=1), DuplicateIdError)):
        tx = begin(store, mode)
        a = await get(tx, mode, models.Account, "a")
        a.age = 77
        tx.save(a)
        tx.save(bad)
        with pytest.raises(error):
            await commit(tx, mode)
        assert await stored(models, mode) == before
    stale = await run(models.Account.objects, "get", mode, id="c")
    await run(await run(models.Account.objects, "get", mode, id="c"), "delete", mode)
    tx = begin(store, mode)
    tx.save(models.Account(id="n", email="n@x", age=1))
    tx.delete(stale)  # already deleted elsewhere
    with pytest.raises(VersionConflict):
        await commit(tx, mode)
    assert "n" not in await stored(models, mode)


async def test_unique_values_are_judged_in_order(store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    # b gives its address up first, then a takes it: valid at every step
    tx = begin(store, mode)
    a, b = await get(tx, mode, models.Account, "a"), await get(tx, mode, models.Account, "b")
    b.email, a.email = "b2@x", "b@x"
    tx.save(b)
    tx.save(a)
    await commit(tx, mode)
    assert (await stored(models, mode))["a"][0] == "b@x"
    # the other order: a would take c's address while c still holds it
    tx = begin(store, mode)
    a, c = await get(tx, mode, models.Account, "a"), await get(tx, mode, models.Account, "c")
    a.email, c.email = "c@x", "c2@x"
    tx.save(a)
    tx.save(c)
    with pytest.raises(UniqueViolation):
        await commit(tx, mode)
    # two new documents of one transaction claiming one value
    tx = begin(store, mode)
    tx.save(models.Account(id="p", email="same@x"))
    tx.save(models.Account(id="q", email="same@x"))
    with pytest.raises(UniqueViolation):
        await commit(tx, mode)
    assert set(await stored(models, mode)) == {"a", "b", "c"}


async def test_an_error_in_the_block_discards_the_writes(
        store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    connection = quantumorm.get_connection(backend=store)
    with pytest.raises(RuntimeError):
        if mode == "sync":
            with connection.transaction_sync() as tx:
                tx.save(models.Account(id="n", email="n@x"))
                raise RuntimeError("boom")
        else:
            async with connection.transaction() as tx:
                tx.save(models.Account(id="n", email="n@x"))
                raise RuntimeError("boom")
    assert "n" not in await stored(models, mode)
    with pytest.raises(TransactionError, match="rolled back"):
        tx.save(models.Account(id="m", email="m@x"))
    if mode == "sync":
        def block() -> Any:
            with connection.transaction_sync() as tx:
                tx.save(models.Account(id="n", email="n@x"))
            return tx
        tx = await asyncio.to_thread(block)
    else:
        async with connection.transaction() as tx:
            tx.save(models.Account(id="n", email="n@x"))
    assert "n" in await stored(models, mode)
    with pytest.raises(TransactionError, match="committed"):
        await commit(tx, mode)


async def test_misuse_is_refused_before_anything_is_sent(
        store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    tx = begin(store, mode)
    tx.save(models.Account(id="n", email="n@x"))
    with pytest.raises(TransactionError, match="twice"):
        tx.save(models.Account(id="n", email="other@x"))
    with pytest.raises(quantumorm.ValidationError):
        tx.save(models.Account(id="bad", email="x" * 50))
    with pytest.raises(TransactionError, match="never saved"):
        tx.delete(models.Account(id="z", email="z@x"))
    await commit(tx, mode)
    assert set(await stored(models, mode)) == {"a", "b", "c", "n"}


async def test_run_transaction_retries_on_conflict(store: str, models: Any, mode: str) -> None:
    await seed(models, mode)
    seeded = (await stored(models, mode))["a"][2]
    connection = quantumorm.get_connection(backend=store)
    attempts: list[int] = []
    interfered: list[int] = []  # the versions the other writer wrote

    def interfere() -> None:
        if len(attempts) == 1:  # another writer gets in during the first attempt only
            other = models.Account.objects.get_sync(id="a")
            other.age += 100
            other.save_sync()
            interfered.append(other.version)

    if mode == "sync":
        def move(tx: Any) -> int:
            attempts.append(1)
            a = tx.get(models.Account, "a")
            interfere()
            a.age += 1
            tx.save(a)
            return a.age
        result = await asyncio.to_thread(connection.run_transaction_sync, move, attempts=3)
    else:
        async def amove(tx: Any) -> int:
            attempts.append(1)
            a = await tx.get(models.Account, "a")
            await asyncio.to_thread(interfere)
            a.age += 1
            tx.save(a)
            return int(a.age)
        result = await connection.run_transaction(amove, attempts=3)
    assert len(attempts) == 2 and result == 111
    email, age, version = (await stored(models, mode))["a"]
    assert (email, age) == ("a@x", 111)
    assert version > interfered[0] > seeded  # the retry wrote after the other writer
    attempts.clear()  # with one attempt, the interference of the first one is fatal
    with pytest.raises(VersionConflict):
        if mode == "sync":
            await asyncio.to_thread(connection.run_transaction_sync, move, attempts=1)
        else:
            await connection.run_transaction(amove, attempts=1)
    # the other writer's write is the last one: the transaction wrote nothing
    assert len(interfered) == 2 and interfered[1] > version
    assert (await stored(models, mode))["a"] == ("a@x", 211, interfered[1])
