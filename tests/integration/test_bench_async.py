"""``bench/bench_async.py`` (issue 12's async part) at a tiny size, as CI runs it: a smoke test
that it completes against the test server and prints every operation's rows, every cell of its
grid and the waits section. Its timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_async.py"
OPERATIONS = ["get", "eq", "update", "insert"]
LABELS = ["get by id: get_many([id])", "equality query (~10 rows)", "update (load-set-save)",
          "single insert"]
QUICK_TASKS = [1, 10, 100]
QUICK_POOLS = [5, 50]


def run_bench(redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # this tree's package first, whatever the interpreter has installed
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(SCRIPT), "--n", "200", "--ops", "30", "--quick",
                           *extra], capture_output=True, text=True, env=env, timeout=300)


def test_the_async_benchmark_runs_and_prints_every_row(redis_url: str) -> None:
    done = run_bench(redis_url)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for label in LABELS:
        assert label in done.stdout, (label, done.stdout)
    for op in OPERATIONS:
        for tasks in QUICK_TASKS:
            # one throughput row, and one latency row per pool size
            assert len([r for r in rows if r.startswith(f"| {op} {tasks} |")]) == \
                1 + len(QUICK_POOLS), (op, tasks, done.stdout)
    for side in ("orm", "hand"):
        assert [r for r in rows if r.startswith(f"| waits {side} |")], (side, done.stdout)


def test_the_json_output_has_every_cell_on_both_sides(redis_url: str) -> None:
    done = run_bench(redis_url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    cells = {(c["side"], c["op"], c["tasks"], c["pool"]) for c in out["cells"]}
    assert cells == {(side, op, tasks, pool) for side in ("orm", "hand") for op in OPERATIONS
                     for tasks in QUICK_TASKS for pool in QUICK_POOLS}
    # no call failed but for a pool wait (a timing matter, never asserted): concurrent
    # updates never conflict, no query or insert errs
    for c in out["cells"]:
        assert c["errors"] == 0, c
    assert {c["side"] for c in out["waits"]["cells"]} == {"orm", "hand"}
