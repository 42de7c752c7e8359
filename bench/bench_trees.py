"""Two trees of QuantumORM (and issue 12's floor) on the same server and data, interleaved.

``bench_workload.py`` compares the ORM with the hand-written and floor sides within one
tree. A change to the ORM is measured here instead: one worker process per side (this
machine's Python with ``<tree>/src`` and ``<tree>/bench`` first on its path: the old tree,
the new tree, and the new tree's floor), all on one private redis-server loaded once (the
stored layout is the same for both trees, and each tree loads its own scripts). The driver
asks each side in turn for a block of calls of one operation, alternating the order of the
sides every round, and reads ``INFO commandstats`` and ``INFO cpu`` around each block:

* **wall**: µs per call, as the worker timed its block;
* **script**: µs of script calls (FCALL, EVALSHA or EVAL) per call on the server (``usec``
  of commandstats);
* **server CPU**: the server process's user + system CPU per call;
* **client CPU**: the worker's ``time.process_time()`` per call.

Round 0 warms every side and is not counted. Each line gives the median of the rounds and
their interquartile range; ``new/old`` is the median (and IQR) of the per-round ratios of
the two trees, which cancels the machine's slow spells that hit both of a round's blocks.

Usage: bench/bench_trees.py --old <tree> [--new <tree>] [--ops eq,count,range] [--n 20000]
[--calls 300] [--rounds 14]; any operation of ``bench_workload.py`` (``--ops update_q,insert``),
or ``bulk``: a block is then 3 ``bulk_create`` batches of new documents, and every figure is
per document. The trees need issue 12's ``bench/bench_workload.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

import redis
from bench_redis import redis_server  # (this folder)

HERE = Path(__file__).resolve().parent

#: batches of bench_workload.BATCH documents per block of "bulk" (bulk_create_sync each)
BULK_BATCHES = 3

#: one side: loads the data if asked, then runs blocks of calls read from stdin
WORKER = r"""
import os, sys, json, time
tree, side, url, n, calls, load = sys.argv[1:7]
sys.path[:0] = [tree + "/src", tree + "/bench"]
import redis
import bench_workload as bw
n, calls = int(n), int(calls)
if side == "floor":
    ops = bw.floor_ops(bw.Floor(redis.Redis.from_url(url)))
else:
    from quantumorm import create_connection
    create_connection("redis", url, name="trees", make_default=True)
    ops = bw.orm_ops()
data = bw.make_docs(n, n // 10, seed=1)
if load == "1":
    for batch in bw.batches(data):
        ops["bulk"](batch)
# (every side draws the same parameters, in the same order)
plan = bw.params(n, 64 * calls, 7, {str(i): d["age"] for i, d in enumerate(data, 1)})
# bulk: a block of BULK_BATCHES batches of new documents (bench_workload's batches), timed
# per document
plan["bulk"] = bw.batches(bw.make_docs(BULK_BATCHES * bw.BATCH * 16, n // 10, seed=9))
taken = {}
print("ready", flush=True)
for line in sys.stdin:
    op = line.strip()
    if not op:
        break
    args, start = plan[op], taken.get(op, 0)
    size = BULK_BATCHES if op == "bulk" else calls
    block = [args[(start + i) % len(args)] for i in range(size)]
    taken[op] = start + size
    units = sum(map(len, block)) if op == "bulk" else calls
    fn = ops[op]
    t0, c0 = time.perf_counter(), time.process_time()
    for arg in block:
        fn(arg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps([wall * 1e6 / units, cpu * 1e6 / units, units]), flush=True)
""".replace("BULK_BATCHES", str(BULK_BATCHES))


def _server(admin: redis.Redis) -> tuple[float, float]:
    """(µs of every script call so far, seconds of the server's CPU so far)."""
    stats: dict[str, Any] = admin.info("commandstats")
    cpu: dict[str, Any] = admin.info("cpu")
    usec = sum(float(v["usec"]) for k, v in stats.items()
               if k.startswith(("cmdstat_eval", "cmdstat_fcall")))
    return usec, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def _ask(worker: subprocess.Popen[str], op: str) -> list[float]:
    stdin, stdout = worker.stdin, worker.stdout
    assert stdin is not None and stdout is not None
    stdin.write(op + "\n")
    stdin.flush()
    answer: list[float] = json.loads(stdout.readline())  # wall, client CPU, units
    return answer


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    n = len(ordered)
    return (f"{statistics.median(ordered):7.1f} [{ordered[n // 4]:6.1f}-"
            f"{ordered[(3 * n) // 4]:6.1f}]")


def main(out: TextIO = sys.stdout) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, type=Path, help="the tree before the change")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="(default: this tree)")
    parser.add_argument("--ops", default="eq,count,range")
    parser.add_argument("--n", type=int, default=20000, help="documents loaded")
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    parser.add_argument("--rounds", type=int, default=14)
    args = parser.parse_args()
    ops = args.ops.split(",")
    trees = {"old": args.old, "new": args.new, "floor": args.new}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with redis_server("qtrees-") as url:
        admin = redis.Redis.from_url(url)
        workers: dict[str, subprocess.Popen[str]] = {}
        try:
            for side, tree in trees.items():
                # (the old tree's documents serve the new tree too: one layout)
                workers[side] = worker = subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(tree), side, url, str(args.n),
                     str(args.calls), "0" if side == "new" else "1"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise SystemExit(f"the {side} worker did not start")
            seen: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {
                (op, side): [] for op in ops for side in trees}
            for round_ in range(args.rounds + 1):
                order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
                for op in ops:
                    for side in order:
                        usec0, cpu0 = _server(admin)
                        wall, client, units = _ask(workers[side], op)
                        usec1, cpu1 = _server(admin)
                        if round_:
                            seen[(op, side)].append((
                                wall, (usec1 - usec0) / units,
                                (cpu1 - cpu0) * 1e6 / units, client))
        finally:
            for worker in workers.values():
                if worker.stdin is not None:
                    worker.stdin.write("\n")
                    worker.stdin.flush()
                worker.wait(timeout=60)
            admin.close()
    print(f"{args.n} documents, {args.calls} calls per block, {args.rounds} rounds: "
          "median [IQR] per call, µs", file=out)
    names = ("wall", "script", "server CPU", "client CPU")
    for op in ops:
        for side in trees:
            rows = seen[(op, side)]
            cells = "  ".join(f"{name} {_spread([r[i] for r in rows])}"
                              for i, name in enumerate(names))
            print(f"{op:8s} {side:5s} {cells}", file=out)
        for i, name in enumerate(names):
            ratios = [b[i] / a[i] for a, b in zip(seen[(op, "old")], seen[(op, "new")],
                                                 strict=True) if a[i] > 0]
            if ratios:
                ratios.sort()
                print(f"{'':8s} new/old {name:10s} {statistics.median(ratios):.3f} "
                      f"[{ratios[len(ratios) // 4]:.3f}-{ratios[(3 * len(ratios)) // 4]:.3f}]",
                      file=out)


if __name__ == "__main__":
    main()
