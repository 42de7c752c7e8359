"""Server instructions per touch/persist (expire.lua) of format-2 documents, two trees
(callgrind): bench_instructions.py's method (a private redis-server under callgrind, each
side in turn, alternating the order per repeat) on the workload's Person, 2,000 documents
bulk-loaded, 200 warm-up touches, then 300 counted calls alternating touch(3600) and
persist() on loaded documents.

Usage: bench/bench_touch_instructions.py <old tree> <new tree> <port> [touch|persist|both]
(touch: 300 touches; persist: 300 persists of documents touched before; both: the default,
alternating)
"""
import os
import statistics
import subprocess
import sys
import tempfile

from callgrind_support import callgrind_server, dumped_instructions

WORKER = r"""
import subprocess, sys
tree, url, pid, label, calls, op = sys.argv[1:7]
sys.path[:0] = [tree + "/src", tree + "/bench"]
import redis
import bench_workload as bw
redis.Redis.from_url(url).flushall()
from quantumorm import create_connection
create_connection("redis", url, name="t", make_default=True)
ops = bw.orm_ops()
data = bw.make_docs(2000, 200, seed=1)
for batch in bw.batches(data):
    ops["bulk"](batch)
docs = bw.Person.objects.get_many_sync([str(i) for i in range(1, 601)])
for d in docs[:200] if op != "persist" else docs:
    d.touch_sync(3600)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for i, d in enumerate(docs[200:200 + int(calls)]):
    if op == "touch" or op == "both" and i % 2 == 0:
        d.touch_sync(3600)
    else:
        d.persist_sync()
subprocess.run(["callgrind_control", "--dump=" + label, pid], check=True, capture_output=True)
"""
old, new, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
op = sys.argv[4] if len(sys.argv) > 4 else "both"
calls, reps = 300, 3
counts = {"old": [], "new": []}
with tempfile.TemporaryDirectory() as work:
    with callgrind_server(port, work) as (url, pid):
        for rep in range(reps):
            order = [("old", old), ("new", new)]
            for side, tree in (order if rep % 2 == 0 else order[::-1]):
                label = f"{side}{rep}"
                subprocess.run([sys.executable, "-c", WORKER, tree, url, str(pid), label,
                                str(calls), op], check=True, env={**os.environ, "PYTHONPATH": ""})
                counts[side].append(dumped_instructions(work, label) / calls)
                print(label, f"{counts[side][-1]:,.0f}", flush=True)
for side, v in counts.items():
    print(side, f"median {statistics.median(v):,.0f} [{min(v):,.0f} - {max(v):,.0f}]")
print("new/old", f"{statistics.median(counts['new']) / statistics.median(counts['old']):.3f}")
