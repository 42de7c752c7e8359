"""Signals fire around writes on every backend, from the sync and the async API, and from
QuerySet.update()/delete() once per document written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from contract_models import run

from quantumorm import signals


@pytest.fixture
def events(models: Any) -> Iterator[list[tuple[Any, ...]]]:
    seen: list[tuple[Any, ...]] = []
    receivers = {
        signals.pre_save: lambda sender, document, **_: seen.append(
            ("pre_save", document.id, document.age)),
        signals.post_save: lambda sender, document, created, **_: seen.append(
            ("post_save", document.id, document.version, created)),
        signals.pre_delete: lambda sender, document, **_: seen.append(
            ("pre_delete", document.id)),
        signals.post_delete: lambda sender, document, deleted, **_: seen.append(
            ("post_delete", document.id, deleted)),
        signals.pre_bulk_create: lambda sender, documents, **_: seen.append(
            ("pre_bulk", len(documents))),
        signals.post_bulk_create: lambda sender, documents, **_: seen.append(
            ("post_bulk", sorted(d.id for d in documents))),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, sender=models.Account)
    yield seen
    for signal, receiver in receivers.items():
        assert signal.disconnect(receiver, sender=models.Account)


async def test_signals_around_every_write(models: Any, mode: str,
                                          events: list[tuple[Any, ...]]) -> None:
    Account = models.Account
    a = await run(Account(id="a", email="a@x", age=1), "save", mode)
    created = a.version
    await run(a, "save", mode)  # nothing changed: pre_save only, no write, no post_save
    assert a.version == created
    a.age = 2
    await run(a, "save", mode)
    updated = a.version
    assert updated > created > 0
    bulk = {d.id: d.version for d in await run(
        Account.objects, "bulk_create", mode,
        [Account(id="b", email="b@x", age=5), Account(id="c", email="c@x", age=6)])}
    assert await run(Account.objects.filter(age__gte=5), "update", mode, age=7) == 2
    b, c = await run(Account.objects, "get_many", mode, ["b", "c"])
    assert b.version > bulk["b"] > 0 and c.version > bulk["c"] > 0
    assert await run(Account.objects.filter(id="c"), "delete", mode) == 1
    assert await run(a, "delete", mode) is True
    assert events == [
        ("pre_save", "a", 1), ("post_save", "a", created, True),
        ("pre_save", "a", 1),
        ("pre_save", "a", 2), ("post_save", "a", updated, False),
        ("pre_bulk", 2), ("post_bulk", ["b", "c"]),
        ("pre_save", "b", 7), ("pre_save", "c", 7),
        ("post_save", "b", b.version, False), ("post_save", "c", c.version, False),
        ("pre_delete", "c"), ("post_delete", "c", True),
        ("pre_delete", "a"), ("post_delete", "a", True),
    ]


async def test_a_pre_receiver_can_stop_the_write(models: Any, mode: str) -> None:
    Account = models.Account

    def refuse(sender: Any, document: Any, **_: Any) -> None:
        if document.age == 13:
            raise PermissionError("unlucky")

    signals.pre_save.connect(refuse, sender=Account)
    try:
        with pytest.raises(PermissionError):
            await run(Account(email="x@x", age=13), "save", mode)
        assert await run(Account.objects, "count", mode) == 0
        await run(Account(email="y@x", age=12), "save", mode)
        assert await run(Account.objects, "count", mode) == 1
    finally:
        signals.pre_save.disconnect(refuse, sender=Account)


def test_receivers_are_plain_functions() -> None:
    async def coroutine(**_: Any) -> None:
        return None

    with pytest.raises(TypeError, match="plain functions"):
        signals.post_save.connect(coroutine)
    with pytest.raises(TypeError):
        signals.post_save.connect(42)  # type: ignore[arg-type]
    assert not signals.post_save.disconnect(print)
