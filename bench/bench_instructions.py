"""Server instructions per call of one operation, two trees (and the floor), under callgrind.

Wall and CPU times on a shared machine swing by tens of percent from one block to the next;
the instructions redis-server runs per call do not. One private redis-server runs under
``valgrind --tool=callgrind`` (``hz 1``: its background task, which runs per unit of time,
not per call, adds almost nothing however slow the server runs under valgrind). Each side in
turn (alternating the order every repeat): FLUSHALL, a load of ``--n`` documents of issue
12's workload, 200 warm-up calls, then the counters are zeroed, ``--calls`` calls made, and
the counters dumped: Ir (instructions) of the whole server per call, parsing, the script,
its commands and the reply included.

Usage: bench/bench_instructions.py --old <tree> [--new <tree>] [--op update_q] [--n 2000]
[--calls 300] [--reps 4] [--floor] [--format2] [--port P]; any operation of
``bench_workload.py``. ``--op delete`` deletes loaded documents (ids 1 to ``--calls`` + 200,
each once), where the workload deletes documents it inserted one by one: both are format 3
(format 2 with ``--format2``). ``--op bulk`` counts a load of ``--calls`` more documents after the
workload's batches of 500, and reports instructions per document.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from callgrind_support import callgrind_server, dumped_instructions, free_port

#: one side's block: runs in a fresh process with ``<tree>/src`` and ``<tree>/bench`` first
WORKER = r"""
import subprocess, sys
tree, side, url, n, calls, op, pid, label, format2 = sys.argv[1:10]
sys.path[:0] = [tree + "/src", tree + "/bench"]
import redis
import bench_workload as bw
n, calls = int(n), int(calls)
redis.Redis.from_url(url).flushall()
if side == "floor":
    ops = bw.floor_ops(bw.Floor(redis.Redis.from_url(url)))
else:
    from quantumorm import create_connection
    if format2 == "1":  # (--format2: documents stored as earlier releases stored them)
        from quantumorm.backends.redis import writes
        writes.NEW_FORMAT = 2
    create_connection("redis", url, name="instructions", make_default=True)
    ops = bw.orm_ops()
data = bw.make_docs(n, n // 10, seed=1)
for batch in bw.batches(data):
    ops["bulk"](batch)
if op == "bulk":  # (per document: --calls more documents, in the workload's batches)
    more = bw.batches(bw.make_docs(calls, n // 10, seed=2))
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    for batch in more:
        ops["bulk"](batch)
else:
    if op == "delete":  # (loaded documents, each deleted once: ids 1 to calls + 200)
        args = [str(i) for i in range(1, calls + 201)]
    else:
        args = bw.params(n, calls + 200, 7, {str(i): d["age"] for i, d in enumerate(data, 1)})[op]
    fn = ops[op]
    for arg in args[:200]:
        fn(arg)
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    for arg in args[200:200 + calls]:
        fn(arg)
subprocess.run(["callgrind_control", "--dump=" + label, pid], check=True, capture_output=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--op", default="update_q")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--floor", action="store_true", help="the new tree's floor too")
    parser.add_argument("--format2", action="store_true",
                        help="the ORM sides store format 2 (writes.NEW_FORMAT = 2), as "
                             "collections written before format 3 hold their documents")
    parser.add_argument("--port", type=int, help="the private server's port (default: a free one)")
    args = parser.parse_args()
    if args.op == "delete" and args.n < args.calls + 200:
        parser.error("a delete deletes loaded documents, each once: need --n >= --calls + 200")
    sides = [("old", args.old), ("new", args.new)] + ([("floor", args.new)] if args.floor else [])
    counts: dict[str, list[float]] = {side: [] for side, _ in sides}
    with tempfile.TemporaryDirectory(prefix="qorm-instructions-") as work:
        port = args.port or free_port()
        with callgrind_server(port, work) as (url, pid):
            for rep in range(args.reps):
                for side, tree in (sides if rep % 2 == 0 else sides[::-1]):
                    label = f"{side}{rep}"
                    subprocess.run([sys.executable, "-c", WORKER, tree, side, url, str(args.n),
                                    str(args.calls), args.op, str(pid), label,
                                    "1" if args.format2 else "0"],
                                   check=True, env={**os.environ, "PYTHONPATH": ""})
                    counts[side].append(dumped_instructions(work, label) / args.calls)
                    print(f"{label}: {counts[side][-1]:,.0f} instructions per call", flush=True)
    print(f"{args.op}, {args.n} documents, {args.calls} calls per block, {args.reps} repeats:")
    for side, values in counts.items():
        print(f"  {side:<5} median {statistics.median(values):>9,.0f}  "
              f"[{min(values):,.0f} - {max(values):,.0f}]")
    if counts["old"] and counts["new"]:
        ratio = statistics.median(counts["new"]) / statistics.median(counts["old"])
        print(f"  new/old {ratio:.3f}")


if __name__ == "__main__":
    main()
