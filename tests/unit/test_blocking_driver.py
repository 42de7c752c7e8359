"""The blocking driver refuses to run on the thread that runs an event loop (no store needed:
a fake executor answers the plans)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import quantumorm
from quantumorm import InvalidOperation, SyncInAsyncContext
from quantumorm.engine import drive

OPT_OUT = drive.ALLOW_SYNC_IN_LOOP


class Echo:
    def __init__(self) -> None:
        self.plans: list[Any] = []

    def execute(self, plan: Any) -> Any:
        self.plans.append(plan)
        return plan * 2


def op() -> drive.Op[int]:
    reply = yield 21
    return reply  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPT_OUT, raising=False)


def test_outside_a_loop_the_blocking_driver_runs() -> None:
    assert drive.run(op(), Echo()) == 42


def test_on_the_loop_thread_it_is_refused_before_the_first_plan() -> None:
    executor = Echo()

    async def main() -> None:
        with pytest.raises(SyncInAsyncContext) as caught:
            drive.run(op(), executor)
        assert "'op'" in str(caught.value) and OPT_OUT in str(caught.value)

    asyncio.run(main())
    assert executor.plans == []
    assert issubclass(SyncInAsyncContext, InvalidOperation)
    assert "SyncInAsyncContext" in quantumorm.__all__


def test_from_a_worker_thread_of_the_loop_it_runs() -> None:
    async def main() -> int:
        return await asyncio.to_thread(drive.run, op(), Echo())

    assert asyncio.run(main()) == 42


def test_a_thread_without_a_loop_is_not_confused_by_another_threads_loop() -> None:
    results: list[int] = []
    started, release = threading.Event(), threading.Event()

    async def hold_a_loop() -> None:
        started.set()
        while not release.is_set():
            await asyncio.sleep(0.005)

    holder = threading.Thread(target=asyncio.run, args=(hold_a_loop(),))
    holder.start()
    try:
        assert started.wait(5)
        results.append(drive.run(op(), Echo()))  # this thread runs no loop
    finally:
        release.set()
        holder.join(5)
    assert results == [42]


@pytest.mark.parametrize(("value", "allowed"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("", False), ("no", False),
])
def test_the_environment_opt_out(monkeypatch: pytest.MonkeyPatch, value: str,
                                 allowed: bool) -> None:
    monkeypatch.setenv(OPT_OUT, value)

    async def main() -> int:
        return drive.run(op(), Echo())

    if allowed:
        assert asyncio.run(main()) == 42
    else:
        with pytest.raises(SyncInAsyncContext):
            asyncio.run(main())
