"""``bench/bench_trees.py`` at a tiny size: a smoke test that it runs two trees (here this
tree twice) and the floor on one server, interleaved, and prints every side's row and the
paired ratios of each operation. Its timings are never asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_trees.py"


def test_the_tree_comparison_runs_every_side_of_every_operation(redis_url: str) -> None:
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, str(SCRIPT), "--old", str(ROOT), "--ops", "eq,count,update,insert,delete",
                           "--n", "200", "--calls", "4", "--rounds", "3"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("200 documents, 4 calls per block, 3 rounds")
    rows = {}
    for op in ("eq", "count", "update", "insert", "delete"):
        for side in ("old", "new", "floor"):
            row = [line for line in lines if line.split()[:2] == [op, side]]
            assert len(row) == 1, done.stdout
            for column in ("wall", "script", "server CPU", "client CPU", "rest"):
                assert column in row[0]
            rows[(op, side)] = row[0].split()
    assert sum("new/old client CPU" in line for line in lines) == 5, done.stdout
    # both trees' updates save (they share documents: the second must not find its values
    # set already), and every side's deletes run its script on what its inserts made
    for op in ("update", "delete"):
        for side in ("old", "new", "floor"):
            assert float(rows[(op, side)][rows[(op, side)].index("script") + 1]) > 0
