"""``bench/bench_layouts.py`` and ``bench/bench_partitions.py`` at a tiny size, as CI runs
them: smoke tests that they complete against the test server and print every row (the
partitions study also checks that its two ways return the same rows); and
``bench/bench_format3.py --kinds``, whose Lua must give Python's index entries. Timings and sizes
are never asserted, only that each layout's figures are there and positive."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(ROOT / "bench" / name), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_layout_study_measures_every_layout(redis_url: str) -> None:
    done = run_script("bench_layouts.py", redis_url, "--n", "300")
    assert done.returncode == 0, done.stdout + done.stderr
    for layout in ("orm", "packed", "packed+sets", "format3", "format3, 4 writes",
                   "format3, 4 dense", "floor", "plain"):
        row = re.search(rf"^{re.escape(layout)} +\| +(\d+) \| +([\d.]+)x \| +([\d.]+) \|",
                        done.stdout, re.MULTILINE)
        assert row is not None, (layout, done.stdout)
        assert int(row[1]) > 0 and float(row[3]) > 0
    assert "index sets" in done.stdout and "meta hashes" in done.stdout


def test_the_partition_study_runs_both_ways_alike(redis_url: str) -> None:
    done = run_script("bench_partitions.py", redis_url, "--n", "300", "--iterations", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = re.findall(r"^ *(\d+) +(\d+) \| +\d+ \| +\d+ \| [\d.]+x$", done.stdout, re.MULTILINE)
    assert {(int(p), int(w)) for p, w in rows} == {(p, w) for p in (1, 4, 16, 64)
                                                    for w in (10, 100)}


def test_the_format3_study_derives_python_s_entries(redis_url: str) -> None:
    # (its own check: any entry Lua derives that differs from Python's encoder fails the run)
    done = run_script("bench_format3.py", redis_url, "--kinds", "3000")
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"^kinds: (\d+) of 3000 .* (\d+) left to the fallback .*, none different$",
                      done.stdout, re.MULTILINE)
    assert found is not None, done.stdout
    assert int(found[1]) > 0 and int(found[1]) + int(found[2]) == 3000
