"""Recording never changes an operation's outcome; on-demand reads are charged to their model;
memory samples are spread over every partition."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from metrics_models import RedisUser

import quantumorm
from quantumorm import metrics
from quantumorm.backends.redis.usage import _shares
from quantumorm.metrics import watch


class BrokenTracer:
    """A tracer whose spans cannot end (an exporter's bug, say)."""

    def start(self, op: Any) -> None:
        return None

    def round_trip(self, trace: Any, plan: Any) -> None:
        return None

    def note(self, trace: Any, kind: str, reason: str) -> None:
        return None

    def end(self, trace: Any, error: BaseException | None) -> None:
        raise RuntimeError("the exporter is broken")


async def test_a_failing_tracer_changes_no_outcome(conn: quantumorm.Connection,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    watch.WATCH.tracer = BrokenTracer()
    watch.sync()
    caplog.set_level(logging.ERROR, logger="quantumorm.slow.errors")
    saved = await RedisUser(name="ann", age=1).save()  # committed: no error for it
    assert (await RedisUser.objects.get(id=saved.id)).name == "ann"
    with pytest.raises(quantumorm.DoesNotExist):  # the operation's own error, not the tracer's
        await RedisUser.objects.get(id="missing")
    assert [r.getMessage() for r in caplog.records] == [
        "recording an operation failed model=RedisUser operation=save",
        "recording an operation failed model=RedisUser operation=get",
        "recording an operation failed model=RedisUser operation=get"]


async def test_on_demand_reads_are_charged_to_their_model(conn: quantumorm.Connection) -> None:
    await RedisUser(name="ann", age=1).save()
    metrics.enable()
    await metrics.stream_stats(RedisUser)
    await metrics.memory_usage(RedisUser, samples=5)
    found = metrics.snapshot()
    for name in ("stream_stats", "memory_usage"):
        stats = found.operation("RedisUser", name)
        assert stats is not None and stats.count == 1


def test_samples_are_spread_over_every_partition() -> None:
    assert _shares(5, [1] * 7) == [1, 1, 1, 1, 1, 0, 0]
    assert _shares(10, [10, 10, 10, 10]) == [3, 3, 2, 2]  # every partition sampled
    assert _shares(100, [10, 10, 10]) == [10, 10, 10]  # never more than a partition holds
    assert _shares(10, [1, 1000]) == [0, 10]
    assert _shares(10, [0, 0]) == [0, 0]
    assert sum(_shares(64, [3, 7, 11, 13, 17])) == 51 and _shares(64, [3, 7]) == [3, 7]
