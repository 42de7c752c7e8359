"""Server instructions of ``lua/_derive.lua`` (format 3, step 2) per call, under callgrind.

Each case is a script that derives the entries of one member's text and returns them, cut
as ``commands.script()`` cuts scripts (only the definitions it uses; the rare kinds' helpers
made by ``cold_paths()`` when asked). Reported: instructions per EVALSHA, and over an
``empty`` script (the same call returning its argument: parsing, the call, the reply),
beside ``bench_format3.py``'s prototype ``entry_of`` (int, str without escapes, bool). The
medians of ``--reps`` blocks, the order of the cases turning every block.

Usage: bench/bench_derive.py [--calls 2000] [--reps 3] [--port P]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "src"),
                str(Path(__file__).resolve().parent)]

from bench_format3 import DERIVE  # noqa: E402
from callgrind_support import callgrind_server, dumped_instructions, free_port  # noqa: E402

from quantumorm.backends.redis.commands import _part  # noqa: E402
from quantumorm.backends.redis.luachunks import prune  # noqa: E402


def _cut(body: str) -> str:
    return prune([_part("_prelude"), _part("_derive")], body) + body


SCALAR = "return derived_entry(ARGV[1], ARGV[2])\n"
ARRAY = "return derived_entries(ARGV[1], ARGV[2])\n"
PROTOTYPE = DERIVE + "return entry_of(ARGV[1])\n"
#: name: (script text, member text, kind)
CASES: dict[str, tuple[str, str, str]] = {
    "empty": ("return ARGV[1]\n", "42", ""),
    "prototype int": (PROTOTYPE, "42", ""),
    "prototype str": (PROTOTYPE, '"Alice Example"', ""),
    "prototype bool": (PROTOTYPE, "true", ""),
    "int": (_cut(SCALAR), "42", "int"),
    "int, 60 digits": (_cut(SCALAR), "1" * 60, "int"),
    "str": (_cut(SCALAR), '"Alice Example"', "str"),
    "bool": (_cut(SCALAR), "true", "bool"),
    "null": (_cut(SCALAR), "null", "int"),
    "negative int": (_cut(SCALAR), "-42", "int"),
    "str with an escape (rare)": (_cut(SCALAR), '"Alice \\"A\\" Example"', "str"),
    "float (rare)": (_cut(SCALAR), "1.5e-07", "number"),
    "decimal (rare)": (_cut(SCALAR), '"12.50"', "decimal"),
    "date (rare)": (_cut(SCALAR), '"2024-02-29"', "date"),
    "datetime (rare)": (_cut(SCALAR), '"2024-02-29T12:00:00.250000+00:00"', "datetime"),
    "array of 5 str": (_cut(ARRAY), '["red","green","blue","red","cyan"]', "[str"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory() as work, \
            callgrind_server(args.port or free_port(), work) as (url, pid):
        r = redis.Redis.from_url(url)
        shas = {name: r.script_load(text) for name, (text, _, _) in CASES.items()}
        for name, (_, member, kind) in CASES.items():  # (each answers: checked once)
            assert r.evalsha(shas[name], 0, member, kind) is not None, name
        order = list(CASES)
        for rep in range(args.reps):
            for name in order if rep % 2 == 0 else order[::-1]:
                _, member, kind = CASES[name]
                pipe = r.pipeline(transaction=False)
                for _ in range(200):
                    pipe.evalsha(shas[name], 0, member, kind)
                pipe.execute()
                subprocess.run(["callgrind_control", "-z", str(pid)], check=True,
                               capture_output=True)
                for start in range(0, args.calls, 500):
                    pipe = r.pipeline(transaction=False)
                    for _ in range(min(500, args.calls - start)):
                        pipe.evalsha(shas[name], 0, member, kind)
                    pipe.execute()
                label = f"r{rep}-{order.index(name)}"
                subprocess.run(["callgrind_control", f"--dump={label}", str(pid)], check=True,
                               capture_output=True)
                results[name].append(dumped_instructions(work, label) / args.calls)
    empty = statistics.median(results["empty"])
    print(f"{'case':<28} {'per call':>10} {'over empty':>11}  range")
    for name, counts in results.items():
        median = statistics.median(counts)
        print(f"{name:<28} {median:>10,.0f} {median - empty:>+11,.0f}  "
              f"[{min(counts):,.0f}-{max(counts):,.0f}]")


if __name__ == "__main__":
    main()
