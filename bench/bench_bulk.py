"""Issue 12's bulk insert alone: ``bulk_create`` against the hand-written and floor loads.

The same model, data and batches as ``bench_workload.py`` (whose helpers it uses), but only
the load, repeated ``--rounds`` times so that a change to the bulk path can be judged in a
minute: per round, each side loads the N documents alone (round trips, server commands,
client and server CPU per document, memory per document) and then all sides load them again
batch by batch, taking turns (median µs per document); the keys are deleted after each load.
The report gives the median over the rounds of each number, and the ratios to the hand and
floor sides. ``--profile FILE`` also writes a cProfile dump of the ORM's load of one round
(``python -m pstats FILE``); ``--memory`` adds the ``MEMORY USAGE`` breakdown by kind of key.

Usage: bench/bench_bulk.py [--n 20000] [--rounds 3] [--sides orm,hand,floor] [--json]
[--profile FILE] [--memory]. Starts a private redis-server on a free 127.0.0.1 port (stopped
at exit) unless REDIS_URL is set; only the benchmark's own keys are ever deleted.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import time
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)
from bench_workload import (
    PREFIXES,
    SIDES,
    Ops,
    batches,
    floor_ops,
    hand_ops,
    make_docs,
    measure,
    memory_by_kind,
    orm_ops,
    turns,
    wipe,
)
from workload_floor import Floor
from workload_hand import HandWritten

from quantumorm import create_connection


def load_counted(admin: redis.Redis, side: str, ops: Ops, data: list[dict[str, Any]],
                 with_kinds: bool) -> dict[str, Any]:
    wipe(admin, side)
    gc.collect()
    before = int(admin.info("memory")["used_memory"])
    calls = batches(data)
    counts = measure(admin, ops["bulk"], calls, len(data))
    counts["round_trips"] *= len(data) / len(calls)
    counts["bytes_per_doc"] = (int(admin.info("memory")["used_memory"]) - before) / len(data)
    kinds = memory_by_kind(admin, side, len(data)) if with_kinds else {}
    wipe(admin, side)
    return {"counts": counts, "kinds": kinds}


def load_timed(admin: redis.Redis, sides: dict[str, Ops],
               data: list[dict[str, Any]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {side: [] for side in sides}
    gc.collect()
    for i, chunk in enumerate(batches(data)):
        for side in turns(sides, i):
            t = time.perf_counter_ns()
            sides[side]["bulk"](chunk)
            samples[side].append((time.perf_counter_ns() - t) / 1e3 / len(chunk))
    for side in sides:
        wipe(admin, side)
    return {side: statistics.median(s) for side, s in samples.items()}


def python_calls(fn: Any, chunk: list[dict[str, Any]], profile_to: str | None) -> float:
    profile = cProfile.Profile()
    profile.enable()
    fn(chunk)
    profile.disable()
    if profile_to:
        profile.dump_stats(profile_to)
    return float(pstats.Stats(profile).total_calls) / len(chunk)  # type: ignore[attr-defined]


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    data = make_docs(args.n, max(1, args.n // 10), seed=1)
    chosen = [side for side in SIDES if side in args.sides]
    create_connection("redis", url, name="bench-bulk", make_default=True)
    client = redis.Redis.from_url(url)
    make = {"orm": orm_ops, "hand": lambda: hand_ops(HandWritten(client)),
            "floor": lambda: floor_ops(Floor(client))}
    sides = {side: make[side]() for side in chosen}
    rounds: list[dict[str, Any]] = []
    try:
        for side in SIDES:
            wipe(admin, side, keep_schema=False)
        for side in chosen:  # warm-up: connections, scripts, the ORM's schema
            sides[side]["bulk"](data[:10])
            wipe(admin, side)
        for r in range(args.rounds):
            got: dict[str, Any] = {"us": load_timed(admin, sides, data), "counts": {},
                                   "kinds": {}}
            for side, ops in sides.items():
                counted = load_counted(admin, side, ops, data, args.memory and r == 0)
                got["counts"][side] = counted["counts"]
                got["kinds"][side] = counted["kinds"]
            got["python_calls"] = {
                side: python_calls(ops["bulk"], data[:500],
                                   args.profile if side == "orm" and r == 0 else None)
                for side, ops in sides.items()}
            for side in sides:
                wipe(admin, side)
            rounds.append(got)
    finally:
        for side in SIDES:
            wipe(admin, side, keep_schema=False)
    out: dict[str, Any] = {"n": args.n, "rounds": args.rounds, "sides": chosen, "median": {},
                           "memory_by_kind": rounds[0]["kinds"]}
    for side in chosen:
        row = {"us": statistics.median(r["us"][side] for r in rounds),
               "python_calls": statistics.median(r["python_calls"][side] for r in rounds)}
        for name in rounds[0]["counts"][side]:
            row[name] = statistics.median(r["counts"][side][name] for r in rounds)
        out["median"][side] = row
    out["ratio_us"] = {f"orm/{s}": [r["us"]["orm"] / r["us"][s] for r in rounds]
                       for s in chosen if s != "orm" and "orm" in chosen}
    return out


def table(out: dict[str, Any]) -> str:
    sides = out["sides"]
    names = ["us", "client_cpu_us", "server_cpu_us", "commands", "round_trips",
             "python_calls", "bytes_per_doc"]
    lines = ["| per document | " + " | ".join(sides) + " |",
             "|---|" + "---:|" * len(sides)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{out['median'][s][name]:,.2f}" for s in sides) + " |")
    for ratio, values in out["ratio_us"].items():
        lines.append(f"| µs {ratio} (per round; median {statistics.median(values):.2f}) | "
                     + ", ".join(f"{v:.2f}" for v in values) + " |")
    for side, kinds in out["memory_by_kind"].items():
        if kinds:
            lines.append(f"\n{side}: " + ", ".join(f"{k} {v:,.1f}" for k, v in kinds.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="documents per load")
    parser.add_argument("--rounds", type=int, default=3, help="loads per side (median)")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated sides")
    parser.add_argument("--profile", help="cProfile dump of one ORM batch of 500")
    parser.add_argument("--memory", action="store_true", help="memory by kind of key")
    parser.add_argument("--json", action="store_true", help="one JSON object, not a table")
    args = parser.parse_args()
    assert set(PREFIXES) >= set(args.sides.split(","))
    with redis_server("bench-bulk-") as url:
        out = run(url, args)
    print(json.dumps(out, indent=1) if args.json else table(out))


if __name__ == "__main__":
    main()
