"""update_with_retry: concurrent read-modify-write without lost updates, on every backend."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from quantumorm import DoesNotExist, VersionConflict

WRITERS, ROUNDS = 8, 10


def bump(doc: Any) -> None:
    doc.age += 1


async def test_concurrent_tasks_lose_no_update(models: Any) -> None:
    counter = await models.Account(id="c", email="c@x", age=0).save()
    created = counter.version

    async def writer() -> None:
        for _ in range(ROUNDS):
            mine = (await models.Account.objects.get_many(["c"]))[0]
            await mine.update_with_retry(bump, attempts=100)

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    await counter.reload()
    # every update added exactly 1: none lost, none applied twice
    assert counter.age == WRITERS * ROUNDS and counter.version > created


def test_concurrent_threads_lose_no_update(models: Any) -> None:
    counter = models.Account(id="c", email="c@x", age=0).save_sync()
    created = counter.version
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(ROUNDS):
                mine = models.Account.objects.get_many_sync(["c"])[0]
                mine.update_with_retry_sync(bump, attempts=100)
        except BaseException as exc:  # reported below: a thread cannot fail the test
            failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    counter.reload_sync()
    # every update added exactly 1: none lost, none applied twice
    assert counter.age == WRITERS * ROUNDS and counter.version > created


def test_retries_are_bounded_and_deletion_is_reported(models: Any) -> None:
    a = models.Account(id="a", email="a@x", age=0).save_sync()
    stale = models.Account.objects.get_many_sync(["a"])[0]

    def bump_and_race(doc: Any) -> None:  # another writer gets in every time
        doc.age += 1
        models.Account.objects.get_many_sync(["a"])[0].update_with_retry_sync(bump)

    with pytest.raises(VersionConflict):
        stale.update_with_retry_sync(bump_and_race, attempts=3)
    assert models.Account.objects.get_sync(id="a").age == 3  # only the racers' bumps
    a.reload_sync()
    a.delete_sync()
    with pytest.raises(DoesNotExist):
        stale.update_with_retry_sync(bump, attempts=2)
    with pytest.raises(ValueError):
        stale.update_with_retry_sync(bump, attempts=0)
