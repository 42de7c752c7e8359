"""A watched operation whose plan fails gets the plan's own error, even when naming the plan
for a span or the slow-operation log fails too (``metrics/watch.py``: the name is made after
the plan was sent)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from quantumorm.metrics.watch import Running


class _Connection:
    kind = "redis"


class _Refused(Exception):
    pass


class _Failing:
    """An executor whose every plan fails (the inner executor Running wraps)."""

    def __init__(self, awaited: bool) -> None:
        self.awaited = awaited

    def execute(self, plan: Any) -> Any:
        if not self.awaited:
            raise _Refused(plan)

        async def failing() -> Any:
            raise _Refused(plan)
        return failing()


class _BrokenTracer:
    def round_trip(self, trace: Any, plan: Any) -> None:
        raise RuntimeError("tracer broken")


def _running(awaited: bool) -> Running:
    running = Running(_Failing(awaited), _Connection(), None, None, "op")
    running.tracer = _BrokenTracer()  # type: ignore[assignment]
    return running


def test_a_failed_plan_keeps_its_error_when_the_tracer_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "quantumorm.slow"):
        with pytest.raises(_Refused):
            _running(False).execute("plan")
    assert "naming a failed plan" in caplog.text


def test_a_failed_awaited_plan_keeps_its_error_when_the_tracer_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "quantumorm.slow"):
        with pytest.raises(_Refused):
            asyncio.run(_running(True).execute("plan"))
    assert "naming a failed plan" in caplog.text


def test_a_sent_plans_tracer_failure_is_raised() -> None:
    # (a plan that succeeded: nothing to hide, the tracer's error is the caller's)
    class _Ok:
        def execute(self, plan: Any) -> Any:
            return ["OK"]
    running = Running(_Ok(), _Connection(), None, None, "op")
    running.tracer = _BrokenTracer()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="tracer broken"):
        running.execute("plan")
