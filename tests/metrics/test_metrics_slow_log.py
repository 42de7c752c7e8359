"""The slow-operation log: a WARNING on ``quantumorm.slow`` for operations above the
threshold, with the model, operation, duration, round trips and plans (no values), whether
metrics are on or off; the threshold from ``QUANTUMORM_SLOW_MS`` too."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from metrics_models import LiteUser, RedisUser

import quantumorm
from quantumorm import metrics
from quantumorm.engine import observe

SECRET = "s3cret-value-never-logged"


async def test_every_operation_above_zero_is_logged(lite: quantumorm.Connection,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    await LiteUser.objects.count()
    metrics.slow_log(0)
    assert observe.watcher is not None and not metrics.enabled()
    with caplog.at_level(logging.WARNING, logger="quantumorm.slow"):
        await LiteUser(name=SECRET, age=1).save()
        await LiteUser.objects.filter(name=SECRET).count()
    records = [r for r in caplog.records if r.name == "quantumorm.slow"]
    assert [(r.levelno, r.qorm_model, r.qorm_operation, r.qorm_round_trips)  # type: ignore[attr-defined]
            for r in records] == [(logging.WARNING, "LiteUser", "save", 2),
                                  (logging.WARNING, "LiteUser", "count", 1)]
    count = records[1]
    assert count.getMessage().startswith(
        "slow operation model=LiteUser operation=count backend=sqlite ms=")
    assert "round_trips=1 plans=SELECT COUNT(*) FROM" in count.getMessage()
    for record in records:
        assert SECRET not in record.getMessage() and SECRET not in repr(record.__dict__)
    assert metrics.snapshot().operations == ()  # (metrics stay off)


async def test_threshold_filters(conn: quantumorm.Connection,
                                 caplog: pytest.LogCaptureFixture) -> None:
    await RedisUser.objects.count()
    metrics.slow_log(60_000)  # a minute: nothing here is that slow
    with caplog.at_level(logging.WARNING, logger="quantumorm.slow"):
        await RedisUser(name="a", age=1).save()
    assert not [r for r in caplog.records if r.name == "quantumorm.slow"]
    assert metrics.slow_threshold_ms() == 60_000
    metrics.slow_log(None)
    assert observe.watcher is None
    for bad in (-1, "5", True, float("nan")):
        with pytest.raises(quantumorm.ConfigurationError):
            metrics.slow_log(bad)  # type: ignore[arg-type]


def test_threshold_from_the_environment(tmp_path: Path) -> None:
    script = (
        "import logging, quantumorm\n"
        "from quantumorm import Document, StringField\n"
        "logging.basicConfig(format='%(name)s %(levelname)s %(message)s')\n"
        "class Note(Document):\n"
        "    title = StringField()\n"
        "    class Meta:\n"
        "        backend = 'sqlite'\n"
        "quantumorm.create_connection(backend='sqlite', url='sqlite://')\n"
        "Note(title='x').save_sync()\n")
    env = {**os.environ, "QUANTUMORM_SLOW_MS": "0",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("quantumorm.slow WARNING slow operation model=Note operation=save "
            "backend=sqlite") in done.stderr


async def test_change_feed_reads_are_counted_never_slow(
        conn: quantumorm.Connection, caplog: pytest.LogCaptureFixture) -> None:
    await RedisUser(name="a", age=1).save()
    metrics.enable()
    metrics.slow_log(0)
    feed = RedisUser.objects.changes(since="0")
    with caplog.at_level(logging.WARNING, logger="quantumorm.slow"):
        assert [e.op for e in await feed.read()] == ["create"]
        assert [e.op async for e in RedisUser.objects.changes(since="0", wait=0)] == ["create"]
    assert not [r for r in caplog.records if r.name == "quantumorm.slow"]
    read = metrics.snapshot().operation("RedisUser", "read")
    assert read is not None and read.count >= 2 and read.errors == {}
