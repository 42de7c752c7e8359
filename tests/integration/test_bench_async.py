"""``bench/bench_async.py`` (issue 12's async part) at a tiny size, as CI runs it: a smoke test
that it completes against the test server and prints every operation's rows, every cell of its
grid and the waits section. Its timings are never asserted."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

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


def test_the_waits_section_warms_each_side_before_it_measures(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A cold ORM connection does its first-use work inside the first calls; measured cold,
    # the 5 calls that got a connection took over 100 ms each and the waits section showed
    # that work, not the wait. Each side first runs a cell with no more tasks than the pool.
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    bench = importlib.import_module("bench_async")
    calls: list[tuple[int, int]] = []  # (tasks, calls) of each run_cell, in order
    run_cell = bench.run_cell

    async def counted(fn: Any, args: list[Any], tasks: int) -> Any:
        calls.append((tasks, len(args)))
        return await run_cell(fn, args, tasks)

    monkeypatch.setattr(bench, "run_cell", counted)
    admin = redis.Redis.from_url(redis_url)
    try:
        sha = {name: admin.script_load(source) for name, source in bench.SCRIPTS.items()}
        plans = {side: bench.Plan([], 10, 1) for side in bench.SIDES}
        cells: list[Any] = []
        asyncio.run(bench.waits_demo(redis_url, 5, 40, 0.5, 30, plans, sha, cells))
    finally:
        bench.wipe(admin, bench.ORM_PATTERN)
        admin.close()
    assert calls == [(5, 20), (5, 20), (40, 30), (40, 30)]
    assert [(c.side, c.tasks, c.pool, c.ops) for c in cells] == [
        ("orm", 40, 5, 30), ("hand", 40, 5, 30)]
    for c in cells:  # a wait of up to 0.5 s for 40 tasks' queries (~10 rows each) on 5
        assert c.errors == 0, c
