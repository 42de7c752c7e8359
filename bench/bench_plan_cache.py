"""How often a query of issue 12's workload is planned, against how often its plan comes from
the planner's caches (issue 12: "plan caching per query shape: measure its hit rate").

The Redis planner keeps two caches (``planner.py``'s ``plan``): plans per query *and its
values* (a repeated query is neither planned nor bound), and templates per query *shape*
(``plan_shapes.py``: a shape planned twice with different values teaches a template, from
which every later query of that shape is bound without planning). ``Planner.counts`` counts
the queries planned and those bound from a template; the rest of the calls were answered by
the per-values cache. A read by id (``get(id=)``) and an update by id do not plan at all.

Loads ``--n`` documents of the workload's ``Person`` model, makes ``--calls`` calls of each
query the workload makes (the same parameters as ``bench_workload.py``), and prints per
query: calls, planned, bound, served by the per-values cache, and the hit rate (the share
of calls not planned).

Usage: bench/bench_plan_cache.py [--n 5000] [--calls 500]. It starts a private
redis-server on a free 127.0.0.1 port unless REDIS_URL is set.
"""

from __future__ import annotations

import argparse

from bench_redis import redis_server  # (this folder)
from bench_workload import Person, batches, make_docs, orm_ops, params

from quantumorm import close_all, create_connection

QUERIES = ("eq", "range", "compound", "count")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="documents loaded")
    parser.add_argument("--calls", type=int, default=500, help="calls per query")
    args = parser.parse_args()
    with redis_server("qorm-plan-cache") as url:
        conn = create_connection("redis", url, name="plan-cache", make_default=True)
        try:
            ops = orm_ops()
            data = make_docs(args.n, args.n // 10, seed=1)
            for batch in batches(data):
                ops["bulk"](batch)
            plan = params(args.n, args.calls, 7,
                          {str(i): d["age"] for i, d in enumerate(data, 1)})
            planner = conn.backend._state(Person._meta).planner
            print("| query | calls | planned | bound from its shape's template "
                  "| from the per-values cache | hit rate |")
            print("|---|---:|---:|---:|---:|---:|")
            for op in QUERIES:
                before = dict(planner.counts)
                for arg in plan[op]:
                    ops[op](arg)
                calls = len(plan[op])
                planned = planner.counts["planned"] - before["planned"]
                bound = planner.counts["bound"] - before["bound"]
                print(f"| {op} | {calls} | {planned} | {bound} | {calls - planned - bound} "
                      f"| {(calls - planned) / calls:.1%} |")
        finally:
            close_all()


if __name__ == "__main__":
    main()
