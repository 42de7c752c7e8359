"""``filter(id=...)``.update() on every backend: the count of documents matching the new
values, the stored document exactly as a load-set-save would leave it, unique values
refused, and the save receivers still given the document when one is connected."""

from __future__ import annotations

from typing import Any

import pytest
from contract_models import run

from quantumorm import BulkWriteError, UniqueViolation, ValidationError, signals


async def test_update_by_id_sets_the_fields_and_counts(models: Any, mode: str) -> None:
    Item = models.Item
    await run(Item(id="a", s="x", n=1, f=1.5, b=True, tags=["p", "q"], note="keep",
                   j={"k": [1, 2]}), "save", mode)
    before = await run(Item.objects, "get", mode, id="a")
    assert await run(Item.objects.filter(id="a"), "update", mode, n=7, tags=["q", "r"],
                     note="new") == 1
    after = await run(Item.objects, "get", mode, id="a")
    assert after.version > before.version
    assert (after.s, after.n, after.f, after.b, after.tags, after.note, after.j) == (
        "x", 7, 1.5, True, ["q", "r"], "new", {"k": [1, 2]})
    # the indexes follow: by value, array element, range; the old entries are gone
    assert [d.id for d in await run(Item.objects.filter(n=7), "all", mode)] == ["a"]
    assert await run(Item.objects.filter(n=1), "count", mode) == 0
    assert await run(Item.objects.filter(tags__contains="p"), "count", mode) == 0
    assert await run(Item.objects.filter(tags__contains="r"), "count", mode) == 1
    # the same values again: it matches, nothing is written
    assert await run(Item.objects.filter(id="a"), "update", mode, n=7) == 1
    assert (await run(Item.objects, "get", mode, id="a")).version == after.version
    assert await run(Item.objects.filter(id="nope"), "update", mode, n=3) == 0
    assert await run(Item.objects, "get_many", mode, ["nope"]) == [None]
    with pytest.raises(ValidationError):
        await run(Item.objects.filter(id="a"), "update", mode, n="many")


async def test_update_by_id_refuses_a_taken_unique_value(models: Any, mode: str) -> None:
    Account = models.Account
    await run(Account(id="a", email="a@x", age=1), "save", mode)
    b = await run(Account(id="b", email="b@x", age=2), "save", mode)
    with pytest.raises(BulkWriteError) as error:
        await run(Account.objects.filter(id="b"), "update", mode, email="a@x")
    assert isinstance(error.value.errors[0][1], UniqueViolation)
    stored = await run(Account.objects, "get", mode, id="b")
    assert (stored.email, stored.version) == ("b@x", b.version)
    assert await run(Account.objects.filter(id="b"), "update", mode, email="c@x", age=5) == 1
    assert await run(Account.objects.filter(email="b@x"), "count", mode) == 0
    assert [d.id for d in await run(Account.objects.filter(email="c@x"), "all", mode)] == ["b"]
    # the freed value can be taken
    assert await run(Account.objects.filter(id="a"), "update", mode, email="b@x") == 1


async def test_a_save_receiver_still_gets_the_document(models: Any, mode: str) -> None:
    Account = models.Account
    await run(Account(id="a", email="a@x", age=1), "save", mode)
    seen: list[tuple[str, Any, Any]] = []

    def before(sender: Any, document: Any, **_: Any) -> None:
        seen.append(("pre", document.id, document.age))

    signals.pre_save.connect(before, sender=Account)
    try:
        assert await run(Account.objects.filter(id="a"), "update", mode, age=9) == 1
    finally:
        signals.pre_save.disconnect(before, sender=Account)
    assert seen == [("pre", "a", 9)]
    assert (await run(Account.objects, "get", mode, id="a")).age == 9
