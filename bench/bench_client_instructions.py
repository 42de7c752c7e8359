"""The client's instructions per operation, two trees on the same server (callgrind).

``bench_overhead.py`` counts Python calls; calls of unequal weight hide what a change does
to the client's work, and CPU time on a shared machine swings by tens of percent. This runs
one worker process per tree and operation under ``valgrind --tool=callgrind``, counting
only inside one ``functools.reduce`` over the measured calls (``--toggle-collect``: the
imports, the connection and the warm-up calls are not counted), and prints instructions
per call. The system calls' kernel time is not counted: what is left is the client's own
work. Python's hash seed is fixed (``PYTHONHASHSEED=0``) so that repeats agree closely.

The workload is ``bench_workload.py``'s model (2,000 documents, loaded once by the first
worker). Writes change the data: ``insert`` adds documents whose names the equality query
then finds, so run it last (it is last in the default order).

Usage: bench/bench_client_instructions.py --old <tree> [--new <tree>]
[--ops get_q,get,eq,count,update_q,update,insert,delete,delete_blind] [--calls 500] [--floor]
(``--floor``: the floor side's client too, ``workload_floor.py``'s way; delete: a load and
its ``delete_sync()`` of documents inserted before the counted calls); ``--ops bulk`` counts
per document a ``bulk_create`` of ``--calls`` documents in the workload's batches of 500 (the
``Person(**d)`` of each included, as the workload's bulk op makes them). It starts a private
redis-server on a free 127.0.0.1 port unless REDIS_URL is set. The trees need issue 12's
``bench/bench_workload.py``.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOCUMENTS = 2000
WARMUP = 100
OPS = "get_q,get,eq,count,update_q,update,insert"


def parameters(total: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The ids, names and new documents of ``total`` calls, the same for every side."""
    import bench_workload as bw

    rng = random.Random(5)
    ids = [str(rng.randint(1, DOCUMENTS)) for _ in range(total)]
    names = [f"name{rng.randrange(DOCUMENTS // 10):06d}" for _ in range(total)]
    return ids, names, bw.make_docs(total, DOCUMENTS // 10, 7)


def floor_worker(op: str, calls: int, url: str) -> None:
    """:func:`worker`'s calls on the floor side (``workload_floor.py``, its own keys): the
    same parameters, the floor's way (an update loads, then compare-and-sets)."""
    import bench_workload as bw
    import redis

    floor = bw.Floor(redis.Redis.from_url(url))
    if floor.count(0, 100) < DOCUMENTS:
        for batch in bw.batches(bw.make_docs(DOCUMENTS, DOCUMENTS // 10, 1)):
            floor.bulk(batch)
    total = WARMUP + calls
    ids, names, docs = parameters(total)

    def update(i: int) -> Any:
        row = floor.get(ids[i])
        assert row is not None
        return floor.save(row, {**row, "age": (row["age"] + 1) % 100})

    ops = {
        "get": lambda i: floor.get(ids[i]), "get_q": lambda i: floor.get(ids[i]),
        "eq": lambda i: floor.eq(names[i]),
        "count": lambda i: floor.count(i % 90, i % 90 + 10),
        "range": lambda i: floor.range(i % 90, i % 90 + bw.RANGE_WIDTH, 100),
        "compound": lambda i: floor.compound(True, "t7", 60),
        "update_q": lambda i: floor.update_q(ids[i], (i * 7) % 100),
        "insert": lambda i: floor.insert(docs[i]),
        "update": update,
    }
    if op == "bulk":
        loads = bw.batches(bw.make_docs(calls, DOCUMENTS // 10, 9))
        functools.reduce(lambda _, batch: floor.bulk(batch), loads, None)
        return
    if op == "delete":
        made = [floor.insert(d) for d in docs]
        ops["delete"] = lambda i: floor.delete(made[i])
    fn = ops[op]
    for i in range(WARMUP):
        fn(i)
    functools.reduce(lambda _, i: fn(i), range(WARMUP, total), None)


def worker(op: str, calls: int, url: str) -> None:
    """Run ``calls`` calls of ``op`` inside one ``functools.reduce`` (what callgrind
    counts), after the warm-up."""
    import bench_workload as bw

    from quantumorm import create_connection

    create_connection(url=url, make_default=True)
    model = bw.Person
    objects = model.objects
    if objects.count_sync() < DOCUMENTS:
        objects.bulk_create_sync([model(**d) for d in bw.make_docs(DOCUMENTS,
                                                                   DOCUMENTS // 10, 1)])
    total = WARMUP + calls
    ids, names, docs = parameters(total)

    def update(i: int) -> Any:
        person = objects.get_many_sync([ids[i]])[0]
        person.age = (person.age + 1) % 100
        return person.save_sync()

    ops = {
        "get": lambda i: objects.get_many_sync([ids[i]])[0],
        "get_q": lambda i: objects.get_sync(id=ids[i]),
        "eq": lambda i: objects.filter(name=names[i]).all_sync(),
        "count": lambda i: objects.filter(age__gte=i % 90, age__lt=i % 90 + 10).count_sync(),
        # (rows read per call: the workload's range + order + limit 100, and its compound
        # query, whose client work is mostly making rows)
        "range": lambda i: objects.filter(age__gte=i % 90, age__lt=i % 90 + bw.RANGE_WIDTH)
        .order_by("age").limit(100).all_sync(),
        "compound": lambda i: objects.filter(**bw.COMPOUND).all_sync(),
        "update_q": lambda i: objects.filter(id=ids[i]).update_sync(age=(i * 7) % 100),
        "insert": lambda i: model(**docs[i]).save_sync().id,
        "update": update,
    }
    if op == "bulk":  # (``calls`` documents in the workload's batches: per document)
        for batch in bw.batches(bw.make_docs(bw.BATCH, DOCUMENTS // 10, 8)):
            objects.bulk_create_sync([model(**d) for d in batch])
        loads = bw.batches(bw.make_docs(calls, DOCUMENTS // 10, 9))
        functools.reduce(lambda _, batch: objects.bulk_create_sync(
            [model(**d) for d in batch]), loads, None)
        return
    if op == "delete":  # (documents made first, outside the counted calls: load, delete)
        made = [model(**d).save_sync().id for d in docs]
        ops["delete"] = lambda i: objects.get_many_sync([made[i]])[0].delete_sync()
    if op == "delete_blind":  # (as delete, by QuerySet.delete of one id: no load)
        made = [model(**d).save_sync().id for d in docs]
        ops["delete_blind"] = lambda i: objects.filter(id=made[i]).delete_sync()
    fn = ops[op]
    for i in range(WARMUP):
        fn(i)
    functools.reduce(lambda _, i: fn(i), range(WARMUP, total), None)


def measure(tree: Path, op: str, calls: int, url: str, workdir: str,
            side: str = "orm") -> float:
    out = f"{workdir}/cg.{tree.name}.{side}.{op}"
    env = dict(os.environ, PYTHONPATH=f"{tree}/src{os.pathsep}{tree}/bench",
               PYTHONHASHSEED="0")
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce",
                    f"--callgrind-out-file={out}", sys.executable, __file__, "--worker", op,
                    "--calls", str(calls), "--url", url, "--side", side],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = subprocess.run(["callgrind_annotate", out], check=True, capture_output=True,
                          text=True).stdout
    os.unlink(out)
    found = re.search(r"([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", text)
    if found is None:
        raise SystemExit("callgrind_annotate gave no total")
    return int(found.group(1).replace(",", "")) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, help="the tree before the change")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="(default: this tree)")
    parser.add_argument("--ops", default=OPS)
    parser.add_argument("--calls", type=int, default=500, help="counted calls per worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--side", default="orm", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true",
                        help="the floor's client too (workload_floor.py; not bulk_create's "
                        "Person(**d): the floor takes dicts)")
    args = parser.parse_args()
    if args.worker:
        (floor_worker if args.side == "floor" else worker)(args.worker, args.calls, args.url)
        return
    if args.old is None:
        parser.error("--old is required")
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        sys.exit("needs valgrind (callgrind_annotate)")
    sys.path.insert(0, str(HERE))
    from bench_redis import redis_server

    with redis_server("qclient-cg-") as url, tempfile.TemporaryDirectory() as workdir:
        print(f"{'operation':<10} {'old instr/op':>13} {'new instr/op':>13} {'new/old':>8}"
              + (f" {'floor':>13} {'new/floor':>9}" if args.floor else ""))
        for op in args.ops.split(","):
            old = measure(args.old.resolve(), op, args.calls, url, workdir)
            new = measure(args.new.resolve(), op, args.calls, url, workdir)
            line = f"{op:<10} {old:>13,.0f} {new:>13,.0f} {new / old:>8.3f}"
            if args.floor:
                floor = measure(args.new.resolve(), op, args.calls, url, workdir, "floor")
                line += f" {floor:>13,.0f} {new / floor:>9.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
