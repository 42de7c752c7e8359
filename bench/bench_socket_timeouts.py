"""The ORM's operations with the socket timeout kept by the kernel and by Python, paired.

``backends/redis/sockets.py`` hands a single server's socket timeout to the kernel
(``SO_RCVTIMEO``/``SO_SNDTIMEO``) instead of Python's ``settimeout``, which polls before
every send and receive. This runs the same operations of issue 12's workload through one
connection of this tree in one process, on one private server, taking turns block by
block: ``kernel`` (the default) and ``python`` (the pool's connections made again as
redis-py's own ``Connection``, as before the change); both time out after
``socket_timeout``. Per
operation: the median and interquartile range of wall and client CPU µs per call, and of
the paired per-round ratios kernel/python (which cancel the slow spells both blocks of a
round share).

Usage: bench/bench_socket_timeouts.py [--ops get,eq,insert,update,update_q,delete]
[--n 5000] [--calls 300] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)
from bench_workload import batches, make_docs, orm_ops, params

from quantumorm import create_connection, get_connection
from quantumorm.backends.redis.sockets import KernelTimedConnection


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    n = len(ordered)
    return (f"{statistics.median(ordered):7.2f} [{ordered[n // 4]:6.2f}-"
            f"{ordered[(3 * n) // 4]:6.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", default="get,eq,insert,update,update_q,delete")
    parser.add_argument("--n", type=int, default=5000, help="documents loaded")
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with redis_server("qsockets-") as url:
        create_connection("redis", url, name="sockets", make_default=True)
        conn_pool = get_connection("sockets").store.sync_executor().client.connection_pool
        assert conn_pool.connection_class is KernelTimedConnection
        classes = {"kernel": KernelTimedConnection, "python": redis.Connection}
        ops = orm_ops()
        sides = dict.fromkeys(classes, ops)

        def use(side: str) -> None:  # (the pool's next connections are of this class)
            conn_pool.disconnect()
            conn_pool.reset()
            conn_pool.connection_class = classes[side]
            ops["get"]("1")  # (connected, untimed)
            (lent,) = conn_pool._available_connections
            assert type(lent) is classes[side]

        data = make_docs(args.n, args.n // 10, seed=1)
        for batch in batches(data):
            sides["kernel"]["bulk"](batch)
        plan = params(args.n, 2 * args.calls * (args.rounds + 1), 7,
                      {str(i): d["age"] for i, d in enumerate(data, 1)})
        taken = dict.fromkeys(plan, 0)
        made: dict[str, list[Any]] = {side: [] for side in sides}
        seen: dict[tuple[str, str], list[tuple[float, float]]] = {
            (op, side): [] for op in args.ops.split(",") for side in sides}
        for round_ in range(args.rounds + 1):
            order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
            for op in args.ops.split(","):
                for side in order:
                    use(side)
                    if op == "delete":  # (what this side's inserts made; else insert first)
                        while len(made[side]) < args.calls:
                            made[side].append(ops["insert"](plan["insert"][taken["insert"]]))
                            taken["insert"] += 1
                        block, made[side] = made[side][:args.calls], made[side][args.calls:]
                    else:
                        start = taken[op]
                        block = plan[op][start:start + args.calls]
                        taken[op] = start + args.calls
                    fn = ops[op]
                    t0, c0 = time.perf_counter(), time.process_time()
                    got = [fn(arg) for arg in block]
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    if op == "insert":
                        made[side] += got
                    if round_:
                        seen[(op, side)].append((wall * 1e6 / args.calls,
                                                 cpu * 1e6 / args.calls))
    print(f"{args.n} documents, {args.calls} calls per block, {args.rounds} rounds: "
          "median [IQR] per call, µs")
    for op in args.ops.split(","):
        for side in sides:
            rows = seen[(op, side)]
            print(f"{op:8s} {side:6s} wall {_spread([r[0] for r in rows])}  client CPU "
                  f"{_spread([r[1] for r in rows])}")
        for i, name in enumerate(("wall", "client CPU")):
            ratios = [k[i] / p[i] for k, p in zip(seen[(op, "kernel")], seen[(op, "python")],
                                                  strict=True)]
            print(f"{'':8s} kernel/python {name:10s} {_spread(ratios)}")


if __name__ == "__main__":
    main()
