"""A blocking (``_sync``) call from the thread running an event loop is refused on every
backend with :class:`SyncInAsyncContext`, before anything is sent; from a worker thread, or
with ``QUANTUMORM_ALLOW_SYNC_IN_LOOP=1``, it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import quantumorm
from quantumorm import InvalidOperation, SyncInAsyncContext

OPT_OUT = "QUANTUMORM_ALLOW_SYNC_IN_LOOP"


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPT_OUT, raising=False)


async def test_a_blocking_call_on_the_loop_thread_is_refused(store: str, models: Any,
                                                             strict: None) -> None:
    Account = models.Account
    doc = Account(email="a@x", age=3)
    with pytest.raises(SyncInAsyncContext) as caught:
        doc.save_sync()
    message = str(caught.value)
    assert isinstance(caught.value, InvalidOperation)
    assert caught.value.call == "Account.save_sync()"
    assert "await" in message and "asyncio.to_thread" in message and OPT_OUT in message
    assert await Account.objects.count() == 0  # refused before anything was written
    await doc.save()

    qs = Account.objects.filter(age=3)
    connection = quantumorm.get_connection(backend=store)

    def in_transaction() -> None:
        with connection.transaction_sync() as tx:
            tx.save(Account(email="b@x", age=3))

    blocking: list[Callable[[], Any]] = [
        qs.all_sync, qs.count_sync, qs.exists_sync, qs.first_sync,
        lambda: qs.get_sync(id=doc.id), lambda: qs.get_many_sync([doc.id]),
        lambda: list(qs), lambda: [d for d in qs],
        lambda: qs.update_sync(age=4), qs.delete_sync,
        lambda: Account.objects.create_sync(email="c@x"),
        lambda: Account.objects.bulk_create_sync([Account(email="d@x")]),
        doc.reload_sync, doc.delete_sync, lambda: doc.inc_sync("age", 1),
        lambda: connection.transaction_sync().get(Account, doc.id),
        in_transaction,
        lambda: connection.run_transaction_sync(lambda tx: tx.get(Account, doc.id)),
    ]
    for call in blocking:
        with pytest.raises(SyncInAsyncContext):
            call()
    # nothing was changed by any of them
    stored = await Account.objects.all()
    assert [(d.id, d.email, d.age, d.version) for d in stored] == [
        (doc.id, "a@x", 3, doc.version)]


async def test_a_worker_thread_or_the_opt_out_may_block(store: str, models: Any,
                                                        strict: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    Account = models.Account
    doc = Account(email="a@x", age=3)
    await asyncio.to_thread(doc.save_sync)  # another thread: only that thread waits
    qs = Account.objects.filter(age=3)
    assert await asyncio.to_thread(qs.count_sync) == 1
    assert await asyncio.to_thread(list, qs) == [doc]
    monkeypatch.setenv(OPT_OUT, "1")
    assert qs.count_sync() == 1
    assert [d.id for d in qs] == [doc.id]
    doc.age = 4
    doc.save_sync()
    monkeypatch.setenv(OPT_OUT, "0")
    with pytest.raises(SyncInAsyncContext):
        qs.count_sync()


def test_blocking_calls_outside_a_loop_run(models: Any, strict: None) -> None:
    # a plain (sync) test runs no loop: the blocking API works as always
    Account = models.Account
    doc = Account(email="a@x", age=3)
    doc.save_sync()
    assert Account.objects.filter(age=3).count_sync() == 1
    assert [d.id for d in Account.objects.all_sync()] == [doc.id]
