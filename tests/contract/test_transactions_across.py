"""Transactions across models (and, on Redis, partitions), on every backend and in both
modes: one SQL transaction on SQLite and PostgreSQL, a two-phase commit on Redis; all or
nothing either way."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import STORES, run

import quantumorm
from quantumorm import Document, IntField, StringField, VersionConflict


def _declare(backend: str) -> SimpleNamespace:
    def meta(**options: Any) -> type:
        return type("Meta", (), {"backend": backend, "namespace": "contract", **options})

    class Pocket(Document):
        owner = StringField(indexed=True)
        coins = IntField(indexed=True, default=0)
        Meta = meta(collection="pockets")

    class Receipt(Document):
        note = StringField(indexed=True)
        coins = IntField(default=0)
        Meta = meta(collection="receipts")

    return SimpleNamespace(Pocket=Pocket, Receipt=Receipt)


MODELS = {backend: _declare(backend) for backend in STORES}


@pytest.fixture
def bank(store: str) -> Any:
    return MODELS[store]


def begin(store: str, mode: str) -> Any:
    connection = quantumorm.get_connection(backend=store)
    return connection.transaction_sync() if mode == "sync" else connection.transaction()


async def get(tx: Any, mode: str, model: Any, id: str) -> Any:
    if mode == "sync":
        return await asyncio.to_thread(tx.get, model, id)
    return await tx.get(model, id)


async def commit(tx: Any, mode: str) -> None:
    if mode == "sync":
        await asyncio.to_thread(tx.commit)
    else:
        await tx.commit()


async def seed(bank: Any, mode: str) -> None:
    for model in (bank.Pocket, bank.Receipt):
        await run(model.objects, "delete", mode)
    await run(bank.Pocket.objects, "bulk_create", mode,
              [bank.Pocket(id="a", owner="ann", coins=10),
               bank.Pocket(id="b", owner="bob", coins=10)])
    await run(bank.Receipt.objects, "bulk_create", mode, [bank.Receipt(id="r0", note="open")])


async def coins(bank: Any, mode: str) -> dict[str, int]:
    return {p.id: p.coins for p in await run(bank.Pocket.objects.order_by("id"), "all", mode)}


async def test_a_commit_across_models_writes_all(store: str, bank: Any, mode: str) -> None:
    await seed(bank, mode)
    tx = begin(store, mode)
    a, b = await get(tx, mode, bank.Pocket, "a"), await get(tx, mode, bank.Pocket, "b")
    opened = await get(tx, mode, bank.Receipt, "r0")
    a.coins -= 3
    b.coins += 3
    tx.save(a)
    tx.save(b)
    tx.save(bank.Receipt(id="r1", note="move", coins=3))
    tx.delete(opened)
    await commit(tx, mode)
    assert await coins(bank, mode) == {"a": 7, "b": 13}
    receipts = await run(bank.Receipt.objects.order_by("id"), "all", mode)
    assert [(r.id, r.note, r.coins) for r in receipts] == [("r1", "move", 3)]
    assert await run(bank.Pocket.objects.filter(coins=13), "count", mode) == 1
    assert (await run(bank.Pocket.objects, "get", mode, id="a")).version == a.version


async def test_a_conflict_in_one_model_writes_nothing_in_any(
        store: str, bank: Any, mode: str) -> None:
    await seed(bank, mode)
    tx = begin(store, mode)
    a = await get(tx, mode, bank.Pocket, "a")
    await get(tx, mode, bank.Receipt, "r0")  # read only: checked at commit
    a.coins = 0
    tx.save(a)
    tx.save(bank.Receipt(id="r2", note="never"))
    elsewhere = await run(bank.Receipt.objects, "get", mode, id="r0")
    elsewhere.note = "changed"
    await run(elsewhere, "save", mode)
    with pytest.raises(VersionConflict):
        await commit(tx, mode)
    assert await coins(bank, mode) == {"a": 10, "b": 10}
    assert await run(bank.Receipt.objects.filter(note="never"), "count", mode) == 0


async def test_run_transaction_retries_across_models(store: str, bank: Any, mode: str) -> None:
    await seed(bank, mode)
    connection = quantumorm.get_connection(backend=store)
    if mode == "sync":
        def move(tx: Any) -> None:
            a = tx.get(bank.Pocket, "a")
            a.coins -= 1
            tx.save(a)
            tx.save(bank.Receipt(id="r3", note="one", coins=1))
        await asyncio.to_thread(connection.run_transaction_sync, move, attempts=3)
    else:
        async def amove(tx: Any) -> None:
            a = await tx.get(bank.Pocket, "a")
            a.coins -= 1
            tx.save(a)
            tx.save(bank.Receipt(id="r3", note="one", coins=1))
        await connection.run_transaction(amove, attempts=3)
    assert await coins(bank, mode) == {"a": 9, "b": 10}
    assert (await run(bank.Receipt.objects, "get", mode, id="r3")).coins == 1
