#!/usr/bin/env python3
"""Server time per call of the cache's write scripts (``cache_begin``, ``cache_finish``), two
trees, from ``INFO commandstats`` (EVALSHA's usec_per_call).

Each script is loaded as its tree sends it (``commands.script``, run by that tree's own
code: the shared parts' definitions it uses included). Each case in turn, each tree in turn
(alternating the order every repeat): the keys are put in the case's starting state, the
counters reset, ``--calls`` calls of the measured script made (pipelined by 100, one key
each), and EVALSHA's microseconds per call read.
Cases: ``begin`` (the slot holds an entry), ``begin_join`` (the slot holds another
writer's mark), ``finish_through`` and ``finish_aside`` (this writer alone:
write-through, tombstone), ``finish_list`` (another writer still named), and ``write``: the
cache's whole share of one write-through write of one document, per write: since round 12
the slot's ``cache_begin``, the query generation's ``cache_begin``, the slot's
``cache_finish`` and the generation's ``cache_finish`` (its renewal); in round 11 one
``cache_begin``, one ``cache_finish`` and a plain ``SET`` of the generation (a tree is told
by its ``cache/redis_store.py``). Its figure is the sum of those calls' time (``INFO
commandstats``: EVALSHA's and SET's) or instructions, per write.

With ``--callgrind PORT`` a private redis-server runs under ``valgrind --tool=callgrind``
on that port (``hz 1``) instead, and the instructions the whole server runs per call are
counted (steady where wall times are not; use fewer ``--calls``, e.g. 300).

Usage: bench/bench_cache_marks.py --old <tree> [--new <tree>] (--url redis://127.0.0.1:PORT
| --callgrind PORT) [--calls 4000] [--reps 5]   (the server's keys ``bcm:*`` are overwritten)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ENTRY = b"E5:" + b'{"name":"x","n":1}' * 4


def _sources(tree: str) -> dict[str, str]:
    """The scripts as that tree sends them (``commands.script``: with the shared parts'
    definitions they use), assembled by the tree's own code."""
    code = ("import json, sys; from quantumorm.backends.redis.commands import script; "
            "json.dump({n: script(n).source for n in ('cache_begin', 'cache_finish')}, "
            "sys.stdout)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(Path(tree) / "src")})
    sources: dict[str, str] = json.loads(out.stdout)
    return sources


def _load(r: redis.Redis, tree: str) -> dict[str, str]:
    shas = {name: r.script_load(source) for name, source in _sources(tree).items()}
    store = (Path(tree) / "src/quantumorm/cache/redis_store.py").read_text()
    # round 12 marks the generation; its renewal's tombstone ttl: "" once it has no expiry
    shas["marks_generation"] = "1" if 'Call("cache_begin", (generation,)' in store else ""
    shas["generation_ttl"] = "" if '(token, "", "", new_generation, "")' in store else "60000"
    return shas


def _whole_writes(r: redis.Redis, shas: dict[str, str], keys: list[str]) -> None:
    """One write-through write per key, in order, pipelined by 25 writes: the cache's calls
    of each (the primary's commit between its begins and its finishes is left out)."""
    begin, finish = shas["cache_begin"], shas["cache_finish"]
    generation = "bcm:{q}:g"
    for i in range(0, len(keys), 25):
        pipe = r.pipeline(transaction=False)
        for n, key in enumerate(keys[i:i + 25]):
            token = f"w{i + n:015d}"
            pipe.evalsha(begin, 1, key, token, 10_000)
            if shas["marks_generation"]:
                pipe.evalsha(begin, 1, generation, token, 10_000)
            pipe.evalsha(finish, 1, key, token, 60_000, 60_000, 5, ENTRY)
            if shas["marks_generation"]:
                pipe.evalsha(finish, 1, generation, token, shas["generation_ttl"],
                             shas["generation_ttl"], f"g{i + n:015d}", "")
            else:
                pipe.set(generation, f"g{i + n:015d}")
        pipe.execute()


def _calls(r: redis.Redis, sha: str, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    for i in range(0, len(calls), 100):
        pipe = r.pipeline(transaction=False)
        for key, args in calls[i:i + 100]:
            pipe.evalsha(sha, 1, key, *args)
        pipe.execute()


def _usec(r: redis.Redis) -> float:
    return float(r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


class Callgrind:
    """Instructions per call of a redis-server run under callgrind (``pid``, dumps in
    ``work``)."""

    def __init__(self, pid: int, work: str) -> None:
        self.pid, self.work, self.n = pid, work, 0

    def zero(self) -> None:
        subprocess.run(["callgrind_control", "-z", str(self.pid)], check=True,
                       capture_output=True)

    def per_call(self, calls: int) -> float:
        self.n += 1
        label = f"bcm{self.n}"
        subprocess.run(["callgrind_control", f"--dump={label}", str(self.pid)], check=True,
                       capture_output=True)
        for _ in range(100):  # (the server writes the dump a moment later)
            for path in glob.glob(f"{self.work}/out.*"):
                text = Path(path).read_text()
                if f"Trigger: dump {label}\n" in text:
                    match = re.search(r"^summary: (\d+)", text, re.M)
                    assert match is not None
                    return int(match.group(1)) / calls
            time.sleep(0.1)
        raise RuntimeError(f"no callgrind dump {label}")


def case(r: redis.Redis, shas: dict[str, str], name: str, keys: list[str],
         grind: Callgrind | None = None) -> float:
    begin, finish = shas["cache_begin"], shas["cache_finish"]
    measured: tuple[str, list[tuple[str, tuple[Any, ...]]]]
    if name == "write":
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, ENTRY, px=60_000)
        pipe.execute()
        if grind is not None:
            grind.zero()
            _whole_writes(r, shas, keys)
            return grind.per_call(len(keys))
        r.config_resetstat()
        _whole_writes(r, shas, keys)
        stats = r.info("commandstats")
        usec = sum(float(stats[f"cmdstat_{command}"]["usec"]) for command in ("evalsha", "set")
                   if f"cmdstat_{command}" in stats)
        return usec / len(keys)
    if name in ("begin", "begin_join"):
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, ENTRY, px=60_000)
        pipe.execute()
        if name == "begin_join":
            _calls(r, begin, [(key, ("aaaaaaaaaaaaaaaa", 10_000)) for key in keys])
        measured = (begin, [(key, ("bbbbbbbbbbbbbbbb", 10_000)) for key in keys])
    else:
        r.delete(*keys)
        if name == "finish_list":
            _calls(r, begin, [(key, ("aaaaaaaaaaaaaaaa", 10_000)) for key in keys])
        _calls(r, begin, [(key, ("bbbbbbbbbbbbbbbb", 10_000)) for key in keys])
        value = b"" if name == "finish_aside" else ENTRY
        measured = (finish, [(key, ("bbbbbbbbbbbbbbbb", 60_000, 60_000, 5, value))
                             for key in keys])
    if grind is not None:
        grind.zero()
        _calls(r, *measured)
        return grind.per_call(len(keys))
    r.config_resetstat()
    _calls(r, *measured)
    return _usec(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--url")
    parser.add_argument("--callgrind", type=int, metavar="PORT")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if (args.url is None) == (args.callgrind is None):
        parser.error("one of --url and --callgrind")
    if args.callgrind is None:
        run(args, redis.Redis.from_url(args.url), None)
        return
    with tempfile.TemporaryDirectory(prefix="qorm-bcm-") as work:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/out.%p",
             "redis-server", "--port", str(args.callgrind), "--bind", "127.0.0.1", "--save",
             "", "--appendonly", "no", "--hz", "1", "--dir", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r = redis.Redis(host="127.0.0.1", port=args.callgrind)
            for _ in range(300):
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.2)
            pid = int(r.info("server")["process_id"])
            if pid != server.pid:
                raise RuntimeError(f"port {args.callgrind}: another server (pid {pid})")
            run(args, r, Callgrind(pid, work), "instructions")
        finally:
            server.terminate()
            server.wait()


def run(args: argparse.Namespace, r: redis.Redis, grind: Callgrind | None,
        unit: str = "us/call") -> None:
    trees = {"old": _load(r, args.old), "new": _load(r, args.new)}
    keys = [f"bcm:{{t}}:e:{i}" for i in range(args.calls)]
    cases = ("begin", "begin_join", "finish_through", "finish_aside", "finish_list", "write")
    got: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.reps):
        for name in cases:
            for side in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                got.setdefault((name, side), []).append(case(r, trees[side], name, keys,
                                                             grind))
    r.delete(*keys)
    print(f"{'case':16} {'old ' + unit:>14} {'new ' + unit:>14}   (median of {args.reps}, "
          f"{args.calls} calls each)")
    for name in cases:
        old, new = (statistics.median(got[(name, side)]) for side in ("old", "new"))
        print(f"{name:16} {old:14,.2f} {new:14,.2f}")


if __name__ == "__main__":
    main()
