"""Server instructions per query call with the documents in format 3 (bench/format3.md,
section 4 "Queries"; plan step 4 measured): the workload's queries (``eq``, ``range`` +
order + limit 100, ``compound``, ``count`` of a range) on ``--n`` documents stored

* ``f2``: as the ORM stores them now (format 2: a meta hash per document);
* ``f3``: every document then stored again in format 3, its meta hash deleted (as
  ``tests/integration/test_format3_queries.py``'s ``to_format3`` does): ``query.lua``
  derives what it tests from the candidate's document;
* ``floor``: the floor's hand-written scripts (``bench/workload_floor.py``).

The workload's four queries read index sets only (``ZIN``, exact walks, a range read as a
set): the same commands in both formats. Two more ORM-only queries test candidates on their
values, the path format 3 changes (one ``GET`` per candidate without a meta hash, the
member found by a plain search of the stored text and its entry made in place; a meta read
only until the call has met more format-3 documents than meta hashes: ``query.lua``'s
``from_document``): ``eq_range`` (``name = X & age >= 30``: ~10 candidates, a range too
wide to read as a set) and ``eq_order`` (``name = X`` ordered by age: the sort keys read per
row).

One private redis-server under callgrind (``callgrind_support.py``); each side in turn
(the order alternating every repeat): FLUSHALL, the load, the conversion, 200 warm-up
calls, the counters zeroed, ``--calls`` calls, the dump. Instructions of the whole server
per call. One tree (``--tree``, default this one) for both ORM sides.

Usage: bench/bench_format3_queries.py [--tree T] [--ops eq,range,compound,count,eq_range,eq_order] [--n 2000]
[--calls 150] [--reps 3] [--port P]
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

WORKER = r"""
import subprocess, sys
tree, side, url, n, calls, op, pid, label = sys.argv[1:9]
sys.path[:0] = [tree + "/src", tree + "/bench"]
import redis
import bench_workload as bw
n, calls = int(n), int(calls)
client = redis.Redis.from_url(url)
client.flushall()
if side == "floor":
    ops = bw.floor_ops(bw.Floor(client))
else:
    from quantumorm import create_connection
    from quantumorm.backends.redis import stored, writes
    from quantumorm.backends.redis.keys import KeySpace
    # (both ORM sides load format 2, which the f3 side then converts: a tree that stores
    # format 3 would otherwise measure format 3 on both)
    writes.NEW_FORMAT = 2
    create_connection("redis", url, name="instructions", make_default=True)
    ops = bw.orm_ops()
data = bw.make_docs(n, n // 10, seed=1)
for batch in bw.batches(data):
    ops["bulk"](batch)
if side == "f3":  # every document in format 3, its meta hash deleted (to_format3)
    keys = KeySpace(bw.Person._meta)
    ids = [p.id for p in bw.Person.objects.all_sync()]
    assert len(ids) == n
    for id in ids:
        p = keys.partition_of(id)
        key = keys.doc(p, id)
        version, payload = stored.split(client.get(key))
        client.set(key, b"\x01%d\x00%s\x00%s" % (version, b"00c0ffee12345678", payload))
        client.delete(keys.meta(p, id))
plan = bw.params(n, calls + 200, 7, {str(i): d["age"] for i, d in enumerate(data, 1)})
if side != "floor":  # (per-candidate tests: a range too wide to read as a set, an order
    objects = bw.Person.objects  # the driver does not give; no floor script does these)
    ops["eq_range"] = lambda name: objects.filter(name=name, age__gte=30).all_sync()
    ops["eq_order"] = lambda name: objects.filter(name=name).order_by("age").all_sync()
    plan["eq_range"] = plan["eq_order"] = plan["eq"]
args = plan[op]
fn = ops[op]
for arg in args[:200]:
    fn(arg)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for arg in args[200:200 + calls]:
    fn(arg)
subprocess.run(["callgrind_control", "--dump=" + label, pid], check=True, capture_output=True)
"""

SIDES = ("f2", "f3", "floor")
#: queries the floor has no script for (the ORM's sides only)
ORM_ONLY = ("eq_range", "eq_order")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--ops", default="eq,range,compound,count,eq_range,eq_order")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--port", type=int, help="the private server's port (default: a free one)")
    args = parser.parse_args()
    ops = args.ops.split(",")
    counts = {(op, side): [] for op in ops for side in SIDES}  # type: dict[tuple[str, str], list[float]]
    with tempfile.TemporaryDirectory(prefix="qorm-f3q-") as work:
        port = args.port or free_port()
        with callgrind_server(port, work) as (url, pid):
            for op in ops:
                for rep in range(args.reps):
                    sides = [s for s in SIDES if not (s == "floor" and op in ORM_ONLY)]
                    for side in (sides if rep % 2 == 0 else sides[::-1]):
                        label = f"{op}-{side}{rep}"
                        subprocess.run([sys.executable, "-c", WORKER, args.tree, side, url,
                                        str(args.n), str(args.calls), op, str(pid), label],
                                       check=True, env={**os.environ, "PYTHONPATH": ""})
                        counts[op, side].append(dumped_instructions(work, label) / args.calls)
                        print(f"{label}: {counts[op, side][-1]:,.0f}", flush=True)
    print(f"\n{args.n} documents, {args.calls} calls per block, {args.reps} repeats "
          f"(median [min-max] server instructions per call)\n")
    print("| query | format 2 | format 3, no meta hash | floor | f3 / f2 | f2 / floor | f3 / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for op in ops:
        m = {side: statistics.median(counts[op, side]) for side in SIDES if counts[op, side]}
        cells = [f"{m[s]:,.0f} [{min(counts[op, s]):,.0f}-{max(counts[op, s]):,.0f}]"
                 if s in m else "-" for s in SIDES]
        floor = (f"{m['f2'] / m['floor']:.2f}x | {m['f3'] / m['floor']:.2f}x" if "floor" in m
                 else "- | -")
        print(f"| {op} | {' | '.join(cells)} | {m['f3'] / m['f2']:.2f}x | {floor} |")


if __name__ == "__main__":
    main()
