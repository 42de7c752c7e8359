"""examples/demo.py runs end to end, with a redis-server it starts (and stops) itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.py"
TIMEOUT = 120  # seconds; the demo takes a few

HEADERS = [
    "1. Setup",
    "2. Bulk load (bulk_create, 500 documents per round trip)",
    "3. Queries (async API)",
    "4. Pagination",
    "5. Projections: only() and values()",
    "6. explain(): how a query is answered",
    "7. QuerySet.update() and delete()",
    "8. Errors that carry their facts",
    "9. Change events, atomic operations and a transaction",
    "10. The same API, blocking (sync twins)",
    "Done",
]


@pytest.mark.redis
def test_demo_runs_with_its_own_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not on PATH: install it (./run-tests does) to run the demo",
                    pytrace=False)
    env = {name: value for name, value in os.environ.items()
           if name not in ("REDIS_URL", "QUANTUMORM_URL")}
    result = subprocess.run(
        [sys.executable, str(DEMO)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    out = result.stdout
    assert result.returncode == 0, (
        f"demo exited with {result.returncode}\n--- stdout (end) ---\n{out[-3000:]}\n"
        f"--- stderr (end) ---\n{result.stderr[-3000:]}"
    )
    lines = out.splitlines()
    for header in HEADERS:
        assert header in lines, f"section header {header!r} missing from the demo's output"
    for shown in ("VersionConflict:", "UniqueViolation:", "ValidationError on 7 fields",
                  "strategy:      scan", "customer.save_sync()", "run_transaction: move",
                  "3 events since the feed started"):
        assert shown in out
    assert "Traceback" not in result.stderr

    # The private server was stopped (by pid) before the demo exited.
    started = re.search(r"Started private redis-server \S+ \(pid (\d+)\) on 127\.0\.0\.1:\d+",
                        out)
    assert started, "the demo did not report starting its own redis-server"
    pid = int(started.group(1))
    assert f"Stopped private redis-server (pid {pid})." in out
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
