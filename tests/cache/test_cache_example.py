"""examples/cache_sessions.py runs end to end on the test redis-server (REDIS_URL), and
leaves none of its keys behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cache_sessions.py"


def test_the_example_runs_and_cleans_up(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "next read (never stale): 'Alice Smith'" in out
    assert "after a save the slot holds b'T" in out
    assert "query cached: ['alice@example.com'] then ['alice@example.com']" in out
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match="{example:*")) == []
    finally:
        client.close()
