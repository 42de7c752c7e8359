"""What metrics cost: the same operations with metrics off, on, and with OpenTelemetry spans,
against the tree before metrics existed, interleaved in one run.

Each configuration runs in its own worker process (this script with ``--worker``), on one
redis-server, each on its own collection of ``--n`` documents (indexed name and age, change
events off):

* ``base``: another tree (``--baseline``: its ``src`` directory), with no metrics at all:
  what "off" must match (the target: under 3% slower);
* ``off``: this tree, metrics off (nothing installed: one attribute check per operation);
* ``on``: this tree, ``metrics.enable()`` (the target: under 10% slower than ``off``);
* ``otel``: this tree, ``otel.instrument()`` with the SDK's ``TracerProvider`` and a
  ``SimpleSpanProcessor`` into an ``InMemorySpanExporter`` (cleared after every batch);
* ``slow``: this tree, only the slow-operation log, at a threshold no operation reaches.

The operations are bench_workload's blocking ones: ``get`` (``get_sync(id=...)``), ``eq``
(``filter(name=...).all_sync()``: about 10 documents) and ``save`` (an update of a loaded
document, ``save_sync()``). The parent sends every worker a batch of ``--batch`` calls of
one operation in turn, the order rotating every round, for ``--rounds`` rounds; each worker
reports the batch's wall time and its own CPU time (``time.process_time()``: this process
only, waiting on the socket excluded, so the busy machine's other processes matter less).
Reported per operation and configuration: the median per call over the rounds, and its
ratio to ``off`` (and ``off``'s to ``base``).

``--contention`` measures the counters instead: ``Recorder.operation`` (one lock) against
per-thread counters, from 1 and 4 threads, in ns per update.

Usage: bench/bench_metrics.py [--baseline TREE/src] [--n 2000] [--rounds 30] [--batch 200]
[--configs base,off,on,otel,slow] [--json] | --contention. It starts a private redis-server
on a free 127.0.0.1 port (no persistence; stopped at exit) unless REDIS_URL is set; only
the benchmark's own keys are deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
OPS = ("get", "eq", "save")
NAMESPACE = "qbenchmetrics"


# -- a worker: one configuration, one process ------------------------------------------------


def _worker(config: str, url: str, n: int) -> None:
    import redis

    from quantumorm import Document, IntField, StringField, create_connection

    class Person(Document):
        name = StringField(indexed=True)
        age = IntField(indexed=True)
        bio = StringField()

        class Meta:
            namespace = NAMESPACE
            collection = f"people_{config}"
            changes = False

    raw = redis.Redis.from_url(url)
    for key in raw.scan_iter(match=f"{{{NAMESPACE}:people_{config}*"):
        raw.delete(key)
    create_connection(url=url, make_default=True)
    rng = random.Random(7)
    docs = Person.objects.bulk_create_sync([
        Person(name=f"name{rng.randrange(n // 10):04d}", age=rng.randrange(100),
               bio="lorem ipsum " * 4) for _ in range(n)])
    ids = [doc.id for doc in docs]
    exporter: Any = None
    if config == "on":
        from quantumorm import metrics
        metrics.enable()
    elif config == "otel":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from quantumorm.metrics import otel
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel.instrument(provider)
    elif config == "slow":
        from quantumorm import metrics
        metrics.slow_log(60_000)

    objects = Person.objects
    loaded = [objects.get_sync(id=ids[i]) for i in range(min(200, n))]

    def save(i: int) -> Any:
        doc = loaded[i % len(loaded)]
        doc.age = (doc.age + 1) % 100
        return doc.save_sync()

    ops = {"get": lambda i: objects.get_sync(id=ids[i % n]),
           "eq": lambda i: objects.filter(name=f"name{i % (n // 10):04d}").all_sync(),
           "save": save}
    for op in ops.values():  # warm up
        for i in range(100):
            op(i)
    print(json.dumps({"ready": config}), flush=True)
    counter = 0
    for line in sys.stdin:
        order = json.loads(line)
        if order.get("stop"):
            break
        op, batch = ops[order["op"]], order["batch"]
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batch):
            op(counter)
            counter += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if exporter is not None:
            exporter.clear()
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)
    for key in raw.scan_iter(match=f"{{{NAMESPACE}:people_{config}*"):
        raw.delete(key)


# -- the parent: interleaved batches ---------------------------------------------------------


def _start(config: str, url: str, n: int, baseline: str | None) -> subprocess.Popen[str]:
    src = baseline if config == "base" else str(SRC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(HERE)])}
    proc = subprocess.Popen([sys.executable, __file__, "--worker", config, "--url", url,
                             "--n", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    if ready.get("ready") != config:
        raise SystemExit(f"worker {config} did not start")
    return proc


def _ask(proc: subprocess.Popen[str], order: dict[str, Any]) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(order) + "\n")
    proc.stdin.flush()
    answer: dict[str, float] = json.loads(proc.stdout.readline())
    return answer


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    configs = [c for c in args.configs.split(",") if c != "base" or args.baseline]
    workers = {config: _start(config, url, args.n, args.baseline) for config in configs}
    times: dict[tuple[str, str], dict[str, list[float]]] = {
        (config, op): {"wall": [], "cpu": []} for config in configs for op in OPS}
    try:
        for round_ in range(args.rounds):
            for op in OPS:
                turn = configs[round_ % len(configs):] + configs[:round_ % len(configs)]
                for config in turn:
                    got = _ask(workers[config], {"op": op, "batch": args.batch})
                    for kind in ("wall", "cpu"):
                        times[(config, op)][kind].append(got[kind] / args.batch * 1e6)
    finally:
        for proc in workers.values():
            try:
                _ask_stop(proc)
            finally:
                proc.wait(timeout=30)
    out: dict[str, Any] = {"configs": configs, "rounds": args.rounds, "batch": args.batch,
                           "n": args.n, "ops": {}}
    for op in OPS:
        row: dict[str, Any] = {}
        for config in configs:
            row[config] = {kind: statistics.median(times[(config, op)][kind])
                           for kind in ("wall", "cpu")}
        for config in configs:
            for kind in ("wall", "cpu"):
                row[config][f"{kind}_vs_off"] = row[config][kind] / row["off"][kind]
        out["ops"][op] = row
    return out


def _ask_stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"stop": True}) + "\n")
    proc.stdin.flush()


def report(found: dict[str, Any]) -> None:
    configs = found["configs"]
    print(f"{found['rounds']} rounds x {found['batch']} calls per operation and configuration,"
          f" interleaved; {found['n']} documents; median per call (µs) and ratio to off")
    head = f"{'op':<5} {'kind':<5} " + " ".join(f"{c:>16}" for c in configs)
    print(head + "\n" + "-" * len(head))
    for op, row in found["ops"].items():
        for kind in ("wall", "cpu"):
            cells = " ".join(f"{row[c][kind]:>8.1f} {row[c][kind + '_vs_off']:>6.3f}x"
                             for c in configs)
            print(f"{op:<5} {kind:<5} {cells}")


# -- --contention: the counters alone ------------------------------------------------------


def contention(updates: int = 200_000) -> dict[str, float]:
    sys.path.insert(0, str(SRC))
    from quantumorm.metrics.records import BUCKETS
    from quantumorm.metrics.series import Recorder

    local = threading.local()

    def per_thread(key: tuple[str, str, str], seconds: float) -> None:
        # the alternative: counters per thread (merged at snapshot time), no lock
        table = getattr(local, "table", None)
        if table is None:
            table = local.table = {}
        series = table.get(key)
        if series is None:
            series = table[key] = [0, 0.0, 0, [0] * (len(BUCKETS) + 1)]
        series[0] += 1
        series[1] += seconds
        series[2] += 1
        series[3][0] += 1

    def locked(recorder: Recorder) -> Any:
        return lambda: recorder.operation(("M", "get", "redis"), 0.0001, 1, None)

    def work(update: Any, count: int) -> None:
        for _ in range(count):
            update()

    out = {}
    for threads in (1, 4):
        for name in ("lock", "per_thread"):
            update = locked(Recorder()) if name == "lock" else (
                lambda: per_thread(("M", "get", "redis"), 0.0001))
            pool = [threading.Thread(target=work, args=(update, updates // threads))
                    for _ in range(threads)]
            start = time.perf_counter()
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            out[f"{name}_{threads}_threads_ns"] = (time.perf_counter() - start) / updates * 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="the src directory of the tree to compare with")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--configs", default="base,off,on,otel,slow")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--contention", action="store_true")
    parser.add_argument("--worker")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.url, args.n)
        return
    if args.contention:
        print(json.dumps(contention()))
        return
    sys.path.insert(0, str(HERE))
    from bench_redis import redis_server  # (this folder)

    with redis_server("qorm-bench-metrics-") as url:
        found = run(url, args)
    if args.json:
        print(json.dumps(found))
    else:
        report(found)


if __name__ == "__main__":
    main()
