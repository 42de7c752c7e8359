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
* **client CPU**: the worker's ``time.process_time()`` per call;
* **rest**: wall less client CPU and server CPU, block by block: what neither process spent
  on the CPU (the switches between them, and waiting for the machine's other work). A
  call's client and server take turns, one round trip at a time: a side whose rest is
  high waits, one whose rest is near zero is its two processes' CPU.

Round 0 warms every side and is not counted. Each line gives the median of the rounds and
their interquartile range; ``new/old`` is the median (and IQR) of the per-round ratios of
the two trees, which cancels the machine's slow spells that hit both of a round's blocks.

A delete block deletes documents its side inserted just before it (outside the readings).
Updates: the new tree updates its own copy of the documents (see ``main``), since a save
of a value the old tree has just set sends nothing.

``--callgrind`` runs the server under ``valgrind --tool=callgrind`` and reads, around each
block, the server's instructions per call, whole (**instr**) and within the script commands
(**script instr**, inclusive), in place of script time and server CPU: steadier than time
on a shared machine (use a small ``--n`` and ``--calls``: valgrind is about 50x slower).

Usage: bench/bench_trees.py --old <tree> [--new <tree>] [--ops eq,count,range] [--n 20000]
[--calls 300] [--rounds 14] [--sides old,new,floor] [--callgrind]; any operation of
``bench_workload.py`` (``--ops update,delete,update_q,insert``), or ``bulk``: a block is then
3 ``bulk_create`` batches of new documents, and every figure is per document; or
``delete_blind``: a delete block by ``Person.objects.filter(id=...).delete_sync()`` (a
delete of whatever version is stored; not on the floor side: ``--sides old,new``). The trees need
issue 12's ``bench/bench_workload.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    # (a delete of whatever version is stored: QuerySet.delete of one id, delete.lua with
    # no expected version)
    ops["delete_blind"] = lambda id: bw.Person.objects.filter(id=id).delete_sync()
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
made = []  # (the documents the next delete block deletes: inserted by "prepare delete")
print("ready", flush=True)
for line in sys.stdin:
    op = line.strip()
    if not op:
        break
    if op == "prepare delete":  # (untimed, outside the driver's server readings)
        docs, start = plan["insert"], taken.get("made", 0)
        made = [ops["insert"](docs[(start + i) % len(docs)]) for i in range(calls)]
        taken["made"] = start + calls
        print("ok", flush=True)
        continue
    if op in ("delete", "delete_blind"):
        block = made
    else:
        args, start = plan[op], taken.get(op, 0)
        size = BULK_BATCHES if op == "bulk" else calls
        block = [args[(start + i) % len(args)] for i in range(size)]
        taken[op] = start + size
    if op in ("update", "update_q") and side == "new" and load == "1":
        # (its own copy of the documents, loaded after the old tree's: see main())
        block = [(str(int(id) + n), age) for id, age in block]
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


def _prepare(worker: subprocess.Popen[str], op: str) -> None:
    """What a block of ``op`` needs made first, outside its readings (a delete: the
    documents it deletes, inserted by the same side)."""
    if op not in ("delete", "delete_blind"):
        return
    stdin, stdout = worker.stdin, worker.stdout
    assert stdin is not None and stdout is not None
    stdin.write("prepare delete\n")
    stdin.flush()
    if stdout.readline().strip() != "ok":
        raise SystemExit("a worker failed to prepare its delete block")


class Callgrind:
    """A private redis-server under ``valgrind --tool=callgrind``: the instructions it
    executes between two readings (``callgrind_control --dump``, which also zeroes the
    counters), whole and within the script commands (EVALSHA, FCALL: inclusive costs read
    by ``callgrind_annotate``). Steadier than time on a shared machine; about 50 times
    slower."""

    def __init__(self, workdir: str, port: int | None = None) -> None:
        exe = shutil.which("redis-server") or sys.exit("redis-server not on PATH")
        if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
            sys.exit("--callgrind needs valgrind (callgrind_control, callgrind_annotate)")
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.workdir = Path(workdir)
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind",
             f"--callgrind-out-file={workdir}/cg.out", exe, "--port", str(port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 60
        with redis.Redis.from_url(self.url, socket_connect_timeout=1) as probe:
            while True:
                try:
                    if probe.ping():
                        break
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        sys.exit("redis-server did not start under valgrind")
                    time.sleep(0.2)

    def reading(self) -> tuple[float, float]:
        """(instructions in script commands, instructions in all) since the last reading."""
        before = set(self.workdir.glob("cg.out.*"))
        subprocess.run(["callgrind_control", "--dump", str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        new = sorted(set(self.workdir.glob("cg.out.*")) - before,
                     key=lambda path: int(path.name.rsplit(".", 1)[1]))
        if not new:
            raise SystemExit("callgrind wrote no dump")
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                               str(new[-1])], check=True, capture_output=True,
                              text=True).stdout
        total = scripts = 0.0
        for line in text.splitlines():
            fields = line.split()
            if not fields or not fields[0][0].isdigit():
                continue
            count = float(fields[0].replace(",", ""))
            if "PROGRAM TOTALS" in line:
                total = count
            elif re.search(r":(evalShaCommand|evalCommand|fcallCommand|fcallroCommand)\b",
                           line):
                scripts += count
        for path in new:
            path.unlink()
        return scripts, total

    def stop(self) -> None:
        self.proc.terminate()  # (SIGTERM to this pid only)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    n = len(ordered)
    return (f"{statistics.median(ordered):7.1f} [{ordered[n // 4]:6.1f}-"
            f"{ordered[(3 * n) // 4]:6.1f}]")


@contextmanager
def _server_for(callgrind: bool, port: int | None = None
                ) -> Iterator[tuple[str, Callgrind | None]]:
    """The URL of the private server, and its Callgrind when it runs under valgrind."""
    if not callgrind:
        with redis_server("qtrees-") as url:
            yield url, None
        return
    with tempfile.TemporaryDirectory(prefix="qtrees-cg-") as workdir:
        grind = Callgrind(workdir, port)
        try:
            yield grind.url, grind
        finally:
            grind.stop()


def main(out: TextIO = sys.stdout) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, type=Path, help="the tree before the change")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="(default: this tree)")
    parser.add_argument("--ops", default="eq,count,range")
    parser.add_argument("--n", type=int, default=20000, help="documents loaded")
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--sides", default="old,new,floor",
                        help="which of old, new and floor run (old and new always)")
    parser.add_argument("--port", type=int, help="the callgrind server's port (default: a free one)")
    parser.add_argument("--callgrind", action="store_true",
                        help="the server under callgrind: instructions per call instead of "
                        "times (use a small --n and --calls)")
    args = parser.parse_args()
    ops = args.ops.split(",")
    every = {"old": args.old, "new": args.new, "floor": args.new}
    trees = {side: tree for side, tree in every.items()
             if side in ("old", "new") or side in args.sides.split(",")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    own = bool({"update", "update_q"} & set(ops))
    if args.callgrind:
        names: tuple[str, ...] = ("wall", "script instr", "instr", "client CPU")
    else:
        names = ("wall", "script", "server CPU", "client CPU")
    with _server_for(args.callgrind, args.port) as (url, grind):
        admin = redis.Redis.from_url(url)
        workers: dict[str, subprocess.Popen[str]] = {}
        try:
            for side, tree in trees.items():
                # (one layout: the old tree's documents serve the new tree too; but for
                # updates the new tree loads its own copy, ids n + 1 to 2n, after the old
                # tree's: the old tree's updates set the values the new tree's would set,
                # and a save of an unchanged document sends nothing)
                workers[side] = worker = subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(tree), side, url, str(args.n),
                     str(args.calls), "1" if side != "new" or own else "0"],
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
                        _prepare(workers[side], op)
                        usec0, cpu0 = grind.reading() if grind else _server(admin)
                        wall, client, units = _ask(workers[side], op)
                        usec1, cpu1 = grind.reading() if grind else _server(admin)
                        if round_ and grind:
                            seen[(op, side)].append((wall, usec1 / units, cpu1 / units,
                                                     client))
                        elif round_:
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
    unit = "instructions and µs" if grind else "µs"
    print(f"{args.n} documents, {args.calls} calls per block, {args.rounds} rounds: "
          f"median [IQR] per call, {unit}", file=out)
    for op in ops:
        for side in trees:
            rows = seen[(op, side)]
            cells = "  ".join(f"{name} {_spread([r[i] for r in rows])}"
                              for i, name in enumerate(names))
            # (wall less the two CPUs; under callgrind the server's column is instructions)
            rest = "" if grind else f"  rest {_spread([r[0] - r[2] - r[3] for r in rows])}"
            print(f"{op:8s} {side:5s} {cells}{rest}", file=out)
        for i, name in enumerate(names):
            ratios = [b[i] / a[i] for a, b in zip(seen[(op, "old")], seen[(op, "new")],
                                                 strict=True) if a[i] > 0]
            if ratios:
                ratios.sort()
                print(f"{'':8s} new/old {name:12s} {statistics.median(ratios):.4f} "
                      f"[{ratios[len(ratios) // 4]:.4f}-{ratios[(3 * len(ratios)) // 4]:.4f}]",
                      file=out)


if __name__ == "__main__":
    main()
