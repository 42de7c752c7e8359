"""``filter(id=x).update(age=n)`` (``patch.lua``) of two source trees, side by side on one
server: script µs, server CPU µs, client CPU µs and wall µs per call.

Each tree runs in a worker process of its own (its ``src`` and ``bench`` first on the path;
issue 12's ``Person`` model of ``bench_workload.py``), both connected to one private server
holding one copy of the documents (loaded by the first tree). The workers take turns by
blocks of calls (who goes first alternates), each block on documents no other block has
touched, every call changing the age. Per block: the EVALSHA microseconds of
``INFO commandstats`` (the server's time in the script, its commands included), the
server's CPU (``INFO cpu``) and the worker's ``time.process_time()``, per call. On a busy
machine the medians move with the load: the paired ratios (each block against the other
tree's block next to it) and the low percentiles (the blocks least disturbed) are the
figures to compare.

Usage: bench/bench_patch_trees.py OLD_TREE NEW_TREE [--n 20000] [--block 100]
[--rounds 100] (the trees: checkouts of this repository). It starts a private redis-server
on a free 127.0.0.1 port (no persistence; stopped at exit) unless REDIS_URL is set.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

METRICS = ("script", "server cpu", "client cpu", "wall")


def worker(tree: str, url: str, n: int) -> None:
    """A tree's side: reads lines of ids on stdin, updates each one's age, and prints its
    CPU and wall microseconds per call (the block's first call, a warm-up, not counted)."""
    sys.path[:0] = [tree + "/src", tree + "/bench"]
    import bench_workload as bw

    from quantumorm import create_connection

    create_connection("redis", url, name="side", make_default=True)
    ops = bw.orm_ops()
    data = bw.make_docs(n, n // 10, seed=1)
    ages = {str(i): d["age"] for i, d in enumerate(data, 1)}
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words == ["load"]:
            for batch in bw.batches(data):
                ops["bulk"](batch)
            print("loaded", flush=True)
            continue
        rng = random.Random(int(words[0]))
        calls = [(id, (ages[id] + 1 + rng.randrange(98)) % 100) for id in words]
        update = ops["update_q"]
        update(calls[0])
        cpu, wall = time.process_time(), time.perf_counter()
        for call in calls[1:]:
            update(call)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{cpu * 1e6 / (len(calls) - 1)} {wall * 1e6 / (len(calls) - 1)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # (tree, url)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.n)
        return
    import redis
    from bench_redis import redis_server  # (this folder)

    if 2 * args.block * args.rounds > args.n:
        sys.exit("--n must be at least 2 * --block * --rounds (each block its own documents)")
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    with redis_server("qbench-patch-trees-") as url:
        admin = redis.Redis.from_url(url)
        sides = {name: subprocess.Popen(
            [sys.executable, __file__, tree, tree, "--n", str(args.n), "--worker", tree, url],
            # (the worker: this file again, its tree's code first on its path)
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
            for name, tree in trees.items()}

        def ask(name: str, line: str) -> str:
            side: Any = sides[name]
            side.stdin.write(line + "\n")
            side.stdin.flush()
            return str(side.stdout.readline()).strip()

        def server() -> tuple[int, int, float]:
            stats, cpu = admin.info("commandstats"), admin.info("cpu")
            script = stats.get("cmdstat_evalsha", {"usec": 0, "calls": 0})
            return (int(script["usec"]), int(script["calls"]),
                    float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]))

        try:
            for side in sides.values():
                assert str(side.stdout.readline()).strip() == "ready"  # type: ignore[union-attr]
            assert ask("old", "load") == "loaded"
            ids = [str(i) for i in range(1, args.n + 1)]
            random.Random(3).shuffle(ids)
            got: dict[str, dict[str, list[float]]] = {
                name: {m: [] for m in METRICS} for name in sides}
            at = 0
            for r in range(args.rounds):
                for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    block, at = ids[at:at + args.block], at + args.block
                    usec, calls, cpu = server()
                    client, wall = map(float, ask(name, " ".join(block)).split())
                    usec1, calls1, cpu1 = server()
                    per = max(1, calls1 - calls)
                    for metric, value in zip(METRICS, ((usec1 - usec) / per,
                                                       (cpu1 - cpu) * 1e6 / per, client, wall),
                                             strict=True):
                        got[name][metric].append(value)
        finally:
            for side in sides.values():
                side.stdin.close()  # type: ignore[union-attr]
                side.wait()
    print(f"{'per call, µs':12} {'old p10':>8} {'new p10':>8} {'old p25':>8} {'new p25':>8} "
          f"{'old med':>8} {'new med':>8}  paired new/old: median [q1, q3]")
    for metric in METRICS:
        old, new = got["old"][metric], got["new"][metric]
        ratios = [b / a for a, b in zip(old, new, strict=True)]
        q = statistics.quantiles
        print(f"{metric:12} {q(old, n=10)[0]:8.1f} {q(new, n=10)[0]:8.1f} {q(old, n=4)[0]:8.1f} "
              f"{q(new, n=4)[0]:8.1f} {statistics.median(old):8.1f} {statistics.median(new):8.1f}"
              f"  {statistics.median(ratios):.3f} [{q(ratios, n=4)[0]:.3f}, "
              f"{q(ratios, n=4)[2]:.3f}]")


if __name__ == "__main__":
    main()
