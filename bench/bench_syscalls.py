"""System calls per operation: two trees of QuantumORM and issue 12's floor, under strace.

Where does an operation's wall time go between the client's CPU and the server's? This
counts what each side asks of the kernel per call: one worker process per side and
operation (this machine's Python with ``<tree>/src`` and ``<tree>/bench`` first on its
path), on one private redis-server loaded once; the worker warms up, ``strace -c -f`` is
attached to it, it runs ``--calls`` calls, and the counts are divided by the calls. The
worker first runs as many calls untraced and reports its context switches per call
(``getrusage``: a voluntary one is a wait for a reply in which the process slept; strace
would add two per system call) and its wall and CPU time per call (one block, one side at
a time: compare sides with ``bench_trees.py``). A delete deletes what the worker inserted
first, untimed and untraced.

Usage: bench/bench_syscalls.py --old <tree> [--new <tree>] [--ops get,eq,insert,update,
update_q,delete] [--n 2000] [--calls 500]. Needs ``strace`` (and ptrace allowed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_redis import redis_server  # (this folder)

HERE = Path(__file__).resolve().parent

#: one side and one operation: loads the data if asked, warms up, waits for "go", runs
WORKER = r"""
import json, resource, sys, time
tree, side, url, n, calls, op, load = sys.argv[1:8]
sys.path[:0] = [tree + "/src", tree + "/bench"]
import redis
import bench_workload as bw
n, calls = int(n), int(calls)
if side == "floor":
    ops = bw.floor_ops(bw.Floor(redis.Redis.from_url(url)))
else:
    from quantumorm import create_connection
    create_connection("redis", url, name="syscalls", make_default=True)
    ops = bw.orm_ops()
data = bw.make_docs(n, n // 10, seed=1)
if load == "1":
    for batch in bw.batches(data):
        ops["bulk"](batch)
    print("loaded", flush=True)
    sys.exit(0)
plan = bw.params(n, 2 * calls + 20, 7, {str(i): d["age"] for i, d in enumerate(data, 1)})
if side == "new":  # (the trees share documents: the new one sets other ages than the old
    # one just set; about 1% of its first touches still find the age it sets, and that
    # update reads without writing: counts of system calls, not a timing, so it is kept)
    for key in ("update", "update_q"):
        plan[key] = [(id, (age + 50) % 100) for id, age in plan[key]]
args = ([ops["insert"](doc) for doc in plan["insert"]] if op == "delete" else plan[op])
fn = ops[op]
for arg in args[:20]:
    fn(arg)
# untraced: context switches and times (strace stops the process at every system call)
u0, t0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
for arg in args[20:20 + calls]:
    fn(arg)
t1, c1, u1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": (t1 - t0) * 1e6 / calls, "cpu": (c1 - c0) * 1e6 / calls,
                  "voluntary": (u1.ru_nvcsw - u0.ru_nvcsw) / calls,
                  "involuntary": (u1.ru_nivcsw - u0.ru_nivcsw) / calls}), flush=True)
sys.stdin.readline()
for arg in args[20 + calls:20 + 2 * calls]:  # traced
    fn(arg)
print("done", flush=True)
sys.stdin.readline()
"""

#: a row of ``strace -c``'s table: % time, seconds, usecs/call, calls, [errors,] syscall
ROW = re.compile(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def _worker(tree: Path, side: str, url: str, args: argparse.Namespace, op: str,
            load: bool, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tree), side, url, str(args.n), str(args.calls),
         op, "1" if load else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def traced(tree: Path, side: str, url: str, args: argparse.Namespace, op: str,
           env: dict[str, str], workdir: str) -> tuple[dict[str, float], dict[str, float]]:
    """(system calls per call by name, the worker's own figures per call)."""
    worker = _worker(tree, side, url, args, op, False, env)
    assert worker.stdin is not None and worker.stdout is not None
    figures: dict[str, float] = json.loads(worker.stdout.readline())
    out = os.path.join(workdir, f"{side}-{op}.strace")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(worker.pid)],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # (strace attaches to every thread of the worker)
        worker.stdin.write("go\n")
        worker.stdin.flush()
        if worker.stdout.readline().strip() != "done":
            raise SystemExit(f"the {side} worker of {op} failed")
    finally:
        tracer.send_signal(signal.SIGINT)  # (strace then writes its table)
        tracer.wait(timeout=60)
        worker.stdin.write("\n")
        worker.stdin.flush()
        worker.wait(timeout=60)
    counts: dict[str, float] = {}
    with open(out) as table:
        for line in table:
            match = ROW.match(line)
            if match and match.group(2) != "total":
                counts[match.group(2)] = int(match.group(1)) / args.calls
    return counts, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, type=Path, help="the tree before the change")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="(default: this tree)")
    parser.add_argument("--ops", default="get,eq,insert,update,update_q,delete")
    parser.add_argument("--n", type=int, default=2000, help="documents loaded")
    parser.add_argument("--calls", type=int, default=500, help="calls traced per worker")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("strace is not installed")
    trees = {"old": args.old, "new": args.new, "floor": args.new}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with redis_server("qsyscalls-") as url, tempfile.TemporaryDirectory(
            prefix="qsyscalls-") as workdir:
        for side in ("old", "floor"):  # (the trees share the ORM's documents: one layout)
            loader = _worker(trees[side], side, url, args, "get", True, env)
            assert loader.stdout is not None
            if loader.stdout.readline().strip() != "loaded":
                raise SystemExit(f"the {side} side did not load")
            loader.wait(timeout=60)
        print(f"{args.n} documents, {args.calls} calls traced per side and operation: "
              "system calls per call (strace -c), context switches per call")
        for op in args.ops.split(","):
            for side, tree in trees.items():
                counts, figures = traced(tree, side, url, args, op, env, workdir)
                total = sum(counts.values())
                calls = "  ".join(f"{name} {count:.2f}" for name, count in
                                  sorted(counts.items(), key=lambda kv: -kv[1])
                                  if count >= 0.01)
                print(f"{op:8s} {side:5s} total {total:5.2f}  {calls}  | switches: "
                      f"voluntary {figures['voluntary']:.2f} involuntary "
                      f"{figures['involuntary']:.2f}  | untraced µs: wall "
                      f"{figures['wall']:.1f} client CPU {figures['cpu']:.1f}")


if __name__ == "__main__":
    main()
