"""``bench/bench_workload.py`` (issue 12's benchmark) at a tiny size, as CI runs it: a smoke
test that it completes against the test server, prints every operation's row and that its
cross-check of the two sides' results passed. Its timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_workload.py"
ROWS = ["bulk insert, per document", "get by id: get_many([id])", "get by id: get(id=)",
        "equality query (~10 rows)", "range + order by + limit 100",
        'active & age > 60 & "t7" in tags', "count of a range", "update one field by id",
        "update one field by id: filter(id=).update()", "single insert", "delete by id",
        "memory per document"]


def run_bench(redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # this tree's package first, whatever the interpreter has installed
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(SCRIPT), "--n", "300", "--iterations", "5",
                           "--warmup", "2", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_workload_benchmark_runs_and_its_sides_agree(redis_url: str) -> None:
    done = run_bench(redis_url)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for label in ROWS:
        assert [r for r in rows if r.startswith("| " + label)], (label, done.stdout)
    assert "cross-check: passed" in done.stdout


def test_the_json_output_has_every_operation_on_both_sides(redis_url: str) -> None:
    done = run_bench(redis_url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    operations = {"bulk", "get", "get_q", "eq", "range", "compound", "count", "update",
                  "update_q", "insert", "delete"}
    for side in ("orm", "hand"):
        assert set(out["median_us"][side]) == operations
        assert set(out["counts"][side]) == operations
        assert set(out["python_calls"][side]) == operations
        assert out["memory"][side]["keys"] > 0
    assert out["cross_check"] and all(out["cross_check"].values())
