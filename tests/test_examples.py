"""Every example script runs, twice in a row, against the test server: each names its server
by ``QUANTUMORM_URL`` or ``REDIS_URL`` and resets what it created, so a second run (on the
data the first one left) must succeed too.

An example is a script with a ``__main__`` guard in examples/; those with a test of their own
(:data:`OWN_TESTS`) are left to it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: examples run by a test of their own (a web application is not a script to run twice)
OWN_TESTS = {"fastapi_app.py"}
#: examples that leave their data on the server for inspection (the others delete it)
KEEP_DATA = {"demo.py", "quickstart.py"}
TIMEOUT = 300  # seconds: a stuck example fails, it does not hang CI
GUARD = re.compile(r'^if __name__ == "__main__":', re.M)


def scripts() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py")
                  if path.name not in OWN_TESTS and GUARD.search(path.read_text("utf-8")))


def test_the_examples_are_found() -> None:
    assert {"demo.py", "quickstart.py", "cache_sessions.py"} <= set(scripts())


@pytest.mark.parametrize("name", scripts())
def test_example_runs_twice(name: str, redis_url: str, redis_client: redis.Redis,
                            tmp_path: Path) -> None:
    redis_client.flushdb()
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "QUANTUMORM_URL")}
    # the first run names the server by QUANTUMORM_URL, the second by REDIS_URL
    for run, variable in enumerate(("QUANTUMORM_URL", "REDIS_URL"), start=1):
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / name)], cwd=tmp_path,
            env={**base, variable: redis_url},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
        assert result.returncode == 0, (
            f"{name}, run {run} ({variable}): exit {result.returncode}\n--- stdout (end) ---\n"
            f"{result.stdout[-3000:]}\n--- stderr (end) ---\n{result.stderr[-3000:]}")
        assert result.stdout.strip(), f"{name} printed nothing"
    # it used the server it was given (not a private one), and only namespaces of its own
    # (never the default "qorm" one of an application)
    keys = list(redis_client.scan_iter(count=1000))
    assert bool(keys) == (name in KEEP_DATA)
    assert not any(key.startswith((b"{qorm:", b"qorm:")) for key in keys), keys[:5]
