"""bulk_create runs its steps with the cyclic garbage collector paused from
``gcpause.PAUSE_FROM`` documents (its round trips not: see tests/unit/test_gc_pause.py),
on every backend, from the sync and the async API; fewer documents run as before, and the
collector is on again afterwards, also after an error."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from contract_models import run

from quantumorm import ValidationError, gcpause, signals


@pytest.fixture
def collector_seen(models: Any) -> Iterator[list[bool]]:
    """Whether the collector was on, as bulk_create's signals' receivers find it."""
    seen: list[bool] = []

    def receiver(sender: Any, documents: Any, **_: Any) -> None:
        seen.append(gc.isenabled())

    for signal in (signals.pre_bulk_create, signals.post_bulk_create):
        signal.connect(receiver, sender=models.Account)
    was = gc.isenabled()
    gc.enable()
    yield seen
    for signal in (signals.pre_bulk_create, signals.post_bulk_create):
        assert signal.disconnect(receiver, sender=models.Account)
    if not was:
        gc.disable()


async def test_a_large_bulk_create_computes_with_the_collector_paused(
        models: Any, mode: str, collector_seen: list[bool]) -> None:
    count = gcpause.PAUSE_FROM + 10
    docs = [models.Account(email=f"{i}@x", age=i) for i in range(count)]
    written = await run(models.Account.objects, "bulk_create", mode, docs, batch_size=50)
    assert collector_seen == [False, False] and gc.isenabled()
    assert len(written) == count
    stored = await run(models.Account.objects.order_by("age"), "all", mode)
    assert [(d.email, d.age) for d in stored] == [(f"{i}@x", i) for i in range(count)]


async def test_a_small_bulk_create_runs_as_before(
        models: Any, mode: str, collector_seen: list[bool]) -> None:
    docs = [models.Account(email=f"{i}@x", age=i) for i in range(gcpause.PAUSE_FROM - 1)]
    assert len(await run(models.Account.objects, "bulk_create", mode, docs)) == len(docs)
    assert collector_seen == [True, True] and gc.isenabled()


async def test_an_invalid_bulk_create_leaves_the_collector_on(
        models: Any, mode: str, collector_seen: list[bool]) -> None:
    docs = [models.Account(email=f"{i}@x", age=-1 if i == 70 else i)
            for i in range(gcpause.PAUSE_FROM + 10)]
    with pytest.raises(ValidationError):
        await run(models.Account.objects, "bulk_create", mode, docs)
    assert collector_seen == [False] and gc.isenabled()
    assert await run(models.Account.objects, "count", mode) == 0
