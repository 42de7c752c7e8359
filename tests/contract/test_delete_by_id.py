"""``filter(id=...)``/``filter(id__in=[...])``.delete() on every backend: with no delete
receiver connected it deletes without reading first (any version) and counts the documents
that existed; with one, the documents are read and handed to the receivers."""

from __future__ import annotations

from typing import Any

from contract_models import run

from quantumorm import signals


async def test_delete_by_id_counts_what_existed_and_leaves_no_entry(models: Any,
                                                                     mode: str) -> None:
    Item = models.Item
    await run(Item.objects, "bulk_create", mode, [
        Item(id=f"i{k}", s=f"s{k % 2}", n=k, tags=["a", f"t{k}"]) for k in range(6)])
    assert await run(Item.objects.filter(id="i0"), "delete", mode) == 1
    assert await run(Item.objects.filter(id="i0"), "delete", mode) == 0  # gone already
    assert await run(Item.objects.filter(id="nope"), "delete", mode) == 0
    # duplicates count once; unknown ids count nothing
    assert await run(Item.objects.filter(id__in=["i1", "i2", "i1", "zz"]), "delete",
                     mode) == 2
    assert await run(Item.objects.filter(id__in=[]), "delete", mode) == 0
    left = {d.id for d in await run(Item.objects, "all", mode)}
    assert left == {"i3", "i4", "i5"}
    # the indexes no longer find the deleted ones (by value, array element, compound, range)
    assert {d.id for d in await run(Item.objects.filter(tags__contains="a"), "all", mode)} == left
    assert {d.id for d in await run(Item.objects.filter(s="s1"), "all", mode)} == {"i3", "i5"}
    assert {d.id for d in await run(Item.objects.filter(s="s0", n__gte=0), "all", mode)} == {
        "i4"}
    assert await run(Item.objects.filter(n__lt=3), "count", mode) == 0


async def test_delete_by_id_deletes_whatever_version_is_stored(models: Any,
                                                               mode: str) -> None:
    Account = models.Account
    a = await run(Account(id="a", email="a@x", age=1), "save", mode)
    a.age = 2
    await run(a, "save", mode)  # another version than any earlier read
    assert await run(Account.objects.filter(id="a"), "delete", mode) == 1
    assert await run(Account.objects, "get_many", mode, ["a"]) == [None]
    # the unique value is free again
    await run(Account(id="b", email="a@x", age=3), "save", mode)


async def test_a_delete_receiver_still_gets_each_document(models: Any, mode: str) -> None:
    Account = models.Account
    await run(Account(id="a", email="a@x", age=4), "save", mode)
    seen: list[tuple[str, Any, Any]] = []

    def before(sender: Any, document: Any, **_: Any) -> None:
        seen.append(("pre", document.id, document.age))

    def after(sender: Any, document: Any, deleted: bool, **_: Any) -> None:
        seen.append(("post", document.id, deleted))

    signals.pre_delete.connect(before, sender=Account)
    signals.post_delete.connect(after)  # (any sender: listens to Account too)
    try:
        assert await run(Account.objects.filter(id__in=["a", "zz"]), "delete", mode) == 1
    finally:
        signals.pre_delete.disconnect(before, sender=Account)
        signals.post_delete.disconnect(after)
    assert seen == [("pre", "a", 4), ("post", "a", True)]
