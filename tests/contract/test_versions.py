"""Versions never repeat for an id: a compare-and-set from an earlier life of a document fails.

A document deleted and created again under the same id starts a new life; an instance
loaded in the earlier life must not be able to save over it or delete it (the ABA problem).
Every backend, sync and async.
"""

from __future__ import annotations

from typing import Any

import pytest
from contract_models import run

from quantumorm import UniqueViolation, VersionConflict


async def test_versions_grow_with_every_write(models: Any, mode: str) -> None:
    item = await run(models.Item(id="a", s="x"), "save", mode)
    first = item.version
    item.s = "y"
    await run(item, "save", mode)
    second = item.version
    item.s = "z"
    await run(item, "save", mode)
    assert 0 < first < second < item.version
    other = await run(models.Item(id="b", s="x"), "save", mode)
    assert other.version > item.version  # one clock per collection (partition)


async def test_stale_save_after_delete_and_recreate_is_refused(models: Any, mode: str) -> None:
    Item = models.Item
    await run(Item(id="x", s="L1", n=1), "save", mode)
    stale = await run(Item.objects, "get", mode, id="x")
    fresh = await run(Item.objects, "get", mode, id="x")
    assert await run(fresh, "delete", mode) is True
    reborn = await run(Item(id="x", s="L2", n=2), "save", mode)
    assert reborn.version > stale.version

    stale.s = "L3"
    with pytest.raises(VersionConflict) as caught:
        await run(stale, "save", mode)
    assert caught.value.expected == stale.version
    assert caught.value.actual == reborn.version
    with pytest.raises(VersionConflict):
        await run(stale, "delete", mode)

    # the store holds the second life, and the indexes agree with it
    stored = await run(Item.objects, "get", mode, id="x")
    assert (stored.s, stored.n, stored.version) == ("L2", 2, reborn.version)
    assert [i.id for i in await run(Item.objects.filter(s="L2"), "all", mode)] == ["x"]
    assert await run(Item.objects.filter(s="L1"), "count", mode) == 0
    assert await run(Item.objects.filter(s="L3"), "count", mode) == 0


async def test_stale_instance_cannot_take_a_unique_value_twice(models: Any, mode: str) -> None:
    Account = models.Account
    await run(Account(id="a", email="a@x", age=1), "save", mode)
    stale = await run(Account.objects, "get", mode, id="a")
    await run(await run(Account.objects, "get", mode, id="a"), "delete", mode)
    await run(Account(id="a", email="new@x", age=2), "save", mode)
    await run(Account(id="b", email="a@x", age=3), "save", mode)  # the old value, now free

    stale.age = 9  # would re-claim "a@x" for "a" if it were accepted
    with pytest.raises(VersionConflict):
        await run(stale, "save", mode)
    holders = await run(Account.objects.filter(email="a@x"), "all", mode)
    assert [(h.id, h.age) for h in holders] == [("b", 3)]
    with pytest.raises(UniqueViolation):
        await run(Account(id="c", email="new@x"), "save", mode)


async def test_stale_transaction_read_after_recreate_conflicts(store: str, models: Any) -> None:
    import quantumorm

    Item = models.Item
    conn = quantumorm.get_connection(None, backend=store)
    await Item(id="t", s="one").save()
    with pytest.raises(VersionConflict):
        async with conn.transaction() as tx:
            doc = await tx.get(Item, "t")
            assert doc is not None
            # another writer deletes and re-creates it while the transaction is open
            gone = await Item.objects.get(id="t")
            await gone.delete()
            await Item(id="t", s="two").save()
            doc.s = "three"
            tx.save(doc)
    assert (await Item.objects.get(id="t")).s == "two"


async def test_bulk_created_documents_get_distinct_versions(models: Any, mode: str) -> None:
    docs = await run(models.Item.objects, "bulk_create", mode,
                     [models.Item(s=str(i)) for i in range(20)])
    versions = [d.version for d in docs]
    assert len(set(versions)) == 20 and all(v > 0 for v in versions)
    stored = await run(models.Item.objects, "get_many", mode, [d.id for d in docs])
    assert [d.version for d in stored] == versions
